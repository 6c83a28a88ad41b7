// @ts-check
// The bar over the grid: sort, filter and diff choices, the counts in words
// and what could not be done. It only reports choices; app.js applies them.

import {
  DEFAULT_TOP,
  DEFINITIONS,
  FILTERS,
  SORTS,
  countsSentence,
  dormantSentence,
  parseFilter,
} from "./channel-order.js";
import { NAMED_DIFFS } from "./diff.js";
import { choiceSelect, h } from "./dom.js";

/** @typedef {import("./channel-order.js").Order} Order */

/**
 * @typedef {Object} BarChoice
 * @property {import("./channel-order.js").SortKey} [sort]
 * @property {string} [show]
 * @property {string} [diff]
 */

const DIFFS = [
  { id: "off", label: "off" },
  { id: "prev", label: "previous step" },
  { id: "start", label: "first step" },
  { id: "step", label: "step…" },
  { id: "run", label: "compared run" },
];

export class GridBar {
  /** @param {(choice: BarChoice) => void} onChange */
  constructor(onChange) {
    this.sort = choiceSelect({ id: "grid-sort", title: "Order of the tiles (descending)" }, SORTS);
    this.filter = choiceSelect({ id: "grid-filter", title: DEFINITIONS }, FILTERS);
    this.k = h("input", {
      id: "grid-top",
      type: "number",
      min: 1,
      step: 1,
      value: DEFAULT_TOP,
      title: "How many channels: those that changed most at this step",
      "aria-label": "k",
    });
    this.diff = choiceSelect(
      {
        id: "grid-diff",
        title: "Show each tile as its activation minus the same channel's at a reference step",
      },
      DIFFS,
    );
    this.diffStep = h("input", {
      id: "grid-diff-step",
      type: "number",
      min: 0,
      step: 1,
      title: "The reference step (a kept step)",
      "aria-label": "Reference step",
    });
    /** What the tiles are called, as the choices name them. */
    this.noun = "channel";
    this.counts = h("div", { className: "grid-counts", id: "grid-counts", title: DEFINITIONS });
    this.note = h("div", { className: "grid-note note", id: "grid-note", hidden: true });
    this.controls = h(
      "div",
      { className: "grid-controls" },
      h("label", { className: "inline" }, "Sort by", this.sort),
      h("label", { className: "inline" }, "Show", this.filter, this.k),
      h("label", { className: "inline" }, "Difference to", this.diff, this.diffStep),
    );
    this.el = h("div", { className: "grid-bar", id: "grid-bar" }, this.controls, this.counts, this.note);
    const topValue = () => `top${Math.max(1, Math.floor(Number(this.k.value)) || DEFAULT_TOP)}`;
    this.sort.addEventListener("change", () =>
      onChange({ sort: /** @type {import("./channel-order.js").SortKey} */ (this.sort.value) }),
    );
    this.filter.addEventListener("change", () =>
      onChange({ show: this.filter.value === "top" ? topValue() : this.filter.value }),
    );
    this.k.addEventListener("change", () => onChange({ show: topValue() }));
    this.diff.addEventListener("change", () => {
      const v = this.diff.value;
      if (v !== "step") onChange({ diff: v });
      else if (this.diffStep.value !== "") onChange({ diff: String(Number(this.diffStep.value)) });
      else this.diffStep.focus();
    });
    this.diffStep.addEventListener("change", () => {
      const n = Number(this.diffStep.value);
      if (this.diffStep.value !== "" && Number.isInteger(n) && n >= 0) onChange({ diff: String(n) });
    });
  }

  /**
   * @param {{sort: string, show: string, diff: string, step: number | null, grid: boolean, noun?: string}} choice
   *   what is chosen; `grid`: whether the layer has a grid to sort; `noun`:
   *   what a tile is ("head" for an attention series), "channel" when absent
   * @param {Order | null} order
   * @param {string} diffNote why no difference is drawn ("" when it is, or is off)
   */
  update(choice, order, diffNote) {
    const noun = choice.noun ?? "channel";
    this._name(noun);
    this.sort.value = choice.sort;
    const f = parseFilter(choice.show);
    this.filter.value = f ? f.kind : "all";
    this.k.hidden = f?.kind !== "top";
    if (f?.kind === "top" && document.activeElement !== this.k) this.k.value = String(f.k);
    const numeric = !NAMED_DIFFS.includes(choice.diff);
    this.diff.value = numeric ? "step" : choice.diff;
    this.diffStep.hidden = !numeric && this.diff.value !== "step";
    if (numeric && document.activeElement !== this.diffStep) this.diffStep.value = choice.diff;
    for (const [select, items] of /** @type {const} */ ([
      [this.sort, SORTS],
      [this.filter, FILTERS],
    ])) {
      for (const item of items) {
        const o = /** @type {HTMLOptionElement} */ (select.querySelector(`option[value="${item.id}"]`));
        const why = order?.disabled.get(item.id);
        o.disabled = Boolean(why) && select.value !== item.id;
        o.title = why ? `Unavailable: ${why}` : "";
      }
    }
    this.sort.disabled = !choice.grid;
    this.filter.disabled = !choice.grid;
    this.k.disabled = !choice.grid;
    const shown = order ? order.order.length : 0;
    const k = order?.counts;
    const parts = [];
    if (k && choice.step !== null) parts.push(countsSentence(k, choice.step, noun));
    if (choice.grid && order && k && shown < k.total) parts.push(`showing ${shown}`);
    const dormant = order?.dormant && choice.step !== null ? ` ${dormantSentence(order.dormant, choice.step, noun)}.` : "";
    this.counts.textContent = parts.length ? `${parts.join("; ")}.${dormant}` : dormant.trim();
    const notes = [];
    if (!choice.grid && (choice.sort !== "index" || choice.show !== "all")) {
      notes.push("Sorting and filtering apply to image layers' tile grids.");
    } else if (order?.note) notes.push(`${order.note[0].toUpperCase()}${order.note.slice(1)}.`);
    if (diffNote) notes.push(diffNote);
    this.note.textContent = notes.join(" ");
    this.note.hidden = !notes.length;
  }

  /** Words that name the tiles: "head index", "all heads". @param {string} noun */
  _name(noun) {
    if (this.noun === noun) return;
    this.noun = noun;
    /** @param {HTMLSelectElement} select @param {string} id @param {string} text */
    const label = (select, id, text) => {
      const o = select.querySelector(`option[value="${id}"]`);
      if (o) o.textContent = text;
    };
    label(this.sort, "index", `${noun} index`);
    label(this.filter, "all", `all ${noun}s`);
    this.k.title = `How many ${noun}s: those that changed most at this step`;
    this.diff.title = `Show each tile as its activation minus the same ${noun}'s at a reference step`;
  }
}
