// @ts-check
// The module TensorBoard's iframe imports: it calls render() once this file
// alone has loaded, since it imports nothing. render() then asks for
// everything the first view needs at once: the first data requests, the
// stylesheets and every module of the panel, so that the browser fetches
// them side by side instead of discovering the modules level by level
// through their imports. The panel itself is app.js and what it imports.
//
// MODULES must list every module app.js reaches (tests/test_frontend.py
// checks it); one missing is only fetched later, not lost.

/** The panel's modules, in any order. */
export const MODULES = [
  "app.js",
  "actions.js",
  "attention-view.js",
  "channel-order.js",
  "color.js",
  "compare-view.js",
  "compare.js",
  "curves.js",
  "depth-profile.js",
  "depth-view.js",
  "detail.js",
  "diff.js",
  "dom.js",
  "downloads.js",
  "grid-bar.js",
  "hooks.js",
  "layer-view.js",
  "map-marks.js",
  "map-measures.js",
  "map-view.js",
  "model.js",
  "order-view.js",
  "overlay-view.js",
  "overlay.js",
  "panel.js",
  "probe-inputs.js",
  "state.js",
  "steps-view.js",
  "store.js",
  "strip-map.js",
  "tile-grid.js",
  "timeline.js",
  "token-grid-view.js",
  "tokens.js",
  "training-map.js",
  "url.js",
  "views.js",
];

/** The stylesheets, one per part of the panel. */
export const STYLES = [
  "style-base.css",
  "style-layer.css",
  "style-timeline.css",
  "style-map.css",
  "style-compare.css",
  "style-tokens.css",
];

/** The requests every first view starts with, by their URL. */
const FIRST_REQUESTS = ["colormaps", "tags"];

/** @type {Map<string, Promise<Response>>} Started by render(), each taken once. */
const early = new Map();

/**
 * The response of a request render() started before the panel loaded, or
 * null: the first caller of a URL takes it, any later one fetches anew.
 * @param {string} url
 * @returns {Promise<Response> | null}
 */
export function takeEarly(url) {
  const p = early.get(url);
  if (!p) return null;
  early.delete(url);
  return p;
}

/** Resolves when every stylesheet has loaded (or failed), or after 2 s. */
function loadStyles() {
  const sheets = STYLES.map(
    (file) =>
      new Promise((resolve) => {
        const link = document.createElement("link");
        link.rel = "stylesheet";
        link.href = `static/${file}`;
        link.addEventListener("load", resolve);
        link.addEventListener("error", resolve);
        document.head.append(link);
      }),
  );
  return Promise.race([Promise.all(sheets), new Promise((r) => setTimeout(r, 2000))]);
}

export async function render() {
  // Data first: these queue for the same few connections as the files.
  for (const url of FIRST_REQUESTS) {
    const response = fetch(url);
    // Its taker reports a failure; until then it is not unhandled.
    response.catch(() => {});
    early.set(url, response);
  }
  const styles = loadStyles();
  for (const file of MODULES) {
    const link = document.createElement("link");
    link.rel = "modulepreload";
    link.href = `static/${file}`;
    document.head.append(link);
  }
  const app = await import("./app.js");
  await app.render(styles);
}
