// @ts-check
// What the panel's views share: the model (data), the store (state), what
// is on screen, the colormaps, the errors shown, and the views' widgets once
// render() built them. Views read these; they change the state only through
// the store.

import { grayLut } from "./color.js";
import { Model } from "./model.js";
import { ProbeImages } from "./overlay.js";
import { initialState, nothingShown } from "./state.js";
import { Store } from "./store.js";
import { errorList } from "./views.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./state.js").ViewState} ViewState */

export const model = new Model();
/** @type {Store<ViewState>} */
export const store = new Store(initialState());
/** The state, for reading: write it with store.set(). */
export const state = store.state;
export const shown = nothingShown();
/** @type {Map<string, Lut>} The server's colormaps, in its order. */
export const luts = new Map();
/** Needs no server: shown until (or if) the colormaps fail to load. */
export const GRAY = grayLut();
/** The probe images the overlay draws under the channels, decoded once. */
export const probes = new ProbeImages((run, p) => model.probeUrl(run, p));

/**
 * The widgets, built once by render().
 * @typedef {Object} Ui
 * @property {import("./views.js").Shell} el
 * @property {import("./tile-grid.js").TileGrid} grid image layers
 * @property {import("./strip-map.js").StripMap} strips sequence and units layers
 * @property {import("./detail.js").Detail | null} detail the opened channel, once one was
 * @property {() => Promise<import("./detail.js").Detail>} openDetail builds `detail` (its
 *   module loads with the first channel opened)
 * @property {import("./timeline.js").ChannelTimeline} timeline the layer's channels over the steps
 * @property {import("./grid-bar.js").GridBar} bar sort, filter and diff over the grid
 * @property {import("./training-map.js").TrainingMap} map layers x steps of a layer measure
 * @property {import("./training-map.js").ViewTabs} tabs the training map / layer switch
 * @property {import("./curves.js").CurveStrip} curves loss and metric curves under the slider
 * @property {import("./compare.js").Compare} compare a second run beside this one
 * @property {import("./overlay.js").OverlayBar} overlay the overlay on the probe
 * @property {import("./overlay.js").DetailOverlay} detailOverlay the opened channel over its probe
 * @property {import("./downloads.js").DownloadLinks} downloads the export route's files
 */
/** @type {Ui} */
export const ui = /** @type {any} */ ({});

/** @type {Map<string, string>} Errors on screen, by what failed. */
const errors = new Map();

/** @param {string} kind @param {string} message */
export function setError(kind, message) {
  errors.set(kind, message);
  errorList(ui.el.errors, errors);
}

/** @param {string} kind */
export function clearError(kind) {
  if (errors.delete(kind)) errorList(ui.el.errors, errors);
}

/** Drops the errors whose kind starts with `prefix`. @param {string} prefix */
export function clearErrors(prefix) {
  for (const k of [...errors.keys()]) if (k.startsWith(prefix)) errors.delete(k);
  errorList(ui.el.errors, errors);
}

export function currentInfo() {
  return model.info(state.run, state.tag);
}

/** The kept steps of the shown layer, once loaded for it. */
export function steps() {
  const s = state.steps;
  return s && s.run === state.run && s.tag === state.tag ? s.steps : [];
}

export function stepIndex() {
  return steps().findIndex((s) => s.step === state.step);
}

/** @param {number} step */
export function nearestStep(step) {
  const all = steps();
  if (!all.length) return null;
  let best = all[0].step;
  for (const s of all) if (Math.abs(s.step - step) < Math.abs(best - step)) best = s.step;
  return best;
}

export function lut() {
  return luts.get(state.cmap) || GRAY;
}

/**
 * Tiles shrink as channels grow, until the user picks a size.
 * @param {number} n
 */
export function tileSize(n) {
  if (state.size !== null) return state.size;
  const auto = n <= 16 ? 128 : n <= 64 ? 96 : n <= 256 ? 64 : 48;
  ui.el.size.value = String(auto);
  return auto;
}
