// @ts-check
// The few DOM helpers every view uses. Run and layer names are untrusted
// (they come from log directories and model code), so text only ever goes in
// through textContent / text nodes, never as markup.

import { colorize, unitColumns } from "./color.js";

/** @typedef {import("./model.js").GrayMap} GrayMap */

/**
 * Creates an element; `props` are assigned as properties, children appended as text or nodes.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [props]
 * @param {...any} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "aria" || k.startsWith("aria-") || k === "role" || k === "for")
      el.setAttribute(k, v);
    else /** @type {any} */ (el)[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * A select offering `options` (value `id`, text `label`) in their order.
 * @param {Record<string, any>} props
 * @param {readonly {id: string, label: string}[]} options
 */
export function choiceSelect(props, options) {
  return h("select", props, ...options.map((o) => h("option", { value: o.id }, o.label)));
}

/** @param {(number | null)[] | null | undefined} shape */
export function shapeText(shape) {
  return `(${(shape || []).map((d) => (d === null ? "None" : d)).join(", ")})`;
}

/**
 * Sets a canvas's displayed size so its pixels scale evenly, never blurred.
 * @param {HTMLCanvasElement} canvas @param {number} w @param {number} h
 * @param {number} maxCss @param {number} [minCss]
 */
export function fitCanvas(canvas, w, h, maxCss, minCss = 0) {
  let scale = maxCss / Math.max(w, h);
  if (Math.max(w, h) * scale < minCss) scale = minCss / Math.max(w, h);
  canvas.style.width = `${Math.max(1, Math.round(w * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.round(h * scale))}px`;
}

/** @type {WeakMap<HTMLCanvasElement, {ctx: CanvasRenderingContext2D, image: ImageData}>} */
const surfaces = new WeakMap();

/**
 * A canvas sized w x h with a reusable ImageData: drawing a step allocates nothing.
 * @param {HTMLCanvasElement} canvas @param {number} w @param {number} h
 */
export function surface(canvas, w, h) {
  let s = surfaces.get(canvas);
  if (canvas.width !== w || canvas.height !== h || !s) {
    canvas.width = w;
    canvas.height = h;
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    s = { ctx, image: ctx.createImageData(w, h) };
    surfaces.set(canvas, s);
  }
  return s;
}

/**
 * Draws gray levels through a table onto a canvas sized to them.
 * @param {HTMLCanvasElement} canvas @param {GrayMap} channel @param {Uint32Array} table
 */
export function paint(canvas, channel, table) {
  const { ctx, image } = surface(canvas, channel.width, channel.height);
  colorize(channel.gray, table, image);
  ctx.putImageData(image, 0, 0);
}

/**
 * Draws a strip of units wrapped into a near-square grid, one pixel per unit
 * (unit i at row i / cols, column i mod cols); returns the grid's shape.
 * @param {HTMLCanvasElement} canvas @param {Uint8Array} gray @param {Uint32Array} table
 */
export function paintUnits(canvas, gray, table) {
  const n = gray.length;
  const cols = unitColumns(n);
  const rows = Math.ceil(n / cols);
  const { ctx, image } = surface(canvas, cols, rows);
  const out = new Uint32Array(image.data.buffer);
  for (let i = 0; i < cols * rows; i++) out[i] = i < n ? table[gray[i]] : 0;
  ctx.putImageData(image, 0, 0);
  return { cols, rows };
}

/**
 * The pixel under a mouse event on a canvas of w x h pixels shown at any CSS size.
 * @param {HTMLCanvasElement} canvas @param {MouseEvent} ev @param {number} w @param {number} h
 */
export function pixelAt(canvas, ev, w, h) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * w);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * h);
  if (x < 0 || y < 0 || x >= w || y >= h) return null;
  return { x, y };
}
