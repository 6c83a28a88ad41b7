// @ts-check
// Which runs and layers the panel lists, and in what order. model.js lists
// them from the `tags` answer; index.js makes the same first choice from
// the same answer (the first run, its first layer) to start that view's
// requests before the panel's modules have loaded. It imports nothing.

/** @typedef {import("./model.js").LayerInfo} LayerInfo */
/** @typedef {import("./model.js").Tags} Tags */

/** The probe's own tag: an input, not a layer. */
export const PROBE_TAG = "__probe__";

/**
 * A run's layers in the model's order (the writer's `position`); the data
 * providers list tags in an order of their own. Layers without a position
 * come last, by name.
 * @param {Tags} tags @param {string | null} run
 * @returns {LayerInfo[]}
 */
export function layersOf(tags, run) {
  const infos = (run !== null && tags[run]) || {};
  const rank = (/** @type {LayerInfo} */ info) =>
    Number.isInteger(info.position) ? /** @type {number} */ (info.position) : Infinity;
  return Object.entries(infos)
    .filter(([tag, info]) => tag !== PROBE_TAG && info && info.layout !== "probe")
    .map(([tag, info]) => ({ ...info, layer: tag }))
    .sort((a, b) => rank(a) - rank(b) || (a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0));
}

/** Runs with at least one layer, in the answer's order. @param {Tags} tags */
export function runsOf(tags) {
  return Object.keys(tags).filter((r) => layersOf(tags, r).length);
}
