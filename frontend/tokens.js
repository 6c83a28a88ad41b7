// @ts-check
// Tokens and the series derived from a layer (format version 3): what a
// series holds (`kind`), the names of a map's axes, the probe's tokens, and
// the widgets that show them: a row of token chips, and the labelled axes
// around a map whose rows and columns are tokens (attention: query x key).

import { h } from "./dom.js";

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/**
 * The version 3 fields of a series' metadata (docs/format.md), absent in
 * older logs.
 * @typedef {Object} Derived
 * @property {string | null} kind "attention", "token_grid", "class_token", or null for a layer's own output
 * @property {string | null} source the layer a derived series comes from
 * @property {[string, string] | null} axes the names of a map's rows and columns
 * @property {number | null} prefix_tokens the tokens before a patch grid
 * @property {string | null} input_name the model input a probe series shows
 * @property {string} probe_kind "image", "tokens" or "values" (a probe series)
 * @property {(number | string)[][] | null} tokens per sample, a tokens probe's tokens
 */

/** @param {unknown} v */
const text = (v) => (typeof v === "string" ? v : null);

/**
 * The derived-series fields of `info`, checked (a field of another type reads as absent).
 * @param {LayerInfo | null | undefined} info
 * @returns {Derived}
 */
export function derived(info) {
  const raw = /** @type {Record<string, unknown>} */ (info || {});
  const axes = raw.axes;
  const tokens = raw.tokens;
  const prefix = raw.prefix_tokens;
  return {
    kind: text(raw.kind),
    source: text(raw.source),
    axes:
      Array.isArray(axes) && axes.length === 2 && axes.every((a) => typeof a === "string")
        ? [axes[0], axes[1]]
        : null,
    prefix_tokens: typeof prefix === "number" ? prefix : null,
    input_name: text(raw.input_name),
    probe_kind: text(raw.probe_kind) ?? "image",
    tokens: Array.isArray(tokens) && tokens.every(Array.isArray) ? tokens : null,
  };
}

/** @param {LayerInfo | null | undefined} info */
export function isAttention(info) {
  return derived(info).kind === "attention";
}

/**
 * What one channel of the series is called: an attention series' channels are its heads.
 * @param {LayerInfo | null | undefined} info
 */
export function channelNoun(info) {
  return isAttention(info) ? "head" : "channel";
}

/**
 * A colour per token, the same wherever it appears: the hue walks the
 * circle by the golden angle, so neighbouring IDs differ.
 * @param {number | string} token
 */
export function tokenColour(token) {
  let n = typeof token === "number" ? token : 0;
  if (typeof token === "string") {
    for (let i = 0; i < token.length; i++) n = (Math.imul(n, 31) + token.charCodeAt(i)) | 0;
  }
  const hue = (((n * 137.508) % 360) + 360) % 360;
  return `hsl(${hue.toFixed(0)} 70% 84%)`;
}

/** How many chips a row shows before it says how many more there are. */
export const ROW_MAX = 64;

/**
 * A row of tokens as chips, in order, each coloured by its token.
 * @param {(number | string)[]} tokens
 */
export function tokenRow(tokens) {
  const chips = tokens.slice(0, ROW_MAX).map((t, i) =>
    h(
      "span",
      {
        className: "token",
        title: `token ${i}: ${t}`,
        style: `background:${tokenColour(t)}`,
        dataset: { index: String(i) },
      },
      String(t),
    ),
  );
  const more =
    tokens.length > ROW_MAX
      ? h("span", { className: "muted token-more" }, `+${tokens.length - ROW_MAX} more`)
      : null;
  return h("span", { className: "token-row" }, chips, more);
}

/**
 * The tokens along an axis of `n` positions: the probe's tokens when there
 * is one per position, else the positions' numbers.
 * @param {(number | string)[] | null | undefined} tokens @param {number} n
 * @returns {string[]}
 */
export function axisTokens(tokens, n) {
  if (tokens && tokens.length === n) return tokens.map(String);
  return Array.from({ length: n }, (_, i) => String(i));
}

/** The space a label needs along an axis, in CSS pixels. */
const LABEL_PX = 14;

/**
 * Which positions of `n` get a label within `size` CSS pixels: every one
 * when they fit, else every k-th.
 * @param {number} n @param {number} size
 */
export function labelEvery(n, size) {
  const fit = Math.max(1, Math.floor(size / LABEL_PX));
  return n <= fit ? 1 : Math.ceil(n / fit);
}

/**
 * The names of a map's rows and columns with their tokens, around the
 * canvas that draws it: columns along the top, rows down the left.
 */
export class MapAxes {
  /** @param {HTMLCanvasElement} canvas a child of the box the axes go in */
  constructor(canvas) {
    this.canvas = canvas;
    this.colTitle = h("div", { className: "axes-title" });
    this.cols = h("div", { className: "axes-ticks" });
    this.top = h("div", { className: "axes axes-top" }, this.colTitle, this.cols);
    this.rowTitle = h("div", { className: "axes-title" });
    this.rows = h("div", { className: "axes-ticks" });
    this.left = h("div", { className: "axes axes-left" }, this.rowTitle, this.rows);
  }

  /**
   * @param {[string, string]} names of the rows and the columns
   * @param {string[]} rows a label per row @param {string[]} cols a label per column
   * @param {{rowTitles?: string[], colTitles?: string[], rowTitle?: string, colTitle?: string}} [more]
   *   each tick's tooltip (else "i: label"), and the axes' titles (else their names)
   */
  show([rowName, colName], rows, cols, more = {}) {
    const box = this.canvas.parentElement;
    if (!box) return;
    if (this.top.parentElement !== box) this.canvas.before(this.top, this.left);
    box.classList.add("with-axes");
    box.dataset.axes = `${rowName},${colName}`;
    this.rowTitle.textContent = more.rowTitle ?? rowName;
    this.colTitle.textContent = more.colTitle ?? colName;
    const width = parseFloat(this.canvas.style.width) || 320;
    const height = parseFloat(this.canvas.style.height) || 320;
    const long = cols.some((c) => c.length > 2);
    this.cols.classList.toggle("vertical", long);
    this.cols.replaceChildren(...ticks(cols, labelEvery(cols.length, width), more.colTitles));
    this.rows.replaceChildren(...ticks(rows, labelEvery(rows.length, height), more.rowTitles));
    this.cols.style.width = `${width}px`;
    this.rows.style.height = `${height}px`;
  }

  hide() {
    const box = this.canvas.parentElement;
    this.top.remove();
    this.left.remove();
    if (box) {
      box.classList.remove("with-axes");
      delete box.dataset.axes;
    }
  }
}

/** @param {string[]} labels @param {number} every @param {string[]} [titles] */
function ticks(labels, every, titles) {
  return labels.map((label, i) =>
    h(
      "span",
      { className: "axes-tick", title: titles?.[i] ?? `${i}: ${label}`, dataset: { index: String(i) } },
      i % every === 0 ? label : "",
    ),
  );
}
