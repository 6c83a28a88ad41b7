// @ts-check
// Diff mode: every channel as a_s - a_ref in real units. Both steps arrive
// as 8-bit levels scaled to each channel's own min..max at its step, so each
// value is v = min + level/255 * (max - min) (color.js's levelToValue); the
// difference is taken on those values, then placed on a diverging colormap
// over the symmetric window -m..m, m = the largest |difference| in the layer.

import { buildTable, channelRange } from "./color.js";

/** The diff choices that are not a step number. */
export const NAMED_DIFFS = ["off", "prev", "start", "run"];

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./model.js").GrayMap} GrayMap */
/** @typedef {import("./model.js").Layer} Layer */

/** Levels 0..DIFF_TOP span -m..m (DIFF_MID is exactly 0); NO_VALUE marks a missing one. */
const DIFF_TOP = 254;
const DIFF_MID = DIFF_TOP / 2;
export const NO_VALUE = 255;

/**
 * The step a diff subtracts at `step`, or why there is none.
 * @param {string} diff "off", "prev", "start", "run" or a step number
 * @param {number[]} steps the series' kept steps, increasing
 * @param {number} step the shown step
 * @returns {{ref: number | null, note: string}}
 */
export function diffReference(diff, steps, step) {
  // "run" subtracts the compared run (compare.js), not a step of this one.
  if (diff === "off" || diff === "run") return { ref: null, note: "" };
  const i = steps.indexOf(step);
  if (diff === "prev") {
    if (i === 0) {
      return {
        ref: null,
        note: `No difference drawn: step ${step} is the first kept step, there is no previous one. Showing the activations.`,
      };
    }
    return i > 0 ? { ref: steps[i - 1], note: "" } : { ref: null, note: `Step ${step} is not kept.` };
  }
  if (diff === "start") {
    if (steps[0] === step) {
      return {
        ref: null,
        note: `No difference drawn: step ${step} is the first kept step, the start itself. Showing the activations.`,
      };
    }
    return steps.length ? { ref: steps[0], note: "" } : { ref: null, note: "No step is kept." };
  }
  const ref = Number(diff);
  if (!steps.includes(ref)) {
    return {
      ref: null,
      note: `No difference drawn: step ${diff} is not among the kept steps (${steps[0]}–${steps[steps.length - 1]}). Showing the activations.`,
    };
  }
  return { ref, note: "" };
}

/**
 * @typedef {Object} Diff
 * @property {number} step
 * @property {number} ref
 * @property {number} m the window's half-width: the largest |a_s - a_ref| in the layer
 * @property {GrayMap[]} maps each channel's difference as levels 0..254 over -m..m, 255 where missing
 * @property {Float32Array[]} values each channel's difference in real units (NaN where missing)
 * @property {Uint32Array} table level -> RGBA on the diverging colormap
 * @property {string} [caption] the colorbar's words, when not a step minus a step
 * @property {string} [what] what was subtracted, for the readout ("A step 9 − B step 6")
 */

/** @type {{cur: Layer | null, ref: Layer | null, lut: Lut | null, out: Diff | string | null}} */
const last = { cur: null, ref: null, lut: null, out: null };

/**
 * Every channel's a_s - a_ref, or why the two steps cannot be subtracted.
 * The last answer is kept: sorting, resizing or opening a channel in diff
 * mode draw it again without recomputing.
 * @param {Layer} cur @param {number} step
 * @param {Layer} ref @param {number} refStep
 * @param {Lut} lut a diverging colormap
 * @returns {Diff | string}
 */
export function diffLayer(cur, step, ref, refStep, lut) {
  if (last.cur === cur && last.ref === ref && last.lut === lut && last.out) return last.out;
  const out = compute(cur, step, ref, refStep, lut);
  Object.assign(last, { cur, ref, lut, out });
  return out;
}

/**
 * @param {Layer} cur @param {number} step @param {Layer} ref @param {number} refStep @param {Lut} lut
 * @returns {Diff | string}
 */
function compute(cur, step, ref, refStep, lut) {
  const n = cur.channels.length;
  if (ref.channels.length !== n) {
    return `Step ${refStep} has ${ref.channels.length} channels, step ${step} has ${n}: they cannot be subtracted.`;
  }
  /** @type {Float32Array[]} */
  const values = [];
  let m = 0;
  const vs = new Float32Array(256);
  const vr = new Float32Array(256);
  for (let c = 0; c < n; c++) {
    const a = cur.channels[c];
    const b = ref.channels[c];
    if (a.width !== b.width || a.height !== b.height) {
      return `Channel ${c} is ${b.height}×${b.width} at step ${refStep} and ${a.height}×${a.width} at step ${step}: they cannot be subtracted.`;
    }
    const out = new Float32Array(a.gray.length);
    const rs = channelRange(cur.stats[c], cur.fields);
    const rr = channelRange(ref.stats[c], ref.fields);
    if (!rs || !rr) {
      out.fill(NaN);
    } else {
      for (let p = 0; p < 256; p++) {
        vs[p] = rs[0] + (p / 255) * (rs[1] - rs[0]);
        vr[p] = rr[0] + (p / 255) * (rr[1] - rr[0]);
      }
      const ga = a.gray;
      const gb = b.gray;
      for (let i = 0; i < ga.length; i++) {
        const d = vs[ga[i]] - vr[gb[i]];
        out[i] = d;
        const ad = d < 0 ? -d : d;
        if (ad > m) m = ad;
      }
    }
    values.push(out);
  }
  const k = m > 0 ? DIFF_MID / m : 0;
  const maps = values.map((v, c) => {
    const gray = new Uint8Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const d = v[i];
      gray[i] = d === d ? Math.round(DIFF_MID + d * k) : NO_VALUE;
    }
    return { width: cur.channels[c].width, height: cur.channels[c].height, gray };
  });
  return { step, ref: refStep, m, maps, values, table: diffTable(lut) };
}

/**
 * Levels 0..254 across the whole colormap (127 at its centre), 255 light gray.
 * @param {Lut} lut
 */
export function diffTable(lut) {
  const table = buildTable(lut, [0, 255], [0, DIFF_TOP]);
  table[NO_VALUE] = buildTable(lut, null, null)[0];
  return table;
}
