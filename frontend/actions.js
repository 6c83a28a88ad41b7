// @ts-check
// The user's actions, each one change of the state (store.set): the views
// that read what changed redraw themselves and the URL follows. Opening a
// run, layer, step, channel or view pushes a history entry; other choices
// replace the current one. goTo() is the way back: a URL the panel did not
// write becomes the state.

import { measure } from "./hooks.js";
import { luts, model, state, steps, store } from "./panel.js";
import { settle } from "./steps-view.js";
import { stateOf } from "./url.js";

/** @typedef {import("./state.js").ViewState} ViewState */

/** @param {string} run */
export function selectRun(run) {
  if (run === state.run) return;
  /** @type {Partial<ViewState>} */
  const patch = { run };
  const infos = model.layersOf(run);
  if (!infos.some((i) => i.layer === state.tag)) patch.tag = infos[0]?.layer ?? null;
  const info = model.info(run, patch.tag ?? state.tag);
  if (state.channel !== null && (!info || state.channel >= info.channels)) patch.channel = null;
  if (patch.tag !== undefined) patch.channel = null;
  store.set(patch, "push");
}

/** @param {string} tag */
export function selectLayer(tag) {
  if (state.view === "map") return openLayer(tag, state.step);
  if (tag === state.tag) return;
  // Layers of a run share their steps: ask for the same step before the list arrives.
  if (state.step !== null && state.run) {
    model.fetchLayer(state.run, tag, state.step, state.probe).catch(() => {
      // The step may not exist for this layer; loadSteps picks one that does.
    });
  }
  store.set({ tag, channel: null }, "push");
}

/** @param {number} p */
export const selectProbe = (p) => store.set({ probe: p }, "replace");
/** @param {number} c */
export const openChannel = (c) => store.set({ channel: c }, "push");
export const closeDetail = () => store.set({ channel: null }, "push");
export const openMap = () => store.set({ view: "map", playing: false }, "push");

/**
 * The layer view of `layer` at `step` (the nearest kept one; the latest when null).
 * @param {string | null} layer @param {number | null} step
 */
export function openLayer(layer, step) {
  /** @type {Partial<ViewState>} */
  const patch = { view: "layer", step };
  if (layer !== null && layer !== state.tag) {
    patch.tag = layer;
    patch.channel = null;
  } else if (state.steps && state.steps.tag === state.tag) {
    patch.step = settle(state.steps.steps, step);
  }
  store.set(patch, "push");
}

/** @param {number} channel @param {number} step */
export function openAt(channel, step) {
  const units = model.info(state.run, state.tag)?.layout === "units";
  const at = settle(steps(), step) ?? state.step;
  store.set({ channel: units ? 0 : channel, step: at }, "push");
}

/** @param {import("./grid-bar.js").BarChoice} choice */
export async function chooseGrid(choice) {
  const start = performance.now();
  const { sort = state.sort, show = state.show, diff = state.diff } = choice;
  await store.set({ sort, show, diff }, "replace");
  measure(choice.diff !== undefined ? "diff" : "order", start);
}

/** @param {import("./overlay.js").OverlayChoice} choice */
export async function chooseOverlay(choice) {
  const start = performance.now();
  const { overlay = state.overlay, resize = state.overlayResize } = choice;
  await store.set({ overlay, overlayResize: resize }, "replace");
  if (state.view === "layer") measure("overlay", start);
}

/** @param {string | null} run */
export async function chooseCompare(run) {
  const start = performance.now();
  const diff = run === null && state.diff === "run" ? "off" : state.diff;
  await store.set({ compare: run, diff }, "replace");
  if (state.compare === run && run !== null) measure("compare", start);
}

/** A URL the panel did not write: a pasted link, an edited hash, Back or Forward. */
export function goTo(/** @type {URLSearchParams} */ params) {
  const patch = stateOf(state, params);
  const runs = model.runs();
  if (patch.run == null || !runs.includes(patch.run)) patch.run = state.run;
  const infos = model.layersOf(patch.run);
  if (!infos.some((i) => i.layer === patch.tag)) patch.tag = state.tag;
  if (!infos.some((i) => i.layer === patch.tag)) patch.tag = infos[0]?.layer ?? null;
  const list = state.steps;
  if (list && list.run === patch.run && list.tag === patch.tag) {
    patch.step = settle(list.steps, patch.step ?? null);
  }
  if (!luts.has(patch.cmap ?? "")) delete patch.cmap;
  store.set({ ...patch, playing: false }, "none");
}
