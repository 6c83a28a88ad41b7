// @ts-check
// The overlay on the probe (overlay.js) as the layer view draws it, and the
// export links (downloads.js) that follow what is shown.

import { report } from "./hooks.js";
import { messageOf } from "./model.js";
import { overlayNote, tilePainter } from "./overlay.js";
import { clearError, currentInfo, model, probes, setError, state, ui } from "./panel.js";
import { channelNoun } from "./tokens.js";

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/** Decodes the shown probe's image when the overlay needs it. */
export async function loadOverlayProbe() {
  const { run, probe } = state;
  const info = currentInfo();
  if (state.overlay <= 0 || run === null || info?.layout !== "image" || !model.hasProbe(run)) {
    return;
  }
  try {
    await probes.get(run, probe);
    clearError("overlay");
  } catch (e) {
    setError("overlay", `No overlay: ${messageOf(e)}`);
  }
}

/**
 * The grid's painter while the overlay is on and applies, else null; the
 * bar says why it does not apply.
 * @param {LayerInfo} info @param {import("./model.js").GrayMap[]} channels @param {Uint32Array[]} tables
 */
export function overlayPainter(info, channels, tables) {
  const run = state.run;
  let note = overlayNote(info, model.hasProbe(run));
  const probe = run === null || note ? undefined : probes.peek(run, state.probe);
  if (!note && !probe) note = "No overlay: the probe image did not load.";
  ui.overlay.update(state.overlay, state.overlayResize, note);
  updateDownloads();
  const on = state.overlay > 0;
  report({ overlay: on && probe ? String(state.overlay) : on ? "none" : "" });
  if (!on || !probe) return null;
  return tilePainter(probes, probe, channels, tables, state.overlay, state.overlayResize);
}

/** The opened channel over its probe, as the grid draws it. */
export function drawDetailOverlay() {
  const s = ui.detail?.shown;
  const run = state.run;
  const applies =
    s && run !== null && state.overlay > 0 && !overlayNote(s.info, model.hasProbe(run));
  const probe = applies && run !== null ? probes.peek(run, state.probe) : undefined;
  if (s && probe) {
    ui.detailOverlay.draw(probe, s.channel, s.table, state.overlay, state.overlayResize);
  } else {
    ui.detailOverlay.hide();
  }
  updateDownloads();
}

export function updateDownloads() {
  const { run, tag, step, channel, probe, cmap, norm } = state;
  const noun = channelNoun(currentInfo());
  ui.downloads.update({ run, tag, step, channel, probe, cmap, norm, diff: state.diff !== "off", noun });
}

/**
 * A new opacity or resizing: the grid's tiles are painted again over the
 * probe from what they last showed (the same maps, colours and order), and
 * the opened channel's overlay; nothing else is recomputed. False when the
 * grid is not what shows the layer (the caller draws it whole).
 */
export async function repaintOverlay() {
  await loadOverlayProbe();
  const info = currentInfo();
  const last = ui.grid.last;
  if (!info || info.layout !== "image" || !last || ui.el.view.firstChild !== ui.grid.el) {
    return false;
  }
  const [layer, tables, size, selected, order] = last.args;
  ui.grid.show(layer, tables, size, selected, order, overlayPainter(info, layer.channels, tables));
  if (state.channel !== null) drawDetailOverlay();
  return true;
}
