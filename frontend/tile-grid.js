// @ts-check
// The grid of channel tiles for image layers.

import { fmt, hasNonFinite, isDead, stat } from "./color.js";
import { h } from "./dom.js";

/** @typedef {import("./model.js").Layer} Layer */
/** @typedef {import("./color.js").StatIndex} StatIndex */
/** @typedef {import("./color.js").StatsRow} StatsRow */

/**
 * @typedef {Object} Tile
 * @property {HTMLDivElement} el
 * @property {HTMLSpanElement} label
 * @property {HTMLElement | null} marks
 * @property {string} markKey what the marks show, so they are rebuilt only on change
 * @property {string} geometry
 * @property {boolean} selected
 */

/** @typedef {import("./overlay.js").TilePainter} TilePainter */
/** @typedef {[Layer, Uint32Array[], number, number | null, (number[] | null)?, (TilePainter | null)?]} ShowArgs */

const GAP = 6;
const CAPTION = 16;

/** @param {StatsRow | undefined} row @param {StatIndex} ix */
function badges(row, ix) {
  const out = [];
  if (isDead(row, ix))
    out.push(h("span", { className: "badge dead", title: "Every value is 0" }, "all 0"));
  else if (hasNonFinite(row, ix)) {
    out.push(h("span", { className: "badge nan", title: "Has NaN or infinite values" }, "NaN"));
  }
  return out;
}

/**
 * Every tile is drawn into one atlas canvas (one putImageData, one
 * composited layer), with a light DOM element over each tile for its label,
 * marks, hover and clicks: hundreds of separate canvases cost far more to
 * create and composite.
 */
export class TileGrid {
  /** @param {(channel: number) => void} onOpen */
  constructor(onOpen) {
    this.canvas = h("canvas", { className: "atlas" });
    this.overlay = h("div", { className: "atlas-tiles", role: "list" });
    this.el = h("div", { className: "grid" }, this.canvas, this.overlay);
    /** @type {Tile[]} */
    this.tiles = [];
    this.onOpen = onOpen;
    /** @type {{tileW: number, args: ShowArgs} | null} */
    this.last = null;
    /** @type {Layer | null} */
    this.layer = null;
    this.cols = 0;
    /** What a tile is called in its caption ("head 3"); "" captions it by number only. */
    this.noun = "";
    /** @type {CanvasRenderingContext2D | null} */
    this.ctx = null;
    /** @type {ImageData | null} */
    this.image = null;
    // The view narrows when the detail opens; re-flow only if columns change.
    this.resize = new ResizeObserver(() => {
      if (this.last && this.el.isConnected && this._columns(this.last) !== this.cols) {
        this.show(...this.last.args);
      }
    });
    this.resize.observe(this.el);
  }

  /** @param {number} c */
  _tile(c) {
    let t = this.tiles[c];
    if (!t) {
      // Two elements per tile: hundreds of tiles are laid out on every switch.
      const label = h("span", { className: "tile-label" }, this._caption(c));
      const el = h(
        "div",
        {
          className: "tile",
          role: "listitem",
          tabIndex: 0,
          dataset: { channel: String(c) },
          onclick: () => this.onOpen(c),
          onkeydown: (/** @type {KeyboardEvent} */ ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              this.onOpen(c);
            }
          },
          // The tooltip is written when wanted, not for every tile on every step.
          onmouseenter: () => {
            const layer = this.layer;
            const row = layer?.stats[c];
            el.title =
              layer && row
                ? `${this.noun || "channel"} ${c}: min ${fmt(stat(row, layer.fields.min))}, max ${fmt(stat(row, layer.fields.max))}, mean ${fmt(stat(row, layer.fields.mean))}`
                : `${this.noun || "channel"} ${c}: no finite values`;
          },
        },
        label,
      );
      t = { el, label, marks: null, markKey: "falsefalse", geometry: "", selected: false };
      this.tiles[c] = t;
    }
    return t;
  }

  /** @param {number} c */
  _caption(c) {
    return this.noun ? `${this.noun} ${c}` : String(c);
  }

  /**
   * Captions the tiles "noun c" ("head 3": an attention series' channels are
   * its heads), or by number only for "".
   * @param {string} noun
   */
  name(noun) {
    if (noun === this.noun) return;
    this.noun = noun;
    this.tiles.forEach((t, c) => t && (t.label.textContent = this._caption(c)));
  }

  /** @param {{tileW: number}} geometry */
  _columns({ tileW }) {
    const avail = this.el.clientWidth || this.el.parentElement?.clientWidth || 800;
    return Math.max(1, Math.floor((avail + GAP) / (tileW + GAP)));
  }

  /**
   * @param {Layer} layer
   * @param {Uint32Array[]} tables one per channel
   * @param {number} size a tile's longer side, in CSS pixels
   * @param {number | null} selected the opened channel
   * @param {number[] | null} [order] the channels to show, in order (sorted,
   *   filtered); null: every channel by index. Tiles are only placed again:
   *   nothing is fetched.
   * @param {TilePainter | null} [painter] draws each tile instead of its
   *   levels through its table (e.g. over the probe), at the painter's size
   */
  show(layer, tables, size, selected, order = null, painter = null) {
    const n = order ? order.length : layer.channels.length;
    this.canvas.hidden = !n;
    if (!n) {
      this.last = null;
      this.overlay.replaceChildren(
        h("div", { className: "muted grid-none" }, `No ${this.noun || "channel"} matches the filter.`),
      );
      return;
    }
    const { width: w, height: hh } = painter || layer.channels[order ? order[0] : 0];
    const scale = size / Math.max(w, hh);
    const tileW = w * scale;
    const geometry = { tileW };
    const cols = Math.min(n, this._columns(geometry));
    this.cols = this._columns(geometry);
    this.last = { tileW, args: [layer, tables, size, selected, order, painter] };
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
    if (this.canvas.width !== aw || this.canvas.height !== ah || !this.image || !this.ctx) {
      this.canvas.width = aw;
      this.canvas.height = ah;
      this.ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d"));
      this.image = this.ctx.createImageData(aw, ah);
    }
    const out = new Uint32Array(this.image.data.buffer);
    out.fill(0);
    const xs = new Int32Array(dw);
    for (let x = 0; x < dw; x++) xs[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / dw));
    const ys = new Int32Array(dh);
    for (let y = 0; y < dh; y++) ys[y] = Math.min(hh - 1, Math.floor(((y + 0.5) * hh) / dh));
    const ix = layer.fields;
    const els = [];
    for (let at = 0; at < n; at++) {
      const c = order ? order[at] : at;
      const ch = layer.channels[c];
      const col = at % cols;
      const row = (at / cols) | 0;
      const ax = col * (dw + gx);
      const ay = row * (dh + gy);
      const table = tables[c];
      const g = ch.gray;
      const sw = ch.width;
      if (painter) {
        painter.paint(c, out, aw, ay * aw + ax, dw, dh);
      } else if (dw === sw && dh === ch.height) {
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
      const dead = isDead(row0, ix);
      const key = `${dead}${hasNonFinite(row0, ix)}`;
      if (key !== t.markKey) {
        t.marks?.remove();
        const marks = badges(row0, ix);
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
    const kids = this.overlay.children;
    if (kids.length !== n || els.some((el, i) => kids[i] !== el)) {
      this.overlay.replaceChildren(...els);
    }
  }

  /** @param {number | null} c */
  select(c) {
    for (const t of this.tiles) {
      if (!t) continue;
      t.selected = t.el.dataset.channel === String(c);
      t.el.classList.toggle("selected", t.selected);
    }
  }
}
