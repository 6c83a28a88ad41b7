// @ts-check
// The channel timeline of the open layer: one row per channel (in the
// grid's order), one column per kept step, coloured by a channel measure;
// deaths and revivals marked on their cells. The whole heatmap is one
// ImageData of steps x rows pixels, scaled up by CSS without smoothing.

import { TAU, TIMELINE_MEASURES, becameDormantAt, cell } from "./channel-order.js";
import { buildTable, fmt } from "./color.js";
import { choiceSelect, h, pixelAt, surface } from "./dom.js";
import { colorbar } from "./views.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./model.js").Timeline} Timeline */

/**
 * What `show` draws.
 * @typedef {Object} TimelineShown
 * @property {Timeline} timeline
 * @property {number[]} order the rows, top to bottom: channels in the grid's order
 * @property {string} measure
 * @property {number | null} step the shown step, outlined
 * @property {Lut} lut
 * @property {string} orderText how the rows are ordered, in words
 * @property {string} [noun] what a row is ("head" for an attention series); "channel" when absent
 */

/** More marks than this would hide the heatmap; the rest are counted. */
const MAX_MARKS = 3000;
/** @param {string} noun */
const hint = (noun) => `Hover a cell to read it; click it to open that ${noun} at that step.`;
const HINT = hint("channel");

const DEAD_RGB = [66, 66, 66];
const ALIVE_RGB = [238, 238, 238];

/** A measure in words, lower case. @param {string} measure */
const wordsOf = (measure) => TIMELINE_MEASURES.find((m) => m.id === measure)?.label || measure;

/** The same, starting a sentence. @param {string} measure */
const labelOf = (measure) => {
  const words = wordsOf(measure);
  return words.charAt(0).toUpperCase() + words.slice(1);
};

/**
 * Display heights: tall enough to see a row, never taller than a screen.
 * @param {number} rows
 */
function cssHeight(rows) {
  return rows <= 36 ? rows * 10 : Math.min(Math.max(360, rows), 640);
}

export class ChannelTimeline {
  /**
   * @param {{onOpen: (channel: number, step: number) => void, onMeasure: (m: string) => void, onToggle: (open: boolean) => void}} handlers
   */
  constructor({ onOpen, onMeasure, onToggle }) {
    this.onOpen = onOpen;
    this.toggle = h("button", {
      type: "button",
      className: "tl-toggle",
      "aria-expanded": "true",
      title: "Show or hide the channel timeline",
    });
    this.measure = choiceSelect(
      { id: "timeline-measure", title: "What the timeline's colours show" },
      TIMELINE_MEASURES.map((m) => ({ id: m.id, label: labelOf(m.id) })),
    );
    this.measure.addEventListener("change", () => onMeasure(this.measure.value));
    this.toggle.addEventListener("click", () => {
      const open = this.body.hidden;
      this.setOpen(open);
      onToggle(open);
    });
    this.canvas = h("canvas", { className: "tl-canvas", id: "timeline-canvas" });
    this.marks = h("div", { className: "tl-marks" });
    this.current = h("div", { className: "tl-current", hidden: true });
    this.plot = h("div", { className: "tl-plot" }, this.canvas, this.current, this.marks);
    this.labels = h("div", { className: "tl-labels muted" });
    this.axis = h("div", { className: "tl-axis muted" });
    this.rowsNote = h("div", { className: "tl-rows muted" });
    this.readout = h("div", { className: "readout tl-readout", id: "timeline-readout" }, HINT);
    this.key = h("div", { className: "tl-key" });
    this.note = h("div", { className: "muted tl-note" });
    this.body = h(
      "div",
      { className: "tl-body" },
      this.rowsNote,
      h("div", { className: "tl-frame" }, this.labels, this.plot),
      this.axis,
      this.readout,
      this.key,
      this.note,
    );
    this.title = h("span", { className: "tl-title" }, "Channel timeline");
    this.el = h(
      "section",
      { className: "timeline", id: "timeline", "aria-label": "Channel timeline" },
      h(
        "div",
        { className: "tl-head" },
        this.toggle,
        this.title,
        h("label", { className: "inline" }, "Colour by", this.measure),
      ),
      this.body,
    );
    /** @type {TimelineShown | null} */
    this.shown = null;
    this.setOpen(true);
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = hint(this.shown?.noun ?? "channel");
    });
    this.canvas.addEventListener("click", (ev) => {
      const at = this._cellAt(ev);
      if (at) this.onOpen(at.channel, at.step);
    });
  }

  /** @param {boolean} open */
  setOpen(open) {
    this.body.hidden = !open;
    this.toggle.textContent = open ? "▾" : "▸";
    this.toggle.setAttribute("aria-expanded", String(open));
  }

  /** @param {MouseEvent} ev */
  _cellAt(ev) {
    const s = this.shown;
    if (!s) return null;
    const p = pixelAt(this.canvas, ev, s.timeline.steps.length, s.order.length);
    if (!p) return null;
    const channel = s.order[p.y];
    return { channel, step: s.timeline.steps[p.x], value: cell(s.timeline, s.measure, channel, p.x) };
  }

  /** @param {MouseEvent} ev */
  _hover(ev) {
    const at = this._cellAt(ev);
    const s = this.shown;
    if (!at || !s) return;
    const v = at.value;
    let text;
    if (Number.isNaN(v)) text = s.timeline.unavailable[s.measure] ? "unavailable" : "undefined";
    else if (s.measure === "dead") text = v === 1 ? "dead" : "alive";
    else if (s.measure === "zero_fraction") text = `${Number((v * 100).toFixed(1))}% zeros`;
    else if (s.measure === "on_rate") text = `${Number((v * 100).toFixed(1))}% of its values > 0`;
    else if (s.measure === "dormant_score") {
      const j = s.timeline.steps.indexOf(at.step);
      const became = becameDormantAt(s.timeline, at.channel, j);
      text = `${fmt(v)} (${v <= TAU ? `dormant: at most τ = ${TAU}` : "not dormant"}${
        became !== null ? `; became dormant at step ${became}` : ""
      })`;
    } else text = fmt(v);
    const events = s.timeline.events
      .filter((e) => e.channel === at.channel && e.step === at.step)
      .map((e) => ` (${e.kind} here)`)
      .join("");
    this.readout.textContent = `${s.noun ?? "channel"} ${at.channel}, step ${at.step}: ${wordsOf(s.measure)} ${text}${events}`;
  }

  /**
   * The colour of every value: a fixed window for bounded measures, the
   * drawn rows' range for the others.
   * @param {TimelineShown} s
   * @returns {{table: (v: number) => number, bar: HTMLElement}}
   */
  _scale(s) {
    const { timeline: tl, order, measure, lut } = s;
    const nan = buildTable(lut, null, null)[0];
    if (measure === "dead") {
      const dead = buildTable([DEAD_RGB], [0, 0], [0, 1])[0];
      const alive = buildTable([ALIVE_RGB], [0, 0], [0, 1])[0];
      const bar = h(
        "div",
        { className: "tl-binary muted" },
        h("span", { className: "swatch", style: `background: rgb(${DEAD_RGB})` }),
        " dead",
        h("span", { className: "swatch", style: `background: rgb(${ALIVE_RGB})` }),
        " alive",
      );
      return { table: (v) => (v === 1 ? dead : v === 0 ? alive : nan), bar };
    }
    let lo = Infinity;
    let hi = -Infinity;
    if (measure === "zero_fraction" || measure === "on_rate") {
      lo = 0;
      hi = 1;
    } else if (measure === "dormant_score") {
      // 1 is an average channel: the middle of the scale.
      lo = 0;
      hi = 2;
    } else {
      const row = tl.rows[measure];
      const S = tl.steps.length;
      for (const c of order) {
        for (let j = 0; j < S; j++) {
          const v = row ? row[c * S + j] : NaN;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
      }
      // Changes start at 0 (no change), whatever the smallest one drawn.
      if (measure.startsWith("change") && lo <= hi) lo = 0;
    }
    const win = /** @type {[number, number] | null} */ (lo <= hi ? [lo, hi] : null);
    const table = buildTable(lut, [0, 255], [0, 255]);
    const span = win && win[1] > win[0] ? win[1] - win[0] : 1;
    const base = win ? win[0] : 0;
    const caption =
      measure === "zero_fraction"
        ? "fraction of zeros, over all probes"
        : measure === "on_rate"
          ? "share of the channel's values above 0, over the probe set"
          : measure === "dormant_score"
            ? `mean |a| ÷ the layer's average; 1 = an average channel, ≤ ${TAU} dormant; 2 and above drawn alike`
        : measure.startsWith("change")
          ? "‖a_s − a_ref‖ / max(‖a_s‖, ‖a_ref‖), over all probes; 0 = unchanged, 2 = sign flip"
          : `${measure} over all probes, real units`;
    return {
      table: (v) => {
        if (!(v === v)) return nan;
        const t = (v - base) / span;
        return table[Math.round((t < 0 ? 0 : t > 1 ? 1 : t) * 255)];
      },
      bar: colorbar(lut, win, `${labelOf(measure)}: ${caption}`),
    };
  }

  /** @param {TimelineShown} s */
  show(s) {
    this.shown = s;
    this.measure.value = s.measure;
    const { timeline: tl, order, measure } = s;
    const noun = s.noun ?? "channel";
    const Noun = `${noun[0].toUpperCase()}${noun.slice(1)}`;
    this.el.setAttribute("aria-label", `${Noun} timeline`);
    if (!this.plot.matches(":hover")) this.readout.textContent = hint(noun);
    for (const o of Array.from(this.measure.options)) {
      const why = tl.unavailable[o.value];
      o.disabled = Boolean(why) && o.value !== measure;
      o.title = why ? `Unavailable: ${why}` : "";
    }
    const S = tl.steps.length;
    const R = order.length;
    this.title.textContent = `${Noun} timeline · ${R} ${noun}${R === 1 ? "" : "s"} × ${S} step${S === 1 ? "" : "s"}`;
    if (!S || !R) {
      this.plot.hidden = true;
      this.key.replaceChildren();
      this.axis.replaceChildren();
      this.rowsNote.textContent = "";
      this.note.textContent = !S ? "No kept step has channel measures yet." : `No ${noun} to draw: the filter matches none.`;
      this.marks.replaceChildren();
      return;
    }
    this.plot.hidden = false;
    const { table, bar } = this._scale(s);
    const { ctx, image } = surface(this.canvas, S, R);
    const out = new Uint32Array(image.data.buffer);
    const row = tl.rows[measure];
    for (let i = 0; i < R; i++) {
      const c = order[i];
      let o = i * S;
      const base = c * S;
      for (let j = 0; j < S; j++) out[o++] = table(row ? row[base + j] : NaN);
    }
    ctx.putImageData(image, 0, 0);
    this.plot.style.height = `${cssHeight(R)}px`;
    this._marks(s);
    this.markStep(s.step);
    const showing =
      R < tl.channels ? `${R} of ${tl.channels} ${noun}s` : R === 1 ? `the one ${noun}` : `all ${R} ${noun}s`;
    this.rowsNote.textContent = `Rows: ${showing}, ${s.orderText}, top to bottom. Columns: the ${S} kept steps.`;
    // Channel (head) numbers beside rows tall enough to read them; steps under the columns.
    const labelled = cssHeight(R) / R >= 9;
    this.labels.replaceChildren(
      ...(labelled ? order.map((c) => h("span", { style: `height:${100 / R}%` }, String(c))) : []),
    );
    this.labels.style.height = `${cssHeight(R) - 2}px`;
    this.body.classList.toggle("tl-labelled", labelled);
    const every = Math.max(1, Math.ceil(S / 12));
    const ticks = [];
    for (let j = 0; j < S; j += every) {
      ticks.push(h("span", { style: `left:${((j + 0.5) / S) * 100}%` }, String(tl.steps[j])));
    }
    this.axis.replaceChildren(h("span", { className: "tl-axis-name" }, "step"), ...ticks);
    this.key.replaceChildren(
      bar,
      h(
        "div",
        { className: "tl-legend muted" },
        h("span", { className: "tl-mark died" }),
        " died here ",
        h("span", { className: "tl-mark revived" }),
        " revived here ",
        h("span", { className: "swatch nan" }),
        " undefined (first step, or unavailable) ",
        h("span", { className: "swatch current" }),
        " shown step",
      ),
    );
    const why = tl.unavailable[measure];
    this.note.textContent = why ? `${labelOf(measure)} is unavailable: ${why}` : "";
  }

  /** One mark per death or revival, at its cell's centre. @param {TimelineShown} s */
  _marks(s) {
    const { timeline: tl, order } = s;
    const S = tl.steps.length;
    const R = order.length;
    const noun = s.noun ?? "channel";
    const rowOf = new Map(order.map((c, i) => [c, i]));
    const colOf = new Map(tl.steps.map((step, j) => [step, j]));
    const frag = document.createDocumentFragment();
    let drawn = 0;
    let over = 0;
    for (const e of tl.events) {
      const i = rowOf.get(e.channel);
      const j = colOf.get(e.step);
      if (i === undefined || j === undefined) continue;
      if (drawn >= MAX_MARKS) {
        over++;
        continue;
      }
      drawn++;
      frag.append(
        h("span", {
          className: `tl-mark ${e.kind}`,
          title: `${noun} ${e.channel} ${e.kind} at step ${e.step}`,
          dataset: { channel: String(e.channel), step: String(e.step), kind: e.kind },
          style: `left:${((j + 0.5) / S) * 100}%;top:${((i + 0.5) / R) * 100}%`,
        }),
      );
    }
    this.marks.replaceChildren(frag);
    if (over) this.marks.append(h("span", { className: "tl-over muted" }, `${over} more events not marked`));
  }

  /** Outlines the shown step's column. @param {number | null} step */
  markStep(step) {
    const s = this.shown;
    if (!s) return;
    s.step = step;
    const S = s.timeline.steps.length;
    const j = step === null ? -1 : s.timeline.steps.indexOf(step);
    this.current.hidden = j < 0 || S === 0;
    if (j >= 0) {
      this.current.style.left = `${(j / S) * 100}%`;
      this.current.style.width = `${100 / S}%`;
    }
  }

  /** @param {string} text @param {string} [noun] what a row is */
  message(text, noun = "channel") {
    this.shown = null;
    this.title.textContent = `${noun[0].toUpperCase()}${noun.slice(1)} timeline`;
    this.plot.hidden = true;
    this.key.replaceChildren();
    this.axis.replaceChildren();
    this.rowsNote.textContent = "";
    this.note.textContent = text;
  }
}
