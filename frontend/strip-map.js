// @ts-check
// One canvas holding many strips: a sequence layer's time x channel map, or a
// units layer's units wrapped into a near-square grid.

import { fmt, isDead, levelToValue, stat } from "./color.js";
import { h, paintUnits, pixelAt, surface } from "./dom.js";

/** @typedef {import("./model.js").Layer} Layer */

const HINT = "Hover for values; click to open.";

export class StripMap {
  /** @param {(channel: number) => void} onOpen */
  constructor(onOpen) {
    this.canvas = h("canvas", { className: "map-canvas" });
    this.readout = h("div", { className: "readout" }, HINT);
    this.axis = h("div", { className: "axis muted" });
    this.dead = h("div", { className: "muted" });
    this.rowLabels = h("div", { className: "row-labels", "aria-hidden": "true" });
    const row = h("div", { className: "map-row" }, this.rowLabels, this.canvas);
    this.el = h("div", { className: "strip-map" }, this.axis, row, this.readout, this.dead);
    this.onOpen = onOpen;
    /** @type {Layer | null} */
    this.layer = null;
    /** @type {string} "sequence" or "units" */
    this.mode = "sequence";
    this.cols = 1;
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = HINT;
    });
    this.canvas.addEventListener("click", (ev) => {
      const hit = this._hit(ev);
      if (hit) this.onOpen(hit.channel);
    });
  }

  /** @param {MouseEvent} ev */
  _hit(ev) {
    if (!this.layer) return null;
    const p = pixelAt(this.canvas, ev, this.canvas.width, this.canvas.height);
    if (!p) return null;
    if (this.mode === "sequence") {
      return { channel: p.y, index: p.x, level: this.layer.channels[p.y]?.gray[p.x] };
    }
    const i = p.y * this.cols + p.x;
    const ch = this.layer.channels[0];
    if (i >= ch.gray.length) return null;
    return { channel: 0, index: i, level: ch.gray[i] };
  }

  /** @param {MouseEvent} ev */
  _hover(ev) {
    const hit = this._hit(ev);
    if (!hit || hit.level === undefined || !this.layer) return;
    const v = levelToValue(this.layer.stats[hit.channel], this.layer.fields, hit.level);
    this.readout.textContent =
      this.mode === "sequence"
        ? `channel ${hit.channel}, t = ${hit.index}: ${fmt(v)}`
        : `unit ${hit.index}: ${fmt(v)}`;
  }

  /**
   * @param {Layer} layer
   * @param {Uint32Array[]} tables one per channel
   * @param {string} layout "sequence" or "units"
   * @param {number} size the user's tile size, scaling rows and cells
   */
  show(layer, tables, layout, size) {
    this.layer = layer;
    this.mode = layout;
    const ix = layer.fields;
    const n = layer.channels.length;
    if (layout === "sequence") {
      const T = layer.channels[0]?.width || 1;
      const { ctx, image } = surface(this.canvas, T, n);
      const out = new Uint32Array(image.data.buffer);
      for (let c = 0; c < n; c++) {
        const { gray } = layer.channels[c];
        const table = tables[c];
        const base = c * T;
        for (let t = 0; t < T; t++) out[base + t] = table[gray[t]];
      }
      ctx.putImageData(image, 0, 0);
      const width = Math.min(Math.max(T * 6, 360), 960);
      const rowPx = Math.max(3, Math.min(24, Math.floor((size * 4) / n)));
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${rowPx * n}px`;
      // Label every row that has room for its number.
      const every = Math.max(1, Math.ceil(12 / rowPx));
      const labels = [];
      for (let c = 0; c < n; c += every) {
        labels.push(
          h(
            "span",
            { style: `top:${c * rowPx}px;height:${rowPx}px;line-height:${rowPx}px` },
            String(c),
          ),
        );
      }
      this.rowLabels.style.height = `${rowPx * n}px`;
      this.rowLabels.replaceChildren(...labels);
      this.axis.textContent = `rows: channels 0–${n - 1} · columns: time 0–${T - 1}`;
      const dead = layer.stats.map((r, c) => (isDead(r, ix) ? c : -1)).filter((c) => c >= 0);
      this.dead.textContent = dead.length ? `All-zero channels: ${dead.join(", ")}` : "";
      this.dead.className = dead.length ? "dead-list" : "muted";
    } else {
      const ch = layer.channels[0];
      const U = ch.gray.length;
      const { cols, rows } = paintUnits(this.canvas, ch.gray, tables[0]);
      this.cols = cols;
      const cell = Math.max(6, Math.min(40, Math.floor((size * 4) / cols)));
      this.canvas.style.width = `${cell * cols}px`;
      this.canvas.style.height = `${cell * rows}px`;
      this.rowLabels.replaceChildren();
      this.axis.textContent = `${U} units, ${cols} per row (unit i at row ⌊i/${cols}⌋, column i mod ${cols})`;
      const row = layer.stats[0];
      const zero = stat(row, ix.zero);
      this.dead.textContent = isDead(row, ix)
        ? "Every unit is 0 at this step."
        : row && zero !== null
          ? `${Math.round(zero * U)} of ${U} units are 0.`
          : "";
      this.dead.className = isDead(row, ix) ? "dead-list" : "muted";
    }
  }
}
