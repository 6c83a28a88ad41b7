// @ts-check
// The depth profile: for one step, each layer's value of the training map's
// measure plotted against depth (layers in model order, input first), with
// the run's first step as a faint reference line. It reads how a measure
// propagates through the network: the signal's scale (log₁₀ rms; Brock, De
// and Smith 2021), the effective rank, the dormant units, the collapse. An
// SVG of a few dozen elements; every point carries its layer and the
// overview's value (data-layer, data-value) for scripts.

import { h } from "./dom.js";
import { formatMeasure, mapMeasure, niceCeil, shownRows } from "./map-measures.js";
import { nonfinite } from "./map-marks.js";

/** @typedef {import("./model.js").Overview} Overview */
/** @typedef {import("./map-measures.js").MapMeasure} MapMeasure */

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 240;
const PAD = { left: 56, right: 20, top: 14, bottom: 64 };
const LINE = "#1565c0";
const REFERENCE = "#9e9e9e";
const BROKEN = "#c62828";

/**
 * @param {string} tag @param {Record<string, string | number>} attrs @param {...(Node | string)} children
 * @returns {SVGElement}
 */
function svg(tag, attrs, ...children) {
  const el = /** @type {SVGElement} */ (document.createElementNS(NS, tag));
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/**
 * What the profile plots per layer at column c: the map's values, except
 * effective rank in directions (not ÷ its maximum: the maxima are drawn).
 * @param {Overview} o @param {MapMeasure} measure @param {number} c
 * @returns {(number | null)[]}
 */
export function profileValues(o, measure, c) {
  const rows = measure === "effective_rank" ? o.rows[measure] || [] : shownRows(o, measure);
  return o.layers.map((_, r) => rows[r]?.[c] ?? null);
}

/**
 * The y axis's range for these values.
 * @param {MapMeasure} measure @param {number[]} values finite values
 * @returns {[number, number]}
 */
function yRange(measure, values) {
  const kind = mapMeasure(measure).kind;
  if (kind === "fraction") return [0, 1];
  if (kind === "drift") return [0, 1];
  if (!values.length) return [0, 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (kind === "log") return [Math.floor(lo), Math.max(Math.floor(lo) + 1, Math.ceil(hi))];
  if (kind === "cosine") return [Math.min(0, Math.floor(lo * 10) / 10), 1];
  const bottom = lo >= 0 ? 0 : -niceCeil(-lo);
  return [bottom, hi > 0 ? niceCeil(hi) : 1];
}

/** @param {number} v */
function tickText(v) {
  return String(Number(v.toPrecision(3)));
}

export class DepthProfile {
  constructor() {
    this.title = h("div", { className: "depth-title" });
    this.plot = h("div", { className: "depth-plot" });
    this.readout = h("div", { className: "depth-readout muted", role: "status" });
    this.el = h(
      "section",
      { id: "depth-profile", className: "depth-profile", "aria-label": "Depth profile" },
      this.title,
      this.plot,
      this.readout,
    );
  }

  /** @param {string} text */
  message(text) {
    this.title.textContent = "Depth profile";
    this.plot.replaceChildren(h("p", { className: "muted" }, text));
    this.readout.textContent = "";
  }

  /**
   * Draws the profile of `measure` at `step` against the first step.
   * @param {Overview} o @param {MapMeasure} measure @param {number} step a step of `o`
   * @param {(layer: string) => string} [noun] what a layer's channels are called ("head")
   */
  show(o, measure, step, noun) {
    const def = mapMeasure(measure);
    const c = o.steps.indexOf(step);
    const L = o.layers.length;
    const values = profileValues(o, measure, c);
    const first = c > 0 ? profileValues(o, measure, 0) : null;
    const maxima =
      measure === "effective_rank" ? o.layers.map((l) => o.effective_rank_max[l] ?? null) : null;
    const finite = [...values, ...(first || []), ...(maxima || [])].filter(
      (v) => v !== null && Number.isFinite(v),
    );
    const what = measure === "effective_rank" ? "effective rank (dotted: its maximum)" : def.short;
    this.title.textContent = `Depth profile at step ${step}: ${what} of each layer, input first${
      first ? `; faint: the first step, ${o.steps[0]}` : ""
    }.`;
    if (!finite.length) {
      this.plot.replaceChildren(h("p", { className: "muted" }, `No layer has a value of ${def.short} at step ${step}.`));
      return;
    }
    const [lo, hi] = yRange(measure, /** @type {number[]} */ (finite));
    const W = Math.max(360, Math.min(900, this.el.clientWidth || 720));
    const iw = W - PAD.left - PAD.right;
    const ih = HEIGHT - PAD.top - PAD.bottom;
    const x = (/** @type {number} */ r) => PAD.left + (L === 1 ? iw / 2 : (r / (L - 1)) * iw);
    const y = (/** @type {number} */ v) => PAD.top + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo || 1)) * ih;
    const root = svg("svg", { width: W, height: HEIGHT, viewBox: `0 0 ${W} ${HEIGHT}`, class: "depth-svg", role: "img" });
    // The plot's area on a light ground, then 5 value ticks and a label per layer.
    root.append(svg("rect", { x: PAD.left, y: PAD.top, width: iw, height: ih, class: "depth-ground" }));
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      root.append(
        svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "depth-grid" }),
        svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "depth-tick" }, tickText(v)),
      );
    }
    o.layers.forEach((layer, r) => {
      const label = layer.length > 14 ? `${layer.slice(0, 13)}…` : layer;
      root.append(
        svg(
          "text",
          { x: x(r), y: HEIGHT - PAD.bottom + 14, "text-anchor": "end", transform: `rotate(-35 ${x(r)} ${HEIGHT - PAD.bottom + 14})`, class: "depth-layer" },
          svg("title", {}, layer),
          label,
        ),
      );
    });
    root.append(
      svg("text", { x: 12, y: PAD.top + ih / 2, transform: `rotate(-90 12 ${PAD.top + ih / 2})`, "text-anchor": "middle", class: "depth-tick" }, def.short),
    );
    /** @param {(number | null)[]} vs @param {string} colour @param {string} cls @param {string} [dash] */
    const line = (vs, colour, cls, dash) => {
      let d = "";
      let pen = false;
      vs.forEach((v, r) => {
        if (v === null || !Number.isFinite(v)) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(r).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) root.append(svg("path", { d, fill: "none", stroke: colour, "stroke-width": 2, class: cls, ...(dash ? { "stroke-dasharray": dash } : {}) }));
    };
    if (maxima) line(maxima, REFERENCE, "depth-max", "2 3");
    if (first) {
      line(first, REFERENCE, "depth-reference");
      first.forEach((v, r) => {
        if (v !== null && Number.isFinite(v))
          root.append(svg("circle", { cx: x(r), cy: y(v), r: 2.5, fill: REFERENCE, class: "depth-reference-point" }));
      });
    }
    line(values, LINE, "depth-line");
    const raw = o.rows[measure] || [];
    values.forEach((v, r) => {
      const layer = o.layers[r];
      if (v === null || !Number.isFinite(v)) {
        if (!nonfinite(o, r, c)) return;
        const mark = svg(
          "text",
          { x: x(r), y: PAD.top + ih - 2, "text-anchor": "middle", fill: BROKEN, class: "depth-broken", "data-layer": layer },
          svg("title", {}, `${layer} · step ${step}: non-finite values (NaN or infinity)`),
          "✕",
        );
        root.append(mark);
        return;
      }
      const value = /** @type {number} */ (raw[r]?.[c]);
      // A layer's own noun: an attention series has dead heads, not dead channels.
      const short = measure === "dead_fraction" && noun ? `dead ${noun(layer)}s` : def.short;
      const text = `${layer} · step ${step}: ${short} ${measure === "rms" ? formatMeasure("rms", value) : formatMeasure(measure, value)}`;
      const dot = svg(
        "circle",
        { cx: x(r), cy: y(v), r: 4.5, fill: LINE, class: "depth-point", "data-layer": layer, "data-value": String(value), tabindex: 0 },
        svg("title", {}, text),
      );
      dot.addEventListener("mouseenter", () => (this.readout.textContent = text));
      dot.addEventListener("focus", () => (this.readout.textContent = text));
      root.append(dot);
    });
    root.setAttribute("aria-label", `${this.title.textContent} ${o.layers.map((l, r) => `${l}: ${values[r] === null ? "no value" : tickText(/** @type {number} */ (values[r]))}`).join(", ")}.`);
    this.plot.replaceChildren(root);
    this.readout.textContent = "Hover a point to read it.";
  }
}
