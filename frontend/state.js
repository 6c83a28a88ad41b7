// @ts-check
// The panel's state, declared whole: what the user chose (and the URL
// carries), and what is on screen. Every field exists from the start; a new
// choice is a field here, and a new URL key is one entry in URL_KEYS.

import { isSort, isTimelineMeasure, parseFilter } from "./channel-order.js";
import { isNorm } from "./color.js";
import { NAMED_DIFFS } from "./diff.js";
import { DEFAULT_MEASURE, isMapMeasure } from "./map-measures.js";
import { isResize, parseOpacity } from "./overlay.js";

/** @typedef {import("./color.js").Norm} Norm */
/** @typedef {import("./color.js").Range} Range */
/** @typedef {import("./model.js").Layer} Layer */
/** @typedef {import("./model.js").LayerStats} LayerStats */
/** @typedef {import("./model.js").StepList} StepList */

/**
 * What the user looks at.
 * @typedef {Object} ViewState
 * @property {string | null} run
 * @property {string | null} tag the layer (URL key `layer`)
 * @property {number | null} step
 * @property {number} probe
 * @property {number | null} channel the opened channel, or null when none is
 * @property {string} cmap a colormap name the server offers
 * @property {Norm} norm
 * @property {number | null} size the tile size the user picked; null: chosen by channel count
 * @property {string} filter the layer list's filter text
 * @property {boolean} playing
 * @property {1 | -1} direction of the last step move, for prefetching the next one
 * @property {import("./channel-order.js").SortKey} sort the grid's order
 * @property {string} show the grid's filter: "all", "dead", "died", "never", "dormant", "became" or "top<k>" (URL key `filter`)
 * @property {string} diff "off", "prev", "start" or a step: tiles show a_s - a_ref
 * @property {string} tmeasure the channel timeline's measure
 * @property {boolean} timelineOpen
 * @property {number} overlay the opacity of the channels over their probe; 0: no overlay
 * @property {import("./overlay.js").Resize} overlayResize how a map is resized to its probe's size
 * @property {"map" | "layer" | null} view the training map or one layer; null until the run's steps say which comes first
 * @property {import("./map-measures.js").MapMeasure} measure the training map's measure
 * @property {string | null} curve the loss strip's series ("train/batch_loss"); null: the default one
 * @property {string | null} compare the run drawn beside this one (compare.js); null: none
 * @property {StepList | null} steps the kept steps of (run, tag) once loaded, with their version
 */

/**
 * What the grid shows now: a resize or the opened channel reuse it.
 * @typedef {Object} Shown
 * @property {Layer | null} layer the drawn step
 * @property {LayerStats | null} stats every step's statistics, for the fixed scales
 * @property {(Range | null)[]} windows each channel's colour window
 * @property {Uint32Array[]} tables each channel's level -> RGBA table
 * @property {import("./model.js").Timeline | null} timeline the layer's channel measures
 * @property {string | null} timelineError why they did not load
 * @property {{step: number, layer: import("./model.js").Layer} | null} ref the diff's reference step, when drawn
 * @property {string} refNote why no reference is drawn, in words
 */

/** @returns {ViewState} */
export function initialState() {
  return {
    run: null,
    tag: null,
    step: null,
    probe: 0,
    channel: null,
    cmap: "viridis",
    norm: "channel",
    size: null,
    filter: "",
    playing: false,
    direction: 1,
    sort: "index",
    show: "all",
    diff: "off",
    tmeasure: "change_prev",
    timelineOpen: true,
    overlay: 0,
    overlayResize: "smooth",
    view: null,
    measure: DEFAULT_MEASURE,
    curve: null,
    compare: null,
    steps: null,
  };
}

/** @returns {Shown} */
export function nothingShown() {
  return {
    layer: null,
    stats: null,
    windows: [],
    tables: [],
    timeline: null,
    timelineError: null,
    ref: null,
    refNote: "",
  };
}

const DEFAULTS = initialState();

/** @param {string} v */
function wholeNumber(v) {
  const n = Number(v);
  return v !== "" && Number.isInteger(n) && n >= 0 ? n : null;
}

/**
 * One URL key: how a state field is written to the hash and read back.
 * `write` returns null to leave the key out (its default); `read` ignores a
 * value it cannot use. Keys are written in this order.
 * @typedef {Object} UrlKey
 * @property {string} name
 * @property {(s: ViewState) => string | null} write
 * @property {(s: ViewState, v: string) => void} read
 */

/**
 * The fields a URL key sets to one of some strings.
 * @typedef {"cmap" | "norm" | "sort" | "show" | "diff" | "measure" | "tmeasure" | "overlayResize"} ChoiceField
 */

/**
 * The key of a field that takes one of some strings: written when it is not
 * the default, read when `valid` accepts the value.
 * @template {ChoiceField} F
 * @param {string} name @param {F} field @param {(v: string) => boolean} valid
 * @returns {UrlKey}
 */
function choiceKey(name, field, valid) {
  return {
    name,
    write: (s) => (s[field] !== DEFAULTS[field] ? s[field] : null),
    read: (s, v) => {
      if (valid(v)) s[field] = /** @type {ViewState[F]} */ (v);
    },
  };
}

/** "off", "prev", "start", "run" or a step number. @param {string} v */
function isDiff(v) {
  return NAMED_DIFFS.includes(v) || wholeNumber(v) !== null;
}

/** @type {UrlKey[]} */
export const URL_KEYS = [
  {
    name: "run",
    write: (s) => s.run,
    read: (s, v) => {
      s.run = v;
    },
  },
  {
    // Before `layer`: an address naming a layer but no view opens that layer.
    name: "view",
    write: (s) => (s.view === "map" ? "map" : null),
    read: (s, v) => {
      if (v === "map" || v === "layer") s.view = v;
    },
  },
  {
    name: "layer",
    write: (s) => s.tag,
    read: (s, v) => {
      s.tag = v;
      if (s.view === null) s.view = "layer";
    },
  },
  {
    name: "step",
    write: (s) => (s.step === null ? null : String(s.step)),
    read: (s, v) => {
      const n = Number(v);
      if (v !== "" && Number.isFinite(n)) s.step = n;
    },
  },
  {
    name: "channel",
    write: (s) => (s.channel === null ? null : String(s.channel)),
    read: (s, v) => {
      s.channel = wholeNumber(v) ?? s.channel;
    },
  },
  {
    name: "probe",
    write: (s) => (s.probe ? String(s.probe) : null),
    read: (s, v) => {
      s.probe = wholeNumber(v) ?? s.probe;
    },
  },
  // Checked against the server's colormaps once they arrive.
  choiceKey("cmap", "cmap", () => true),
  choiceKey("norm", "norm", isNorm),
  choiceKey("sort", "sort", isSort),
  // `filter` in the URL; the state's `filter` is the layer list's text.
  choiceKey("filter", "show", (v) => parseFilter(v) !== null),
  choiceKey("diff", "diff", isDiff),
  choiceKey("measure", "measure", isMapMeasure),
  {
    name: "curve",
    write: (s) => s.curve,
    read: (s, v) => {
      s.curve = v || null;
    },
  },
  {
    // Checked against the runs once they are listed.
    name: "compare",
    write: (s) => s.compare,
    read: (s, v) => {
      s.compare = v || null;
    },
  },
  choiceKey("tmeasure", "tmeasure", isTimelineMeasure),
  {
    name: "overlay",
    write: (s) => (s.overlay > 0 ? String(s.overlay) : null),
    read: (s, v) => {
      s.overlay = parseOpacity(v) ?? s.overlay;
    },
  },
  choiceKey("overlay_resize", "overlayResize", isResize),
];

/** @param {ViewState} s */
export function toParams(s) {
  const params = new URLSearchParams();
  for (const k of URL_KEYS) {
    const v = k.write(s);
    if (v !== null) params.set(k.name, v);
  }
  return params.toString();
}

/** @param {ViewState} s @param {URLSearchParams} params */
export function fromParams(s, params) {
  for (const k of URL_KEYS) {
    const v = params.get(k.name);
    if (v !== null) k.read(s, v);
  }
}
