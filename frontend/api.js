// The page's HTTP client: every request is counted, its answering backend noted (X-Backend,
// and X-Gateway-Upstream when a gateway sits in front) and every failure listed on the page.

const LOG_ROWS = 15;
const ERROR_ROWS = 50;

/** Counts, the last backend seen and the visible error list; read by the browser tests too. */
export class Monitor {
  constructor() {
    this.requests = 0;
    this.failures = 0;
    this.errors = [];
    this.backend = null;
    this.via = null;
  }

  answered(entry) {
    this.requests += 1;
    if (entry.backend) {
      this.backend = entry.backend;
      this.via = entry.via;
    }
    this.logRow(entry);
    this.render();
  }

  fail(message) {
    this.failures += 1;
    this.errors.push(`${new Date().toISOString().slice(11, 23)} ${message}`);
    if (this.errors.length > ERROR_ROWS) this.errors.shift();
    this.render();
  }

  logRow(entry) {
    const body = document.getElementById("request-log");
    const row = document.createElement("tr");
    const cells = [
      new Date().toISOString().slice(11, 19),
      `GET ${entry.path}`,
      String(entry.status ?? "—"),
      entry.backend ?? "—",
      entry.via ? `gateway → ${entry.via}` : "direct",
      entry.ms === undefined ? "" : entry.ms.toFixed(0),
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    body.prepend(row);
    while (body.rows.length > LOG_ROWS) body.deleteRow(-1);
  }

  render() {
    document.getElementById("request-count").textContent = String(this.requests);
    const backend = document.getElementById("backend");
    backend.dataset.backend = this.backend ?? "";
    backend.textContent = this.backend
      ? this.via ? `${this.backend} (via the gateway → ${this.via})` : this.backend
      : "…";
    const panel = document.getElementById("error-panel");
    panel.classList.toggle("has-errors", this.errors.length > 0);
    document.getElementById("error-count").textContent = String(this.failures);
    const list = document.getElementById("errors");
    list.replaceChildren(...this.errors.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
  }
}

export class ApiError extends Error {}

/** GETs against the API base URL the env file names; the base may change while the page runs. */
export class Api {
  constructor(base, monitor) {
    this.base = base;
    this.monitor = monitor;
  }

  async get(path) {
    const started = performance.now();
    let response;
    try {
      response = await fetch(this.base + path, { headers: { Accept: "application/json" } });
    } catch (error) {
      this.monitor.requests += 1;
      this.monitor.logRow({ path, status: "failed" });
      this.monitor.fail(`GET ${path}: no answer (${error.message})`);
      throw new ApiError(`GET ${path}: no answer`);
    }
    const entry = {
      path,
      status: response.status,
      backend: response.headers.get("X-Backend"),
      via: response.headers.get("X-Gateway-Upstream"),
      ms: performance.now() - started,
    };
    this.monitor.answered(entry);
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail ?? detail;
      } catch {
        // not JSON: the status text says enough
      }
      this.monitor.fail(`GET ${path}: HTTP ${response.status} ${detail}`);
      throw new ApiError(`GET ${path}: HTTP ${response.status}`);
    }
    return response.json();
  }
}
