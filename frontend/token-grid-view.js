// @ts-check
// A token grid's class token, apart: a sequence layer of a vision
// transformer is drawn on the probe image's patch grid (so overlay, diff and
// compare work on it as on a CNN's maps), and the token before that grid
// (`path/class_token`, one strip of its channels) is drawn under the layer's
// title at the same step, with a link to open it. The class token's own
// series links back to its grid. Loaded with the first token grid or class
// token shown (app.js registers it with the fields it reads: view, run, tag,
// steps, step, probe, cmap).

import { buildTable, fmt, stat } from "./color.js";
import { h, paint } from "./dom.js";
import { report } from "./hooks.js";
import { messageOf } from "./model.js";
import { currentInfo, lut, model, state, ui } from "./panel.js";
import { Latest } from "./store.js";
import { derived } from "./tokens.js";

const latest = new Latest();
const el = h("div", { className: "class-token", hidden: true });

/** The series that holds the class token of token grid `tag`. @param {string} tag */
export const classTokenTag = (tag) => `${tag}/class_token`;

/** @param {string} tag @param {string} text @param {(layer: string) => void} onOpen */
function link(tag, text, onOpen) {
  return h(
    "button",
    { type: "button", className: "link", title: `Open ${tag}`, onclick: () => onOpen(tag) },
    text,
  );
}

function hide() {
  el.hidden = true;
  el.replaceChildren();
  report({ classToken: "" });
}

/**
 * Reacts to a change of the layer, step, probe or colours shown.
 * @param {(layer: string) => void} onOpen opens a layer
 */
export async function classTokenView(onOpen) {
  const stale = latest.begin();
  if (!el.isConnected) ui.el.title.after(el);
  const { run, tag, step, probe } = state;
  const info = currentInfo();
  const d = derived(info);
  if (state.view !== "layer" || !info || run === null || tag === null) return hide();
  if (d.kind === "class_token" && d.source) {
    el.hidden = false;
    el.replaceChildren(
      h("span", {}, "The class token of "),
      link(d.source, d.source, onOpen),
      h("span", {}, ": the token before its patch grid, one strip of its channels."),
    );
    report({ classToken: "" });
    return;
  }
  if (d.kind !== "token_grid") return hide();
  const grid = `${info.height}×${info.width}`;
  const ct = classTokenTag(tag);
  el.hidden = false;
  if (!model.info(run, ct)) {
    el.replaceChildren(h("span", {}, `Patch tokens on the ${grid} grid of the probe image.`));
    report({ classToken: "" });
    return;
  }
  if (step === null) return;
  let layer;
  try {
    layer = await model.fetchLayer(run, ct, step, probe);
  } catch (e) {
    if (stale()) return;
    el.replaceChildren(h("span", { className: "muted" }, `Class token: ${messageOf(e)}`));
    report({ classToken: "" });
    return;
  }
  if (stale()) return;
  const strip = layer.channels[0];
  const canvas = h("canvas", { dataset: { tag: ct } });
  if (strip) paint(canvas, strip, buildTable(lut(), [0, 1], [0, 1]));
  const row = layer.stats[0];
  const range = row ? `${fmt(stat(row, layer.fields.min))} … ${fmt(stat(row, layer.fields.max))}` : "";
  canvas.title = `the class token's ${strip?.width ?? 0} channels at step ${step}: ${range}`;
  el.replaceChildren(
    h(
      "span",
      {},
      `Patch tokens on the ${grid} grid; the class token (before the grid) is apart: `,
    ),
    canvas,
    link(ct, "open it", onOpen),
  );
  report({ classToken: `${ct}@${step}` });
}
