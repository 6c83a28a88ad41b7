// @ts-check
// The depth profile under the training map: the map's measure, at the
// slider's step (or the last kept step at or before it), across the layers.
// It builds its widget on first use, below the maps, and draws from the same
// cached `overview` answer the map draws. Loaded with the first map view
// (app.js registers it with the fields it reads: view, run, steps, step,
// measure).

import { DepthProfile } from "./depth-profile.js";
import { measure, report } from "./hooks.js";
import { messageOf } from "./model.js";
import { model, state, ui } from "./panel.js";
import { Latest } from "./store.js";
import { channelNoun } from "./tokens.js";

const latest = new Latest();
/** @type {DepthProfile | null} */
let profile = null;

/** Reacts to a change of the fields it reads. */
export async function depthView() {
  const stale = latest.begin();
  const run = state.run;
  if (state.view !== "map" || run === null) return;
  if (!profile) {
    profile = new DepthProfile();
    // Under the map, and under the compared run's map when there is one.
    ui.compare.mapOther.after(profile.el);
  }
  let overview;
  try {
    overview = await model.fetchOverview(run);
  } catch (e) {
    if (!stale()) profile.message(`No depth profile: ${messageOf(e)}`);
    return;
  }
  if (stale()) return;
  const kept = overview.steps;
  const at = state.step;
  const step = at === null ? kept[kept.length - 1] : kept.filter((s) => s <= at).pop();
  if (!overview.layers.length || step === undefined) {
    profile.message("No kept step at or before this one: no depth profile.");
    report({ depthRendered: run, depthStep: "", depthMeasure: state.measure });
    return;
  }
  const start = performance.now();
  profile.show(overview, state.measure, step, (layer) => channelNoun(model.info(run, layer)));
  measure("depth", start);
  report({ depthRendered: run, depthStep: String(step), depthMeasure: state.measure });
}
