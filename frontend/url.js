// @ts-check
// The URL follows the state, and leads it. The tab lives in an iframe;
// TensorBoard keeps the top page's hash (#activations) across reloads and
// leaves extra "&key=value" pairs alone, so the selection is written there,
// in the style of TensorBoard's older hash storage. If the parent is out of
// reach, the iframe's own hash is used instead.
//
// Opening a run, layer, step, channel or view pushes a history entry, so
// Back and Forward move between them; in-between states (a slider drag, a
// colour choice) replace the current entry. Writes are batched: a push and
// the replaces after it within one batch make one entry. A hash the panel
// did not write (a link pasted into the open tab, an edited hash, Back or
// Forward) is read back into the state.

import { fromParams, initialState, toParams } from "./state.js";

/** @typedef {import("./state.js").ViewState} ViewState */
/** @typedef {import("./store.js").History} History */

export const PLUGIN = "activations";
const BATCH_MS = 150;

/** The top page, when the panel may use its URL; else null. */
export function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.href) return window.parent;
  } catch {
    // A cross-origin embedder: fall back to our own URL.
  }
  return null;
}

/** The window whose hash carries the state. */
function target() {
  return hostWindow() || window;
}

/**
 * The selection the URL names: the parent's "#activations&..." pairs or the
 * iframe's own hash; null when the URL names none (another tab is shown, or
 * TensorBoard reset the hash to "#activations").
 * @returns {URLSearchParams | null}
 */
export function readParams() {
  const host = hostWindow();
  if (host && host.location.hash.startsWith(`#${PLUGIN}&`)) {
    return new URLSearchParams(host.location.hash.slice(PLUGIN.length + 2));
  }
  return location.hash.length > 1 ? new URLSearchParams(location.hash.slice(1)) : null;
}

/**
 * What the state becomes when the user goes to `params`: the URL's fields,
 * with those it leaves out at their defaults. The run and layer stay when
 * the URL does not name them; an unnamed step is the latest.
 * @param {ViewState} now @param {URLSearchParams} params
 * @returns {Partial<ViewState>}
 */
export function stateOf(now, params) {
  const next = initialState();
  next.run = now.run;
  next.tag = now.tag;
  next.view = null;
  fromParams(next, params);
  /** @type {Partial<ViewState>} */
  const patch = {};
  for (const k of /** @type {(keyof ViewState)[]} */ (Object.keys(next))) {
    // Not carried by the URL: what the user is doing stays as it is.
    if (["filter", "playing", "direction", "size", "timelineOpen", "steps"].includes(k)) continue;
    /** @type {any} */ (patch)[k] = next[k];
  }
  if (patch.view === null) patch.view = now.view ?? "layer";
  return patch;
}

/** Writes the state to the URL, and hears the URL change under it. */
export class Url {
  /** @param {() => ViewState} state */
  constructor(state) {
    this.state = state;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.push = false;
    /** The hash last written or read, so our own writes are not read back. */
    this.seen = "";
  }

  /** @param {History} how */
  write(how) {
    if (how === "none") return;
    if (how === "push") this.push = true;
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), BATCH_MS);
  }

  /** Writes now what is pending. */
  flush() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const push = this.push;
    this.push = false;
    const params = toParams(this.state());
    const host = hostWindow();
    try {
      // Only while our tab is the one shown: never steal another tab's hash.
      if (host) {
        const hash = host.location.hash;
        if (hash !== `#${PLUGIN}` && !hash.startsWith(`#${PLUGIN}&`)) return;
        this.put(host, params ? `#${PLUGIN}&${params}` : `#${PLUGIN}`, push);
        return;
      }
    } catch {
      // Fall through to the iframe's own URL.
    }
    if (!host) this.put(window, params ? `#${params}` : location.pathname + location.search, push);
  }

  /** @param {Window} w @param {string} want @param {boolean} push */
  put(w, want, push) {
    const now = w.location.hash;
    const hash = want.startsWith("#") ? want : "";
    if (now === hash) return;
    // A bare "#activations" is TensorBoard's, not a view the user opened.
    if (push && now !== `#${PLUGIN}` && now !== "") w.history.pushState(w.history.state, "", want);
    else w.history.replaceState(w.history.state, "", want);
    this.seen = w.location.hash;
  }

  /**
   * Calls `go` with what the URL names whenever it changes under the panel.
   * @param {(params: URLSearchParams) => void} go
   */
  listen(go) {
    const w = target();
    const heard = () => {
      let hash;
      try {
        hash = w.location.hash;
      } catch {
        return;
      }
      if (hash === this.seen) return;
      // Coming back to the tab, TensorBoard resets the hash to
      // "#activations": put the selection back so the address stays shareable.
      if (w !== window && hash === `#${PLUGIN}`) {
        this.write("replace");
        return;
      }
      const params = readParams();
      this.seen = hash;
      if (params === null) return;
      if (this.timer !== null) {
        clearTimeout(this.timer);
        this.timer = null;
        this.push = false;
      }
      go(params);
    };
    w.addEventListener("hashchange", heard);
    w.addEventListener("popstate", heard);
  }
}
