// @ts-check
// The opened channel: zoomed image with value readout, colorbar, statistics
// and its evolution over all kept steps.

import { fmt, fmtEpoch, levelToValue, stat } from "./color.js";
import { fitCanvas, h, paint, paintUnits, pixelAt } from "./dom.js";
import { reductionFactor, span, spanText } from "./reduction.js";
import { channelNoun } from "./tokens.js";
import { colorbar } from "./views.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./color.js").Range} Range */
/** @typedef {import("./color.js").StatIndex} StatIndex */
/** @typedef {import("./color.js").StatsRow} StatsRow */
/** @typedef {import("./model.js").GrayMap} GrayMap */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/**
 * The channel at one step, as `show` draws it.
 * @typedef {Object} DetailShown
 * @property {LayerInfo} info
 * @property {number} channelIndex
 * @property {number} step
 * @property {number | null | undefined} epoch
 * @property {GrayMap} channel
 * @property {StatsRow | undefined} row
 * @property {StatIndex} fields
 * @property {Uint32Array} table
 * @property {Lut} lut
 * @property {Range | null} win
 * @property {string} caption
 * @property {(index: number) => string} [valueAt] the readout's text for a
 *   pixel, instead of its activation (e.g. a difference in diff mode)
 * @property {(x: number, y: number) => string} [whereAt] the readout's words
 *   for a pixel's place, instead of its x and y (e.g. a query and a key)
 */

/**
 * One step of the evolution.
 * @typedef {Object} Frame
 * @property {number} step
 * @property {number | null} epoch
 * @property {GrayMap & {stats: StatsRow}} channel
 * @property {Uint32Array} table
 */

/** @typedef {{el: HTMLButtonElement, canvas: HTMLCanvasElement, label: HTMLSpanElement, step: number}} FrameView */
/** @typedef {{step: number, lo: number, hi: number, mean: number | null}} TrendPoint */

const HINT = "Hover the image to read values.";

/** @param {StatsRow | undefined} row @param {StatIndex} ix */
export function statsTable(row, ix) {
  if (!row) return h("div", { className: "muted" }, "No statistics.");
  /** @type {Record<string, string>} */
  const names = {
    min: "min",
    max: "max",
    mean: "mean",
    std: "std",
    zero_fraction: "zeros",
    nonfinite_fraction: "non-finite",
  };
  /** @type {HTMLElement[]} */
  const cells = [];
  ix.names.forEach((f, i) => {
    const v = row[i];
    // Only the statistics a reader knows by name: the rest feed other views.
    if (v === undefined || !(f in names)) return;
    const text = f.endsWith("fraction")
      ? v === null
        ? "NaN"
        : `${Number((v * 100).toFixed(1))}%`
      : fmt(v);
    cells.push(h("dt", {}, names[f] || f), h("dd", {}, text));
  });
  return h("dl", { className: "stats" }, cells);
}

export class Detail {
  /**
   * @param {HTMLElement} el
   * @param {{onClose: () => void, onStep: (step: number) => void}} handlers
   */
  constructor(el, { onClose, onStep }) {
    this.el = el;
    this.onStep = onStep;
    /** @type {DetailShown | null} */
    this.shown = null;
    this.cols = 1;
    this.title = h("h2", { className: "detail-title" });
    this.close = h(
      "button",
      { type: "button", className: "close", title: "Close (Esc)", onclick: onClose },
      "✕",
    );
    this.canvas = h("canvas", { className: "big" });
    this.readout = h("div", { className: "readout", id: "readout" }, HINT);
    this.bar = h("div", { className: "detail-bar" });
    this.stats = h("div");
    this.evoTitle = h("div", { className: "section-title" }, "Evolution");
    this.evoNote = h("div", { className: "muted evo-note" });
    this.trend = h("canvas", { className: "trend", id: "trend" });
    this.trendLabels = h("div", { className: "trend-labels muted" });
    this.trendKey = h(
      "div",
      { className: "trend-key muted" },
      "mean (line) and min..max (band) over the steps",
    );
    this.trendBox = h(
      "div",
      { className: "trend-box", hidden: true },
      h("div", { className: "trend-row" }, this.trendLabels, this.trend),
      this.trendKey,
    );
    /** @type {TrendPoint[] | null} */
    this.trendData = null;
    this.evo = h("div", { className: "evolution", id: "evolution" });
    /** @type {FrameView[]} */
    this.evoFrames = [];
    el.replaceChildren(
      h("div", { className: "detail-head" }, this.title, this.close),
      h("div", { className: "big-box" }, this.canvas),
      this.readout,
      this.bar,
      this.stats,
      this.evoTitle,
      this.evoNote,
      this.trendBox,
      this.evo,
    );
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = HINT;
    });
  }

  /** @param {MouseEvent} ev */
  _hover(ev) {
    const s = this.shown;
    if (!s) return;
    const p = pixelAt(this.canvas, ev, this.canvas.width, this.canvas.height);
    if (!p) return;
    const layout = s.info.layout;
    let index;
    let where;
    if (layout === "units") {
      index = p.y * this.cols + p.x;
      if (index >= s.channel.gray.length) return;
      where = `unit ${index}`;
    } else {
      index = p.y * s.channel.width + p.x;
      if (layout === "sequence") where = `t = ${p.x}`;
      else if (s.whereAt) where = s.whereAt(p.x, p.y);
      else {
        const f = reductionFactor(s.info);
        const x = spanText(span(p.x, f, s.info.source_width));
        const y = spanText(span(p.y, f, s.info.source_height));
        where = f > 1 ? `x ${x}, y ${y} (pixel ${p.x}, ${p.y} of the ${f}× reduced map)` : `x ${p.x}, y ${p.y}`;
      }
    }
    if (s.valueAt) {
      this.readout.textContent = `${where}: ${s.valueAt(index)}`;
      return;
    }
    const level = s.channel.gray[index];
    const v = levelToValue(s.row, s.fields, level);
    const lo = stat(s.row, s.fields.min);
    const hi = stat(s.row, s.fields.max);
    const r = lo !== null && hi !== null ? (hi - lo) / 255 : 0;
    const pm = r > 0 ? ` (±${fmt(r / 2)})` : "";
    this.readout.textContent = `${where}: ${fmt(v)}${pm}`;
  }

  /** The zoomed image fills the panel's width, up to 320 px. */
  _bigSize() {
    return Math.max(160, Math.min(320, (this.el.clientWidth || 400) - 48));
  }

  /** @param {DetailShown} s */
  show(s) {
    this.el.hidden = false;
    this.shown = s;
    const layout = s.info.layout;
    const noun = channelNoun(s.info);
    const what =
      layout === "units" ? "Units" : `${noun[0].toUpperCase()}${noun.slice(1)} ${s.channelIndex}`;
    this.title.replaceChildren(
      h("span", {}, what),
      h("span", { className: "muted" }, " of "),
      h("span", { className: "detail-layer" }, s.info.layer),
      h(
        "span",
        { className: "muted" },
        ` · step ${s.step}${s.epoch !== null && s.epoch !== undefined ? ` · ${fmtEpoch(s.epoch)}` : ""}`,
      ),
    );
    const ch = s.channel;
    if (layout === "units") {
      const { cols, rows } = paintUnits(this.canvas, ch.gray, s.table);
      this.cols = cols;
      fitCanvas(this.canvas, cols, rows, this._bigSize());
    } else {
      paint(this.canvas, ch, s.table);
      if (layout === "sequence") {
        this.canvas.style.width = "100%";
        this.canvas.style.height = "40px";
      } else {
        fitCanvas(this.canvas, ch.width, ch.height, this._bigSize());
      }
    }
    this.bar.replaceChildren(colorbar(s.lut, s.win, s.caption));
    this.stats.replaceChildren(statsTable(s.row, s.fields));
  }

  /**
   * The channel over the kept steps, drawn as tiles (image) or rows (strips).
   * @param {Frame[]} frames
   * @param {StatIndex} ix how the frames' statistics rows are laid out
   * @param {string} layout
   * @param {number | null} currentStep
   * @param {string} note
   */
  showEvolution(frames, ix, layout, currentStep, note) {
    const strip = layout !== "image";
    // A head is named, as it is over the zoomed map: its evolution is that head's.
    const s = this.shown;
    const noun = s && s.info.layout !== "units" ? channelNoun(s.info) : "channel";
    const whose = noun === "channel" || !s ? "" : ` of ${noun} ${s.channelIndex}`;
    const of = noun === "channel" || !s ? "" : `${noun} ${s.channelIndex} at `;
    this.evoTitle.textContent = `Evolution${whose} over ${frames.length} step${frames.length === 1 ? "" : "s"}`;
    this.evoNote.textContent = note || "";
    this.evo.className = strip ? "evolution rows" : "evolution tiles";
    const els = [];
    for (const [i, f] of frames.entries()) {
      let fr = this.evoFrames[i];
      if (!fr) {
        const canvas = h("canvas");
        const label = h("span", { className: "frame-label" });
        const el = h("button", { type: "button", className: "frame" }, canvas, label);
        const view = { el, canvas, label, step: f.step };
        el.addEventListener("click", () => this.onStep(view.step));
        fr = this.evoFrames[i] = view;
      }
      fr.step = f.step;
      paint(fr.canvas, f.channel, f.table);
      if (strip) {
        fr.canvas.style.width = "";
        fr.canvas.style.height = "";
      } else {
        fitCanvas(fr.canvas, f.channel.width, f.channel.height, 56);
      }
      fr.label.textContent = `${f.step}`;
      fr.el.title = `${of}step ${f.step}${f.epoch !== null && f.epoch !== undefined ? `, ${fmtEpoch(f.epoch)}` : ""}`;
      fr.el.classList.toggle("current", f.step === currentStep);
      fr.el.dataset.step = String(f.step);
      els.push(fr.el);
    }
    this.evo.replaceChildren(...els);
    /** @type {TrendPoint[]} */
    const points = [];
    for (const f of frames) {
      const lo = stat(f.channel.stats, ix.min);
      const hi = stat(f.channel.stats, ix.max);
      if (lo !== null && hi !== null)
        points.push({ step: f.step, lo, hi, mean: stat(f.channel.stats, ix.mean) });
    }
    this.showTrend(points, currentStep);
    this._revealCurrent();
  }

  /** Scrolls the evolution list only; scrollIntoView would move the page too. */
  _revealCurrent() {
    const cur = /** @type {HTMLElement | null} */ (this.evo.querySelector(".current"));
    if (!cur) return;
    const top =
      cur.getBoundingClientRect().top - this.evo.getBoundingClientRect().top + this.evo.scrollTop;
    if (
      top < this.evo.scrollTop ||
      top + cur.offsetHeight > this.evo.scrollTop + this.evo.clientHeight
    ) {
      this.evo.scrollTop = Math.max(0, top - this.evo.clientHeight / 2);
    }
  }

  /** @param {number | null} step */
  markStep(step) {
    for (const fr of this.evoFrames) if (fr) fr.el.classList.toggle("current", fr.step === step);
    this._revealCurrent();
    if (this.trendData) this._drawTrend(this.trendData, step);
  }

  /**
   * min..max band and mean over the steps: growth or decay at a glance.
   * @param {TrendPoint[]} points @param {number | null} currentStep
   */
  showTrend(points, currentStep) {
    this.trendData = points;
    this.trendBox.hidden = points.length < 2;
    if (!this.trendBox.hidden) this._drawTrend(points, currentStep);
  }

  /** @param {TrendPoint[]} points @param {number | null} currentStep */
  _drawTrend(points, currentStep) {
    const dpr = window.devicePixelRatio || 1;
    const c = this.trend;
    const W = Math.round(c.getBoundingClientRect().width) || 320;
    const H = 64;
    if (c.width !== W * dpr) {
      c.width = W * dpr;
      c.height = H * dpr;
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (c.getContext("2d"));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      lo = Math.min(lo, p.lo);
      hi = Math.max(hi, p.hi);
    }
    if (hi === lo) hi = lo + 1;
    const s0 = points[0].step;
    const s1 = points[points.length - 1].step;
    const X = (/** @type {number} */ step) => 4 + ((step - s0) / Math.max(1, s1 - s0)) * (W - 8);
    const Y = (/** @type {number} */ v) => H - 4 - ((v - lo) / (hi - lo)) * (H - 8);
    ctx.fillStyle = "rgba(245, 124, 0, 0.18)";
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.step), Y(p.hi)));
    for (let i = points.length - 1; i >= 0; i--) ctx.lineTo(X(points[i].step), Y(points[i].lo));
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = "#e65100";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.step), Y(p.mean ?? NaN)));
    ctx.stroke();
    if (lo < 0 && hi > 0) {
      ctx.strokeStyle = "#bdbdbd";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(0, Y(0));
      ctx.lineTo(W, Y(0));
      ctx.stroke();
    }
    const cur = points.find((p) => p.step === currentStep);
    if (cur) {
      ctx.strokeStyle = "#212121";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(X(cur.step), 0);
      ctx.lineTo(X(cur.step), H);
      ctx.stroke();
    }
    this.trendLabels.replaceChildren(h("span", {}, fmt(hi)), h("span", {}, fmt(lo)));
  }

  /** @param {string} text */
  evolutionMessage(text) {
    this.evoTitle.textContent = "Evolution";
    this.evoNote.textContent = "";
    this.trendData = null;
    this.trendBox.hidden = true;
    this.evo.replaceChildren(h("div", { className: "muted" }, text));
  }

  hide() {
    this.el.hidden = true;
    this.shown = null;
  }
}
