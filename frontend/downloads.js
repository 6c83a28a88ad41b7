// @ts-check
// Download links for the `export` route: the layer's grid at the shown step
// (PNG) and the opened channel's evolution (GIF, APNG), in the colormap,
// scale and probe on screen. Plain links with relative URLs: the browser
// downloads them under the name the server gives.

import { h } from "./dom.js";

/**
 * What the links export.
 * @typedef {Object} Exported
 * @property {string | null} run
 * @property {string | null} tag
 * @property {number | null} step
 * @property {number | null} channel
 * @property {number} probe
 * @property {string} cmap
 * @property {string} norm
 * @property {boolean} diff whether the tiles show a difference (the files show the activations)
 * @property {string} [noun] what a channel is called ("head" for an attention series)
 */

/**
 * The export route's URL for one file.
 * @param {Record<string, string | number>} params
 */
function exportUrl(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) qs.set(k, String(v));
  return `export?${qs}`;
}

/** @param {string} id @param {string} text @param {string} title */
function link(id, text, title) {
  return h("a", { id, className: "download", download: "", title, hidden: true }, text);
}

export class DownloadLinks {
  constructor() {
    this.grid = link("download-grid", "⤓ Grid PNG", "This layer's channels at this step, as a PNG");
    this.gif = link("download-gif", "⤓ GIF", "This channel over every kept step, as an animated GIF");
    this.apng = link(
      "download-apng",
      "⤓ APNG",
      "This channel over every kept step, as an animated PNG (every colour kept)",
    );
    this.gridEl = h("span", { className: "downloads" }, this.grid);
    this.evolutionEl = h("span", { className: "downloads" }, this.gif, this.apng);
  }

  /** @param {Exported} e */
  update(e) {
    const base =
      e.run !== null && e.tag !== null
        ? { run: e.run, tag: e.tag, cmap: e.cmap, norm: e.norm, probe: e.probe }
        : null;
    const note = e.diff ? " (the activations, not the difference)" : "";
    const noun = e.noun ?? "channel";
    this.grid.hidden = !base || e.step === null;
    if (base && e.step !== null) {
      this.grid.href = exportUrl({ ...base, step: e.step, format: "png" });
      this.grid.title = `The layer's ${noun}s at step ${e.step}, as a PNG${note}`;
    }
    for (const [a, format] of /** @type {const} */ ([
      [this.gif, "gif"],
      [this.apng, "apng"],
    ])) {
      a.hidden = !base || e.channel === null;
      if (base && e.channel !== null) {
        a.href = exportUrl({ ...base, channel: e.channel, format });
        const what = format === "gif" ? "an animated GIF" : "an animated PNG (every colour kept)";
        a.title = `${noun[0].toUpperCase()}${noun.slice(1)} ${e.channel} over every kept step, as ${what}`;
      }
    }
  }
}
