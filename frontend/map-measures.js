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
// - dormant fraction and saturation (shares, in %): magma over [0, 100%].
// - effective rank: coloured as rank / its maximum min(N − 1, units), over
//   the fixed [0, 1], so layers of different widths compare.
// - similarity (a cosine): coolwarm over the fixed [−1, 1].
// - rms: coloured as log₁₀ rms, from the smallest to the largest drawn,
//   rounded out to whole powers of ten.

/** @typedef {"change_prev" | "change_start" | "drift_prev" | "drift_start" | "dead_fraction" | "mean" | "dormant_fraction" | "effective_rank" | "similarity" | "rms" | "saturation"} MapMeasure */

/**
 * @typedef {Object} MeasureDef
 * @property {MapMeasure} id
 * @property {string} label what the select offers
 * @property {string} short its name in a sentence
 * @property {"change" | "drift" | "fraction" | "signed" | "rank" | "cosine" | "log"} kind
 * @property {string} [caption] the colour scale in words, for a fraction
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
  {
    id: "dead_fraction",
    label: "Dead channels (%)",
    short: "dead channels",
    kind: "fraction",
    caption: "share of the layer's channels dead",
  },
  { id: "mean", label: "Mean activation", short: "mean activation", kind: "signed" },
  {
    id: "dormant_fraction",
    label: "Dormant units (%)",
    short: "dormant units",
    kind: "fraction",
    caption: "share of the layer's units dormant (score ≤ τ)",
  },
  {
    id: "effective_rank",
    label: "Effective rank (of its maximum)",
    short: "effective rank",
    kind: "rank",
  },
  { id: "similarity", label: "Similarity (collapse)", short: "similarity", kind: "cosine" },
  { id: "rms", label: "log₁₀ rms (scale)", short: "log₁₀ rms", kind: "log" },
  {
    id: "saturation",
    label: "Saturation (tanh, sigmoid) (%)",
    short: "saturation",
    kind: "fraction",
    caption: "share of the values in the flat tails of tanh or sigmoid",
  },
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
      return { lo: 0, hi: 1, cmap: "magma", caption: def.caption || "" };
    case "rank":
      return { lo: 0, hi: 1, cmap: "viridis", caption: "effective rank ÷ its maximum, min(N − 1, units)" };
    case "cosine":
      return { lo: -1, hi: 1, cmap: "coolwarm", caption: "mean cosine of the samples' pooled features; 1 = collapsed" };
    case "log": {
      const a = any ? Math.floor(lo) : -1;
      const b = any ? Math.max(a + 1, Math.ceil(hi)) : 1;
      return { lo: a, hi: b, cmap: "viridis", caption: "log₁₀ rms (real units): the signal's scale" };
    }
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
 * What the map colours, per layer and step: the overview's values, except
 * effective rank as rank ÷ its maximum and rms as log₁₀ rms (an rms of 0
 * has no logarithm: null).
 * @param {import("./model.js").Overview} o @param {MapMeasure} id
 * @returns {(number | null)[][]}
 */
export function shownRows(o, id) {
  const rows = o.rows[id] || [];
  const kind = mapMeasure(id).kind;
  if (kind === "rank") {
    return rows.map((row, r) => {
      const max = o.effective_rank_max[o.layers[r]];
      return row.map((v) => (v === null || !(max > 0) ? null : v / max));
    });
  }
  if (kind === "log") return rows.map((row) => row.map((v) => (v === null || !(v > 0) ? null : Math.log10(v))));
  return rows;
}

/**
 * A value in words, for the hover: what it is and what it means.
 * @param {import("./model.js").Overview} o @param {MapMeasure} id
 * @param {number} r the layer's row @param {number} v the overview's value
 * @param {string} [noun] what the layer's channels are ("head": an attention series')
 */
export function describeValue(o, id, r, v, noun = "channel") {
  const pct = (/** @type {number} */ x) => `${Number((x * 100).toFixed(1))}%`;
  const tau = o.tau ?? 0.025;
  switch (id) {
    case "dead_fraction":
      return `dead ${noun}s: ${formatMeasure(id, v)}`;
    case "dormant_fraction":
      return `dormant units: ${pct(v)} of the layer's units carry at most ${pct(tau)} of an average unit's activity (score ≤ τ = ${tau})`;
    case "effective_rank": {
      const max = o.effective_rank_max[o.layers[r]];
      const of = max > 0 ? ` of at most ${max}` : "";
      const share = max > 0 ? `, ${pct(v / max)} of the directions it could use` : "";
      return `effective rank ${fmtNumber(Number(v.toFixed(1)))}${of}: the probe set's pooled features use about ${fmtNumber(Number(v.toFixed(1)))} directions${share}`;
    }
    case "similarity":
      return `similarity ${fmtNumber(v)}: mean cosine between the samples' pooled features (1 = every input gives the same direction: collapsed)`;
    case "rms":
      return `rms ${fmtNumber(v)} (log₁₀ ${v > 0 ? fmtNumber(Number(Math.log10(v).toFixed(2))) : "−∞"}): the typical size of the layer's values`;
    case "saturation":
      return `saturation ${pct(v)}: share of the values in the flat tails of the activation, where almost no gradient passes`;
    default:
      return `${mapMeasure(id).short}: ${formatMeasure(id, v)}`;
  }
}

/**
 * A colorbar end label.
 * @param {MapMeasure} id @param {number} v
 */
export function formatTick(id, v) {
  return mapMeasure(id).kind === "fraction" ? `${Math.round(v * 100)}%` : fmtNumber(v);
}
