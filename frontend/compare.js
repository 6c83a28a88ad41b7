// @ts-check
// Runs side by side: a second run (`compare=` in the URL) drawn beside the
// first, the same layer at the same step, under the one slider. Where the
// other run lacks that step its nearest earlier kept step is drawn and
// labelled so; where it has none, or lacks the layer, the pane says so.
// Where the two layers have the same shape, diff=run draws this run minus
// the other in real units (diff.js's arithmetic, a step of another run as
// the reference). In the training map view, the other run's map is drawn
// under this run's, on the same colour scale.

import { channelTables, fmt, stepWindows } from "./color.js";
import { diffLayer } from "./diff.js";
import { h } from "./dom.js";
import { measure, report } from "./hooks.js";
import { messageOf } from "./model.js";
import { StripMap } from "./strip-map.js";
import { TileGrid } from "./tile-grid.js";
import { channelNoun } from "./tokens.js";
import { TrainingMap } from "./training-map.js";
import { fillSelect } from "./views.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./color.js").Norm} Norm */
/** @typedef {import("./diff.js").Diff} Diff */
/** @typedef {import("./model.js").Layer} Layer */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */
/** @typedef {import("./model.js").Model} Model */
/** @typedef {import("./model.js").Overview} Overview */

/**
 * The other run's side, loaded for one (run, other, tag, step, probe).
 * @typedef {Object} Side
 * @property {string} key what it was loaded for
 * @property {string} run this run
 * @property {string} other the compared run
 * @property {number} step this run's step
 * @property {number | null} otherStep the other run's step drawn (null: none)
 * @property {LayerInfo | null} info the other run's layer
 * @property {Layer | null} layer the other run's layer at otherStep
 * @property {ReturnType<Model["fixedRanges"]> | null} fixed the other run's ranges over all its steps, for the fixed scales
 * @property {string} why why nothing is drawn, in words ("" when drawn)
 */

/**
 * What the other grid is drawn with: this run's choices, so both sides read alike.
 * @typedef {Object} DrawInput
 * @property {LayerInfo} info this run's layer
 * @property {number[] | null} order this run's tile order (sorted, filtered)
 * @property {Lut} lut
 * @property {Norm} norm
 * @property {string} cmap
 * @property {number} size tile size
 * @property {number | null} selected the opened channel
 * @property {boolean} diffOn whether this run's grid shows the difference to the other
 */

/**
 * Why two runs' layers cannot be subtracted, in words; "" when they can.
 * @param {string} tag @param {string} runA @param {LayerInfo} a @param {string} runB @param {LayerInfo} b
 */
function shapeMismatch(tag, runA, a, runB, b) {
  if (a.layout !== b.layout) {
    return `${tag} is laid out as ${a.layout} in ${runA} and as ${b.layout} in ${runB}`;
  }
  if (a.channels !== b.channels) {
    const noun = channelNoun(a) === channelNoun(b) ? `${channelNoun(a)}s` : "channels";
    return `${tag} has ${a.channels} ${noun} in ${runA} and ${b.channels} in ${runB}`;
  }
  if (a.height !== b.height || a.width !== b.width) {
    return `${tag}'s maps are ${a.height}×${a.width} in ${runA} and ${b.height}×${b.width} in ${runB}`;
  }
  if (a.probes !== b.probes) {
    return `${runA} logged ${a.probes} probes and ${runB} ${b.probes}`;
  }
  return "";
}

/**
 * The other run's step to draw at `step`: that step, else its nearest earlier one.
 * @param {number[]} steps the other run's kept steps, increasing
 * @param {number} step
 * @returns {number | null} null when every kept step is later
 */
function stepAtOrBefore(steps, step) {
  let best = null;
  for (const s of steps) if (s <= step) best = s;
  return best;
}

/**
 * The other run's side at `step`, through the model's cache: its layer info,
 * the step drawn (that step or its nearest earlier kept one), that step's
 * layer and, for the fixed scales, its ranges over all steps. Never throws:
 * a failure, or a layer, probe or step the other run lacks, is its `why`.
 * With `next`, the other run's next kept step is asked for too, for when the
 * slider reaches it.
 * @param {Model} model
 * @param {{other: string, tag: string, step: number, probe: number, fixed: boolean, next: boolean}} at
 * @returns {Promise<Omit<Side, "key" | "run" | "other" | "step">>}
 */
async function fetchSide(model, at) {
  const { other, tag, step, probe, fixed } = at;
  const info = model.info(other, tag);
  /** @type {Omit<Side, "key" | "run" | "other" | "step">} */
  const side = { otherStep: null, info, layer: null, fixed: null, why: "" };
  if (!info) {
    const names = model.layersOf(other).map((i) => i.layer);
    side.why = `${other} has no layer ${tag}${names.length ? ` (its layers: ${names.join(", ")})` : ""}.`;
    return side;
  }
  if (probe >= info.probes) {
    side.why = `${other} logged ${info.probes} probe${info.probes === 1 ? "" : "s"}: probe ${probe} is not among them.`;
    return side;
  }
  try {
    const stats = fixed ? model.fetchStats(other, tag) : null;
    const list = await model.fetchSteps(other, tag);
    const kept = list.steps.map((s) => s.step);
    const drawn = stepAtOrBefore(kept, step);
    if (drawn === null) {
      side.why = kept.length
        ? `${other} has no step of ${tag} at or before step ${step}: its first kept step is ${kept[0]}.`
        : `${other} has no kept step of ${tag} yet.`;
      return side;
    }
    side.otherStep = drawn;
    const wall = list.steps.find((s) => s.step === drawn)?.wall_time;
    side.layer = await model.fetchLayer(other, tag, drawn, probe, wall);
    const next = list.steps[kept.indexOf(drawn) + 1];
    if (at.next && next) {
      model.fetchLayer(other, tag, next.step, probe, next.wall_time).catch(() => {
        // Said in words if the slider gets there.
      });
    }
    if (stats) side.fixed = model.fixedRanges(await stats, probe);
  } catch (e) {
    side.why = `${messageOf(e)}.`;
  }
  return side;
}

/**
 * How many runs of the menu are warmed when the user reaches for it: each
 * costs one layer at one step (4 MB for 64 channels of 224×224).
 */
const WARM_RUNS = 3;

export class Compare {
  /**
   * @param {{onPick: (run: string | null) => void, onOpen: (channel: number) => void,
   *   onMapOpen: (layer: string, step: number) => void, onReach: () => void}} callbacks
   *   onReach: the user is about to choose (pointer down on the menu, or focus)
   */
  constructor(callbacks) {
    this.select = h("select", {
      id: "compare-run",
      title: "Draw another run's same layer at the same step beside this one",
    });
    this.select.addEventListener("change", () => callbacks.onPick(this.select.value || null));
    // A menu takes a few hundred ms to open and choose from: long enough to
    // fetch and decode most of what the choice draws.
    this.select.addEventListener("pointerdown", () => callbacks.onReach());
    this.select.addEventListener("focus", () => callbacks.onReach());
    /** What warm() last started, so reaching again asks for nothing. */
    this.warmed = "";
    this.field = h("label", { className: "field" }, h("span", {}, "Compare with"), this.select);
    this.thisLabel = h("div", { className: "compare-label", id: "compare-this" });
    this.otherLabel = h("div", { className: "compare-label", id: "compare-other" });
    this.message = h("div", { className: "compare-message note", id: "compare-message" });
    this.legend = h("div", { className: "compare-legend muted" });
    this.grid = new TileGrid(callbacks.onOpen);
    this.strips = new StripMap(callbacks.onOpen);
    this.view = h("div", { id: "compare-view" });
    // As tall as the other side's note, so the two grids' rows line up.
    this.mineNote = h(
      "div",
      { className: "compare-legend muted", id: "compare-this-note" },
      "The colormap and scale chosen above, from this run's own values.",
    );
    /** @param {string} id @param {HTMLElement[]} children */
    const side = (id, ...children) => h("div", { className: "compare-side", id }, ...children);
    this.mine = side("compare-this-side", this.thisLabel, this.mineNote);
    this.theirs = side("compare-side", this.otherLabel, this.message, this.legend, this.view);
    this.row = h("div", { className: "compare-row" }, this.mine, this.theirs);
    this.map = new TrainingMap({
      onOpen: callbacks.onMapOpen,
      onMeasure: () => {
        // One measure for both maps: the first map's select sets it.
      },
      onLayerView: () => {
        // The first map offers the layer view.
      },
    });
    this.map.el.id = "compare-map";
    this.map.select.id = "compare-map-measure";
    this.map.select.disabled = true;
    this.mapThis = h("div", { className: "compare-label", id: "compare-map-this" });
    this.mapOtherLabel = h("div", { className: "compare-label", id: "compare-map-other" });
    this.mapMessage = h("div", { className: "compare-message note", hidden: true });
    this.mapOther = h(
      "div",
      { id: "compare-map-box" },
      this.mapOtherLabel,
      this.mapMessage,
      this.map.el,
    );
    /** @type {Side | null} */
    this.side = null;
    /** @type {Promise<Side> | null} */
    this.loading = null;
  }

  /**
   * Puts this run's view in the left column, once: the other run goes in the right one.
   * @param {HTMLElement} view
   */
  attach(view) {
    view.replaceWith(this.row);
    this.mine.append(view);
  }

  /**
   * Places the map labels and the other run's map around the first map.
   * @param {HTMLElement} map
   */
  attachMap(map) {
    map.before(this.mapThis);
    map.after(this.mapOther);
  }

  /**
   * The runs one can compare with (every run but this one) and the choice.
   * @param {string[]} runs @param {string | null} run @param {string | null} other
   */
  fillRuns(runs, run, other) {
    const values = ["", ...runs.filter((r) => r !== run)];
    const current = other !== null && values.includes(other) ? other : "";
    fillSelect(this.select, values, current, (v) => (v === "" ? "none" : v));
    this.select.disabled = values.length < 2;
  }

  /** Whether a second run is shown: toggles the two-column layout. @param {boolean} on */
  setOn(on) {
    this.row.classList.toggle("on", on);
    document.body.classList.toggle("comparing", on);
    if (!on) {
      this.side = null;
      report({ compareRendered: "", compareStep: "", compareDiff: "" });
    }
  }

  /**
   * Loads the other run's side at `step`; never throws, a failure is its `why`.
   * @param {Model} model
   * @param {{run: string, other: string, tag: string, step: number, probe: number, fixed: boolean}} at
   * @returns {Promise<Side>}
   */
  load(model, at) {
    const { run, other, tag, step, probe, fixed } = at;
    const key = JSON.stringify([run, other, tag, step, probe, fixed, model.version(other, tag)]);
    if (this.side?.key === key) return Promise.resolve(this.side);
    const p = fetchSide(model, { other, tag, step, probe, fixed, next: true }).then((got) => {
      /** @type {Side} */
      const s = { key, run, other, step, ...got };
      if (this.loading === p) this.side = s;
      return s;
    });
    this.loading = p;
    return p;
  }

  /**
   * Loads into the model's cache what choosing a run of the menu would draw
   * (the first WARM_RUNS runs other than the one shown): what load() loads,
   * or in the map view its layer measures. The choice then finds them cached
   * or in flight. Once they are cached, data-compare-warmed lists those runs
   * (a JSON array). Never throws.
   * @param {Model} model
   * @param {{run: string, tag: string | null, step: number | null, probe: number,
   *   fixed: boolean, map: boolean}} at
   */
  warm(model, at) {
    const { run, tag, step, probe, fixed, map } = at;
    const runs = Array.from(this.select.options, (o) => o.value)
      .filter((v) => v !== "" && v !== run && v !== this.select.value)
      .slice(0, WARM_RUNS);
    const what = JSON.stringify([run, tag, step, probe, fixed, map, runs]);
    if (!runs.length || what === this.warmed) return;
    this.warmed = what;
    /** @returns {Promise<boolean>} whether what the choice draws is now cached */
    const one = async (/** @type {string} */ other) => {
      if (map) {
        await model.fetchOverview(other);
        return true;
      }
      if (tag === null || step === null) return false;
      const side = await fetchSide(model, { other, tag, step, probe, fixed, next: false });
      return side.layer !== null;
    };
    Promise.allSettled(runs.map(one)).then((done) => {
      if (this.warmed !== what) return;
      const ok = runs.filter((_, i) => {
        const d = done[i];
        return d.status === "fulfilled" && d.value;
      });
      report({ compareWarmed: JSON.stringify(ok) });
    });
  }

  /**
   * Draws the other run's side as last loaded, in this run's order and colours.
   * @param {DrawInput} d
   */
  draw(d) {
    const side = this.side;
    if (!side) return;
    const start = performance.now();
    const mineText = `${side.run} · step ${side.step}`;
    this.thisLabel.textContent = d.diffOn ? `${mineText} minus ${side.other}` : mineText;
    const layer = side.layer;
    report({ compareRendered: side.other });
    if (!layer || side.otherStep === null) {
      this.otherLabel.textContent = side.other;
      this.message.textContent = side.why;
      this.message.hidden = false;
      this.legend.textContent = "";
      this.view.replaceChildren();
      report({ compareStep: "none" });
      return;
    }
    const nearest = side.otherStep !== side.step;
    this.otherLabel.textContent = `${side.other} · step ${side.otherStep}${nearest ? " (nearest earlier)" : ""}`;
    this.message.hidden = true;
    const ix = layer.fields;
    const windows = stepWindows(layer.stats, ix, side.fixed, d.norm, d.cmap);
    const tables = channelTables(d.lut, layer.stats, ix, windows, d.norm);
    const layout = side.info?.layout || d.info.layout;
    const n = layer.channels.length;
    // An attention series' tiles are heads, on both sides.
    const noun = channelNoun(side.info ?? d.info);
    // This run's order, so each channel sits beside itself; by index when the counts differ.
    const same = n === d.info.channels;
    const order = same ? d.order : null;
    this.legend.textContent = [
      same ? "" : `${n} ${noun}s here, ${d.info.channels} in ${side.run}: in ${noun} order.`,
      "Same colormap and scale as the left, from this run's own values.",
    ]
      .filter(Boolean)
      .join(" ");
    if (layout === "image") {
      if (this.view.firstChild !== this.grid.el) this.view.replaceChildren(this.grid.el);
      this.grid.name(noun === "channel" ? "" : noun);
      this.grid.show(layer, tables, d.size, d.selected, order);
    } else {
      if (this.view.firstChild !== this.strips.el) this.view.replaceChildren(this.strips.el);
      this.strips.show(layer, tables, layout, d.size);
    }
    report({ compareStep: String(side.otherStep) });
    measure("compareDraw", start);
  }

  /**
   * This run's layer minus the other run's, or why there is none.
   * @param {LayerInfo} info this run's layer
   * @param {Layer} layer this run's layer at `step`
   * @param {number} step
   * @param {Lut} lut a diverging colormap
   * @returns {{diff: Diff | null, note: string}}
   */
  runDiff(info, layer, step, lut) {
    const side = this.side;
    if (!side) return { diff: null, note: "No difference drawn: choose a run to compare with." };
    const none = "No difference drawn";
    if (!side.info || !side.layer || side.otherStep === null) {
      return { diff: null, note: `${none}: ${side.why} Showing the activations.` };
    }
    const why = shapeMismatch(info.layer, side.run, info, side.other, side.info);
    if (why) return { diff: null, note: `${none}: ${why}. Showing the activations.` };
    const d = diffLayer(layer, step, side.layer, side.otherStep, lut);
    if (typeof d === "string") return { diff: null, note: `${none}: ${d}` };
    const what = `${side.run} step ${step} − ${side.other} step ${side.otherStep}`;
    const caption =
      d.m > 0
        ? `Difference in real units: ${what}; window ±${fmt(d.m)}, the largest |difference| in the layer`
        : `No difference: every value is the same in ${side.run} step ${step} and ${side.other} step ${side.otherStep}`;
    return { diff: { ...d, caption, what }, note: "" };
  }

  /**
   * The other run's layer measures for its training map; null, and the
   * reason on screen, when they do not load.
   * @param {Model} model @param {string} other
   * @returns {Promise<Overview | null>}
   */
  async loadMap(model, other) {
    try {
      const o = await model.fetchOverview(other);
      this.mapMessage.hidden = true;
      return o;
    } catch (e) {
      this.mapMessage.textContent = messageOf(e);
      this.mapMessage.hidden = false;
      return null;
    }
  }

  /**
   * @param {Overview | null} overview the other run's, from loadMap
   * @param {{run: string, other: string, measure: import("./map-measures.js").MapMeasure,
   *   step: number | null, luts: Map<string, Lut>, scaleValues?: (number | null)[],
   *   noun?: (layer: string) => string}} at
   *   scaleValues: both runs' values, so the two maps share one scale; noun:
   *   what a layer's channels are called
   */
  drawMap(overview, at) {
    this.mapThis.textContent = at.run;
    this.mapOtherLabel.textContent = at.other;
    if (overview) {
      this.map.el.hidden = false;
      this.map.show({
        overview,
        measure: at.measure,
        step: at.step,
        epochs: new Map(),
        luts: at.luts,
        scaleValues: at.scaleValues,
        noun: at.noun,
      });
    } else {
      this.map.el.hidden = true;
    }
    report({ compareMap: at.other });
  }
}
