// @ts-check
// The training map: one row per layer (model order, input first), one column
// per logged step, each cell coloured by a layer measure (map-measures.js).
// A cell with no value is hatched gray, and hovering it says why. Clicking a
// cell (or Enter on the focused cell) opens that layer at that step.

import { colorbar } from "./views.js";
import { choiceSelect, h } from "./dom.js";
import {
  MAP_MEASURES,
  colorLevel,
  describeValue,
  formatMeasure,
  formatTick,
  mapMeasure,
  measureScale,
  shownRows,
} from "./map-measures.js";
import { nonfinite, nonfiniteMarks, nonfiniteSentence, notApplicable, nullReason } from "./map-marks.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./map-measures.js").MapMeasure} MapMeasure */
/** @typedef {import("./map-measures.js").MeasureScale} MeasureScale */
/** @typedef {import("./model.js").Overview} Overview */

const NULL_FILL = "#eeeeee";
const NA_FILL = "#fafafa";
const HATCH = "#b0b0b0";
const MAX_TICKS = 10;

/**
 * @typedef {Object} MapInput
 * @property {Overview} overview
 * @property {MapMeasure} measure
 * @property {number | null} step the step the slider is on, outlined
 * @property {Map<number, number | null>} epochs epoch of each step, where known
 * @property {Map<string, Lut>} luts the server's colormaps
 * @property {(number | null)[]} [scaleValues] the values the colour scale spans,
 *   when not this map's own (two runs' maps on one scale)
 * @property {(layer: string) => string} [noun] what a layer's channels are called ("head")
 */

/**
 * @typedef {Object} MapCallbacks
 * @property {(layer: string, step: number) => void} onOpen
 * @property {(measure: MapMeasure) => void} onMeasure
 * @property {() => void} onLayerView
 */

/**
 * Layers whose every change since the previous step is exactly 0: their
 * output never moves (a frozen layer, or one that stopped learning).
 * @param {Overview} o
 */
export function unchangingLayers(o) {
  const rows = o.rows.change_prev || [];
  return o.layers.filter((_, r) => {
    const values = (rows[r] || []).filter((v) => v !== null);
    return values.length > 0 && values.every((v) => v === 0);
  });
}

export class TrainingMap {
  /** @param {MapCallbacks} callbacks */
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.select = choiceSelect({ id: "map-measure", title: "What the colours show" }, MAP_MEASURES);
    this.select.addEventListener("change", () => {
      const m = MAP_MEASURES.find((d) => d.id === this.select.value);
      if (m) callbacks.onMeasure(m.id);
    });
    this.legend = h("div", { className: "map-legend" });
    this.heading = h("div", { className: "map-heading" });
    this.canvas = h("canvas", {
      className: "map-heat",
      tabIndex: 0,
      role: "img",
    });
    this.rowLabels = h("div", { className: "map-rows" });
    this.cursor = h("div", { className: "map-cursor", hidden: true });
    this.hover = h("div", { className: "map-hover", hidden: true });
    this.axis = h("div", { className: "map-axis" });
    this.marks = h("div", { className: "map-marks" });
    this.plot = h(
      "div",
      { className: "map-plot" },
      this.canvas,
      this.marks,
      this.cursor,
      this.hover,
      this.axis,
    );
    this.body = h(
      "div",
      { className: "map-body" },
      this.rowLabels,
      this.plot,
      h("div", { className: "map-axis-title muted" }, "step"),
    );
    this.readout = h("div", { className: "map-readout", role: "status" });
    this.notes = h("div", { className: "map-notes" });
    this.table = h("details", { className: "map-table" }, h("summary", {}, "Values as a table"));
    this.table.addEventListener("toggle", () => this._fillTable());
    this.message = h("div", { className: "map-message", hidden: true });
    this.el = h(
      "section",
      { id: "training-map", "aria-label": "Training map" },
      h(
        "div",
        { className: "map-head" },
        h("label", { className: "inline" }, "Measure", this.select),
        this.legend,
      ),
      this.heading,
      this.message,
      this.body,
      this.readout,
      this.notes,
      this.table,
    );
    /** @type {MapInput | null} */
    this.input = null;
    /** @type {MeasureScale | null} */
    this.scale = null;
    /** Cell size in canvas pixels. */
    this.cell = { w: 1, h: 1 };
    /** @type {{r: number, c: number} | null} the keyboard's cell */
    this.focus = null;
    this.canvas.addEventListener("mousemove", (ev) => this._hoverAt(this._cellAt(ev)));
    this.canvas.addEventListener("mouseleave", () => this._hoverAt(null));
    this.canvas.addEventListener("click", (ev) => this._open(this._cellAt(ev)));
    this.canvas.addEventListener("keydown", (ev) => this._key(ev));
    this.canvas.addEventListener("blur", () => this._hoverAt(null));
  }

  /**
   * Draws the map, or says in words why there is none.
   * @param {MapInput} input
   * @returns {boolean} whether a heatmap was drawn
   */
  show(input) {
    this.input = input;
    const { overview: o, measure } = input;
    this.select.value = measure;
    this.table.open = false;
    const def = mapMeasure(measure);
    const rows = shownRows(o, measure);
    const n = o.steps.length;
    if (!o.layers.length || !n) {
      return this._say([
        h("p", {}, "No step of this run can be read yet, so there is no training map."),
      ]);
    }
    if (n === 1) {
      return this._say([
        h(
          "p",
          {},
          `One logged step (step ${o.steps[0]}): the training map needs two, to show how the layers change. `,
          h(
            "button",
            { type: "button", className: "link", onclick: () => this.callbacks.onLayerView() },
            "Open the layer view",
          ),
          " to see the activations at that step.",
        ),
      ]);
    }
    const values = rows.flat();
    if (!values.some((v) => v !== null)) {
      const reasons = this._reasons(measure);
      return this._say([
        h(
          "p",
          {},
          reasons.length
            ? `No layer of this run has a value for ${def.short}:`
            : `No layer of this run has a value for ${def.short}.`,
        ),
        h(
          "ul",
          {},
          reasons.map((t) => h("li", {}, t)),
        ),
        h(
          "p",
          { className: "muted" },
          "Dead channels and the mean come from every log: pick one above.",
        ),
      ]);
    }
    this.message.hidden = true;
    this.body.hidden = false;
    this.scale = measureScale(measure, input.scaleValues || values);
    this._draw(rows);
    this._legend();
    this._labels();
    this._summary();
    this.markStep(input.step);
    if (this.focus) this._hoverAt(this.focus);
    return true;
  }

  /** @param {Node[]} content */
  _say(content) {
    this.message.replaceChildren(...content.filter(Boolean));
    this.message.hidden = false;
    this.body.hidden = true;
    this.legend.replaceChildren();
    this.heading.replaceChildren();
    this.notes.replaceChildren();
    this.readout.textContent = "";
    this.table.hidden = true;
    return false;
  }

  /** "conv1, conv2: why" lines, one per distinct reason. @param {MapMeasure} measure */
  _reasons(measure) {
    /** @type {Map<string, string[]>} */
    const by = new Map();
    for (const [layer, why] of Object.entries(this.input?.overview.unavailable?.[measure] || {})) {
      by.set(why, [...(by.get(why) || []), layer]);
    }
    return [...by].map(([why, layers]) => `${layers.join(", ")}: ${why}`);
  }

  /** @param {(number | null)[][]} rows */
  _draw(rows) {
    const { overview: o, luts } = /** @type {MapInput} */ (this.input);
    const scale = /** @type {MeasureScale} */ (this.scale);
    const lut = luts.get(scale.cmap) || luts.values().next().value || [[0, 0, 0]];
    const n = o.steps.length;
    const L = o.layers.length;
    // The width beside the row labels (up to 180 px of names).
    const avail = Math.max(120, (this.el.clientWidth || 800) - 190);
    // Cells at least 2 pixels wide while they fit; a very long run is drawn
    // one pixel per step and scaled by CSS.
    const w = 2 * n <= avail ? Math.min(64, Math.floor(avail / n)) : 1;
    const hgt = Math.max(14, Math.min(28, Math.floor(420 / L)));
    this.cell = { w, h: hgt };
    const canvas = this.canvas;
    canvas.width = n * w;
    canvas.height = L * hgt;
    canvas.style.width = `${w === 1 ? avail : n * w}px`;
    canvas.style.height = `${L * hgt}px`;
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const gap = hgt >= 16 ? 1 : 0;
    for (let r = 0; r < L; r++) {
      for (let c = 0; c < n; c++) {
        const v = rows[r]?.[c] ?? null;
        const x = c * w;
        const y = r * hgt;
        if ((v === null || !Number.isFinite(v)) && notApplicable(o, this.input?.measure || "mean", r)) {
          ctx.fillStyle = NA_FILL;
          ctx.fillRect(x, y + gap, w, hgt - gap);
        } else if (v === null || !Number.isFinite(v)) {
          this._hatch(ctx, x, y + gap, w, hgt - gap);
        } else {
          const rgb = lut[colorLevel(v, scale)];
          ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
          ctx.fillRect(x, y + gap, w, hgt - gap);
        }
      }
    }
    canvas.dataset.cellWidth = String(w);
    canvas.dataset.cellHeight = String(hgt);
    canvas.dataset.gap = String(gap);
    Object.assign(this.marks.style, { width: canvas.style.width, height: canvas.style.height });
    this.marks.replaceChildren(...nonfiniteMarks(o));
  }

  /** @param {CanvasRenderingContext2D} ctx @param {number} x @param {number} y @param {number} w @param {number} hgt */
  _hatch(ctx, x, y, w, hgt) {
    ctx.fillStyle = NULL_FILL;
    ctx.fillRect(x, y, w, hgt);
    ctx.save();
    ctx.beginPath();
    ctx.rect(x, y, w, hgt);
    ctx.clip();
    ctx.strokeStyle = HATCH;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let d = -hgt; d < w; d += 5) {
      ctx.moveTo(x + d, y + hgt);
      ctx.lineTo(x + d + hgt, y);
    }
    ctx.stroke();
    ctx.restore();
  }

  _legend() {
    const { measure, luts } = /** @type {MapInput} */ (this.input);
    const scale = /** @type {MeasureScale} */ (this.scale);
    const lut = luts.get(scale.cmap) || [...luts.values()][0];
    const box = lut
      ? colorbar(lut, null, scale.caption, [
          formatTick(measure, scale.lo),
          formatTick(measure, scale.hi),
        ])
      : h("span", {});
    const ticks = box.querySelector(".colorbar-ticks");
    if (ticks && scale.lo < 0 && scale.hi > 0) {
      ticks.append(h("span", { className: "mid", style: "left:50%" }, "0"));
    } else if (ticks) {
      const mid = (scale.lo + scale.hi) / 2;
      ticks.append(h("span", { className: "mid", style: "left:50%" }, formatTick(measure, mid)));
    }
    const keys = [
      box,
      h(
        "span",
        { className: "map-null-key" },
        h("span", { className: "swatch hatched" }),
        " no value (hover for why)",
      ),
      measure === "saturation"
        ? h("span", { className: "map-null-key" }, h("span", { className: "swatch na" }), " not applicable")
        : null,
      Object.keys(this.input?.overview.first_nonfinite || {}).length
        ? h(
            "span",
            { className: "map-null-key" },
            h("span", { className: "swatch nf" }),
            " non-finite (NaN, ∞) ",
            h("span", { className: "swatch nf-first" }),
            " first non-finite step",
          )
        : null,
    ];
    this.legend.replaceChildren(...keys.filter((k) => k !== null));
  }

  _labels() {
    const { overview: o } = /** @type {MapInput} */ (this.input);
    const still = new Set(unchangingLayers(o));
    const rowH = this.cell.h;
    this.rowLabels.replaceChildren(
      ...o.layers.map((layer) =>
        h(
          "div",
          { className: "map-row-label", style: `height:${rowH}px`, title: layer },
          h("span", { className: "map-row-name" }, layer),
          still.has(layer)
            ? h(
                "span",
                {
                  className: "badge still",
                  title:
                    "Every change since the previous step is exactly 0: this layer's output never moves (frozen, or not learning).",
                },
                "no change",
              )
            : null,
        ),
      ),
    );
    const n = o.steps.length;
    const every = Math.max(1, Math.ceil(n / MAX_TICKS));
    const cssW = this.canvas.getBoundingClientRect().width || this.canvas.width;
    const ticks = [];
    for (let c = 0; c < n; c += every) {
      const left = ((c + 0.5) / n) * cssW;
      ticks.push(h("span", { style: `left:${left}px` }, String(o.steps[c])));
    }
    const last = n - 1;
    if (last % every) {
      const left = ((last + 0.5) / n) * cssW;
      // The last step is labelled unless its neighbour's label would cover it.
      if ((last % every) * (cssW / n) > 30 || every === 1) {
        ticks.push(h("span", { style: `left:${left}px` }, String(o.steps[last])));
      }
    }
    this.axis.replaceChildren(...ticks);
  }

  /** The canvas's text alternative, and the notes under the map. */
  _summary() {
    const { overview: o, measure } = /** @type {MapInput} */ (this.input);
    const def = mapMeasure(measure);
    const rows = o.rows[measure] || [];
    let best = null;
    for (let r = 0; r < rows.length; r++) {
      for (let c = 0; c < (rows[r] || []).length; c++) {
        const v = rows[r][c];
        if (v !== null && (best === null || Math.abs(v) > Math.abs(best.v))) best = { r, c, v };
      }
    }
    const still = unchangingLayers(o);
    const n = o.steps.length;
    const parts = [
      `Training map of ${def.short}: ${o.layers.length} layers by ${n} steps (${o.steps[0]} to ${o.steps[n - 1]}).`,
    ];
    if (best)
      parts.push(
        `Largest: ${o.layers[best.r]} at step ${o.steps[best.c]}, ${formatMeasure(measure, best.v)}.`,
      );
    if (still.length) parts.push(`No change at any step: ${still.join(", ")}.`);
    parts.push("Use the arrow keys to move between cells and Enter to open one.");
    this.heading.textContent = `${def.label}, per layer (rows, input first) and logged step (columns). Click a cell to open that layer at that step.`;
    const reasons = this._reasons(measure).filter((t) => !/non-finite/.test(t));
    const broke = nonfiniteSentence(o);
    if (broke) parts.splice(parts.length - 1, 0, broke);
    this.canvas.setAttribute("aria-label", parts.join(" "));
    this.notes.replaceChildren(
      ...(broke ? [h("div", { className: "note map-broke" }, broke)] : []),
      ...(reasons.length
        ? [
            h("div", { className: "note" }, "Some values are unavailable: ", h("ul", {}, reasons.map((t) => h("li", {}, t)))),
          ]
        : []),
    );
    this.table.hidden = false;
    this.readout.textContent = "";
  }

  /** The values as a table, built when opened: a long run has many cells. */
  _fillTable() {
    if (!this.table.open || !this.input) return;
    const { overview: o, measure } = this.input;
    const rows = o.rows[measure] || [];
    const table = h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "layer \\ step"),
          o.steps.map((s) => h("th", { scope: "col" }, String(s))),
        ),
      ),
      h(
        "tbody",
        {},
        o.layers.map((layer, r) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, layer),
            o.steps.map((_, c) => {
              const v = rows[r]?.[c] ?? null;
              return v === null
                ? h("td", { title: nullReason(o, measure, r, c) }, "–")
                : h("td", {}, formatMeasure(measure, v));
            }),
          ),
        ),
      ),
    );
    this.table.replaceChildren(
      this.table.firstChild || h("summary", {}, "Values as a table"),
      h("div", { className: "map-table-scroll" }, table),
    );
  }

  /** Outlines the slider's step. @param {number | null} step */
  markStep(step) {
    if (this.input) this.input.step = step;
    const o = this.input?.overview;
    const c = o && step !== null ? o.steps.indexOf(step) : -1;
    if (!o || c < 0 || this.body.hidden) {
      this.cursor.hidden = true;
      return;
    }
    const box = this._cssCell(0, c);
    this.cursor.hidden = false;
    this.cursor.style.left = `${box.left}px`;
    this.cursor.style.width = `${box.width}px`;
    this.cursor.style.top = "0px";
    this.cursor.style.height = `${this.canvas.getBoundingClientRect().height || this.canvas.height}px`;
  }

  /** A cell's box in CSS pixels, relative to the plot. @param {number} r @param {number} c */
  _cssCell(r, c) {
    const o = /** @type {MapInput} */ (this.input).overview;
    const rect = this.canvas.getBoundingClientRect();
    const cw = (rect.width || this.canvas.width) / o.steps.length;
    const ch = (rect.height || this.canvas.height) / o.layers.length;
    return { left: c * cw, top: r * ch, width: cw, height: ch };
  }

  /** @param {MouseEvent} ev */
  _cellAt(ev) {
    const o = this.input?.overview;
    if (!o) return null;
    const r = this.canvas.getBoundingClientRect();
    const c = Math.floor(((ev.clientX - r.left) / r.width) * o.steps.length);
    const row = Math.floor(((ev.clientY - r.top) / r.height) * o.layers.length);
    if (c < 0 || row < 0 || c >= o.steps.length || row >= o.layers.length) return null;
    return { r: row, c };
  }

  /** @param {{r: number, c: number} | null} cell */
  _hoverAt(cell) {
    if (!cell || !this.input) {
      this.hover.hidden = true;
      this.readout.textContent = "";
      return;
    }
    const { overview: o, measure, epochs } = this.input;
    const v = o.rows[measure]?.[cell.r]?.[cell.c] ?? null;
    const step = o.steps[cell.c];
    const first = o.first_nonfinite[o.layers[cell.r]] === step ? " (the layer's first)" : "";
    const broke = v !== null && nonfinite(o, cell.r, cell.c) ? `; non-finite values (NaN or infinity) at this step${first}` : "";
    const epoch = epochs.get(step);
    const where = `${o.layers[cell.r]} · step ${step}${
      epoch !== null && epoch !== undefined ? ` (epoch ${Number(epoch.toFixed(2))})` : ""
    }`;
    const what =
      v === null
        ? `no value: ${nullReason(o, measure, cell.r, cell.c)}${first}`
        : `${describeValue(o, measure, cell.r, v, this.input.noun?.(o.layers[cell.r]))}${broke}`;
    this.readout.replaceChildren(h("strong", {}, where), `: ${what}`);
    const box = this._cssCell(cell.r, cell.c);
    Object.assign(this.hover.style, {
      left: `${box.left}px`,
      top: `${box.top}px`,
      width: `${box.width}px`,
      height: `${box.height}px`,
    });
    this.hover.hidden = false;
  }

  /** @param {{r: number, c: number} | null} cell */
  _open(cell) {
    const o = this.input?.overview;
    if (!cell || !o) return;
    this.focus = cell;
    this.callbacks.onOpen(o.layers[cell.r], o.steps[cell.c]);
  }

  /** @param {KeyboardEvent} ev */
  _key(ev) {
    const o = this.input?.overview;
    if (!o) return;
    const step = this.input?.step ?? null;
    const start = this.focus || { r: 0, c: Math.max(0, step === null ? 0 : o.steps.indexOf(step)) };
    let { r, c } = start;
    if (ev.key === "ArrowLeft") c--;
    else if (ev.key === "ArrowRight") c++;
    else if (ev.key === "ArrowUp") r--;
    else if (ev.key === "ArrowDown") r++;
    else if (ev.key === "Home") c = 0;
    else if (ev.key === "End") c = o.steps.length - 1;
    else if (ev.key === "Enter" || ev.key === " ") {
      this._open(start);
      ev.preventDefault();
      return;
    } else return;
    // The map's own keys: the panel's step keys must not also act.
    ev.preventDefault();
    ev.stopPropagation();
    this.focus = {
      r: Math.max(0, Math.min(o.layers.length - 1, r)),
      c: Math.max(0, Math.min(o.steps.length - 1, c)),
    };
    this._hoverAt(this.focus);
  }
}

/** The switch between the training map and the layer view, over the main area. */
export class ViewTabs {
  /** @param {{onMap: () => void, onLayer: () => void}} callbacks */
  constructor(callbacks) {
    this.map = h(
      "button",
      { type: "button", role: "tab", id: "tab-map", onclick: () => callbacks.onMap() },
      "Training map",
    );
    this.layer = h(
      "button",
      { type: "button", role: "tab", id: "tab-layer", onclick: () => callbacks.onLayer() },
      "Layer",
    );
    this.el = h(
      "div",
      { className: "view-tabs", role: "tablist", "aria-label": "View" },
      this.map,
      this.layer,
    );
  }

  /** @param {"map" | "layer"} view @param {string | null} layer */
  update(view, layer) {
    this.layer.textContent = layer ? `Layer: ${layer}` : "Layer";
    for (const [b, on] of /** @type {[HTMLButtonElement, boolean][]} */ ([
      [this.map, view === "map"],
      [this.layer, view === "layer"],
    ])) {
      b.setAttribute("aria-selected", String(on));
      b.classList.toggle("selected", on);
    }
  }
}
