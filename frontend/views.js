// DOM builders for the Activations tab. Run and layer names are untrusted
// (they come from log directories and model code), so text only ever goes in
// through textContent / text nodes, never as markup.

import {
  NORMALIZATIONS,
  STAT,
  colorize,
  fmt,
  fmtEpoch,
  isDead,
  levelToValue,
  unitColumns,
} from "./color.js";

/** Creates an element; `props` are assigned as properties, children appended as text or nodes. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "aria" || k.startsWith("aria-") || k === "role" || k === "for")
      el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
}

export function shapeText(shape) {
  return `(${(shape || []).map((d) => (d === null ? "None" : d)).join(", ")})`;
}

/** The static frame of the tab; returns the elements the wiring needs. */
export function buildShell(root) {
  const e = {};
  e.runSelect = h("select", { id: "run", title: "Run" });
  e.filter = h("input", {
    id: "layer-filter",
    type: "search",
    placeholder: "Filter layers",
    autocomplete: "off",
    spellcheck: false,
  });
  e.layerList = h("div", { id: "layers", role: "listbox", "aria-label": "Layers" });
  e.probes = h("div", { id: "probes" });
  e.sidebar = h(
    "aside",
    { id: "sidebar" },
    h("label", { className: "field" }, h("span", {}, "Run"), e.runSelect),
    h("label", { className: "field" }, h("span", {}, "Layer"), e.filter),
    e.layerList,
    h("div", { className: "section-title" }, "Probe"),
    e.probes,
  );

  e.prev = h("button", { id: "prev-step", type: "button", title: "Previous step (←)" }, "◀");
  e.play = h("button", { id: "play", type: "button", title: "Play / pause over steps" }, "▶ Play");
  e.next = h("button", { id: "next-step", type: "button", title: "Next step (→)" }, "▶");
  e.slider = h("input", {
    id: "step-slider",
    type: "range",
    min: 0,
    max: 0,
    step: 1,
    value: 0,
    "aria-label": "Step",
  });
  e.stepInput = h("input", {
    id: "step-input",
    type: "number",
    min: 0,
    step: 1,
    title: "Type a step and press Enter",
    "aria-label": "Exact step",
  });
  e.epoch = h("span", { id: "epoch" });
  e.stepCount = h("span", { id: "step-count", className: "muted" });
  e.cmap = h("select", { id: "colormap", title: "Colormap" });
  e.norm = h("select", { id: "normalization", title: "How colours map to values" });
  for (const n of NORMALIZATIONS) e.norm.append(h("option", { value: n.id }, n.label));
  e.size = h("input", {
    id: "tile-size",
    type: "range",
    min: 32,
    max: 256,
    step: 8,
    value: 96,
    title: "Tile size",
    "aria-label": "Tile size",
  });
  e.toolbar = h(
    "div",
    { id: "toolbar" },
    h(
      "div",
      { className: "stepper" },
      e.prev,
      e.play,
      e.next,
      h("label", { className: "inline" }, "Step", e.stepInput),
      e.slider,
      e.epoch,
    ),
    h(
      "div",
      { className: "display" },
      h("label", { className: "inline" }, "Colormap", e.cmap),
      h("label", { className: "inline" }, "Scale", e.norm),
      h("label", { className: "inline" }, "Size", e.size),
    ),
  );
  e.sampling = h("div", { id: "sampling", className: "note", hidden: true });
  e.errors = h("div", { id: "errors", role: "alert" });
  e.title = h("div", { id: "layer-title" });
  e.legend = h("div", { id: "legend" });
  e.view = h("div", { id: "view" });
  e.main = h("main", { id: "main" }, e.title, e.legend, e.view);
  e.detail = h("section", { id: "detail", hidden: true, "aria-label": "Channel detail" });
  e.content = h("div", { id: "content" }, e.main, e.detail);
  e.panel = h("div", { id: "panel" }, e.toolbar, e.stepCount, e.sampling, e.errors, e.content);
  e.app = h("div", { id: "app" }, e.sidebar, e.panel);
  e.empty = h("div", { id: "empty", hidden: true });
  root.replaceChildren(e.app, e.empty);
  return e;
}

export function fillSelect(select, values, current, label = (v) => v) {
  const same =
    select.options.length === values.length &&
    values.every((v, i) => select.options[i].value === v);
  if (!same) {
    select.replaceChildren(...values.map((v) => h("option", { value: v }, label(v))));
  }
  if (current !== null && current !== undefined) select.value = current;
}

/** The layer list of one run, in logging order, filtered by a substring. */
export function fillLayerList(list, infos, filter, current, onPick) {
  const needle = filter.trim().toLowerCase();
  const items = [];
  for (const info of infos) {
    const hay = `${info.layer} ${info.class_name}`.toLowerCase();
    if (needle && !hay.includes(needle)) continue;
    const selected = info.layer === current;
    const channels =
      info.layout === "units"
        ? `${info.width} units`
        : info.total_channels > info.channels
          ? `${info.channels} of ${info.total_channels} ch`
          : `${info.channels} ch`;
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
  const sel = list.querySelector(".selected");
  if (sel) {
    const top = sel.getBoundingClientRect().top - list.getBoundingClientRect().top + list.scrollTop;
    if (top < list.scrollTop || top + sel.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 2);
    }
  }
}

export function fillProbes(container, count, current, available, loadUrl, onPick, onError) {
  const items = [];
  for (let p = 0; p < count; p++) {
    const img = h("img", { alt: `Probe ${p}` });
    const holder = h("span", { className: "probe-img" }, img);
    if (available) {
      loadUrl(p).then(
        (url) => {
          img.src = url;
        },
        (e) => {
          holder.replaceChildren(h("span", { className: "muted" }, "no image"));
          onError?.(p, e);
        },
      );
    } else {
      holder.replaceChildren(h("span", { className: "muted" }, "not logged"));
    }
    items.push(
      h(
        "button",
        {
          type: "button",
          className: p === current ? "probe selected" : "probe",
          title:
            count > 1
              ? `Show the activations of probe ${p}`
              : "The probe the activations come from",
          "aria-pressed": String(p === current),
          dataset: { probe: String(p) },
          onclick: () => onPick(p),
        },
        holder,
        count > 1 ? h("span", { className: "probe-label" }, `#${p}`) : null,
      ),
    );
  }
  container.replaceChildren(...items);
}

/** Sets a canvas's displayed size so its pixels scale evenly, never blurred. */
function fitCanvas(canvas, w, h, maxCss, minCss = 0) {
  let scale = maxCss / Math.max(w, h);
  if (Math.max(w, h) * scale < minCss) scale = minCss / Math.max(w, h);
  canvas.style.width = `${Math.max(1, Math.round(w * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.round(h * scale))}px`;
}

function ensureImage(canvas, w, h) {
  if (canvas.width !== w || canvas.height !== h || !canvas._image) {
    canvas.width = w;
    canvas.height = h;
    canvas._ctx = canvas.getContext("2d");
    canvas._image = canvas._ctx.createImageData(w, h);
  }
  return canvas._image;
}

/** Draws gray levels through a table onto a canvas sized to them. */
export function paint(canvas, channel, table) {
  const img = ensureImage(canvas, channel.width, channel.height);
  colorize(channel.gray, table, img);
  canvas._ctx.putImageData(img, 0, 0);
}

/** Level under a mouse event on a canvas showing `channel` at any CSS size. */
function pixelAt(canvas, ev, w, h) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - r.left) / r.width) * w);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * h);
  if (x < 0 || y < 0 || x >= w || y >= h) return null;
  return { x, y };
}

function badges(row) {
  const out = [];
  if (isDead(row))
    out.push(h("span", { className: "badge dead", title: "Every value is 0" }, "all 0"));
  else if (row && row[STAT.nonfinite] > 0) {
    out.push(h("span", { className: "badge nan", title: "Has NaN or infinite values" }, "NaN"));
  }
  return out;
}

const GAP = 6;
const CAPTION = 16;

/**
 * The grid of channel tiles for image layers. Every tile is drawn into one
 * atlas canvas (one putImageData, one composited layer), with a light DOM
 * element over each tile for its label, marks, hover and clicks: hundreds of
 * separate canvases cost far more to create and composite.
 */
export class TileGrid {
  constructor(onOpen) {
    this.canvas = h("canvas", { className: "atlas" });
    this.overlay = h("div", { className: "atlas-tiles", role: "list" });
    this.el = h("div", { className: "grid" }, this.canvas, this.overlay);
    this.tiles = [];
    this.onOpen = onOpen;
    this.last = null;
    this.cols = 0;
    // The view narrows when the detail opens; re-flow only if columns change.
    this.resize = new ResizeObserver(() => {
      if (this.last && this.el.isConnected && this._columns(this.last) !== this.cols) {
        this.show(...this.last.args);
      }
    });
    this.resize.observe(this.el);
  }

  _tile(c) {
    let t = this.tiles[c];
    if (!t) {
      // Two elements per tile: hundreds of tiles are laid out on every switch.
      const label = h("span", { className: "tile-label" }, String(c));
      const el = h(
        "div",
        {
          className: "tile",
          role: "listitem",
          tabIndex: 0,
          dataset: { channel: String(c) },
          onclick: () => this.onOpen(c),
          onkeydown: (ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              this.onOpen(c);
            }
          },
          // The tooltip is written when wanted, not for every tile on every step.
          onmouseenter: () => {
            const row = this.layer?.stats[c];
            el.title = row
              ? `channel ${c}: min ${fmt(row[STAT.min])}, max ${fmt(row[STAT.max])}, mean ${fmt(row[STAT.mean])}`
              : `channel ${c}: no finite values`;
          },
        },
        label,
      );
      t = { el, label, marks: null, markKey: "falsefalse", geometry: "" };
      this.tiles[c] = t;
    }
    return t;
  }

  _columns({ tileW }) {
    const avail = this.el.clientWidth || this.el.parentElement?.clientWidth || 800;
    return Math.max(1, Math.floor((avail + GAP) / (tileW + GAP)));
  }

  show(layer, tables, size, selected) {
    const n = layer.channels.length;
    if (!n) {
      this.overlay.replaceChildren();
      return;
    }
    const { width: w, height: hh } = layer.channels[0];
    const scale = size / Math.max(w, hh);
    const tileW = w * scale;
    const geometry = { tileW };
    const cols = Math.min(n, this._columns(geometry));
    this.cols = this._columns(geometry);
    this.last = { tileW, args: [layer, tables, size, selected] };
    // Tiles shown smaller than their maps are sampled down to the screen's
    // pixels (nearest neighbour, as the browser would): less to colour and
    // upload on every step.
    const k = Math.min(1, scale * (window.devicePixelRatio || 1));
    const dw = Math.max(1, Math.round(w * k));
    const dh = Math.max(1, Math.round(hh * k));
    const css = tileW / dw;
    // Gaps are whole atlas pixels, so every tile starts on a pixel boundary.
    const gx = Math.max(1, Math.ceil(GAP / css));
    const gy = Math.max(1, Math.ceil((GAP + CAPTION) / css));
    const rows = Math.ceil(n / cols);
    const aw = cols * (dw + gx) - gx;
    const ah = rows * (dh + gy);
    if (this.canvas.width !== aw || this.canvas.height !== ah || !this.image) {
      this.canvas.width = aw;
      this.canvas.height = ah;
      this.ctx = this.canvas.getContext("2d");
      this.image = this.ctx.createImageData(aw, ah);
    }
    const out = new Uint32Array(this.image.data.buffer);
    out.fill(0);
    const xs = new Int32Array(dw);
    for (let x = 0; x < dw; x++) xs[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / dw));
    const ys = new Int32Array(dh);
    for (let y = 0; y < dh; y++) ys[y] = Math.min(hh - 1, Math.floor(((y + 0.5) * hh) / dh));
    const els = [];
    for (let c = 0; c < n; c++) {
      const ch = layer.channels[c];
      const col = c % cols;
      const row = (c / cols) | 0;
      const ax = col * (dw + gx);
      const ay = row * (dh + gy);
      const table = tables[c];
      const g = ch.gray;
      const sw = ch.width;
      if (dw === sw && dh === ch.height) {
        for (let y = 0; y < dh; y++) {
          let o = (ay + y) * aw + ax;
          let i = y * sw;
          for (let x = 0; x < dw; x++) out[o++] = table[g[i++]];
        }
      } else {
        for (let y = 0; y < dh; y++) {
          let o = (ay + y) * aw + ax;
          const base = Math.min(ys[y], ch.height - 1) * sw;
          for (let x = 0; x < dw; x++) out[o++] = table[g[base + Math.min(xs[x], sw - 1)]];
        }
      }
      const t = this._tile(c);
      const geometry = `${ax},${ay},${dw},${dh},${css}`;
      if (geometry !== t.geometry) {
        const st = t.el.style;
        st.left = `${ax * css}px`;
        st.top = `${ay * css}px`;
        st.width = `${dw * css}px`;
        st.height = `${dh * css}px`;
        Object.assign(t.el.dataset, { ax, ay, w: dw, h: dh });
        t.geometry = geometry;
      }
      const row0 = layer.stats[c];
      const dead = isDead(row0);
      const key = `${dead}${Boolean(row0 && row0[STAT.nonfinite] > 0)}`;
      if (key !== t.markKey) {
        t.marks?.remove();
        const marks = badges(row0);
        t.marks = marks.length ? h("span", { className: "tile-marks" }, marks) : null;
        if (t.marks) t.el.append(t.marks);
        t.el.classList.toggle("is-dead", dead);
        t.markKey = key;
      }
      if (t.selected !== (c === selected)) {
        t.selected = c === selected;
        t.el.classList.toggle("selected", t.selected);
      }
      els.push(t.el);
    }
    this.layer = layer;
    this.ctx.putImageData(this.image, 0, 0);
    this.canvas.style.width = `${aw * css}px`;
    this.canvas.style.height = `${ah * css}px`;
    if (this.overlay.childElementCount !== n || this.overlay.firstChild !== els[0]) {
      this.overlay.replaceChildren(...els);
    }
  }

  select(c) {
    for (const t of this.tiles)
      t?.el.classList.toggle("selected", t.el.dataset.channel === String(c));
  }
}

/**
 * One canvas holding many strips: a sequence layer's time x channel map, or a
 * units layer's units wrapped into a near-square grid.
 */
export class StripMap {
  constructor(onOpen, onHover) {
    this.canvas = h("canvas", { className: "map-canvas" });
    this.readout = h("div", { className: "readout" }, "Hover for values; click to open.");
    this.axis = h("div", { className: "axis muted" });
    this.dead = h("div", { className: "muted" });
    this.rowLabels = h("div", { className: "row-labels", "aria-hidden": "true" });
    this.el = h(
      "div",
      { className: "strip-map" },
      this.axis,
      h("div", { className: "map-row" }, this.rowLabels, this.canvas),
      this.readout,
      this.dead,
    );
    this.onOpen = onOpen;
    this.onHover = onHover;
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = "Hover for values; click to open.";
    });
    this.canvas.addEventListener("click", (ev) => {
      const hit = this._hit(ev);
      if (hit) this.onOpen(hit.channel);
    });
  }

  _hit(ev) {
    if (!this.layer) return null;
    const p = pixelAt(this.canvas, ev, this.canvas.width, this.canvas.height);
    if (!p) return null;
    if (this.mode === "sequence") {
      return { channel: p.y, index: p.x, level: this.layer.channels[p.y]?.gray[p.x] };
    }
    const i = p.y * this.cols + p.x;
    const ch = this.layer.channels[0];
    if (i >= ch.gray.length) return null;
    return { channel: 0, index: i, level: ch.gray[i] };
  }

  _hover(ev) {
    const hit = this._hit(ev);
    if (!hit || hit.level === undefined) return;
    const v = levelToValue(this.layer.stats[hit.channel], hit.level);
    this.readout.textContent =
      this.mode === "sequence"
        ? `channel ${hit.channel}, t = ${hit.index}: ${fmt(v)}`
        : `unit ${hit.index}: ${fmt(v)}`;
  }

  show(layer, tables, layout, size) {
    this.layer = layer;
    this.mode = layout;
    const n = layer.channels.length;
    if (layout === "sequence") {
      const T = layer.channels[0]?.width || 1;
      const img = ensureImage(this.canvas, T, n);
      const out = new Uint32Array(img.data.buffer);
      for (let c = 0; c < n; c++) {
        const { gray } = layer.channels[c];
        const table = tables[c];
        const base = c * T;
        for (let t = 0; t < T; t++) out[base + t] = table[gray[t]];
      }
      this.canvas._ctx.putImageData(img, 0, 0);
      const width = Math.min(Math.max(T * 6, 360), 960);
      const rowPx = Math.max(3, Math.min(24, Math.floor((size * 4) / n)));
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${rowPx * n}px`;
      // Label every row that has room for its number.
      const every = Math.max(1, Math.ceil(12 / rowPx));
      const labels = [];
      for (let c = 0; c < n; c += every) {
        labels.push(
          h(
            "span",
            { style: `top:${c * rowPx}px;height:${rowPx}px;line-height:${rowPx}px` },
            String(c),
          ),
        );
      }
      this.rowLabels.style.height = `${rowPx * n}px`;
      this.rowLabels.replaceChildren(...labels);
      this.axis.textContent = `rows: channels 0–${n - 1} · columns: time 0–${T - 1}`;
      const dead = layer.stats.map((r, c) => (isDead(r) ? c : -1)).filter((c) => c >= 0);
      this.dead.textContent = dead.length ? `All-zero channels: ${dead.join(", ")}` : "";
      this.dead.className = dead.length ? "dead-list" : "muted";
    } else {
      const ch = layer.channels[0];
      const U = ch.gray.length;
      const cols = unitColumns(U);
      const rows = Math.ceil(U / cols);
      this.cols = cols;
      const img = ensureImage(this.canvas, cols, rows);
      const out = new Uint32Array(img.data.buffer);
      const table = tables[0];
      for (let i = 0; i < cols * rows; i++) out[i] = i < U ? table[ch.gray[i]] : 0;
      this.canvas._ctx.putImageData(img, 0, 0);
      const cell = Math.max(6, Math.min(40, Math.floor((size * 4) / cols)));
      this.canvas.style.width = `${cell * cols}px`;
      this.canvas.style.height = `${cell * rows}px`;
      this.rowLabels.replaceChildren();
      this.axis.textContent = `${U} units, ${cols} per row (unit i at row ⌊i/${cols}⌋, column i mod ${cols})`;
      const row = layer.stats[0];
      this.dead.textContent = isDead(row)
        ? "Every unit is 0 at this step."
        : row
          ? `${Math.round(row[STAT.zero] * U)} of ${U} units are 0.`
          : "";
      this.dead.className = isDead(row) ? "dead-list" : "muted";
    }
  }
}

/** A horizontal colour ramp with its real-valued ends and zero, when inside. */
export function colorbar(lut, win, caption, labels) {
  const canvas = h("canvas", { className: "colorbar", width: 256, height: 1 });
  const ctx = canvas.getContext("2d");
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

export function statsTable(row, fields) {
  if (!row) return h("div", { className: "muted" }, "No statistics.");
  const names = {
    min: "min",
    max: "max",
    mean: "mean",
    std: "std",
    zero_fraction: "zeros",
    nonfinite_fraction: "non-finite",
  };
  const cells = [];
  (fields || Object.keys(names)).forEach((f, i) => {
    const v = row[i];
    const text = f.endsWith("fraction")
      ? v === null
        ? "NaN"
        : `${Number((v * 100).toFixed(1))}%`
      : fmt(v);
    cells.push(h("dt", {}, names[f] || f), h("dd", {}, text));
  });
  return h("dl", { className: "stats" }, cells);
}

/**
 * The opened channel: zoomed image with value readout, colorbar, statistics
 * and its evolution over all kept steps.
 */
export class Detail {
  constructor(el, { onClose, onStep }) {
    this.el = el;
    this.onStep = onStep;
    this.title = h("h2", { className: "detail-title" });
    this.close = h(
      "button",
      { type: "button", className: "close", title: "Close (Esc)", onclick: onClose },
      "✕",
    );
    this.canvas = h("canvas", { className: "big" });
    this.readout = h(
      "div",
      { className: "readout", id: "readout" },
      "Hover the image to read values.",
    );
    this.bar = h("div", { className: "detail-bar" });
    this.stats = h("div");
    this.evoTitle = h("div", { className: "section-title" }, "Evolution");
    this.evoNote = h("div", { className: "muted evo-note" });
    this.trend = h("canvas", { className: "trend", id: "trend" });
    this.trendLabels = h("div", { className: "trend-labels muted" });
    this.trendKey = h(
      "div",
      { className: "trend-key muted" },
      "mean (line) and min..max (band) over the steps",
    );
    this.trendBox = h(
      "div",
      { className: "trend-box", hidden: true },
      h("div", { className: "trend-row" }, this.trendLabels, this.trend),
      this.trendKey,
    );
    this.evo = h("div", { className: "evolution", id: "evolution" });
    this.evoFrames = [];
    el.replaceChildren(
      h("div", { className: "detail-head" }, this.title, this.close),
      h("div", { className: "big-box" }, this.canvas),
      this.readout,
      this.bar,
      this.stats,
      this.evoTitle,
      this.evoNote,
      this.trendBox,
      this.evo,
    );
    this.canvas.addEventListener("mousemove", (ev) => this._hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = "Hover the image to read values.";
    });
  }

  _hover(ev) {
    const s = this.shown;
    if (!s) return;
    const p = pixelAt(this.canvas, ev, this.canvas.width, this.canvas.height);
    if (!p) return;
    let index;
    let where;
    if (s.layout === "units") {
      index = p.y * s.cols + p.x;
      if (index >= s.channel.gray.length) return;
      where = `unit ${index}`;
    } else {
      index = p.y * s.channel.width + p.x;
      if (s.layout === "sequence") where = `t = ${p.x}`;
      else {
        const sx = s.info.source_width / s.channel.width;
        const sy = s.info.source_height / s.channel.height;
        where =
          sx > 1 || sy > 1
            ? `x ${Math.floor(p.x * sx)}, y ${Math.floor(p.y * sy)} (pixel ${p.x}, ${p.y} of the ${sx}× reduced map)`
            : `x ${p.x}, y ${p.y}`;
      }
    }
    const level = s.channel.gray[index];
    const v = levelToValue(s.row, level);
    const r = s.row ? (s.row[STAT.max] - s.row[STAT.min]) / 255 : 0;
    const pm = r > 0 ? ` (±${fmt(r / 2)})` : "";
    this.readout.textContent = `${where}: ${fmt(v)}${pm}`;
  }

  /** The zoomed image fills the panel's width, up to 320 px. */
  _bigSize() {
    return Math.max(160, Math.min(320, (this.el.clientWidth || 400) - 48));
  }

  /** `s`: {info, layout, tag, channelIndex, step, epoch, channel, row, fields, table, lut, win, caption} */
  show(s) {
    this.el.hidden = false;
    this.shown = s;
    const what = s.layout === "units" ? "Units" : `Channel ${s.channelIndex}`;
    this.title.replaceChildren(
      h("span", {}, what),
      h("span", { className: "muted" }, " of "),
      h("span", { className: "detail-layer" }, s.tag),
      h(
        "span",
        { className: "muted" },
        ` · step ${s.step}${s.epoch !== null && s.epoch !== undefined ? ` · ${fmtEpoch(s.epoch)}` : ""}`,
      ),
    );
    const ch = s.channel;
    if (s.layout === "units") {
      const U = ch.gray.length;
      const cols = unitColumns(U);
      const rows = Math.ceil(U / cols);
      s.cols = cols;
      const img = ensureImage(this.canvas, cols, rows);
      const out = new Uint32Array(img.data.buffer);
      for (let i = 0; i < cols * rows; i++) out[i] = i < U ? s.table[ch.gray[i]] : 0;
      this.canvas._ctx.putImageData(img, 0, 0);
      fitCanvas(this.canvas, cols, rows, this._bigSize());
    } else {
      paint(this.canvas, ch, s.table);
      if (s.layout === "sequence") {
        this.canvas.style.width = "100%";
        this.canvas.style.height = "40px";
      } else {
        fitCanvas(this.canvas, ch.width, ch.height, this._bigSize());
      }
    }
    this.bar.replaceChildren(colorbar(s.lut, s.win, s.caption));
    this.stats.replaceChildren(statsTable(s.row, s.fields));
  }

  /** `frames`: [{step, epoch, channel, table}], drawn as tiles (image) or rows (strips). */
  showEvolution(frames, layout, currentStep, note) {
    const strip = layout !== "image";
    this.evoTitle.textContent = `Evolution over ${frames.length} step${frames.length === 1 ? "" : "s"}`;
    this.evoNote.textContent = note || "";
    this.evo.className = strip ? "evolution rows" : "evolution tiles";
    const els = [];
    frames.forEach((f, i) => {
      let fr = this.evoFrames[i];
      if (!fr) {
        const canvas = h("canvas");
        const label = h("span", { className: "frame-label" });
        const el = h("button", { type: "button", className: "frame" }, canvas, label);
        fr = { el, canvas, label };
        el.addEventListener("click", () => this.onStep(fr.step));
        this.evoFrames[i] = fr;
      }
      fr.step = f.step;
      paint(fr.canvas, f.channel, f.table);
      if (strip) {
        fr.canvas.style.width = "";
        fr.canvas.style.height = "";
      } else {
        fitCanvas(fr.canvas, f.channel.width, f.channel.height, 56);
      }
      fr.label.textContent = `${f.step}`;
      fr.el.title = `step ${f.step}${f.epoch !== null && f.epoch !== undefined ? `, ${fmtEpoch(f.epoch)}` : ""}`;
      fr.el.classList.toggle("current", f.step === currentStep);
      fr.el.dataset.step = String(f.step);
      els.push(fr.el);
    });
    this.evoFrames.length = Math.max(this.evoFrames.length, frames.length);
    this.evo.replaceChildren(...els);
    this.showTrend(
      frames.map((f) => ({ step: f.step, stats: f.channel.stats })),
      currentStep,
    );
    this._revealCurrent();
  }

  /** Scrolls the evolution list only; scrollIntoView would move the page too. */
  _revealCurrent() {
    const cur = this.evo.querySelector(".current");
    if (!cur) return;
    const top =
      cur.getBoundingClientRect().top - this.evo.getBoundingClientRect().top + this.evo.scrollTop;
    if (
      top < this.evo.scrollTop ||
      top + cur.offsetHeight > this.evo.scrollTop + this.evo.clientHeight
    ) {
      this.evo.scrollTop = Math.max(0, top - this.evo.clientHeight / 2);
    }
  }

  markStep(step) {
    for (const fr of this.evoFrames) if (fr) fr.el.classList.toggle("current", fr.step === step);
    this._revealCurrent();
    if (this.trendData) this._drawTrend(this.trendData, step);
  }

  /** min..max band and mean over the steps: growth or decay at a glance. */
  showTrend(points, currentStep) {
    this.trendData = points.filter(
      (p) => p.stats && p.stats[STAT.min] !== null && p.stats[STAT.max] !== null,
    );
    this.trendBox.hidden = this.trendData.length < 2;
    if (!this.trendBox.hidden) this._drawTrend(this.trendData, currentStep);
  }

  _drawTrend(points, currentStep) {
    const dpr = window.devicePixelRatio || 1;
    const c = this.trend;
    const W = Math.round(c.getBoundingClientRect().width) || 320;
    const H = 64;
    if (c.width !== W * dpr) {
      c.width = W * dpr;
      c.height = H * dpr;
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      lo = Math.min(lo, p.stats[STAT.min]);
      hi = Math.max(hi, p.stats[STAT.max]);
    }
    if (hi === lo) hi = lo + 1;
    const s0 = points[0].step;
    const s1 = points[points.length - 1].step;
    const X = (step) => 4 + ((step - s0) / Math.max(1, s1 - s0)) * (W - 8);
    const Y = (v) => H - 4 - ((v - lo) / (hi - lo)) * (H - 8);
    ctx.fillStyle = "rgba(245, 124, 0, 0.18)";
    ctx.beginPath();
    points.forEach((p, i) =>
      (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.step), Y(p.stats[STAT.max])),
    );
    for (let i = points.length - 1; i >= 0; i--)
      ctx.lineTo(X(points[i].step), Y(points[i].stats[STAT.min]));
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = "#e65100";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((p, i) =>
      (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.step), Y(p.stats[STAT.mean])),
    );
    ctx.stroke();
    if (lo < 0 && hi > 0) {
      ctx.strokeStyle = "#bdbdbd";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(0, Y(0));
      ctx.lineTo(W, Y(0));
      ctx.stroke();
    }
    const cur = points.find((p) => p.step === currentStep);
    if (cur) {
      ctx.strokeStyle = "#212121";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(X(cur.step), 0);
      ctx.lineTo(X(cur.step), H);
      ctx.stroke();
    }
    this.trendLabels.replaceChildren(h("span", {}, fmt(hi)), h("span", {}, fmt(lo)));
  }

  evolutionMessage(text) {
    this.evoTitle.textContent = "Evolution";
    this.evoNote.textContent = "";
    this.trendData = null;
    this.trendBox.hidden = true;
    this.evo.replaceChildren(h("div", { className: "muted" }, text));
  }

  hide() {
    this.el.hidden = true;
    this.shown = null;
  }
}

/** What to show when nothing has been logged yet. */
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

export function errorList(el, errors) {
  el.replaceChildren(
    ...[...errors.entries()].map(([k, msg]) =>
      h("div", { className: "error", dataset: { kind: k } }, h("strong", {}, "Error: "), msg),
    ),
  );
}
