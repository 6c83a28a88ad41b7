// @ts-check
// The panel's state, declared whole: what the user chose (and the URL
// carries), and what is on screen. Every field exists from the start; a new
// choice is a field here, and a new URL key is one entry in URL_KEYS.

import { isNorm } from "./color.js";

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
 */

/**
 * What the grid shows now: a resize or the opened channel reuse it.
 * @typedef {Object} Shown
 * @property {StepList | null} steps the kept steps of (run, tag), with their version
 * @property {Layer | null} layer the drawn step
 * @property {LayerStats | null} stats every step's statistics, for the fixed scales
 * @property {(Range | null)[]} windows each channel's colour window
 * @property {Uint32Array[]} tables each channel's level -> RGBA table
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
  };
}

/** @returns {Shown} */
export function nothingShown() {
  return { steps: null, layer: null, stats: null, windows: [], tables: [] };
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
    name: "layer",
    write: (s) => s.tag,
    read: (s, v) => {
      s.tag = v;
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
  {
    // Checked against the server's colormaps once they arrive.
    name: "cmap",
    write: (s) => (s.cmap !== DEFAULTS.cmap ? s.cmap : null),
    read: (s, v) => {
      s.cmap = v;
    },
  },
  {
    name: "norm",
    write: (s) => (s.norm !== DEFAULTS.norm ? s.norm : null),
    read: (s, v) => {
      if (isNorm(v)) s.norm = v;
    },
  },
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
