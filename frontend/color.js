// @ts-check
// Colour and scale arithmetic, free of DOM and network.
//
// A channel arrives as 8-bit levels p scaled to its own min..max, so the real
// value is v = min + p/255 * (max - min). A normalization mode picks the
// window lo..hi the colormap spans; one 256-entry table per channel maps a
// level straight to an RGBA pixel, so recolouring is a single lookup.

/** @typedef {[number, number]} Range A lo..hi interval in real units. */
/** @typedef {"channel" | "layer" | "channel-fixed" | "layer-fixed"} Norm */
/** @typedef {number[][]} Lut 256 [r, g, b] entries. */
/** @typedef {(number | null)[]} StatsRow One channel's statistics, in the order of the server's fields. */

/**
 * Where each statistic sits in a row, found by name in the fields the server
 * sends (-1 when absent); rows may carry more fields than the panel reads.
 * @typedef {Object} StatIndex
 * @property {string[]} names
 * @property {number} min
 * @property {number} max
 * @property {number} mean
 * @property {number} std
 * @property {number} zero
 * @property {number} nonfinite
 */

/**
 * The ranges a channel's colours may be scaled to; a normalization mode picks
 * among them.
 * @typedef {Object} Scope
 * @property {Range | null} own the channel at the step its levels come from
 * @property {Range | null | undefined} [layerNow] every channel of the layer at that step
 * @property {Range | null | undefined} [channelAll] the channel over every kept step
 * @property {Range | null | undefined} [layerAll] the layer over every kept step
 */

/** Maps whose middle colour means zero. The server names the maps, not their kind. */
export const DIVERGING = new Set(["coolwarm"]);

/** @type {{id: Norm, label: string, short: string}[]} */
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

/**
 * @param {string | undefined} id
 * @returns {id is Norm}
 */
export function isNorm(id) {
  return NORMALIZATIONS.some((n) => n.id === id);
}

/** @param {Norm} id */
export function normalization(id) {
  return NORMALIZATIONS.find((n) => n.id === id) || NORMALIZATIONS[0];
}

/** Only the per-step, per-channel scale can do without every step's statistics. */
export function needsAllSteps(/** @type {Norm} */ norm) {
  return norm !== "channel";
}

/** @param {readonly string[] | null | undefined} fields */
export function statIndex(fields) {
  const names = Array.isArray(fields) ? fields : [];
  const at = (/** @type {string} */ name) => names.indexOf(name);
  return {
    names,
    min: at("min"),
    max: at("max"),
    mean: at("mean"),
    std: at("std"),
    zero: at("zero_fraction"),
    nonfinite: at("nonfinite_fraction"),
  };
}

/**
 * One statistic of a row, or null when the row lacks it or it is not finite.
 * @param {StatsRow | null | undefined} row
 * @param {number} i
 */
export function stat(row, i) {
  const v = row && i >= 0 ? row[i] : null;
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The gray ramp needs no server; used until (or if) colormaps fail to load. */
export function grayLut() {
  return Array.from({ length: 256 }, (_, i) => [i, i, i]);
}

const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** @param {number} r @param {number} g @param {number} b */
function pack(r, g, b) {
  return little
    ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0
    : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
}

/**
 * min..max of a channel's stats row, or null when the channel had no finite value.
 * @param {StatsRow | null | undefined} row
 * @param {StatIndex} ix
 * @returns {Range | null}
 */
export function channelRange(row, ix) {
  const lo = stat(row, ix.min);
  const hi = stat(row, ix.max);
  return lo === null || hi === null ? null : [lo, hi];
}

/**
 * @param {Iterable<Range | null | undefined>} ranges
 * @returns {Range | null}
 */
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

/**
 * A channel is dead when every value is exactly zero.
 * @param {StatsRow | null | undefined} row
 * @param {StatIndex} ix
 */
export function isDead(row, ix) {
  if (!row) return false;
  if (stat(row, ix.zero) === 1) return true;
  return stat(row, ix.min) === 0 && stat(row, ix.max) === 0;
}

/** @param {StatsRow | null | undefined} row @param {StatIndex} ix */
export function hasNonFinite(row, ix) {
  return (stat(row, ix.nonfinite) ?? 0) > 0;
}

/**
 * The window (real units) a channel's colours span: the one place the
 * normalization modes are defined, for the grid and the evolution alike.
 * @param {Norm} norm
 * @param {string} colormap
 * @param {Scope} scope
 */
export function colorWindow(norm, colormap, scope) {
  const { own, layerNow, channelAll, layerAll } = scope;
  let range;
  switch (norm) {
    case "layer":
      range = unionRange([own, layerNow]);
      break;
    case "channel-fixed":
      range = unionRange([own, channelAll]);
      break;
    case "layer-fixed":
      range = unionRange([own, layerNow, channelAll, layerAll]);
      break;
    default:
      range = own;
  }
  return displayWindow(range, colormap, norm);
}

/**
 * Diverging maps put zero at their centre whenever the window is shared.
 * @param {Range | null} range
 * @param {string} colormap
 * @param {Norm} mode
 * @returns {Range | null}
 */
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
 * Every channel's range over all kept steps, and the layer's per step and
 * overall, from the `stats` route's rows of one probe.
 * @param {{step: number, stats: StatsRow[][]}[]} steps
 * @param {number} probe
 * @param {StatIndex} ix
 */
export function fixedRanges(steps, probe, ix) {
  /** @type {(Range | null)[]} */
  const perChannel = [];
  /** @type {Map<number, Range | null>} */
  const perStep = new Map();
  for (const s of steps) {
    const rows = s.stats?.[probe] || [];
    const ranges = rows.map((row) => channelRange(row, ix));
    ranges.forEach((r, c) => {
      perChannel[c] = unionRange([perChannel[c], r]);
    });
    perStep.set(s.step, unionRange(ranges));
  }
  return { perChannel, perStep, layer: unionRange(perChannel) };
}

/** @typedef {ReturnType<typeof fixedRanges>} Fixed */

/**
 * Every channel's window at one step.
 * @param {StatsRow[]} rows the step's statistics, one row per channel
 * @param {StatIndex} ix
 * @param {Fixed | null} fixed every step's ranges, when the scale needs them
 * @param {Norm} norm
 * @param {string} colormap
 */
export function stepWindows(rows, ix, fixed, norm, colormap) {
  const own = rows.map((row) => channelRange(row, ix));
  const layerNow = unionRange(own);
  return own.map((r, c) =>
    colorWindow(norm, colormap, {
      own: r,
      layerNow,
      channelAll: fixed?.perChannel[c],
      layerAll: fixed?.layer,
    }),
  );
}

/**
 * One channel's table at each kept step, and its range over them all.
 * @param {Lut} lut
 * @param {{step: number, stats: StatsRow}[]} series the channel's rows, step by step
 * @param {StatIndex} ix
 * @param {Fixed | null} fixed
 * @param {number} channel
 * @param {Norm} norm
 * @param {string} colormap
 */
export function seriesTables(lut, series, ix, fixed, channel, norm, colormap) {
  const ownAll = unionRange(series.map((s) => channelRange(s.stats, ix)));
  const channelAll = unionRange([ownAll, fixed?.perChannel[channel]]);
  const tables = series.map((s) => {
    const own = channelRange(s.stats, ix);
    const win = colorWindow(norm, colormap, {
      own,
      layerNow: fixed?.perStep.get(s.step),
      channelAll,
      layerAll: fixed?.layer,
    });
    return buildTable(lut, own, win);
  });
  return { ownAll, tables };
}

/**
 * The level -> RGBA table for one channel: `own` is the channel's min..max at
 * the step the levels come from, `win` the window the colormap spans.
 * @param {Lut} lut
 * @param {Range | null} own
 * @param {Range | null} win
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

/**
 * Tables for every channel of one step. At the per-channel scale every
 * channel with a range shares one table: its levels already span it.
 * @param {Lut} lut
 * @param {StatsRow[]} rows
 * @param {StatIndex} ix
 * @param {(Range | null)[]} windows
 * @param {Norm} norm
 */
export function channelTables(lut, rows, ix, windows, norm) {
  const shared = norm === "channel" ? buildTable(lut, [0, 1], [0, 1]) : null;
  return rows.map((row, c) => {
    const own = channelRange(row, ix);
    if (shared && own) return shared;
    return buildTable(lut, own, windows[c]);
  });
}

/**
 * Writes gray levels through a table into an ImageData's pixels.
 * @param {Uint8Array} gray
 * @param {Uint32Array} table
 * @param {ImageData} imageData
 */
export function colorize(gray, table, imageData) {
  const out = new Uint32Array(imageData.data.buffer);
  for (let i = 0; i < gray.length; i++) out[i] = table[gray[i]];
}

/** @param {StatsRow | null | undefined} row @param {StatIndex} ix @param {number} p */
export function levelToValue(row, ix, p) {
  const r = channelRange(row, ix);
  if (!r) return NaN;
  return r[0] + (p / 255) * (r[1] - r[0]);
}

/**
 * Short, readable numbers for labels: 3 significant digits, no noise.
 * @param {number | null | undefined} x
 */
export function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "+inf" : "-inf";
  if (x === 0) return "0";
  const ax = Math.abs(x);
  if (ax >= 1e5 || ax < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

/** @param {number | null | undefined} epoch */
export function fmtEpoch(epoch) {
  if (epoch === null || epoch === undefined) return "";
  if (Number.isInteger(epoch)) return `epoch ${epoch}`;
  return `epoch ${Number(epoch.toFixed(2))}`;
}

/** Columns for wrapping a strip of n units into a near-square grid. */
export function unitColumns(/** @type {number} */ n) {
  return Math.max(1, Math.ceil(Math.sqrt(n)));
}
