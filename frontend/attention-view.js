// @ts-check
// The opened map of a series whose rows and columns have names (an
// attention head: queries x keys): the names along its axes, with the
// probe's tokens at each position when an input is a row of tokens, and
// the readout saying which query and key the pointer is on.

import { PROBE_TAG } from "./model.js";
import { model, state, ui } from "./panel.js";
import { probeInputs } from "./probe-inputs.js";
import { plural, reductionFactor, span, spanLength, spanText } from "./reduction.js";
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
 * Words for original positions `s` of an axis named `name`: "query 5",
 * or "queries 12–13" for a reduced map's pixel; with their tokens when known.
 * @param {string} name @param {[number, number]} s @param {(number | string)[] | null} tokens
 */
function spanWords(name, s, tokens) {
  const [first, last] = s;
  const what = first === last ? `${name} ${first}` : `${plural(name)} ${spanText(s)}`;
  if (!tokens) return what;
  const words = tokens.slice(first, last + 1).map(String);
  return `${what} (${words.length <= 4 ? words.join(" ") : `${words[0]} … ${words[words.length - 1]}`})`;
}

/**
 * One axis of the opened map: `n` drawn positions of `source` original ones
 * (fewer when the writer reduced the map by `factor`), a label and a
 * tooltip per drawn position. A reduced position is labelled by the first
 * original position it covers; its tooltip names them all, with their
 * tokens. Tokens label the ticks only of a full-size axis.
 * @param {string} name @param {number} n @param {number} source @param {number} factor
 * @param {(number | string)[] | null} tokens one per original position, or null
 */
function axis(name, n, source, factor, tokens) {
  if (factor === 1) {
    const labels = axisTokens(tokens, n);
    return { labels, titles: labels.map((l, i) => `${i}: ${l}`), spans: null };
  }
  const spans = Array.from({ length: n }, (_, i) => span(i, factor, source));
  return {
    labels: spans.map(([first]) => String(first)),
    titles: spans.map((s) => spanWords(name, s, tokens)),
    spans,
  };
}

/**
 * The labels of the opened map's rows and columns, or null when its axes
 * have no names. Attention is over the probe's own tokens (self-attention):
 * they label an axis of as many original positions; other lengths get
 * positions. A map the writer reduced (reduction.js) is labelled by its
 * original positions, never by its pixels' indices.
 * @param {LayerInfo} info @param {number} height @param {number} width
 */
export function axisLabels(info, height, width) {
  const d = derived(info);
  if (!d.axes || info.layout !== "image") return null;
  const factor = reductionFactor(info);
  const sourceRows = factor > 1 ? info.source_height : height;
  const sourceCols = factor > 1 ? info.source_width : width;
  const attention = d.kind === "attention";
  const rowTokens = attention ? probeTokens(state.run, state.probe, sourceRows) : null;
  const colTokens = attention ? probeTokens(state.run, state.probe, sourceCols) : null;
  const [rowName, colName] = d.axes;
  return {
    names: d.axes,
    factor,
    rows: axis(rowName, height, sourceRows, factor, rowTokens),
    cols: axis(colName, width, sourceCols, factor, colTokens),
    rowTokens,
    colTokens,
  };
}

/**
 * Draws the opened map's axes (or takes them away), once the detail shows it.
 * @param {LayerInfo} info
 */
export function detailAxes(info) {
  if (!ui.detail) return;
  axes ??= new MapAxes(ui.detail.canvas);
  const ch = ui.detail.shown?.channel;
  const labels = ch ? axisLabels(info, ch.height, ch.width) : null;
  if (!labels) {
    axes.hide();
    return;
  }
  const { names, factor, rows, cols } = labels;
  const per = (/** @type {string} */ name, /** @type {string} */ where) =>
    `${plural(name)}, ${factor} per ${where}`;
  axes.show(names, rows.labels, cols.labels, {
    rowTitles: rows.titles,
    colTitles: cols.titles,
    rowTitle: factor > 1 ? per(names[0], "row") : undefined,
    colTitle: factor > 1 ? per(names[1], "column") : undefined,
  });
}

/**
 * The readout's words for pixel (x, y) of the opened map: "query 3 (7),
 * key 4 (2)"; on a reduced map "queries 12–13 (7 9), keys 4–5 (2 2), mean
 * of 2×2", the original positions the pixel is the mean of.
 * @param {LayerInfo} info @param {number} height @param {number} width
 * @returns {((x: number, y: number) => string) | undefined}
 */
export function whereOnAxes(info, height, width) {
  const labels = axisLabels(info, height, width);
  if (!labels) return undefined;
  const [rowName, colName] = labels.names;
  const { rows, cols, rowTokens, colTokens } = labels;
  return (x, y) => {
    const r = rows.spans?.[y] ?? /** @type {[number, number]} */ ([y, y]);
    const c = cols.spans?.[x] ?? /** @type {[number, number]} */ ([x, x]);
    const where = `${spanWords(rowName, r, rowTokens)}, ${spanWords(colName, c, colTokens)}`;
    return labels.factor > 1 ? `${where}, mean of ${spanLength(r)}×${spanLength(c)}` : where;
  };
}
