// @ts-check
// The panel's hooks for scripts: the `data-*` attributes on the iframe's
// <body> and the `performance.measure` names that tests and benchmarks wait
// for and time. They are named here, and only here: a view reports through
// report(), phase() and measure(), never by writing to `document.body.dataset`
// or calling `performance.measure` itself, and a wrong name fails tsc.
//
// The widgets also label their own elements, for scripts to find them:
// a grid tile's data-channel (tile-grid.js), a layer button's data-layer and
// data-layout and a probe's data-probe (views.js), a timeline event's
// data-channel, data-step and data-kind (timeline.js), an evolution frame's
// data-step (detail.js), the map canvas's data-cell-width, data-cell-height
// and data-gap (training-map.js), a non-finite mark's data-layer and
// data-step (map-marks.js), a depth profile point's data-layer and
// data-value (depth-profile.js), an error's data-kind (views.js), a probe
// input's data-input and data-kind, a token chip's and an axis tick's
// data-index, the opened map's box data-axes ("query,key") (tokens.js,
// probe-inputs.js), the class token's data-tag (token-grid-view.js).
// index.js, which imports nothing, lists the requests it started before
// the panel loaded in its export STARTED.

/**
 * Every <body> attribute, by its `dataset` key (data-rendered-run is
 * `renderedRun`). Values are strings; "" means "nothing of this is shown".
 * @typedef {Object} Hooks
 * @property {"loading" | "ready" | "empty" | "error"} state the panel's phase: a
 *   render started, finished, found no runs, or failed
 * @property {string} view "map" or "layer": the view on screen
 * @property {string} renderedRun the run of the last completed render (the layer view or the map)
 * @property {string} renderedLayer the layer of the last completed layer render;
 *   removed once the map is drawn (no layer is shown there)
 * @property {string} renderedStep the step drawn ("" in the map before a step is known)
 * @property {string} renderedProbe the probe drawn
 * @property {string} renderedCmap the colormap drawn
 * @property {string} renderedNorm the scale drawn
 * @property {string} renderedChannel the opened channel, "" when none; removed in the map
 * @property {string} evolutionChannel the channel whose evolution is drawn
 * @property {string} evolutionSteps how many steps that evolution shows
 * @property {string} timelineRendered the layer whose channel timeline is drawn
 * @property {string} timelineMeasure that timeline's measure
 * @property {string} gridOrder the first 32 channels of the grid's order,
 *   comma-separated, ending in ",…" when more follow
 * @property {string} gridCount how many tiles the grid shows
 * @property {string} diff the diff's reference step drawn; "" when diff is off,
 *   "none" when asked but not drawn
 * @property {string} overlay the overlay's opacity drawn ("0.6"); "" when off,
 *   "none" when asked but not drawn (no spatial map, no probe image)
 * @property {string} mapRendered the run whose training map is drawn
 * @property {string} mapMeasure the measure of that map
 * @property {string} curvesRendered the run whose loss strip is settled
 * @property {string} curvesSeries the series that strip draws, "" when the run has none
 * @property {string} depthRendered the run whose depth profile is drawn
 * @property {string} depthStep the step it shows ("" when the run has none at or before the slider's)
 * @property {string} depthMeasure the measure it shows (the map's)
 * @property {string} compareRendered the second run (compare=) once its side is settled
 * @property {string} compareStep the step of the second run drawn; "none" when
 *   it has no step at or before this one, lacks the layer or the probe (the pane
 *   says why in words)
 * @property {string} compareDiff the second run while this run's grid shows this
 *   run minus it (diff=run; `diff` is then its step), "" otherwise
 * @property {string} compareMap the second run once its map is drawn beside this one
 * @property {string} compareWarmed the runs whose side reaching for the "Compare
 *   with" menu loaded into the cache, as a JSON array
 * @property {string} probeInputs the inputs the sidebar's probes show, by name,
 *   comma-separated, main input first ("" for an input the log does not name)
 * @property {string} classToken the class token drawn beside a token grid: its
 *   series and step ("vit/class_token@3"); "" when the layer has none
 */

/** @typedef {keyof Hooks} HookName */

/**
 * The performance.measure names, each from an action to its result on screen.
 */
export const MEASURES = Object.freeze({
  /** A grid draw (the tiles of one step). */
  draw: "activations:draw",
  /** A channel timeline draw. */
  timeline: "activations:timeline",
  /** A sort or filter choice until the grid is redrawn. */
  order: "activations:order",
  /** A diff choice until it is drawn. */
  diff: "activations:diff",
  /** The step minus its reference, computed. */
  diffCompute: "activations:diff-compute",
  /** A training map draw. */
  map: "activations:map",
  /** A depth profile draw. */
  depth: "activations:depth",
  /** Choosing a run to compare with until its side is on screen. */
  compare: "activations:compare",
  /** The second run's side drawn. */
  compareDraw: "activations:compare-draw",
  /** Turning the overlay on or off, its opacity or resizing, until drawn again. */
  overlay: "activations:overlay",
});

/** @typedef {keyof typeof MEASURES} MeasureName */

/**
 * Sets <body> attributes: a string sets one, null removes it.
 * @param {Partial<Record<HookName, string | null>>} values
 */
export function report(values) {
  const b = document.body.dataset;
  for (const [k, v] of Object.entries(values)) {
    if (v === null || v === undefined) delete b[k];
    else b[k] = v;
  }
}

/** @param {Hooks["state"]} p */
export function phase(p) {
  document.body.dataset.state = p;
}

/** Whether a render is in flight (playback waits for it). */
export function loading() {
  return document.body.dataset.state === "loading";
}

/**
 * Records `name` from `start` (a performance.now() value) until now.
 * @param {MeasureName} name @param {number} start
 */
export function measure(name, start) {
  performance.measure(MEASURES[name], { start, end: performance.now() });
}
