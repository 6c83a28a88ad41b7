// @ts-check
// The tab's frame and its small builders: sidebar, toolbar, layer list,
// colorbar, titles, step status and messages. The grid, the strip
// map and the opened channel have files of their own.

import { NORMALIZATIONS, fmt, fmtEpoch } from "./color.js";
import { choiceSelect, h, shapeText } from "./dom.js";
import { counted } from "./channel-order.js";
import { channelNoun, derived } from "./tokens.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./color.js").Range} Range */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */
/** @typedef {import("./model.js").StepList} StepList */

/** @typedef {ReturnType<typeof buildShell>} Shell */

/**
 * The static frame of the tab; returns the elements the wiring needs.
 * @param {HTMLElement} root
 */
export function buildShell(root) {
  const runSelect = h("select", { id: "run", title: "Run" });
  const filter = h("input", {
    id: "layer-filter",
    type: "search",
    placeholder: "Filter layers",
    autocomplete: "off",
    spellcheck: false,
  });
  const layerList = h("div", { id: "layers", role: "listbox", "aria-label": "Layers" });
  const probes = h("div", { id: "probes" });
  const sidebar = h(
    "aside",
    { id: "sidebar" },
    h("label", { className: "field" }, h("span", {}, "Run"), runSelect),
    h("label", { className: "field" }, h("span", {}, "Layer"), filter),
    layerList,
    h("div", { className: "section-title" }, "Probe"),
    probes,
  );

  const prev = h("button", { id: "prev-step", type: "button", title: "Previous step (←)" }, "◀");
  const play = h(
    "button",
    { id: "play", type: "button", title: "Play / pause over steps" },
    "▶ Play",
  );
  const next = h("button", { id: "next-step", type: "button", title: "Next step (→)" }, "▶");
  const slider = h("input", {
    id: "step-slider",
    type: "range",
    min: 0,
    max: 0,
    step: 1,
    value: 0,
    "aria-label": "Step",
  });
  const stepInput = h("input", {
    id: "step-input",
    type: "number",
    min: 0,
    step: 1,
    title: "Type a step and press Enter",
    "aria-label": "Exact step",
  });
  const epoch = h("span", { id: "epoch" });
  const stepCount = h("span", { id: "step-count", className: "muted" });
  const cmap = h("select", { id: "colormap", title: "Colormap" });
  const norm = choiceSelect(
    { id: "normalization", title: "How colours map to values" },
    NORMALIZATIONS,
  );
  const size = h("input", {
    id: "tile-size",
    type: "range",
    min: 32,
    max: 256,
    step: 8,
    value: 96,
    title: "Tile size",
    "aria-label": "Tile size",
  });
  const toolbar = h(
    "div",
    { id: "toolbar" },
    h(
      "div",
      { className: "stepper" },
      prev,
      play,
      next,
      h("label", { className: "inline" }, "Step", stepInput),
      slider,
      epoch,
    ),
    h(
      "div",
      { className: "display" },
      h("label", { className: "inline" }, "Colormap", cmap),
      h("label", { className: "inline" }, "Scale", norm),
      h("label", { className: "inline" }, "Size", size),
    ),
  );
  const sampling = h("div", { id: "sampling", className: "note", hidden: true });
  const errors = h("div", { id: "errors", role: "alert" });
  const title = h("div", { id: "layer-title" });
  const legend = h("div", { id: "legend" });
  const view = h("div", { id: "view" });
  const main = h("main", { id: "main" }, title, legend, view);
  const detail = h("section", { id: "detail", hidden: true, "aria-label": "Channel detail" });
  const content = h("div", { id: "content" }, main, detail);
  const panel = h("div", { id: "panel" }, toolbar, stepCount, sampling, errors, content);
  const app = h("div", { id: "app" }, sidebar, panel);
  const empty = h("div", { id: "empty", hidden: true });
  root.replaceChildren(app, empty);
  return {
    runSelect,
    filter,
    layerList,
    probes,
    sidebar,
    prev,
    play,
    next,
    slider,
    stepInput,
    epoch,
    stepCount,
    cmap,
    norm,
    size,
    toolbar,
    sampling,
    errors,
    title,
    legend,
    view,
    main,
    detail,
    content,
    panel,
    app,
    empty,
  };
}

/**
 * @param {HTMLSelectElement} select
 * @param {string[]} values
 * @param {string | null} current
 */
export function fillSelect(select, values, current, label = (/** @type {string} */ v) => v) {
  const same =
    select.options.length === values.length &&
    values.every((v, i) => select.options[i].value === v);
  if (!same) {
    select.replaceChildren(...values.map((v) => h("option", { value: v }, label(v))));
  }
  if (current !== null && current !== undefined) select.value = current;
}

/**
 * The layer list of one run, in the model's order, filtered by a substring.
 * @param {HTMLElement} list
 * @param {LayerInfo[]} infos
 * @param {string} filter
 * @param {string | null} current
 * @param {(layer: string) => void} onPick
 */
export function fillLayerList(list, infos, filter, current, onPick) {
  const needle = filter.trim().toLowerCase();
  const items = [];
  for (const info of infos) {
    const hay = `${info.layer} ${info.class_name}`.toLowerCase();
    if (needle && !hay.includes(needle)) continue;
    const selected = info.layer === current;
    const heads = channelNoun(info) === "head";
    const ch = heads ? "heads" : "ch";
    const channels =
      info.layout === "units"
        ? `${info.width} units`
        : info.total_channels > info.channels
          ? `${info.channels} of ${info.total_channels} ${ch}`
          : heads
            ? counted(info.channels, "head")
            : `${info.channels} ${ch}`;
    items.push(
      h(
        "button",
        {
          type: "button",
          className: selected ? "layer selected" : "layer",
          role: "option",
          "aria-selected": String(selected),
          title: info.layer,
          dataset: { layer: info.layer, layout: info.layout },
          onclick: () => onPick(info.layer),
        },
        h("span", { className: "layer-name" }, info.layer),
        h(
          "span",
          { className: "layer-meta" },
          `${info.class_name} ${shapeText(info.output_shape)} · ${channels}`,
        ),
      ),
    );
  }
  if (!items.length) {
    items.push(
      h("div", { className: "muted" }, needle ? "No layer matches the filter." : "No layers."),
    );
  }
  list.replaceChildren(...items);
  const sel = /** @type {HTMLElement | null} */ (list.querySelector(".selected"));
  if (sel) {
    const top = sel.getBoundingClientRect().top - list.getBoundingClientRect().top + list.scrollTop;
    if (top < list.scrollTop || top + sel.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 2);
    }
  }
}

/**
 * A horizontal colour ramp with its real-valued ends and zero, when inside.
 * @param {Lut} lut
 * @param {Range | null | undefined} win
 * @param {string} caption
 * @param {[string, string] | null} [labels] instead of the window's values
 */
export function colorbar(lut, win, caption, labels) {
  const canvas = h("canvas", { className: "colorbar", width: 256, height: 1 });
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const img = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    const c = lut[i];
    img.data.set([c[0], c[1], c[2], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  const ticks = h("div", { className: "colorbar-ticks" });
  if (labels) {
    ticks.append(h("span", { style: "left:0" }, labels[0]));
    ticks.append(h("span", { className: "end", style: "right:0" }, labels[1]));
  } else if (win) {
    const [lo, hi] = win;
    ticks.append(h("span", { style: "left:0" }, fmt(lo)));
    if (lo < 0 && hi > 0) {
      const at = ((0 - lo) / (hi - lo)) * 100;
      ticks.append(h("span", { className: "mid", style: `left:${at}%` }, "0"));
    } else if (hi > lo) {
      ticks.append(h("span", { className: "mid", style: "left:50%" }, fmt((lo + hi) / 2)));
    }
    ticks.append(h("span", { className: "end", style: "right:0" }, fmt(hi)));
  } else {
    ticks.append(h("span", { style: "left:0" }, "no finite values"));
  }
  return h(
    "div",
    { className: "colorbar-box" },
    caption ? h("div", { className: "muted" }, caption) : null,
    canvas,
    ticks,
  );
}

/** What to show when nothing has been logged yet. @param {HTMLElement} el */
export function emptyState(el) {
  el.replaceChildren(
    h("h2", {}, "No activations logged yet"),
    h(
      "p",
      {},
      "Add the ActivationLogger callback to model.fit; it logs a fixed probe image's activations through the chosen layers:",
    ),
    h(
      "pre",
      {},
      [
        "from tb_activations import ActivationLogger",
        "",
        "model.fit(x, y, epochs=10, callbacks=[",
        '    ActivationLogger("logs", probe),  # probe: image path, PIL image or array',
        "])",
      ].join("\n"),
    ),
    h("p", {}, "Then point TensorBoard at the same directory:"),
    h("pre", {}, "tensorboard --logdir logs"),
    h("p", { className: "muted" }, "This page checks for new data every few seconds."),
  );
}

/** @param {HTMLElement} el @param {Map<string, string>} errors */
export function errorList(el, errors) {
  el.replaceChildren(
    ...[...errors.entries()].map(([k, msg]) =>
      h("div", { className: "error", dataset: { kind: k } }, h("strong", {}, "Error: "), msg),
    ),
  );
}

/**
 * The heading over the grid: the layer, its class, shape and what a tile is.
 * @param {HTMLElement} el
 * @param {LayerInfo} info
 * @param {number} n channels drawn
 */
export function layerTitle(el, info, n) {
  const reduced = info.source_height > info.height || info.source_width > info.width;
  const { axes } = derived(info);
  const noun = channelNoun(info);
  el.replaceChildren(
    h("h1", { className: "layer-heading" }, info.layer),
    h(
      "span",
      { className: "muted" },
      ` ${info.class_name} ${shapeText(info.output_shape)} · ${
        info.layout === "units"
          ? `${info.width} units`
          : info.layout === "sequence"
            ? `${counted(n, "channel")} × ${info.width} time steps`
            : `${info.total_channels > n ? `${n} of ${info.total_channels} ${noun}s` : counted(n, noun)}, ${info.height}×${info.width}${axes ? ` (${axes[0]} × ${axes[1]})` : ""}`
      }${reduced ? ` (reduced from ${info.source_height}×${info.source_width})` : ""}${
        info.reduction ? ` · ${info.reduction}` : ""
      }`,
    ),
  );
}

/**
 * The colour key over the grid. At the per-channel scale every tile has its
 * own values; at a layer scale the tiles share one window.
 * @param {HTMLElement} el
 * @param {Lut} lut
 * @param {import("./color.js").Norm} norm
 * @param {string} short the scale in words
 * @param {Range | null | undefined} shared the layer's window, at a layer scale
 * @param {boolean} clickable whether tiles open on click (image layers)
 */
export function legend(el, lut, norm, short, shared, clickable) {
  if (norm === "channel") {
    el.replaceChildren(
      colorbar(
        lut,
        null,
        `Scale: ${short}${clickable ? "; hover a tile for its range, click to open it" : ""}`,
        ["min", "max"],
      ),
    );
  } else {
    el.replaceChildren(
      colorbar(
        lut,
        shared,
        `Scale: ${short}${shared ? "" : " (open a channel for its values)"}`,
        shared ? null : ["min", "max"],
      ),
    );
  }
}

/**
 * The step controls' state and words: slider, buttons, epoch, count, sampling note.
 * @param {Shell} el
 * @param {StepList | null} list
 * @param {number | null} step the shown step
 * @param {string} plugin the plugin's name, for the sampling flag
 */
export function stepStatus(el, list, step, plugin) {
  const steps = list?.steps || [];
  const n = steps.length;
  const i = steps.findIndex((s) => s.step === step);
  el.slider.max = String(Math.max(0, n - 1));
  el.slider.value = String(Math.max(0, i));
  el.slider.disabled = n < 2;
  el.prev.disabled = i <= 0;
  el.next.disabled = i < 0 || i >= n - 1;
  el.play.disabled = n < 2;
  if (document.activeElement !== el.stepInput)
    el.stepInput.value = step === null ? "" : String(step);
  const s = steps[i];
  const parts = [];
  const hasBatch = s && s.batch !== null && s.batch !== undefined;
  if (s && s.epoch !== null && s.epoch !== undefined) {
    parts.push(s.epoch === 0 && !hasBatch ? "epoch 0 (before training)" : fmtEpoch(s.epoch));
  }
  if (hasBatch) parts.push(`batch ${s.batch}`);
  el.epoch.textContent = parts.join(", ");
  el.stepCount.textContent = n
    ? `Step ${i + 1} of ${n} kept (steps ${steps[0].step}–${steps[n - 1].step})`
    : "";
  if (list && list.steps_logged > list.steps_kept) {
    el.sampling.hidden = false;
    el.sampling.replaceChildren(
      `Showing ${list.steps_kept} of ${list.steps_logged} logged steps: TensorBoard keeps a sample of ${list.sampling_limit ?? list.steps_kept} per layer. To keep them all, start it with `,
      h("code", {}, `--samples_per_plugin=${plugin}=${Math.max(1000, list.steps_logged * 2)}`),
      ".",
    );
  } else {
    el.sampling.hidden = true;
  }
}
