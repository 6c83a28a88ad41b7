// @ts-check
// The opened map of a series whose rows and columns have names (an
// attention head: queries x keys): the names along its axes, with the
// probe's tokens at each position when an input is a row of tokens, and
// the readout saying which query and key the pointer is on.

import { PROBE_TAG } from "./model.js";
import { model, state, ui } from "./panel.js";
import { probeInputs } from "./probe-inputs.js";
import { MapAxes, axisTokens, derived } from "./tokens.js";

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/** @type {MapAxes | null} */
let axes = null;

/**
 * The tokens of probe `probe` of `run` along an axis of `n` positions: the
 * main input's when it is a row of `n` tokens, else those of the one other
 * input that is (a model with several inputs); null when none is.
 * @param {string | null} run @param {number} probe @param {number} n
 */
export function probeTokens(run, probe, n) {
  const rows = probeInputs(run)
    .map((i) => (i.kind === "tokens" ? i.tokens?.[probe] : null))
    .filter((t) => t?.length === n);
  const main = derived(model.info(run, PROBE_TAG));
  if (main.probe_kind === "tokens" && main.tokens?.[probe]?.length === n) return main.tokens[probe];
  return rows.length === 1 ? rows[0] ?? null : null;
}

/**
 * The labels of the opened map's rows and columns, or null when its axes
 * have no names. Attention is over the probe's own tokens (self-attention):
 * they label an axis of as many positions; other lengths get positions.
 * @param {LayerInfo} info @param {number} height @param {number} width
 */
export function axisLabels(info, height, width) {
  const d = derived(info);
  if (!d.axes || info.layout !== "image") return null;
  const attention = d.kind === "attention";
  const rowTokens = attention ? probeTokens(state.run, state.probe, height) : null;
  const colTokens = attention ? probeTokens(state.run, state.probe, width) : null;
  return {
    names: d.axes,
    rows: axisTokens(rowTokens, height),
    cols: axisTokens(colTokens, width),
    rowTokens: rowTokens !== null,
    colTokens: colTokens !== null,
  };
}

/**
 * Draws the opened map's axes (or takes them away), once the detail shows it.
 * @param {LayerInfo} info
 */
export function detailAxes(info) {
  axes ??= new MapAxes(ui.detail.canvas);
  const ch = ui.detail.shown?.channel;
  const labels = ch ? axisLabels(info, ch.height, ch.width) : null;
  if (labels) axes.show(labels.names, labels.rows, labels.cols);
  else axes.hide();
}

/**
 * The readout's words for pixel (x, y) of the opened map: "query 3 (7), key 4 (2)".
 * @param {LayerInfo} info @param {number} height @param {number} width
 * @returns {((x: number, y: number) => string) | undefined}
 */
export function whereOnAxes(info, height, width) {
  const labels = axisLabels(info, height, width);
  if (!labels) return undefined;
  const [rowName, colName] = labels.names;
  const { rows, cols, rowTokens, colTokens } = labels;
  return (x, y) =>
    `${rowName} ${y}${rowTokens ? ` (${rows[y]})` : ""}, ${colName} ${x}${colTokens ? ` (${cols[x]})` : ""}`;
}
