// @ts-check
// What the training map says about cells beyond their colour: why a cell has
// no value, which cells had non-finite activations (marked in every
// measure), and each layer's first non-finite step (flagged), so the step
// where something broke is found at a glance. The marks are elements over
// the canvas, placed in percent of it, so they keep their size however
// narrow a step's column is drawn.

import { h } from "./dom.js";

/** @typedef {import("./model.js").Overview} Overview */
/** @typedef {import("./map-measures.js").MapMeasure} MapMeasure */

/** Whether the layer has a kept state at column c. @param {Overview} o @param {number} r @param {number} c */
function logged(o, r, c) {
  // A step the layer has always has its v1 statistics (dead_fraction counts
  // exact zeros, so it stays a number even when values are NaN).
  return o.rows.dead_fraction?.[r]?.[c] != null || o.rows.mean?.[r]?.[c] != null;
}

/**
 * Whether the layer's activations had a NaN or an infinity at column c: at
 * or after its first non-finite step, with its health measures null there
 * for that reason (its first non-finite step always counts, even in logs
 * that predate the health measures).
 * @param {Overview} o @param {number} r @param {number} c
 */
export function nonfinite(o, r, c) {
  const layer = o.layers[r];
  const first = o.first_nonfinite[layer];
  const step = o.steps[c];
  if (first === undefined || step < first || !logged(o, r, c)) return false;
  if (step === first) return true;
  return o.rows.rms?.[r]?.[c] === null && /non-finite/.test(o.unavailable.rms?.[layer] || "");
}

/**
 * Whether the measure does not apply to the layer at all: saturation of a
 * layer whose activation is not a bounded one (tanh, sigmoid).
 * @param {Overview} o @param {MapMeasure} measure @param {number} r
 */
export function notApplicable(o, measure, r) {
  if (measure !== "saturation" || o.unavailable.saturation?.[o.layers[r]]) return false;
  const row = o.rows.saturation?.[r] || [];
  return row.every((v) => v === null) && row.some((_, c) => logged(o, r, c) && !nonfinite(o, r, c));
}

/**
 * Why a cell has no value, beyond what the server states per layer.
 * @param {Overview} o @param {MapMeasure} measure @param {number} r @param {number} c
 */
export function nullReason(o, measure, r, c) {
  if (!logged(o, r, c)) return "this layer has no kept state at this step";
  if (nonfinite(o, r, c)) return "the layer had non-finite values (NaN or infinity) at this step";
  if (notApplicable(o, measure, r))
    return "not applicable: the layer's activation is not tanh or sigmoid, so it cannot saturate";
  const why = o.unavailable?.[measure]?.[o.layers[r]];
  if (why) return why;
  const first = o.rows.mean?.[r]?.findIndex((v) => v !== null) ?? -1;
  if (c === first && measure.endsWith("_prev")) return "the layer's first step has no previous one";
  if (measure.startsWith("drift"))
    return "CKA is undefined here (fewer than 3 positions, or a constant layer after centring)";
  return "no value at this step";
}

/**
 * The marks over the map: one bar per run of non-finite steps of a layer,
 * and a flag on each layer's first non-finite step.
 * @param {Overview} o
 * @returns {HTMLElement[]}
 */
export function nonfiniteMarks(o) {
  const n = o.steps.length;
  const L = o.layers.length;
  /** @type {HTMLElement[]} */
  const marks = [];
  /** @param {number} r @param {number} c0 @param {number} c1 @param {string} cls @param {string} title */
  const box = (r, c0, c1, cls, title) =>
    h("span", {
      className: cls,
      title,
      dataset: { layer: o.layers[r], step: String(o.steps[c0]) },
      style: `left:${(c0 / n) * 100}%;width:${((c1 - c0) / n) * 100}%;top:${(r / L) * 100}%;height:${100 / L}%`,
    });
  o.layers.forEach((layer, r) => {
    const first = o.first_nonfinite[layer];
    if (first === undefined) return;
    for (let c = 0; c < n; c++) {
      if (!nonfinite(o, r, c)) continue;
      let end = c + 1;
      while (end < n && nonfinite(o, r, end)) end++;
      const span = end - c === 1 ? `step ${o.steps[c]}` : `steps ${o.steps[c]} to ${o.steps[end - 1]}`;
      marks.push(box(r, c, end, "map-nf", `${layer}: non-finite values (NaN or infinity) at ${span}`));
      c = end - 1;
    }
    const c = o.steps.indexOf(first);
    if (c >= 0) {
      marks.push(
        box(r, c, c + 1, "map-nf-first", `${layer}: first non-finite values (NaN or infinity) at step ${first}`),
      );
    }
  });
  return marks;
}

/**
 * "Non-finite values (NaN or infinity) first at step 9 in blowup, step 12 in tanh.", earliest first; "" when none.
 * @param {Overview} o
 */
export function nonfiniteSentence(o) {
  const firsts = Object.entries(o.first_nonfinite).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  if (!firsts.length) return "";
  return `Non-finite values (NaN or infinity) first at ${firsts.map(([l, s]) => `step ${s} in ${l}`).join(", ")}.`;
}
