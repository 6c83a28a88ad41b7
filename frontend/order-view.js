// @ts-check
// What the grid's order and the channel timeline are drawn from: the
// layer's timeline (every step's channel measures) and the diff's reference
// step, loaded into `shown` through the model's cache and drawn from there.

import { SORTS, channelOrder } from "./channel-order.js";
import { fmt } from "./color.js";
import { diffLayer, diffReference } from "./diff.js";
import { measure, report } from "./hooks.js";
import { messageOf } from "./model.js";
import { currentInfo, lut, luts, model, shown, state, steps, ui } from "./panel.js";
import { channelNoun } from "./tokens.js";

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/** What the timeline last drew, so an unchanged one is not drawn again. */
const timelineDrawn = { timeline: /** @type {unknown} */ (null), key: "" };

/**
 * The layer's channel timeline into `shown`, through the model's cache; a
 * failure is kept there to be shown, never thrown.
 * @param {string} run @param {string} tag
 * @returns {Promise<void>}
 */
export function loadTimeline(run, tag) {
  return model.fetchTimeline(run, tag).then(
    (t) => {
      if (run !== state.run || tag !== state.tag) return;
      shown.timeline = t;
      shown.timelineError = null;
    },
    (e) => {
      if (run !== state.run || tag !== state.tag) return;
      shown.timeline = null;
      shown.timelineError = messageOf(e);
    },
  );
}

/** The diff's reference step into `shown`; a failure becomes its note. */
export async function loadDiffReference() {
  const { run, tag, step, probe } = state;
  if (run === null || tag === null || step === null) return;
  const { ref, note } = diffReference(
    state.diff,
    steps().map((s) => s.step),
    step,
  );
  shown.ref = null;
  shown.refNote = note;
  if (ref === null) return;
  const wall = steps().find((s) => s.step === ref)?.wall_time;
  try {
    shown.ref = { step: ref, layer: await model.fetchLayer(run, tag, ref, probe, wall) };
  } catch (e) {
    shown.refNote = `No difference drawn: ${messageOf(e)}.`;
  }
}

export function diffLut() {
  return luts.get("coolwarm") || lut();
}

/** @param {import("./diff.js").Diff} d */
export function diffCaption(d) {
  if (d.caption) return d.caption;
  return d.m > 0
    ? `Difference a_s − a_ref in real units: step ${d.step} minus step ${d.ref}; window ±${fmt(d.m)}, the largest |difference| in the layer`
    : `No difference: every value is the same at step ${d.step} and step ${d.ref}`;
}

/** The drawn step minus its reference, when diff is on and both are here. */
export function currentDiff() {
  const layer = shown.layer;
  const ref = shown.ref;
  if (state.diff === "off") return { diff: null, note: "" };
  if (state.diff === "run") {
    const info = currentInfo();
    if (!layer || !info || state.step === null) return { diff: null, note: "" };
    return ui.compare.runDiff(info, layer, state.step, diffLut());
  }
  if (!layer || !ref || state.step === null) return { diff: null, note: shown.refNote };
  const start = performance.now();
  const d = diffLayer(layer, state.step, ref.layer, ref.step, diffLut());
  if (typeof d === "string") return { diff: null, note: `No difference drawn: ${d}` };
  measure("diffCompute", start);
  return { diff: d, note: "" };
}

/**
 * The order the grid and the timeline show the open layer's channels in;
 * it needs the timeline only, not the drawn step.
 * @param {LayerInfo} info
 */
export function gridOrder(info) {
  const tl =
    shown.timeline?.tag === state.tag && shown.timeline.run === state.run ? shown.timeline : null;
  const grid = info.layout === "image";
  const total = grid ? info.channels : (tl?.channels ?? info.channels);
  return channelOrder(
    tl,
    shown.timelineError,
    state.step ?? -1,
    total,
    grid ? state.sort : "index",
    grid ? state.show : "all",
  );
}

/** @param {import("./channel-order.js").Order} order */
export function drawTimeline(order) {
  if (!state.timelineOpen) return;
  const tl = shown.timeline;
  const noun = channelNoun(currentInfo());
  if (!tl || tl.run !== state.run || tl.tag !== state.tag) {
    timelineDrawn.timeline = null;
    ui.timeline.message(
      shown.timelineError
        ? `The ${noun} timeline is unavailable: ${shown.timelineError}`
        : "Loading…",
      noun,
    );
    return;
  }
  const measureLut = luts.get(state.cmap) && state.cmap !== "coolwarm" ? state.cmap : "viridis";
  const sorted = SORTS.find((s) => s.id === order.sortedBy);
  const orderText =
    order.sortedBy === "index"
      ? `by ${noun} index`
      : order.sortedBy === "dormant_score"
        ? `sorted by dormant score at step ${state.step}, lowest first`
        : `sorted by ${sorted?.label} at step ${state.step}, largest first`;
  const rows = order.order.filter((c) => c < tl.channels);
  const key = JSON.stringify([state.tmeasure, measureLut, rows, orderText, noun]);
  if (timelineDrawn.timeline === tl && timelineDrawn.key === key) {
    ui.timeline.markStep(state.step);
    return;
  }
  const start = performance.now();
  ui.timeline.show({
    timeline: tl,
    order: rows,
    measure: state.tmeasure,
    step: state.step,
    lut: luts.get(measureLut) || lut(),
    orderText,
    noun,
  });
  measure("timeline", start);
  timelineDrawn.timeline = tl;
  timelineDrawn.key = key;
  report({ timelineRendered: tl.tag, timelineMeasure: state.tmeasure });
}
