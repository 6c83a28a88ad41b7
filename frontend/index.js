// @ts-check
// The Activations tab's wiring. TensorBoard imports this module inside its
// plugin iframe and calls render(): it builds the widgets, registers each
// view with the fields of the state it reads, and turns the user's actions
// into state changes. State flows one way: an action calls store.set(), the
// views that read a changed field load and draw themselves, and the URL
// follows (url.js). The hooks scripts read are in hooks.js.
//
// Where things go: a new choice is a field of ViewState (state.js) and, if
// the URL carries it, an entry of URL_KEYS there; a new request is a Model
// method (model.js); a new view is a file of its own whose function reacts
// to the fields it reads, registered with one store.on() line below.

import { isNorm } from "./color.js";
import { Compare } from "./compare.js";
import { syncCompare, warmCompare } from "./compare-view.js";
import { CurveStrip } from "./curves.js";
import { Detail } from "./detail.js";
import { h } from "./dom.js";
import { DownloadLinks } from "./downloads.js";
import { GridBar } from "./grid-bar.js";
import { measure, phase } from "./hooks.js";
import { LAYER_READS, layerView } from "./layer-view.js";
import { MAP_READS, mapView, renderMap, showView } from "./map-view.js";
import { messageOf } from "./model.js";
import { DetailOverlay, OverlayBar } from "./overlay.js";
import { GRAY, clearError, luts, model, setError, state, stepIndex, steps, store, ui } from "./panel.js";
import { fromParams, initialState } from "./state.js";
import { StripMap } from "./strip-map.js";
import * as s from "./steps-view.js";
import { TileGrid } from "./tile-grid.js";
import { ChannelTimeline } from "./timeline.js";
import { TrainingMap, ViewTabs } from "./training-map.js";
import { Url, readParams, stateOf } from "./url.js";
import { buildShell, fillSelect } from "./views.js";

/** @typedef {import("./state.js").ViewState} ViewState */

const POLL_MS = 5000;
const url = new Url(() => state);
const busy = { poll: false };

/** The views, in the order they react: lists before the views drawn from them. */
function register() {
  const lists = () => {
    s.layerList(selectLayer);
    s.probesView(selectProbe);
  };
  store.on(["run"], () => fillSelect(ui.el.runSelect, model.runs(), state.run));
  store.on(["run", "compare"], syncCompare);
  store.on(["run", "tag", "filter", "probe"], lists);
  store.on(["cmap"], () => (ui.el.cmap.value = state.cmap));
  store.on(["norm"], () => (ui.el.norm.value = state.norm));
  store.on(["playing"], () => (ui.el.play.textContent = state.playing ? "❚❚ Pause" : "▶ Play"));
  store.on(["run", "tag"], s.loadSteps);
  store.on(["steps", "step"], s.stepControls);
  store.on(["view", "tag"], showView);
  store.on(["steps", "curve"], s.curvesView);
  store.on(LAYER_READS, layerView);
  store.on(MAP_READS, mapView);
  store.follow = (how) => url.write(how);
  return lists;
}

// ---------------------------------------------------------------------------
// Actions: each is one change of the state.

/** @param {string} run */
function selectRun(run) {
  if (run === state.run) return;
  /** @type {Partial<ViewState>} */
  const patch = { run };
  const infos = model.layersOf(run);
  if (!infos.some((i) => i.layer === state.tag)) patch.tag = infos[0]?.layer ?? null;
  const info = model.info(run, patch.tag ?? state.tag);
  if (state.channel !== null && (!info || state.channel >= info.channels)) patch.channel = null;
  if (patch.tag !== undefined) patch.channel = null;
  store.set(patch, "push");
}

/** @param {string} tag */
function selectLayer(tag) {
  if (state.view === "map") return openLayer(tag, state.step);
  if (tag === state.tag) return;
  // Layers of a run share their steps: ask for the same step before the list arrives.
  if (state.step !== null && state.run) {
    model.fetchLayer(state.run, tag, state.step, state.probe).catch(() => {
      // The step may not exist for this layer; loadSteps picks one that does.
    });
  }
  store.set({ tag, channel: null }, "push");
}

/** @param {number} p */
const selectProbe = (p) => store.set({ probe: p }, "replace");
/** @param {number} c */
const openChannel = (c) => store.set({ channel: c }, "push");
const closeDetail = () => store.set({ channel: null }, "push");
const openMap = () => store.set({ view: "map", playing: false }, "push");

/**
 * The layer view of `layer` at `step` (the nearest kept one; the latest when null).
 * @param {string | null} layer @param {number | null} step
 */
function openLayer(layer, step) {
  /** @type {Partial<ViewState>} */
  const patch = { view: "layer", step };
  if (layer !== null && layer !== state.tag) {
    patch.tag = layer;
    patch.channel = null;
  } else if (state.steps && state.steps.tag === state.tag) {
    patch.step = s.settle(state.steps.steps, step);
  }
  store.set(patch, "push");
}

/** @param {number} channel @param {number} step */
function openAt(channel, step) {
  const units = model.info(state.run, state.tag)?.layout === "units";
  const at = s.settle(steps(), step) ?? state.step;
  store.set({ channel: units ? 0 : channel, step: at }, "push");
}

/** @param {import("./grid-bar.js").BarChoice} choice */
async function chooseGrid(choice) {
  const start = performance.now();
  const { sort = state.sort, show = state.show, diff = state.diff } = choice;
  await store.set({ sort, show, diff }, "replace");
  measure(choice.diff !== undefined ? "diff" : "order", start);
}

/** @param {import("./overlay.js").OverlayChoice} choice */
async function chooseOverlay(choice) {
  const start = performance.now();
  const { overlay = state.overlay, resize = state.overlayResize } = choice;
  await store.set({ overlay, overlayResize: resize }, "replace");
  if (state.view === "layer") measure("overlay", start);
}

/** @param {string | null} run */
async function chooseCompare(run) {
  const start = performance.now();
  const diff = run === null && state.diff === "run" ? "off" : state.diff;
  await store.set({ compare: run, diff }, "replace");
  if (state.compare === run && run !== null) measure("compare", start);
}

/** A URL the panel did not write: a pasted link, an edited hash, Back or Forward. */
function goTo(/** @type {URLSearchParams} */ params) {
  const patch = stateOf(state, params);
  const runs = model.runs();
  if (patch.run == null || !runs.includes(patch.run)) patch.run = state.run;
  const infos = model.layersOf(patch.run);
  if (!infos.some((i) => i.layer === patch.tag)) patch.tag = state.tag;
  if (!infos.some((i) => i.layer === patch.tag)) patch.tag = infos[0]?.layer ?? null;
  const list = state.steps;
  if (list && list.run === patch.run && list.tag === patch.tag) {
    patch.step = s.settle(list.steps, patch.step ?? null);
  }
  if (!luts.has(patch.cmap ?? "")) delete patch.cmap;
  store.set({ ...patch, playing: false }, "none");
}

// ---------------------------------------------------------------------------
// Events.

/** @param {EventTarget | null} target */
function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  const t = target.tagName;
  if (t === "TEXTAREA" || t === "SELECT") return true;
  return target instanceof HTMLInputElement && target.type !== "range" && target.type !== "button";
}

function wire() {
  const el = ui.el;
  el.runSelect.addEventListener("change", () => selectRun(el.runSelect.value));
  el.filter.addEventListener("input", () => store.set({ filter: el.filter.value }, "none"));
  // A drag is one history entry, for the step it ends on.
  let dragging = false;
  el.slider.addEventListener("input", () => {
    s.goToIndex(Number(el.slider.value), dragging ? "replace" : "push");
    dragging = true;
  });
  el.slider.addEventListener("change", () => (dragging = false));
  const typed = () => {
    const v = Number(el.stepInput.value);
    if (Number.isFinite(v)) s.goToStep(v, "push");
  };
  el.stepInput.addEventListener("change", typed);
  el.stepInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      typed();
      el.stepInput.value = String(state.step ?? "");
    }
  });
  el.prev.addEventListener("click", () => s.goToIndex(stepIndex() - 1, "push"));
  el.next.addEventListener("click", () => s.goToIndex(stepIndex() + 1, "push"));
  el.play.addEventListener("click", s.play);
  // Colormap, scale and size recolour what is cached: no new request.
  el.cmap.addEventListener("change", () => store.set({ cmap: el.cmap.value }, "replace"));
  el.norm.addEventListener("change", () => {
    const norm = el.norm.value;
    if (isNorm(norm)) store.set({ norm }, "replace");
  });
  el.size.addEventListener("input", () => store.set({ size: Number(el.size.value) }, "none"));
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || isTyping(ev.target)) return;
    // The slider moves itself on arrow keys; only handle them elsewhere.
    const onSlider = ev.target === el.slider;
    if (ev.key === "ArrowLeft" && !onSlider) s.goToIndex(stepIndex() - 1, "push");
    else if (ev.key === "ArrowRight" && !onSlider) s.goToIndex(stepIndex() + 1, "push");
    else if (ev.key === "Home" && !onSlider) s.goToIndex(0, "push");
    else if (ev.key === "End" && !onSlider) s.goToIndex(steps().length - 1, "push");
    else if (ev.key === "Escape" && state.channel !== null) closeDetail();
    else return;
    ev.preventDefault();
  });
  url.listen(goTo);
}

async function loadColormaps() {
  try {
    for (const [name, map] of await model.fetchColormaps()) luts.set(name, map);
    clearError("colormaps");
  } catch (e) {
    setError("colormaps", `${messageOf(e)}. Showing gray.`);
  }
  if (!luts.size) luts.set("gray", GRAY);
  const names = [...luts.keys()];
  if (!names.includes(state.cmap)) {
    store.correct({ cmap: names.includes("viridis") ? "viridis" : "gray" });
  }
  fillSelect(ui.el.cmap, names, state.cmap);
}

/** The stylesheets, one per part of the panel; resolves when loaded or after 2 s. */
function loadStyles() {
  const sheets = ["base", "layer", "timeline", "map", "compare"].map(
    (name) =>
      new Promise((resolve) => {
        const link = h("link", { rel: "stylesheet", href: `static/style-${name}.css` });
        link.addEventListener("load", resolve);
        link.addEventListener("error", resolve);
        document.head.append(link);
      }),
  );
  return Promise.race([Promise.all(sheets), new Promise((r) => setTimeout(r, 2000))]);
}

export async function render() {
  phase("loading");
  await loadStyles();
  const el = buildShell(document.body);
  Object.assign(ui, {
    el,
    grid: new TileGrid(openChannel),
    strips: new StripMap(openChannel),
    detail: new Detail(el.detail, { onClose: closeDetail, onStep: (t) => s.goToStep(t, "push") }),
    timeline: new ChannelTimeline({
      onOpen: openAt,
      onMeasure: (tmeasure) => store.set({ tmeasure }, "replace"),
      onToggle: (timelineOpen) => store.set({ timelineOpen }, "none"),
    }),
    bar: new GridBar(chooseGrid),
    map: new TrainingMap({
      onOpen: openLayer,
      onMeasure: (m) => store.set({ measure: m }, "replace"),
      onLayerView: () => openLayer(state.tag, state.step),
    }),
    tabs: new ViewTabs({ onMap: openMap, onLayer: () => openLayer(state.tag, state.step) }),
    curves: new CurveStrip({
      onStep: (t) => s.goToStep(t, "push"),
      onSeries: (curve) => store.set({ curve }, "replace"),
    }),
    compare: new Compare({
      onPick: chooseCompare,
      onOpen: openChannel,
      onMapOpen: openLayer,
      onReach: warmCompare,
    }),
    overlay: new OverlayBar(chooseOverlay),
    detailOverlay: new DetailOverlay(),
    downloads: new DownloadLinks(),
  });
  el.legend.before(ui.timeline.el, ui.bar.el);
  ui.bar.el.after(ui.overlay.el);
  ui.overlay.el.append(ui.downloads.gridEl);
  ui.detailOverlay.attach(ui.detail.canvas);
  ui.detail.evoTitle.after(ui.downloads.evolutionEl);
  el.main.prepend(ui.tabs.el, ui.map.el);
  el.toolbar.append(ui.curves.el);
  ui.compare.attach(el.view);
  ui.compare.attachMap(ui.map.el);
  el.runSelect.parentElement?.after(ui.compare.field);
  new ResizeObserver(() => ui.curves.alignTo(el.slider)).observe(el.slider);
  window.addEventListener("resize", () => {
    if (state.view === "map") renderMap(true);
  });
  const params = readParams();
  if (params) {
    const asked = initialState();
    fromParams(asked, params);
    store.set(asked, "none");
  }
  el.norm.value = state.norm;
  const lists = register();
  wire();
  await loadColormaps();
  const poll = async () => {
    if (busy.poll) return;
    busy.poll = true;
    try {
      await s.refreshTags(lists);
    } finally {
      busy.poll = false;
    }
  };
  await poll();
  setInterval(poll, POLL_MS);
}
