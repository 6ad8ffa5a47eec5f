// Live quotes over the contract's WebSocket: subscribe, heartbeat, and reconnect with backoff.
// A close with 1012 (the gateway moving this client to the other backend) is expected: the
// page re-reads its env (the URL may have changed) and reconnects at once, with a little jitter.

const HEARTBEAT_MS = 15000;
const SILENCE_MS = 45000; // no frame at all for this long: the socket is dead, reconnect
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
export const SERVICE_RESTART = 1012;

export class LiveQuotes {
  /**
   * @param {() => Promise<string>} resolveUrl the WebSocket URL now (re-reads the env on a move)
   * @param {object} handlers onQuote(quote), onState(state, detail), onError(message)
   */
  constructor(resolveUrl, handlers) {
    this.resolveUrl = resolveUrl;
    this.handlers = handlers;
    this.symbol = null;
    this.socket = null;
    this.attempt = 0;
    this.timers = [];
    this.stats = { connects: 0, closes: {}, moves: 0, quotes: 0, backend: null };
    this.stopped = false;
  }

  start(symbol) {
    this.symbol = symbol;
    this.connect();
  }

  follow(symbol) {
    const previous = this.symbol;
    this.symbol = symbol;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      if (previous && previous !== symbol) {
        this.send("unsubscribe", { channel: "market_data", symbol: previous });
      }
      this.send("subscribe", { channel: "market_data", symbol });
    }
  }

  /** Drop the socket and connect again now (e.g. the env file named another URL). */
  restart() {
    this.attempt = 0;
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.onclose = null;
      old.close(1000, "env changed");
    }
    this.connect();
  }

  send(type, data) {
    this.socket.send(JSON.stringify({ type, data }));
  }

  clearTimers() {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
  }

  async connect() {
    this.clearTimers();
    const url = await this.resolveUrl();
    this.handlers.onState("connecting", url);
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      this.handlers.onState("closed", "bad URL");
      this.handlers.onError(`live: cannot open ${url}: ${error.message}`);
      return;
    }
    this.socket = socket;
    let lastFrame = Date.now();
    socket.onopen = () => {
      this.stats.connects += 1;
      this.send("subscribe", { channel: "market_data", symbol: this.symbol });
      this.timers.push(setInterval(() => {
        if (Date.now() - lastFrame > SILENCE_MS) {
          socket.close(4000, "silent");
        } else if (socket.readyState === WebSocket.OPEN) {
          this.send("heartbeat", {});
        }
      }, HEARTBEAT_MS));
    };
    socket.onmessage = (event) => {
      lastFrame = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        this.handlers.onError(`live: a frame that is not JSON`);
        return;
      }
      if (frame.type === "connection_established") {
        this.attempt = 0;
        this.stats.backend = frame.data.backend;
        this.handlers.onState("open", frame.data.backend);
      } else if (frame.type === "market_data" && frame.data.symbol === this.symbol) {
        this.stats.quotes += 1;
        this.handlers.onQuote(frame.data);
      } else if (frame.type === "error") {
        this.handlers.onError(`live: ${frame.data.code}: ${frame.data.message}`);
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.clearTimers();
      this.stats.closes[event.code] = (this.stats.closes[event.code] ?? 0) + 1;
      if (this.stopped) return;
      let delay;
      if (event.code === SERVICE_RESTART) {
        // Moved by the gateway: reconnect at once; jitter keeps moved clients from arriving
        // all in the same millisecond.
        this.stats.moves += 1;
        delay = 100 + Math.random() * 300;
        this.handlers.onState("moving", `closed ${event.code}: reconnecting`);
      } else {
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
        delay = base / 2 + Math.random() * (base / 2);
        this.attempt += 1;
        this.handlers.onState("reconnecting", `closed ${event.code}`);
        this.handlers.onError(
          `live: socket closed (code ${event.code}); reconnecting in ${(delay / 1000).toFixed(1)} s`,
        );
      }
      setTimeout(() => this.connect(), delay);
    };
  }
}
