// @ts-check
// Overlay on the probe: each channel's map, resized to the probe's size
// (nearest or smooth), coloured through the same level -> RGBA tables as the
// tiles (so the colormap, the scale and diff mode carry over), blended over
// the probe image as the model saw it.
//
// A channel's levels are an affine function of its values (color.js), so
// interpolating levels bilinearly is interpolating the values: "smooth"
// resizes the real map, not its colours.

import { choiceSelect, h, surface } from "./dom.js";
import { isAttention } from "./tokens.js";

/** @typedef {import("./model.js").GrayMap} GrayMap */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/** @typedef {"smooth" | "nearest"} Resize */

/** @type {Resize[]} */
const RESIZES = ["smooth", "nearest"];
const DEFAULT_OPACITY = 0.6;

/** @param {string} v @returns {v is Resize} */
export function isResize(v) {
  return RESIZES.some((r) => r === v);
}

/**
 * An opacity from the URL: a number in (0, 1]; 0 (off) or null when unusable.
 * @param {string} v
 */
export function parseOpacity(v) {
  const n = Number(v);
  if (v === "" || !Number.isFinite(n) || n < 0) return null;
  return Math.min(1, Math.round(n * 100) / 100);
}

/**
 * Why a layer cannot be overlaid on its probe, or "" when it can.
 * @param {LayerInfo} info
 * @param {boolean} hasProbe whether the run logged its probe images
 */
export function overlayNote(info, hasProbe) {
  if (info.layout === "units") {
    return `Overlay does not apply to ${info.layer}: its ${info.width} units have no spatial map to place on the probe.`;
  }
  if (info.layout === "sequence") {
    return `Overlay does not apply to ${info.layer}: a sequence has no 2-D map to place on the probe.`;
  }
  if (info.layout !== "image") return `Overlay does not apply to ${info.layer}.`;
  if (isAttention(info)) {
    return `Overlay does not apply to ${info.layer}: a head's map is queries × keys, not a place on the probe.`;
  }
  if (!hasProbe) return "No overlay: this run did not log its probe images.";
  return "";
}

/**
 * A probe image's pixels, packed as the canvas packs them (one Uint32 per pixel).
 * @typedef {{width: number, height: number, rgba: Uint32Array, image: CanvasImageSource}} ProbePixels
 */

/**
 * Probe images decoded once per (run, probe), and resized once per size
 * the grid draws them at.
 */
export class ProbeImages {
  /** @param {(run: string, probe: number) => Promise<string>} load an object URL of the PNG */
  constructor(load) {
    this.load = load;
    /** @type {Map<string, Promise<ProbePixels>>} */
    this.pending = new Map();
    /** @type {Map<string, ProbePixels>} */
    this.ready = new Map();
    /** @type {WeakMap<ProbePixels, Map<string, Uint32Array>>} */
    this.sized = new WeakMap();
  }

  /** @param {string} run @param {number} probe */
  peek(run, probe) {
    return this.ready.get(`${probe}\u0000${run}`);
  }

  /** @param {string} run @param {number} probe @returns {Promise<ProbePixels>} */
  get(run, probe) {
    const k = `${probe}\u0000${run}`;
    let p = this.pending.get(k);
    if (!p) {
      p = this.load(run, probe).then(async (url) => {
        const img = new Image();
        img.src = url;
        await img.decode();
        const pixels = {
          width: img.naturalWidth,
          height: img.naturalHeight,
          rgba: drawn(img, img.naturalWidth, img.naturalHeight),
          image: img,
        };
        this.ready.set(k, pixels);
        return pixels;
      });
      p.catch(() => this.pending.delete(k));
      this.pending.set(k, p);
    }
    return p;
  }

  /**
   * The probe at w x h pixels (the browser's own smooth scaling), cached.
   * @param {ProbePixels} probe @param {number} w @param {number} hh
   */
  resized(probe, w, hh) {
    if (w === probe.width && hh === probe.height) return probe.rgba;
    let sizes = this.sized.get(probe);
    if (!sizes) this.sized.set(probe, (sizes = new Map()));
    const k = `${w}x${hh}`;
    let out = sizes.get(k);
    if (!out) sizes.set(k, (out = drawn(probe.image, w, hh)));
    return out;
  }
}

/** @param {CanvasImageSource} image @param {number} w @param {number} hh */
function drawn(image, w, hh) {
  const canvas = h("canvas", { width: w, height: hh });
  const ctx = /** @type {CanvasRenderingContext2D} */ (
    canvas.getContext("2d", { willReadFrequently: true })
  );
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, 0, 0, w, hh);
  return new Uint32Array(ctx.getImageData(0, 0, w, hh).data.buffer);
}

/**
 * Where each of `n` output pixels samples a source of `size` pixels: nearest
 * takes the source pixel under the centre; smooth interpolates between the
 * two nearest source centres (clamped at the edges).
 * @typedef {{i0: Int32Array, i1: Int32Array, w1: Float32Array}} Sampling
 * @param {number} n @param {number} size @param {Resize} resize
 * @returns {Sampling}
 */
function sampling(n, size, resize) {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const w1 = new Float32Array(n);
  for (let x = 0; x < n; x++) {
    const u = ((x + 0.5) * size) / n;
    if (resize === "nearest") {
      i0[x] = i1[x] = Math.min(size - 1, Math.floor(u));
      continue;
    }
    const f = Math.max(0, Math.min(size - 1, u - 0.5));
    const a = Math.min(size - 2, Math.floor(f));
    i0[x] = Math.max(0, a);
    i1[x] = Math.min(size - 1, a + 1);
    w1[x] = size > 1 ? f - a : 0;
  }
  return { i0, i1, w1 };
}

/**
 * Mixes two packed RGBA pixels, lane by lane: a / 256 of `fg`, the rest of
 * `bg`. Works for either byte order: every lane is treated alike.
 * @param {number} fg @param {number} bg @param {number} a 0..256
 */
function mix(fg, bg, a) {
  const b = 256 - a;
  const lo = ((((fg & 0x00ff00ff) * a + (bg & 0x00ff00ff) * b) >>> 8) & 0x00ff00ff) >>> 0;
  const hi = ((((fg >>> 8) & 0x00ff00ff) * a + ((bg >>> 8) & 0x00ff00ff) * b) & 0xff00ff00) >>> 0;
  return (lo | hi) >>> 0;
}

/**
 * One channel over its probe at w x h pixels, written into `out` (a row
 * stride of `stride`, from offset `at`).
 * @param {GrayMap} map
 * @param {Uint32Array} table level -> RGBA
 * @param {Uint32Array} probe the probe at w x h
 * @param {number} alpha 0..1: the colormap's share
 * @param {Resize} resize
 * @param {number} w @param {number} hh
 * @param {Uint32Array} out @param {number} stride @param {number} at
 * @param {Sampling} [xs] @param {Sampling} [ys] the sampling across and down, when already made
 */
export function blend(
  map,
  table,
  probe,
  alpha,
  resize,
  w,
  hh,
  out,
  stride,
  at,
  xs = sampling(w, map.width, resize),
  ys = sampling(hh, map.height, resize),
) {
  const a = Math.round(alpha * 256);
  const g = map.gray;
  const mw = map.width;
  for (let y = 0; y < hh; y++) {
    const r0 = ys.i0[y] * mw;
    const r1 = ys.i1[y] * mw;
    const wy = ys.w1[y];
    let o = at + y * stride;
    let p = y * w;
    if (resize === "nearest") {
      for (let x = 0; x < w; x++) out[o++] = mix(table[g[r0 + xs.i0[x]]], probe[p++], a);
      continue;
    }
    for (let x = 0; x < w; x++) {
      const x0 = xs.i0[x];
      const x1 = xs.i1[x];
      const wx = xs.w1[x];
      const top = g[r0 + x0] + (g[r0 + x1] - g[r0 + x0]) * wx;
      const bottom = g[r1 + x0] + (g[r1 + x1] - g[r1 + x0]) * wx;
      const level = Math.round(top + (bottom - top) * wy);
      out[o++] = mix(table[level], probe[p++], a);
    }
  }
}

/**
 * What the tile grid calls to draw each tile over its probe, instead of
 * its own colours (tile-grid.js `show`'s `painter`).
 * @typedef {Object} TilePainter
 * @property {number} width the tiles' source size: the probe's
 * @property {number} height
 * @property {(c: number, out: Uint32Array, stride: number, at: number, w: number, h: number) => void} paint
 */

/**
 * @param {ProbeImages} images
 * @param {ProbePixels} probe
 * @param {GrayMap[]} channels what the tiles show (the activations, or a diff)
 * @param {Uint32Array[]} tables their level -> RGBA tables
 * @param {number} alpha
 * @param {Resize} resize
 * @returns {TilePainter}
 */
export function tilePainter(images, probe, channels, tables, alpha, resize) {
  // The channels of a layer share one size, and the tiles another: one
  // sampling serves every tile.
  let size = "";
  /** @type {Sampling | undefined} */
  let xs;
  /** @type {Sampling | undefined} */
  let ys;
  return {
    width: probe.width,
    height: probe.height,
    paint(c, out, stride, at, w, hh) {
      const under = images.resized(probe, w, hh);
      const map = channels[c];
      const now = `${w}x${hh}x${map.width}x${map.height}`;
      if (now !== size) {
        size = now;
        xs = sampling(w, map.width, resize);
        ys = sampling(hh, map.height, resize);
      }
      blend(map, tables[c], under, alpha, resize, w, hh, out, stride, at, xs, ys);
    },
  };
}

/**
 * The opened channel over its probe: a canvas laid on the zoomed image, at
 * the probe's own pixels. Pointer events go through it, so the readout
 * under it still reads the channel's values.
 */
export class DetailOverlay {
  constructor() {
    this.canvas = h("canvas", { className: "overlay-big", hidden: true });
    /** @type {HTMLCanvasElement | null} */
    this.under = null;
  }

  /** @param {HTMLCanvasElement} under the zoomed channel's canvas */
  attach(under) {
    this.under = under;
    under.after(this.canvas);
  }

  /**
   * @param {ProbePixels} probe @param {GrayMap} map @param {Uint32Array} table
   * @param {number} alpha @param {Resize} resize
   */
  draw(probe, map, table, alpha, resize) {
    const c = this.canvas;
    const under = this.under;
    if (!under) return;
    const { width: w, height: hh } = probe;
    const { ctx, image } = surface(c, w, hh);
    blend(map, table, probe.rgba, alpha, resize, w, hh, new Uint32Array(image.data.buffer), w, 0);
    ctx.putImageData(image, 0, 0);
    c.style.left = `${under.offsetLeft}px`;
    c.style.top = `${under.offsetTop}px`;
    c.style.width = under.style.width;
    c.style.height = under.style.height;
    c.hidden = false;
  }

  hide() {
    this.canvas.hidden = true;
  }
}

/**
 * @typedef {Object} OverlayChoice
 * @property {number} [overlay] the opacity drawn, 0 = off
 * @property {Resize} [resize]
 */

/** The overlay's controls over the grid: on/off, opacity, resizing, and why it does not apply. */
export class OverlayBar {
  /** @param {(choice: OverlayChoice) => void} onChange */
  constructor(onChange) {
    this.toggle = h("input", { id: "overlay-toggle", type: "checkbox" });
    this.opacity = h("input", {
      id: "overlay-opacity",
      type: "range",
      min: 0.05,
      max: 1,
      step: 0.05,
      value: DEFAULT_OPACITY,
      title: "Opacity of the activations over the probe",
      "aria-label": "Overlay opacity",
    });
    this.value = h("span", { className: "overlay-value muted" });
    this.resize = choiceSelect(
      { id: "overlay-resize", title: "How each map is resized to the probe's size" },
      RESIZES.map((id) => ({ id, label: id })),
    );
    this.note = h("span", { className: "overlay-note muted", id: "overlay-note" });
    this.controls = h(
      "span",
      { className: "overlay-controls" },
      h("label", { className: "inline" }, "Opacity", this.opacity, this.value),
      h("label", { className: "inline" }, "Resize", this.resize),
    );
    this.el = h(
      "div",
      { className: "overlay-bar", id: "overlay-bar" },
      h(
        "label",
        {
          className: "inline",
          title: "Draw each channel over the probe image it comes from",
        },
        this.toggle,
        "Overlay on probe",
      ),
      this.controls,
      this.note,
    );
    const send = () =>
      onChange({ overlay: this.toggle.checked ? Number(this.opacity.value) : 0 });
    this.toggle.addEventListener("change", send);
    this.opacity.addEventListener("input", () => {
      this.value.textContent = `${Math.round(Number(this.opacity.value) * 100)}%`;
      if (this.toggle.checked) send();
    });
    this.resize.addEventListener("change", () => {
      const v = this.resize.value;
      if (isResize(v)) onChange({ resize: v });
    });
  }

  /**
   * @param {number} overlay the opacity asked for, 0 = off
   * @param {Resize} resize
   * @param {string} note why it is not drawn ("" when it is, or is off)
   */
  update(overlay, resize, note) {
    this.toggle.checked = overlay > 0;
    if (overlay > 0 && document.activeElement !== this.opacity) {
      this.opacity.value = String(overlay);
    }
    this.value.textContent = `${Math.round(Number(this.opacity.value) * 100)}%`;
    this.resize.value = resize;
    this.controls.hidden = !(overlay > 0);
    this.note.textContent = overlay > 0 ? note : "";
  }
}
