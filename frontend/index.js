// @ts-check
// The module TensorBoard's iframe imports: it calls render() once this file
// alone has loaded, since it imports nothing. render() then asks for
// everything the first view needs at once: the first data requests, the
// stylesheet and every module of the first screen, so that the browser
// fetches them side by side instead of discovering the modules level by
// level through their imports. The panel itself is app.js and what it
// imports; the views the first screen does not draw load when first shown.
//
// MODULES must list every module app.js reaches through static imports,
// and LAZY those only its dynamic imports reach (tests/test_frontend.py
// checks both); one missing is only fetched later, not lost.

/** The first screen's modules, in any order: preloaded. */
export const MODULES = [
  "app.js",
  "actions.js",
  "channel-order.js",
  "color.js",
  "compare-view.js",
  "compare.js",
  "curves.js",
  "diff.js",
  "dom.js",
  "downloads.js",
  "grid-bar.js",
  "hooks.js",
  "layer-order.js",
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
  "tokens.js",
  "training-map.js",
  "url.js",
  "views.js",
];

/**
 * The modules of views the first screen does not draw, fetched when first
 * shown (by a dynamic import in app.js or layer-view.js), never preloaded:
 * the opened channel, the depth profile and the token views.
 */
export const LAZY = [
  "attention-view.js",
  "depth-profile.js",
  "depth-view.js",
  "detail.js",
  "reduction.js",
  "token-grid-view.js",
];

/**
 * The stylesheet: the server serves its parts (style-*.css, one per part of
 * the panel) as this one file, so it is one request (tb_activations/static.py).
 */
export const STYLESHEET = "style.css";

/** The `step` of a `layer` request that names the latest kept step. */
export const LATEST = "latest";

/** The requests every first view starts with, by their URL. */
const FIRST_REQUESTS = ["colormaps", "tags"];
/** Early answers nobody took (the app chose another view) are dropped then. */
const EARLY_MS = 20000;

/** @type {Map<string, Promise<Response>>} Started by render(), each taken once. */
const early = new Map();
/**
 * What the app asked for before it was started here (the app can overtake
 * a guess that waits for `tags` and `steps`): never started then, so that
 * each is asked for once. Kept while early answers are.
 * @type {Set<string> | null}
 */
let asked = new Set();
/** Every request started here, in order, for scripts (hooks.js). @type {string[]} */
export const STARTED = [];

/**
 * `route?params` as model.js writes it (same keys, same order), so that
 * the app's request finds the early one.
 * @param {string} route @param {Record<string, string | number>} params
 */
function url(route, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) q.set(k, String(v));
  return `${route}?${q}`;
}

/** @param {string} u @returns {Promise<Response> | null} null: the app asked first */
function start(u) {
  if (asked?.has(u)) return null;
  const response = fetch(u);
  STARTED.push(u);
  // Its taker reports a failure; until then it is not unhandled.
  response.catch(() => {});
  early.set(u, response);
  return response;
}

/**
 * The first view's own requests, as app.js will ask for them: its map, or
 * its layer at the step TensorBoard's address names or else the latest.
 * The run is the address's (a shared link, Back or a reload), or else the
 * app's own first choice, known once `tags` answers (startDefaultView). A
 * guess the app does not take costs one request.
 */
function startFirstView() {
  let host = null;
  try {
    host = window.parent === window ? null : window.parent.location.hash;
  } catch {
    // Another origin's page: the panel reads its own address alone.
  }
  const hash = host?.startsWith("#activations&") ? host.slice(13) : "";
  const p = new URLSearchParams(hash);
  const run = p.get("run");
  if (p.has("compare")) return;
  if (!run) {
    startDefaultView(p);
    return;
  }
  start(url("curves", { run }));
  const tag = p.get("layer");
  if (p.get("view") === "map" || !tag) {
    start(url("overview", { run }));
    return;
  }
  startLayer(run, tag, p, startSteps(run, tag));
}

/**
 * The first view when the address names no run: the first run, and the
 * address's layer when that run has it or else its first (layer-order.js),
 * as app.js chooses them once `tags` answers; then the map, unless the
 * address asks for the layer or that layer has a single kept step.
 * @param {URLSearchParams} p the address's parameters
 */
function startDefaultView(p) {
  const tags = shared("tags");
  if (!tags) return;
  Promise.all([tags, import("./layer-order.js")])
    .then(([answer, order]) => {
      if (!answer || typeof answer !== "object") return;
      const all = /** @type {import("./layer-order.js").Tags} */ (answer);
      const run = order.runsOf(all)[0];
      const layers = order.layersOf(all, run ?? null).map((i) => i.layer);
      const asked = p.get("layer");
      const tag = asked !== null && layers.includes(asked) ? asked : layers[0];
      if (run === undefined || tag === undefined) return;
      start(url("curves", { run }));
      const steps = startSteps(run, tag);
      // The app is past this guess already: it asks for the rest itself.
      if (!steps) return;
      const view = p.get("view");
      if (view === "layer") return startLayer(run, tag, p, steps);
      steps.then((list) => {
        if (view === "map" || list.length > 1) {
          start(url("overview", { run }));
          start(url("probe", { run, probe: Number(p.get("probe") || 0) }));
        } else startLayer(run, tag, p, steps);
      });
    })
    .catch(() => {});
}

/**
 * Starts a layer's `steps`, the app's copy kept; resolves to its kept steps
 * (null when the app asked for them first).
 * @param {string} run @param {string} tag @returns {Promise<number[]> | null}
 */
function startSteps(run, tag) {
  const u = url("steps", { run, tag });
  if (!start(u)) return null;
  return /** @type {Promise<any>} */ (shared(u))
    .then((data) => (Array.isArray(data?.steps) ? data.steps : []))
    .then((kept) => kept.map((/** @type {any} */ s) => s?.step))
    .catch(() => []);
}

/**
 * The JSON of an early request that the app also reads, or null when none
 * was started: the app gets a copy, made before it is read here.
 * @param {string} u @returns {Promise<unknown> | null}
 */
function shared(u) {
  const response = early.get(u);
  if (!response) return null;
  const copy = response.then((r) => r.clone());
  copy.catch(() => {});
  early.set(u, copy);
  return response.then((r) => (r.ok ? r.json() : null));
}

/**
 * A layer view's requests: its probe and timeline, then its layer at the
 * address's step or else the latest kept one.
 * @param {string} run @param {string} tag @param {URLSearchParams} p
 * @param {Promise<number[]> | null} steps its kept steps (startSteps)
 */
function startLayer(run, tag, p, steps) {
  const probe = Number(p.get("probe") || 0);
  const named = p.get("step");
  // The latest kept step needs no step list: asked for at once, it is
  // computed while the modules load (model.js takes it by its step).
  if (named === null) start(url("layer", { run, tag, step: LATEST, probe }));
  start(url("probe", { run, probe }));
  start(url("timeline", { run, tag }));
  if (named === null || !steps) return;
  steps.then((list) => {
    const step = Number(named);
    if (Number.isInteger(step) && list.includes(step)) {
      start(url("layer", { run, tag, step, probe }));
    }
  });
}

/**
 * The response of a request render() started before the panel loaded, or
 * null: the first caller of a URL takes it, any later one fetches anew.
 * @param {string} url
 * @returns {Promise<Response> | null}
 */
export function takeEarly(url) {
  const p = early.get(url);
  if (!p) {
    asked?.add(url);
    return null;
  }
  early.delete(url);
  return p;
}

/**
 * The JSON of an early request, taken as takeEarly takes it; null when none
 * was started or it failed (its taker then asks again, and reports that).
 * @param {string} u @returns {Promise<any>}
 */
export async function takeEarlyJson(u) {
  const response = takeEarly(u);
  if (!response) return null;
  try {
    const r = await response;
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}

/** Resolves when the stylesheet has loaded (or failed), or after 2 s. */
function loadStyles() {
  const sheet = new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = `static/${STYLESHEET}`;
    link.addEventListener("load", resolve);
    link.addEventListener("error", resolve);
    document.head.append(link);
  });
  return Promise.race([sheet, new Promise((r) => setTimeout(r, 2000))]);
}

export async function render() {
  // Data first: these queue for the same few connections as the files.
  for (const u of FIRST_REQUESTS) start(u);
  startFirstView();
  setTimeout(() => {
    early.clear();
    asked = null;
  }, EARLY_MS);
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
