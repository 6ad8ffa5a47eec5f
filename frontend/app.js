// The dashboard: a symbol's quote (live over the WebSocket), its candle chart with indicators,
// its signals and the opportunities, all from the backend the env file names.
//
// The env (API and WebSocket URLs) is re-read from /env.json when the socket is closed with
// 1012 and every ENV_REFRESH_MS, so a rewritten env file takes effect without a reload.

import { Api, Monitor } from "./api.js";
import { drawChart } from "./chart.js";
import { LiveQuotes } from "./live.js";

const ENV_REFRESH_MS = 30000;
const params = new URLSearchParams(location.search);
// Seconds between REST refreshes of the quote (the socket updates it in between).
const QUOTE_REFRESH_MS = 1000 * Number(params.get("refresh") || 10);
const SLOW_REFRESH_MS = 60000; // signals and opportunities change with a new bar, not a tick

const monitor = new Monitor();
let env = window.CUTOVER_ENV ?? { apiUrl: "", wsUrl: "", source: "missing env.js" };
const api = new Api(`${env.apiUrl}/api/v1`, monitor);
const state = { symbol: null, quoteUpdates: 0, lastQuoteAt: null };

const $ = (id) => document.getElementById(id);
const fmt = (value, digits = 2) =>
  value === null || value === undefined ? "—" : Number(value).toFixed(digits);

function cell(row, text, className) {
  const element = document.createElement("td");
  element.textContent = text;
  if (className) element.className = className;
  row.appendChild(element);
}

function showEnv() {
  $("api-url").textContent = `${env.apiUrl} (${env.source})`;
}

/** Re-read /env.json; when the API URL moved, follow it. Never throws. */
async function refreshEnv() {
  try {
    const response = await fetch("env.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const fresh = await response.json();
    const moved = fresh.apiUrl !== env.apiUrl || fresh.wsUrl !== env.wsUrl;
    env = fresh;
    showEnv();
    if (moved) {
      api.base = `${env.apiUrl}/api/v1`;
      loadSymbol();
      loadSlow();
      return true;
    }
  } catch (error) {
    monitor.fail(`env.json: ${error.message}`);
  }
  return false;
}

function showQuote(quote, live) {
  $("quote-symbol").textContent = quote.symbol;
  const price = $("quote-price");
  price.textContent = fmt(quote.price);
  const change = $("quote-change");
  change.textContent = `${quote.change >= 0 ? "+" : ""}${fmt(quote.change)} (${fmt(quote.change_percent)} %)`;
  change.className = `change ${quote.change >= 0 ? "up" : "down"}`;
  $("quote-bidask").textContent = `${fmt(quote.bid)} / ${fmt(quote.ask)}`;
  $("quote-volume").textContent = Number(quote.volume).toLocaleString("en-US");
  $("quote-time").textContent = quote.timestamp;
  if (live) {
    state.quoteUpdates += 1;
    state.lastQuoteAt = Date.now();
    $("quote").dataset.updates = String(state.quoteUpdates);
    $("quote-updates").textContent = String(state.quoteUpdates);
    price.classList.add("tick");
    setTimeout(() => price.classList.remove("tick"), 300);
  }
}

async function loadQuote() {
  const symbol = state.symbol;
  const quote = await api.get(`/market-data/${encodeURIComponent(symbol)}`);
  if (symbol === state.symbol) showQuote(quote, false);
}

async function loadChart() {
  const symbol = state.symbol;
  const [period, interval] = $("range").value.split("|");
  const query = `period=${period}&interval=${interval}`;
  const path = `/market-data/${encodeURIComponent(symbol)}`;
  const [history, indicators] = await Promise.all([
    api.get(`${path}/historical?${query}`),
    api.get(`${path}/indicators?${query}`),
  ]);
  if (symbol !== state.symbol) return;
  const byTime = new Map(indicators.data.map((row) => [row.time, row]));
  drawChart($("chart"), history.data, byTime, !interval.endsWith("d"));
  $("chart-caption").textContent = `${symbol} · ${period} · ${interval} · ${history.data.length} bars`;
}

async function loadSignals() {
  const symbol = state.symbol;
  const answer = await api.get(`/signals/${encodeURIComponent(symbol)}?timeframe=1d`);
  if (symbol !== state.symbol) return;
  $("signals-caption").textContent = `${symbol} · daily · ${answer.count}`;
  const rows = answer.signals.map((signal) => {
    const row = document.createElement("tr");
    cell(row, signal.type, signal.type);
    cell(row, `${fmt(signal.confidence, 0)} %`);
    cell(row, fmt(signal.entry));
    cell(row, fmt(signal.stop_loss));
    cell(row, fmt(signal.take_profit));
    cell(row, signal.risk);
    cell(row, signal.pattern);
    cell(row, signal.timestamp.slice(0, 10));
    return row;
  });
  $("signals").replaceChildren(...rows);
}

async function loadOpportunities() {
  const answer = await api.get("/market/opportunities?limit=5");
  const rows = answer.opportunities.map((item) => {
    const row = document.createElement("tr");
    cell(row, item.symbol);
    cell(row, item.type, item.type);
    cell(row, `${fmt(item.confidence, 0)} %`);
    cell(row, `${fmt(item.potential_return)} %`);
    cell(row, item.momentum);
    cell(row, item.key_reason);
    return row;
  });
  $("opportunities").replaceChildren(...rows);
}

// A failed request is already on the page (the monitor lists it); nothing more to do here.
const quietly = (promise) => promise.catch(() => undefined);

function loadSymbol() {
  return Promise.all([loadQuote(), loadChart(), loadSignals()].map(quietly));
}

function loadSlow() {
  return Promise.all([quietly(loadSignals()), quietly(loadOpportunities())]);
}

const live = new LiveQuotes(
  async () => {
    await refreshEnv();
    return env.wsUrl;
  },
  {
    onQuote: (quote) => showQuote(quote, true),
    onState: (name, detail) => {
      const element = $("ws-state");
      element.dataset.state = name;
      element.textContent = name === "open" ? `open · ${detail}` : `${name} · ${detail}`;
    },
    onError: (message) => monitor.fail(message),
  },
);

async function start() {
  showEnv();
  monitor.render();
  try {
    const listing = await api.get("/symbols");
    const select = $("symbol");
    select.replaceChildren(...listing.symbols.map((item) => {
      const option = document.createElement("option");
      option.value = item.symbol;
      option.textContent = `${item.symbol} · ${item.name}`;
      return option;
    }));
    state.symbol = params.get("symbol")?.toUpperCase() || listing.symbols[0]?.symbol || "SPY";
    select.value = state.symbol;
  } catch {
    state.symbol = params.get("symbol")?.toUpperCase() || "SPY";
  }
  $("symbol").addEventListener("change", (event) => {
    state.symbol = event.target.value;
    live.follow(state.symbol);
    loadSymbol();
  });
  $("range").addEventListener("change", () => quietly(loadChart()));
  await Promise.all([loadSymbol(), quietly(loadOpportunities())]);
  live.start(state.symbol);
  setInterval(() => quietly(loadQuote()), QUOTE_REFRESH_MS);
  setInterval(loadSlow, SLOW_REFRESH_MS);
  setInterval(async () => {
    if (await refreshEnv()) live.restart();
  }, ENV_REFRESH_MS);
  document.body.dataset.ready = "true";
}

// What the browser tests read (they also check what is shown).
window.dashboard = { monitor, live, state, get env() { return env; } };
start();
