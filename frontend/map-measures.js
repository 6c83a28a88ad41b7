// @ts-check
// The training map's layer measures: their names, units and colour scales.
// No DOM. The measures are defined in docs/measures.md; the server computes
// them (`overview` route), the panel only colours them.
//
// Colour scales, chosen so a colour means the same thing at every step:
// - change (‖A_s − A_ref‖ / max norm, in [0, 2]): viridis from 0 to the
//   largest value drawn, rounded up and capped at 2. 0 is always the lowest
//   colour, so an unchanging (frozen) layer is a row of that colour; the
//   upper end follows the data, because typical changes are well below 2.
// - drift (1 − linear CKA, in [0, 1]): viridis over the fixed [0, 1].
// - dead channels (a fraction, shown in %): magma over the fixed [0, 100%].
// - mean activation (real units): viridis from 0 to the largest mean when no
//   mean is negative (ReLU layers); otherwise coolwarm, centred on 0 and
//   symmetric about it, so the sign reads at a glance.

/** @typedef {"change_prev" | "change_start" | "drift_prev" | "drift_start" | "dead_fraction" | "mean"} MapMeasure */

/**
 * @typedef {Object} MeasureDef
 * @property {MapMeasure} id
 * @property {string} label what the select offers
 * @property {string} short its name in a sentence
 * @property {"change" | "drift" | "fraction" | "signed"} kind
 */

/** @type {MeasureDef[]} */
export const MAP_MEASURES = [
  {
    id: "change_prev",
    label: "Change since previous step",
    short: "change since the previous step",
    kind: "change",
  },
  {
    id: "change_start",
    label: "Change since the first step",
    short: "change since the first step",
    kind: "change",
  },
  {
    id: "drift_prev",
    label: "Drift since previous step (1 − CKA)",
    short: "drift since the previous step",
    kind: "drift",
  },
  {
    id: "drift_start",
    label: "Drift since the first step (1 − CKA)",
    short: "drift since the first step",
    kind: "drift",
  },
  { id: "dead_fraction", label: "Dead channels (%)", short: "dead channels", kind: "fraction" },
  { id: "mean", label: "Mean activation", short: "mean activation", kind: "signed" },
];

/** @type {MapMeasure} */
export const DEFAULT_MEASURE = "change_prev";

/**
 * @param {string | null | undefined} id
 * @returns {id is MapMeasure}
 */
export function isMapMeasure(id) {
  return MAP_MEASURES.some((m) => m.id === id);
}

/** @param {MapMeasure} id */
export function mapMeasure(id) {
  return MAP_MEASURES.find((m) => m.id === id) || MAP_MEASURES[0];
}

/**
 * The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 (times a power of
 * ten) at or above x: a colorbar end that reads well.
 * @param {number} x > 0
 */
export function niceCeil(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10])
    if (m * p >= x * (1 - 1e-9)) return m * p;
  return 10 * p;
}

/**
 * How one measure's values map to colours.
 * @typedef {Object} MeasureScale
 * @property {number} lo the value of the lowest colour
 * @property {number} hi the value of the highest colour
 * @property {string} cmap a colormap the server offers
 * @property {string} caption the scale in words, for the colorbar
 */

/**
 * @param {MapMeasure} id
 * @param {Iterable<number | null>} values every value the map draws
 * @returns {MeasureScale}
 */
export function measureScale(id, values) {
  const def = mapMeasure(id);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const any = lo <= hi;
  switch (def.kind) {
    case "change": {
      const top = any && hi > 0 ? Math.min(2, niceCeil(hi)) : 1;
      return {
        lo: 0,
        hi: top,
        cmap: "viridis",
        caption: `0 (unchanged) to ${fmtNumber(top)}${top < 2 ? " (values reach 2 at most)" : ""}`,
      };
    }
    case "drift":
      return { lo: 0, hi: 1, cmap: "viridis", caption: "0 (same features, up to scale) to 1" };
    case "fraction":
      return { lo: 0, hi: 1, cmap: "magma", caption: "share of the layer's channels dead" };
    default: {
      if (!any) return { lo: 0, hi: 1, cmap: "viridis", caption: "no values" };
      if (lo >= 0) {
        const top = hi > 0 ? niceCeil(hi) : 1;
        return { lo: 0, hi: top, cmap: "viridis", caption: "real units; no mean is negative" };
      }
      const m = niceCeil(Math.max(Math.abs(lo), Math.abs(hi)));
      return { lo: -m, hi: m, cmap: "coolwarm", caption: "real units, centred on 0" };
    }
  }
}

/**
 * A colormap entry for a value: 0..255.
 * @param {number} v @param {MeasureScale} scale
 */
export function colorLevel(v, scale) {
  const span = scale.hi - scale.lo;
  let t = span > 0 ? (v - scale.lo) / span : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  return Math.round(t * 255);
}

/** @param {number} x */
function fmtNumber(x) {
  if (x === 0) return "0";
  const ax = Math.abs(x);
  if (ax >= 1e5 || ax < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

/**
 * A value as the hover and the table show it.
 * @param {MapMeasure} id @param {number} v
 */
export function formatMeasure(id, v) {
  if (mapMeasure(id).kind === "fraction") return `${Number((v * 100).toFixed(1))}%`;
  return fmtNumber(v);
}

/**
 * A colorbar end label.
 * @param {MapMeasure} id @param {number} v
 */
export function formatTick(id, v) {
  return mapMeasure(id).kind === "fraction" ? `${Math.round(v * 100)}%` : fmtNumber(v);
}
