// A hand-drawn SVG candle chart: candles with SMA 20/50, EMA 12 and Bollinger overlays, then an
// RSI 14 pane and a MACD 12/26/9 pane. No library: a few hundred candles need nothing more.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 900;
const PRICE = { top: 10, height: 250 };
const RSI = { top: 275, height: 70 };
const MACD = { top: 360, height: 70 };
const HEIGHT = 450;
const RIGHT = 60; // room for the price labels
const COLORS = {
  up: "#2fb67c", down: "#e0565b", grid: "#263140", text: "#8a97a8",
  sma_20: "#f0b429", sma_50: "#b37feb", ema_12: "#4ea1ff", bb: "#5c6b7f",
  rsi: "#4ea1ff", macd: "#4ea1ff", signal: "#f0b429",
};

function node(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  parent.appendChild(element);
  return element;
}

function scale(lo, hi, top, height) {
  const span = hi - lo || 1;
  return (value) => top + height - ((value - lo) / span) * height;
}

function line(parent, xs, values, y, color, dashed = false) {
  let path = "";
  let drawing = false;
  values.forEach((value, i) => {
    if (value === null || value === undefined) {
      drawing = false;
      return;
    }
    path += `${drawing ? "L" : "M"}${xs(i).toFixed(1)},${y(value).toFixed(1)}`;
    drawing = true;
  });
  if (path) {
    node("path", {
      d: path, fill: "none", stroke: color, "stroke-width": 1.2,
      ...(dashed ? { "stroke-dasharray": "4 3" } : {}),
    }, parent);
  }
}

function label(parent, x, y, text, anchor = "start") {
  const element = node("text", { x, y, fill: COLORS.text, "font-size": 11, "text-anchor": anchor }, parent);
  element.textContent = text;
}

function when(seconds, intraday) {
  const iso = new Date(seconds * 1000).toISOString();
  return intraday ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
}

/**
 * Draw `candles` ({time, open, high, low, close}) and the indicators joined by time into `box`.
 * @param {HTMLElement} box
 * @param {Array<object>} candles oldest first
 * @param {Map<number, object>} indicators by candle time
 * @param {boolean} intraday
 */
export function drawChart(box, candles, indicators, intraday) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `candle chart of ${candles.length} bars`);
  box.replaceChildren(svg);
  box.dataset.candles = String(candles.length);
  if (candles.length === 0) {
    label(svg, WIDTH / 2, HEIGHT / 2, "no bars in this range", "middle");
    return;
  }
  const plotWidth = WIDTH - RIGHT;
  const step = plotWidth / candles.length;
  const xs = (i) => i * step + step / 2;
  const ind = (name) => candles.map((c) => indicators.get(c.time)?.[name] ?? null);
  const overlays = ["sma_20", "sma_50", "ema_12", "bb_upper", "bb_lower"];
  const prices = candles.flatMap((c) => [c.high, c.low]);
  for (const name of overlays) prices.push(...ind(name).filter((v) => v !== null));
  const y = scale(Math.min(...prices), Math.max(...prices), PRICE.top, PRICE.height);

  for (const pane of [PRICE, RSI, MACD]) {
    node("rect", {
      x: 0, y: pane.top, width: plotWidth, height: pane.height,
      fill: "none", stroke: COLORS.grid,
    }, svg);
  }
  for (let k = 0; k <= 4; k += 1) {
    const value = Math.min(...prices) + ((Math.max(...prices) - Math.min(...prices)) * k) / 4;
    node("line", { x1: 0, x2: plotWidth, y1: y(value), y2: y(value), stroke: COLORS.grid }, svg);
    label(svg, plotWidth + 4, y(value) + 4, value.toFixed(2));
  }

  // Bollinger band as a shaded area under the lines.
  const upper = ind("bb_upper");
  const lower = ind("bb_lower");
  const band = candles.map((_, i) => i).filter((i) => upper[i] !== null && lower[i] !== null);
  if (band.length > 1) {
    const top = band.map((i) => `${xs(i).toFixed(1)},${y(upper[i]).toFixed(1)}`);
    const bottom = band.reverse().map((i) => `${xs(i).toFixed(1)},${y(lower[i]).toFixed(1)}`);
    node("polygon", { points: [...top, ...bottom].join(" "), fill: COLORS.bb, opacity: 0.15 }, svg);
  }
  line(svg, xs, upper, y, COLORS.bb, true);
  line(svg, xs, lower, y, COLORS.bb, true);

  const body = Math.max(1, step * 0.6);
  const group = node("g", { class: "candles" }, svg);
  candles.forEach((c, i) => {
    const color = c.close >= c.open ? COLORS.up : COLORS.down;
    node("line", { x1: xs(i), x2: xs(i), y1: y(c.high), y2: y(c.low), stroke: color }, group);
    const top = y(Math.max(c.open, c.close));
    node("rect", {
      x: xs(i) - body / 2, y: top, width: body,
      height: Math.max(1, y(Math.min(c.open, c.close)) - top), fill: color,
    }, group);
  });
  for (const name of ["sma_20", "sma_50", "ema_12"]) line(svg, xs, ind(name), y, COLORS[name]);

  // RSI 14 with its 30/70 guides.
  const yr = scale(0, 100, RSI.top, RSI.height);
  for (const level of [30, 70]) {
    node("line", {
      x1: 0, x2: plotWidth, y1: yr(level), y2: yr(level),
      stroke: COLORS.grid, "stroke-dasharray": "3 3",
    }, svg);
    label(svg, plotWidth + 4, yr(level) + 4, String(level));
  }
  line(svg, xs, ind("rsi_14"), yr, COLORS.rsi);
  label(svg, 4, RSI.top + 12, "RSI 14");

  // MACD: histogram bars, then the MACD and signal lines.
  const macd = ind("macd");
  const signal = ind("macd_signal");
  const hist = ind("macd_hist");
  const values = [...macd, ...signal, ...hist].filter((v) => v !== null);
  const extent = Math.max(1e-9, ...values.map(Math.abs));
  const ym = scale(-extent, extent, MACD.top, MACD.height);
  hist.forEach((value, i) => {
    if (value === null) return;
    const top = Math.min(ym(value), ym(0));
    node("rect", {
      x: xs(i) - body / 2, y: top, width: body, height: Math.abs(ym(value) - ym(0)),
      fill: value >= 0 ? COLORS.up : COLORS.down, opacity: 0.6,
    }, svg);
  });
  line(svg, xs, macd, ym, COLORS.macd);
  line(svg, xs, signal, ym, COLORS.signal);
  label(svg, 4, MACD.top + 12, "MACD 12/26/9");

  const ticks = Math.min(6, candles.length);
  for (let k = 0; k < ticks; k += 1) {
    const i = Math.round((k * (candles.length - 1)) / Math.max(1, ticks - 1));
    const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
    label(svg, xs(i), HEIGHT - 4, when(candles[i].time, intraday), anchor);
  }
}
