// @ts-check
// The training map: layers x steps of one layer measure for the run (and
// the compared run beside it, on one colour scale). A step move only moves
// its cursor; it is drawn again when the run's data, the measure or the
// compared run change.

import { measure, phase, report } from "./hooks.js";
import { shownRows } from "./map-measures.js";
import { messageOf } from "./model.js";
import { clearError, luts, model, setError, state, steps, ui } from "./panel.js";
import { Latest } from "./store.js";
import { channelNoun } from "./tokens.js";

/** @typedef {import("./state.js").ViewState} ViewState */

/** @type {(keyof ViewState)[]} */
export const MAP_READS = ["view", "run", "tag", "steps", "step", "measure", "compare"];

const latest = new Latest();
/** What the map last drew, so a step move only moves its cursor. */
const mapDrawn = { key: "" };

/** The view on screen, for the stylesheet and the tabs. */
export function showView() {
  const view = state.view === "map" ? "map" : "layer";
  report({ view });
  ui.tabs.update(view, state.tag);
}

/** Reacts to a change of the fields it reads. */
export function mapView() {
  if (state.view !== "map") {
    latest.begin();
    return;
  }
  // Drawn once the run's steps are listed (their epochs label the map).
  const list = state.steps;
  if (!list || list.run !== state.run || list.tag !== state.tag) {
    latest.begin();
    return;
  }
  return renderMap();
}

/** @param {boolean} [force] draw again even if nothing it shows changed (a resize) */
export async function renderMap(force = false) {
  const stale = latest.begin();
  const run = state.run;
  if (run === null) return;
  phase("loading");
  const other = state.compare;
  // Both runs' maps are asked for at once.
  const otherLoad = other === null ? null : ui.compare.loadMap(model, other);
  let overview;
  try {
    overview = await model.fetchOverview(run);
    clearError("overview");
  } catch (e) {
    if (stale()) return;
    setError("overview", messageOf(e));
    phase("error");
    return;
  }
  if (stale()) return;
  const otherOverview = otherLoad === null ? null : await otherLoad;
  if (stale()) return;
  const key = JSON.stringify([
    run,
    model.runVersion(run),
    state.measure,
    state.steps?.version,
    other,
    other !== null && model.runVersion(other),
  ]);
  if (force || key !== mapDrawn.key) {
    const start = performance.now();
    const epochs = new Map(steps().map((s) => [s.step, s.epoch]));
    // Two runs' maps share one colour scale.
    const scaleValues = otherOverview
      ? [overview, otherOverview].flatMap((o) => shownRows(o, state.measure).flat())
      : undefined;
    // A row's channels are named as the layer view names them: heads for attention.
    const noun = (/** @type {string} */ r) => (/** @type {string} */ layer) =>
      channelNoun(model.info(r, layer));
    const m = { measure: state.measure, step: state.step, luts, scaleValues };
    ui.map.show({ overview, epochs, noun: noun(run), ...m });
    if (other !== null) {
      const at = { run, other, noun: noun(other), ...m };
      ui.compare.drawMap(otherOverview, at);
    }
    measure("map", start);
    mapDrawn.key = key;
  } else {
    ui.map.markStep(state.step);
    if (other !== null) ui.compare.map.markStep(state.step);
  }
  report({
    mapRendered: run,
    mapMeasure: state.measure,
    renderedRun: run,
    renderedStep: state.step === null ? "" : String(state.step),
    renderedLayer: null,
    renderedChannel: null,
  });
  phase("ready");
}
