// Colour and scale arithmetic, free of DOM and network.
//
// A channel arrives as 8-bit levels p scaled to its own min..max, so the real
// value is v = min + p/255 * (max - min). A normalization mode picks the
// window lo..hi the colormap spans; one 256-entry table per channel maps a
// level straight to an RGBA pixel, so recolouring is a single lookup.

export const COLORMAPS = ["viridis", "gray", "magma", "inferno", "plasma", "coolwarm"];
export const DIVERGING = new Set(["coolwarm"]);

export const NORMALIZATIONS = [
  { id: "channel", label: "Per channel, per step", short: "each tile: own min..max at this step" },
  { id: "layer", label: "Per layer, per step", short: "one scale for the layer at this step" },
  {
    id: "channel-fixed",
    label: "Per channel, all steps",
    short: "each tile: its min..max over all steps",
  },
  {
    id: "layer-fixed",
    label: "Per layer, all steps",
    short: "one scale for the layer over all steps",
  },
];

export const STAT = { min: 0, max: 1, mean: 2, std: 3, zero: 4, nonfinite: 5 };

/** The gray ramp needs no server; used until (or if) colormaps fail to load. */
export function grayLut() {
  return Array.from({ length: 256 }, (_, i) => [i, i, i]);
}

const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
function pack(r, g, b) {
  return little
    ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0
    : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
}

const finite = (x) => typeof x === "number" && Number.isFinite(x);

/** min/max of a channel's stats row, or null when the channel had no finite value. */
export function channelRange(row) {
  if (!row || !finite(row[STAT.min]) || !finite(row[STAT.max])) return null;
  return [row[STAT.min], row[STAT.max]];
}

export function unionRange(ranges) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of ranges) {
    if (!r) continue;
    if (r[0] < lo) lo = r[0];
    if (r[1] > hi) hi = r[1];
  }
  return lo <= hi ? [lo, hi] : null;
}

/** A channel is dead when every value is exactly zero. */
export function isDead(row) {
  if (!row) return false;
  if (row[STAT.zero] === 1) return true;
  return row[STAT.min] === 0 && row[STAT.max] === 0;
}

/** Diverging maps put zero at their centre whenever the window is shared. */
export function displayWindow(range, colormap, mode) {
  if (!range) return null;
  let [lo, hi] = range;
  if (DIVERGING.has(colormap) && mode !== "channel") {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    lo = -m;
    hi = m;
  }
  return [lo, hi];
}

/**
 * The level -> RGBA table for one channel: `own` is the channel's min..max at
 * the step the levels come from, `win` the window the colormap spans.
 */
export function buildTable(lut, own, win) {
  const table = new Uint32Array(256);
  const nan = pack(220, 220, 220);
  if (!own || !win) {
    table.fill(nan);
    return table;
  }
  const [a, b] = own;
  const [lo, hi] = win;
  const span = hi - lo;
  for (let p = 0; p < 256; p++) {
    const v = a + (p / 255) * (b - a);
    let t = span > 0 ? (v - lo) / span : 0;
    // A constant window (e.g. an all-zero layer) has nothing to show; the
    // lowest colour marks it, as for a constant channel in per-channel mode.
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const c = lut[Math.round(t * 255)];
    table[p] = pack(c[0], c[1], c[2]);
  }
  return table;
}

/** Writes gray levels through a table into an ImageData's pixels. */
export function colorize(gray, table, imageData) {
  const out = new Uint32Array(imageData.data.buffer);
  for (let i = 0; i < gray.length; i++) out[i] = table[gray[i]];
}

export function levelToValue(row, p) {
  const r = channelRange(row);
  if (!r) return NaN;
  return r[0] + (p / 255) * (r[1] - r[0]);
}

/** Short, readable numbers for labels: 3 significant digits, no noise. */
export function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "+inf" : "-inf";
  if (x === 0) return "0";
  const ax = Math.abs(x);
  if (ax >= 1e5 || ax < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

export function fmtEpoch(epoch) {
  if (epoch === null || epoch === undefined) return "";
  if (Number.isInteger(epoch)) return `epoch ${epoch}`;
  return `epoch ${Number(epoch.toFixed(2))}`;
}

/** Columns for wrapping a strip of n units into a near-square grid. */
export function unitColumns(n) {
  return Math.max(1, Math.ceil(Math.sqrt(n)));
}
