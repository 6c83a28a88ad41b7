// @ts-check
// A second run beside this one (compare.js), as the layer view and the map
// load and draw it.

import { needsAllSteps } from "./color.js";
import { report } from "./hooks.js";
import { lut, model, state, store, tileSize, ui } from "./panel.js";

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/** Drops a compared run that is gone or is this run; fills the choice. */
export function syncCompare() {
  const runs = model.runs();
  const c = state.compare;
  if (c !== null && runs.length && (c === state.run || !runs.includes(c))) {
    store.correct({ compare: null });
  }
  ui.compare.fillRuns(runs, state.run, state.compare);
  ui.compare.setOn(state.compare !== null);
}

/** Starts loading the other run's side of this step, when one is chosen. */
export function loadCompare() {
  const { run, tag, step, probe, compare } = state;
  if (compare === null || run === null || tag === null || step === null) return null;
  const fixed = needsAllSteps(state.norm);
  return ui.compare.load(model, { run, other: compare, tag, step, probe, fixed });
}

/**
 * The other run's grid, in this grid's order and colours.
 * @param {LayerInfo} info @param {number[]} order @param {boolean} diffOn
 */
export function drawCompare(info, order, diffOn) {
  if (state.compare === null) return;
  const size = info.layout === "image" ? tileSize(info.channels) : (state.size ?? 96);
  const { norm, cmap, channel } = state;
  ui.compare.draw({ info, order, lut: lut(), norm, cmap, size, selected: channel, diffOn });
  report({ compareDiff: diffOn ? state.compare : "" });
}

/** The user reaches for the "Compare with" menu: load what a choice would draw. */
export function warmCompare() {
  const { run, tag, step, probe } = state;
  if (run === null) return;
  const fixed = needsAllSteps(state.norm);
  ui.compare.warm(model, { run, tag, step, probe, fixed, map: state.view === "map" });
}
