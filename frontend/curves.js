// @ts-check
// Loss and metric curves under the step slider, on the slider's own x axis.
//
// The slider moves by kept step (notch i of n - 1 is the i-th kept step), so
// the strip uses the same mapping: a kept step sits exactly under the
// slider's thumb for it, and an iteration between two kept steps sits
// proportionally between their notches. Points before the first or after the
// last kept step have no place on that axis and are not drawn (counted in
// the note). Epoch-index series come from the `curves` route already placed
// at iterations; interpolated ones are drawn hollow, unmapped ones are only
// named in the note. A click anywhere on the strip goes to the nearest kept
// step.

import { h } from "./dom.js";
import { report } from "./hooks.js";

/** @typedef {import("./model.js").Curves} Curves */
/** @typedef {import("./model.js").CurveSeries} CurveSeries */

/** Chromium's range thumb is 16 px wide: its centre never comes closer than 8 px to an end. */
const THUMB_INSET = 8;
const HEIGHT = 56;
const COLORS = ["#1565c0", "#c2185b"];

/**
 * A series' name in the select: its run relative to the activations' run's
 * directory (`train`, `validation`), then its tag.
 * @param {string} run the activations' run @param {CurveSeries} s
 */
export function seriesKey(run, s) {
  return `${relativeRun(run, s)}/${s.tag}`;
}

/** @param {string} run the activations' run @param {CurveSeries} s */
function relativeRun(run, s) {
  const slash = run.lastIndexOf("/");
  const parent = slash >= 0 ? run.slice(0, slash + 1) : "";
  return parent && s.run.startsWith(parent) ? s.run.slice(parent.length) : s.run;
}

/** `batch_loss`, `epoch_loss` and `evaluation_loss_vs_iterations` are all `loss`. @param {string} tag */
function metricOf(tag) {
  const name = tag.slice(tag.lastIndexOf("/") + 1);
  const m = /^evaluation_(.*)_vs_iterations$/.exec(name);
  if (m) return m[1];
  return name.replace(/^(batch|epoch)_/, "");
}

/**
 * The series shown when the user has not picked one: train batch_loss, else
 * train epoch_loss, else any loss, else the first.
 * @param {string} run @param {CurveSeries[]} series
 */
export function defaultSeries(run, series) {
  const keys = series.map((s) => seriesKey(run, s));
  for (const want of ["train/batch_loss", "train/epoch_loss"]) if (keys.includes(want)) return want;
  return keys.find((k) => metricOf(k) === "loss") ?? keys[0] ?? null;
}

/**
 * The validation counterpart of a training series, drawn beside it.
 * @param {string} run @param {CurveSeries[]} series @param {string} key
 */
export function companionOf(run, series, key) {
  const main = series.find((s) => seriesKey(run, s) === key);
  if (!main || relativeRun(run, main) === "validation") return null;
  const metric = metricOf(main.tag);
  const candidates = series.filter(
    (s) => relativeRun(run, s) === "validation" && metricOf(s.tag) === metric,
  );
  // The epoch values are what Keras's own dashboard shows for validation.
  return (
    candidates.find((s) => s.tag.startsWith("epoch_")) ||
    candidates.find((s) => s.tag.startsWith("evaluation_")) ||
    null
  );
}

/**
 * Where an iteration falls on the slider's axis, as a fraction 0..1 of the
 * track; null outside the kept steps.
 * @param {number[]} steps kept steps, increasing @param {number} it
 */
export function axisFraction(steps, it) {
  const n = steps.length;
  if (n < 2 || it < steps[0] || it > steps[n - 1]) return null;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] <= it) lo = mid;
    else hi = mid;
  }
  const span = steps[hi] - steps[lo];
  const within = span > 0 ? (it - steps[lo]) / span : 0;
  return (lo + within) / (n - 1);
}

export class CurveStrip {
  /**
   * @param {{onStep: (step: number) => void, onSeries: (key: string) => void}} callbacks
   */
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.select = h("select", {
      id: "curve-series",
      title: "Which scalar to draw under the slider",
    });
    this.select.addEventListener("change", () => callbacks.onSeries(this.select.value));
    this.key = h("div", { className: "curves-key" });
    this.side = h("div", { className: "curves-side" }, this.select, this.key);
    this.canvas = h("canvas", { className: "curves-canvas", role: "img" });
    this.cursor = h("div", { className: "curves-cursor", hidden: true });
    this.hiLabel = h("span", { className: "curves-y hi" });
    this.loLabel = h("span", { className: "curves-y lo" });
    this.plot = h(
      "div",
      { className: "curves-plot", title: "Click to go to the nearest logged step" },
      this.canvas,
      this.cursor,
      this.hiLabel,
      this.loLabel,
    );
    this.readout = h("div", { className: "curves-readout muted", role: "status" });
    this.note = h("div", { className: "curves-note muted" });
    this.el = h(
      "div",
      { id: "curves", hidden: true },
      h("div", { className: "curves-row" }, this.side, this.plot),
      this.readout,
      this.note,
    );
    /** @type {{curves: Curves, steps: number[], step: number | null, chosen: string | null} | null} */
    this.input = null;
    /** @type {HTMLElement | null} */
    this.slider = null;
    this.canvas.addEventListener("click", (ev) => {
      const step = this._stepAt(ev);
      if (step !== null) callbacks.onStep(step);
    });
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = "";
    });
  }

  /**
   * Lines the plot up with the slider's track; called again on resize.
   * @param {HTMLElement} slider
   */
  alignTo(slider) {
    this.slider = slider;
    if (this.el.hidden || !this.input) return;
    const s = slider.getBoundingClientRect();
    const row = /** @type {HTMLElement} */ (this.plot.parentElement).getBoundingClientRect();
    if (!s.width || !row.width) return;
    const left = s.left - row.left + THUMB_INSET;
    const width = Math.max(40, s.width - 2 * THUMB_INSET);
    this.plot.style.marginLeft = `${left}px`;
    this.plot.style.width = `${width}px`;
    // The picker sits in the room left of the slider, when there is room.
    this.side.classList.toggle("above", left < 180);
    this.side.style.width = left >= 180 ? `${left - 16}px` : "";
    this._draw(width);
  }

  /**
   * @param {Curves} curves
   * @param {number[]} steps the slider's kept steps
   * @param {number | null} step the slider's step
   * @param {string | null} chosen the series the user picked, or null
   */
  show(curves, steps, step, chosen) {
    this.input = { curves, steps, step, chosen };
    const series = curves.series || [];
    if (!series.length) {
      this.el.hidden = true;
      return false;
    }
    this.el.hidden = false;
    const keys = series.map((s) => seriesKey(curves.run, s));
    const key =
      chosen !== null && keys.includes(chosen) ? chosen : defaultSeries(curves.run, series);
    this.select.replaceChildren(...keys.map((k) => h("option", { value: k }, k)));
    if (key !== null) this.select.value = key;
    if (this.slider) this.alignTo(this.slider);
    return true;
  }

  /** The drawn series: the picked one, and its validation counterpart. */
  _drawn() {
    const c = this.input?.curves;
    if (!c) return [];
    const main = c.series.find((s) => seriesKey(c.run, s) === this.select.value);
    if (!main) return [];
    const other = companionOf(c.run, c.series, this.select.value);
    return other ? [main, other] : [main];
  }

  /** @param {number} cssWidth */
  _draw(cssWidth) {
    const input = this.input;
    if (!input) return;
    const { steps } = input;
    const drawn = this._drawn();
    const dpr = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(HEIGHT * dpr);
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${HEIGHT}px`;
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssWidth, HEIGHT);
    const notes = [];
    if (steps.length < 2) {
      this.hiLabel.textContent = this.loLabel.textContent = "";
      this.key.replaceChildren();
      this.note.textContent = "One logged step: the curves need the slider's axis of two or more.";
      canvas.setAttribute("aria-label", this.note.textContent);
      this._markCursor();
      return;
    }
    // The shared y range over what is drawn.
    let lo = Infinity;
    let hi = -Infinity;
    let outside = 0;
    for (const s of drawn) {
      for (const [it, v] of s.points) {
        if (v === null || !Number.isFinite(v)) continue;
        if (axisFraction(steps, it) === null) {
          outside++;
          continue;
        }
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    const top = 6;
    const bottom = HEIGHT - 10;
    const pad = hi > lo ? (hi - lo) * 0.05 : Math.abs(hi) * 0.05 || 1;
    const y0 = lo - pad;
    const y1 = hi + pad;
    const yOf = (/** @type {number} */ v) => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
    // The kept steps, as ticks along the bottom.
    ctx.strokeStyle = "#9e9e9e";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let i = 0; i < steps.length; i++) {
      const x = Math.round((i / (steps.length - 1)) * (cssWidth - 1)) + 0.5;
      ctx.moveTo(x, HEIGHT - 6);
      ctx.lineTo(x, HEIGHT);
    }
    ctx.stroke();
    drawn.forEach((s, k) => {
      const color = COLORS[k % COLORS.length];
      /** @type {{x: number, y: number, exact: boolean}[]} */
      const pts = [];
      for (const [it, v, , exact] of s.points) {
        const f = axisFraction(steps, it);
        if (f === null || v === null || !Number.isFinite(v)) continue;
        pts.push({ x: f * (cssWidth - 1), y: yOf(v), exact });
      }
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
      ctx.stroke();
      // Few points are each marked: hollow where interpolated between epochs.
      if (pts.length <= 80 || s.axis === "epoch") {
        for (const p of pts) {
          ctx.beginPath();
          ctx.arc(p.x, p.y, p.exact ? 2.5 : 3, 0, 2 * Math.PI);
          if (p.exact) {
            ctx.fillStyle = color;
            ctx.fill();
          } else {
            ctx.fillStyle = "#fff";
            ctx.fill();
            ctx.lineWidth = 1.2;
            ctx.stroke();
          }
        }
      }
      if (s.note) notes.push(`${seriesKey(input.curves.run, s)}: ${s.note}`);
    });
    const any = lo <= hi;
    this.hiLabel.textContent = any ? fmt(hi) : "";
    this.loLabel.textContent = any ? fmt(lo) : "";
    if (outside)
      notes.push(
        `${outside} points outside the logged steps ${steps[0]}–${steps[steps.length - 1]} are not drawn.`,
      );
    if (!any) notes.push("No value of this series falls within the logged steps.");
    this.note.textContent = notes.join(" ");
    const hasInterp = drawn.some((s) => s.points.some((p) => !p[3]));
    this.key.replaceChildren(
      ...drawn.map((s, k) =>
        h(
          "span",
          { className: "curves-key-item" },
          h("span", {
            className: "curves-swatch",
            style: `background:${COLORS[k % COLORS.length]}`,
          }),
          seriesKey(input.curves.run, s),
        ),
      ),
      ...(hasInterp
        ? [h("span", { className: "curves-key-item" }, "○ between epochs, interpolated")]
        : []),
    );
    canvas.setAttribute(
      "aria-label",
      `${drawn.map((s) => seriesKey(input.curves.run, s)).join(" and ")} along the step slider${
        any ? `, from ${fmt(lo)} to ${fmt(hi)}` : ""
      }. Click to go to the nearest logged step.`,
    );
    this._markCursor();
    report({ curvesRendered: input.curves.run, curvesSeries: this.select.value });
  }

  /** @param {number | null} step */
  markStep(step) {
    if (this.input) this.input.step = step;
    this._markCursor();
  }

  _markCursor() {
    const input = this.input;
    const i = input && input.step !== null ? input.steps.indexOf(input.step) : -1;
    if (!input || i < 0 || input.steps.length < 2) {
      this.cursor.hidden = true;
      return;
    }
    const w = this.canvas.getBoundingClientRect().width;
    this.cursor.hidden = false;
    this.cursor.style.left = `${(i / (input.steps.length - 1)) * (w - 1)}px`;
  }

  /** @param {MouseEvent} ev */
  _stepAt(ev) {
    const steps = this.input?.steps || [];
    if (!steps.length) return null;
    const r = this.canvas.getBoundingClientRect();
    const f = Math.max(0, Math.min(1, (ev.clientX - r.left) / Math.max(1, r.width - 1)));
    return steps[Math.round(f * (steps.length - 1))];
  }

  /** @param {MouseEvent} ev */
  _hover(ev) {
    const input = this.input;
    if (!input || input.steps.length < 2) return;
    const r = this.canvas.getBoundingClientRect();
    const f = Math.max(0, Math.min(1, (ev.clientX - r.left) / Math.max(1, r.width - 1)));
    const parts = [];
    for (const s of this._drawn()) {
      let best = null;
      for (const p of s.points) {
        const g = axisFraction(input.steps, p[0]);
        if (g === null || p[1] === null) continue;
        if (best === null || Math.abs(g - f) < best.d) best = { d: Math.abs(g - f), p };
      }
      if (best)
        parts.push(
          `${seriesKey(input.curves.run, s)} ${fmt(best.p[1])} at iteration ${fmt(best.p[0])}${
            s.axis === "epoch"
              ? ` (epoch index ${best.p[2]}${best.p[3] ? "" : ", interpolated"})`
              : ""
          }`,
        );
    }
    const step = this._stepAt(ev);
    this.readout.textContent = `${parts.join(" · ")}${step !== null ? ` — click for step ${step}` : ""}`;
  }
}

/** @param {number | null} x */
function fmt(x) {
  if (x === null || !Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  const ax = Math.abs(x);
  if (ax >= 1e5 || ax < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}
