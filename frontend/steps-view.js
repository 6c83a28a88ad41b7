// @ts-check
// The run's data around the views: the list of runs and layers (polled for
// live training), the layer list in the sidebar, the kept steps of the shown
// layer, the step controls, and the loss strip under the slider. The
// sidebar's probes are probe-inputs.js.

import { syncCompare } from "./compare-view.js";
import { loading, phase, report } from "./hooks.js";
import { messageOf } from "./model.js";
import {
  clearError,
  model,
  nearestStep,
  setError,
  state,
  stepIndex,
  steps,
  store,
  ui,
} from "./panel.js";
import { Latest } from "./store.js";
import { PLUGIN } from "./url.js";
import { emptyState, fillLayerList, fillSelect, stepStatus } from "./views.js";

/** @typedef {import("./state.js").ViewState} ViewState */
/** @typedef {import("./model.js").StepList} StepList */

/** What the lists and the curves were last drawn for: a key derived from the state. */
const drawn = { layerList: "", probes: "", curves: "" };
const curvesLatest = new Latest();
/** The steps asked for, so a second ask for the same layer waits for the first. */
const asked = { key: "", promise: /** @type {Promise<void>} */ (Promise.resolve()) };

/**
 * Lists the runs and layers (again, when polled); a run or layer that is
 * gone is replaced by the first one.
 * @param {() => void} lists draws the sidebar's lists (unchanged ones are kept)
 */
export async function refreshTags(lists) {
  const el = ui.el;
  try {
    await model.fetchTags();
    clearError("tags");
  } catch (e) {
    setError("tags", messageOf(e));
    if (!state.run) phase("error");
    return;
  }
  const runs = model.runs();
  if (!runs.length) {
    el.app.hidden = true;
    el.empty.hidden = false;
    emptyState(el.empty);
    el.empty.prepend(el.errors);
    phase("empty");
    return;
  }
  if (!el.empty.hidden) {
    el.empty.hidden = true;
    el.app.hidden = false;
    el.panel.insertBefore(el.errors, el.content);
  }
  const run = state.run === null || !runs.includes(state.run) ? runs[0] : state.run;
  const infos = model.layersOf(run);
  const tag = infos.some((i) => i.layer === state.tag) ? state.tag : infos[0].layer;
  fillSelect(el.runSelect, runs, run);
  await store.set(tag === state.tag ? { run } : { run, tag, channel: null }, "replace");
  syncCompare();
  lists();
  if (state.steps?.version !== model.version(state.run, state.tag)) await loadSteps();
}

/** The sidebar's layer list. @param {(layer: string) => void} onPick */
export function layerList(onPick) {
  const infos = model.layersOf(state.run);
  // Polling must not rebuild an unchanged list: that would reset its scroll.
  const key = JSON.stringify([
    state.run,
    state.tag,
    state.filter,
    infos.map((i) => [i.layer, i.class_name, i.output_shape, i.channels]),
  ]);
  if (key === drawn.layerList) return;
  drawn.layerList = key;
  fillLayerList(ui.el.layerList, infos, state.filter, state.tag, onPick);
}

/**
 * Lists the kept steps of the shown layer into the state, with the step to
 * show: the one asked for if kept, else the nearest; the latest when none is
 * asked for or the latest was shown. A run seen for the first time opens on
 * its training map, when it has one.
 */
export function loadSteps() {
  const { run, tag } = state;
  if (run === null || tag === null) return Promise.resolve();
  const key = JSON.stringify([run, tag, model.version(run, tag)]);
  if (key === asked.key) return asked.promise;
  asked.key = key;
  asked.promise = fetchSteps(run, tag).finally(() => {
    if (asked.key === key) asked.key = "";
  });
  return asked.promise;
}

/** @param {string} run @param {string} tag */
async function fetchSteps(run, tag) {
  const before = state.steps;
  const sameSeries = before !== null && before.run === run && before.tag === tag;
  const all = steps();
  const wasLatest = sameSeries && all.length > 0 && state.step === all[all.length - 1].step;
  let list;
  try {
    list = await model.fetchSteps(run, tag);
    clearError("steps");
  } catch (e) {
    if (run === state.run && tag === state.tag) {
      setError("steps", messageOf(e));
      phase("error");
    }
    return;
  }
  if (run !== state.run || tag !== state.tag) return;
  const kept = list.steps;
  const view = state.view ?? (kept.length > 1 ? "map" : "layer");
  const last = kept.length ? kept[kept.length - 1].step : null;
  await store.set({ steps: list, view, step: settle(kept, state.step, wasLatest) }, "replace");
  if (last === null) stepControls();
}

/**
 * The step to show of the `kept` ones: `step` when kept, else the nearest;
 * the latest when `step` is null or `latest` asks for it.
 * @param {{step: number}[]} kept @param {number | null} step @param {boolean} [latest]
 */
export function settle(kept, step, latest = false) {
  if (!kept.length) return null;
  const last = kept[kept.length - 1].step;
  if (step === null || latest) return last;
  if (kept.some((s) => s.step === step)) return step;
  let best = kept[0].step;
  for (const s of kept) if (Math.abs(s.step - step) < Math.abs(best - step)) best = s.step;
  return best;
}

/** The slider, step box and epoch, and the step's mark on the map and curves. */
export function stepControls() {
  stepStatus(ui.el, state.steps, state.step, PLUGIN);
  ui.curves.markStep(state.step);
  ui.map.markStep(state.step);
}

/** The run's loss and metric curves under the slider, drawn again only when they change. */
export async function curvesView() {
  const stale = curvesLatest.begin();
  const run = state.run;
  const list = state.steps;
  if (run === null || !list || list.run !== run) return;
  let curves;
  try {
    curves = await model.fetchCurves(run);
    clearError("curves");
  } catch (e) {
    if (!stale()) setError("curves", messageOf(e));
    return;
  }
  if (stale()) return;
  const kept = steps().map((s) => s.step);
  const key = JSON.stringify([run, model.runVersion(run), kept, state.curve]);
  if (key === drawn.curves) {
    ui.curves.markStep(state.step);
    return;
  }
  drawn.curves = key;
  const shown = ui.curves.show(curves, kept, state.step, state.curve);
  report({ curvesSeries: shown ? ui.curves.select.value : "", curvesRendered: run });
}

/**
 * The step at index `i` of the kept ones.
 * @param {number} i @param {import("./store.js").History} how
 */
export function goToIndex(i, how) {
  const all = steps();
  if (!all.length) return;
  const j = Math.max(0, Math.min(all.length - 1, i));
  if (all[j].step === state.step) return;
  store.set({ direction: j < stepIndex() ? -1 : 1, step: all[j].step }, how);
}

/** The kept step nearest `step`. @param {number} step @param {import("./store.js").History} how */
export function goToStep(step, how) {
  const s = nearestStep(step);
  if (s !== null) store.set({ step: s }, how);
}

const PLAY_FRAME_MS = 300;

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Plays the steps from here (from the first, at the last): one history entry. */
export async function play() {
  if (state.playing) {
    store.set({ playing: false }, "none");
    return;
  }
  if (steps().length < 2) return;
  store.set({ playing: true }, "none");
  let how = /** @type {import("./store.js").History} */ ("push");
  if (stepIndex() >= steps().length - 1) {
    goToIndex(0, how);
    how = "replace";
  }
  while (state.playing) {
    await sleep(PLAY_FRAME_MS);
    if (!state.playing) break;
    // Wait for the frame in flight, so playback never outruns the network.
    while (loading()) await sleep(20);
    const i = stepIndex();
    if (i >= steps().length - 1) {
      store.set({ playing: false }, "none");
      break;
    }
    goToIndex(i + 1, how);
    how = "replace";
  }
}
