// @ts-check
// The Activations tab's wiring. index.js, the module TensorBoard's iframe
// imports, loads this one and calls render(): it builds the widgets,
// registers each view with the fields of the state it reads, and turns the
// user's actions into state changes. State flows one way: an action calls store.set(), the
// views that read a changed field load and draw themselves, and the URL
// follows (url.js). The hooks scripts read are in hooks.js.
//
// Where things go: a new choice is a field of ViewState (state.js) and, if
// the URL carries it, an entry of URL_KEYS there; a new request is a Model
// method (model.js); a new view is a file of its own whose function reacts
// to the fields it reads, registered with one store.on() line below. A view
// the first screen does not draw is registered through later(): its module
// loads on first use (index.js lists it in LAZY, not in MODULES).

import * as act from "./actions.js";
import { isNorm } from "./color.js";
import { Compare } from "./compare.js";
import { syncCompare, warmCompare } from "./compare-view.js";
import { CurveStrip } from "./curves.js";
import { DownloadLinks } from "./downloads.js";
import { GridBar } from "./grid-bar.js";
import { phase } from "./hooks.js";
import { LAYER_READS, layerView } from "./layer-view.js";
import { MAP_READS, mapView, renderMap, showView } from "./map-view.js";
import { messageOf } from "./model.js";
import { DetailOverlay, OverlayBar } from "./overlay.js";
import {
  GRAY,
  clearError,
  currentInfo,
  luts,
  model,
  setError,
  state,
  stepIndex,
  steps,
  store,
  ui,
} from "./panel.js";
import { probesView } from "./probe-inputs.js";
import { fromParams, initialState } from "./state.js";
import { StripMap } from "./strip-map.js";
import * as s from "./steps-view.js";
import { TileGrid } from "./tile-grid.js";
import { ChannelTimeline } from "./timeline.js";
import { derived } from "./tokens.js";
import { TrainingMap, ViewTabs } from "./training-map.js";
import { Url, readParams } from "./url.js";
import { buildShell, fillSelect } from "./views.js";

const POLL_MS = 5000;
const url = new Url(() => state);
const busy = { poll: false };

/** @typedef {import("./state.js").ViewState} ViewState */

/**
 * A view whose module is fetched once the state shows it (`shows`), not
 * with the first screen's. Its reactions wait for the module in the order
 * they came, and the view's own Latest still drops the answers of a state
 * no longer shown. A module that fails to load is asked for again on the
 * next change.
 * @template M
 * @param {() => Promise<M>} load
 * @param {() => boolean} shows
 * @param {(m: M, changed: Set<keyof ViewState>) => unknown} react
 * @returns {(changed: Set<keyof ViewState>) => Promise<unknown> | undefined}
 */
function later(load, shows, react) {
  /** @type {Promise<M> | null} */
  let module = null;
  return (changed) => {
    if (!module && !shows()) return;
    const loading = (module ??= load());
    return loading.then(
      (m) => react(m, changed),
      (e) => {
        if (module === loading) module = null;
        setError("module", `A part of the panel did not load: ${messageOf(e)}`);
      },
    );
  };
}

const onMap = () => state.view === "map";
const onTokens = () => {
  const kind = derived(state.view === "layer" ? currentInfo() : null).kind;
  return kind === "token_grid" || kind === "class_token";
};

/** The views, in the order they react: lists before the views drawn from them. */
function register() {
  const lists = () => {
    s.layerList(act.selectLayer);
    probesView(act.selectProbe);
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
  const depth = () => import("./depth-view.js");
  store.on(["view", "run", "steps", "step", "measure"], later(depth, onMap, (m) => m.depthView()));
  const tokens = () => import("./token-grid-view.js");
  const classToken = later(tokens, onTokens, (m) => m.classTokenView(act.selectLayer));
  store.on(["view", "run", "tag", "steps", "step", "probe", "cmap"], classToken);
  store.follow = (how) => url.write(how);
  return lists;
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
  el.runSelect.addEventListener("change", () => act.selectRun(el.runSelect.value));
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
    else if (ev.key === "Escape" && state.channel !== null) act.closeDetail();
    else return;
    ev.preventDefault();
  });
  url.listen(act.goTo);
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

/**
 * The opened channel's pane, built when a channel is first opened (its
 * module is not on the first screen); every later call returns the same.
 * @returns {Promise<import("./detail.js").Detail>}
 */
async function openDetail() {
  const { Detail } = await import("./detail.js");
  if (ui.detail) return ui.detail;
  const detail = new Detail(ui.el.detail, {
    onClose: act.closeDetail,
    onStep: (t) => s.goToStep(t, "push"),
  });
  ui.detailOverlay.attach(detail.canvas);
  detail.evoTitle.after(ui.downloads.evolutionEl);
  ui.detail = detail;
  return detail;
}

/**
 * Builds the panel once the stylesheets are in (index.js started them).
 * @param {Promise<unknown>} [styles]
 */
export async function render(styles) {
  phase("loading");
  await styles;
  const el = buildShell(document.body);
  Object.assign(ui, {
    el,
    grid: new TileGrid(act.openChannel),
    strips: new StripMap(act.openChannel),
    detail: null,
    openDetail,
    timeline: new ChannelTimeline({
      onOpen: act.openAt,
      onMeasure: (tmeasure) => store.set({ tmeasure }, "replace"),
      onToggle: (timelineOpen) => store.set({ timelineOpen }, "none"),
    }),
    bar: new GridBar(act.chooseGrid),
    map: new TrainingMap({
      onOpen: act.openLayer,
      onMeasure: (m) => store.set({ measure: m }, "replace"),
      onLayerView: () => act.openLayer(state.tag, state.step),
    }),
    tabs: new ViewTabs({ onMap: act.openMap, onLayer: () => act.openLayer(state.tag, state.step) }),
    curves: new CurveStrip({
      onStep: (t) => s.goToStep(t, "push"),
      onSeries: (curve) => store.set({ curve }, "replace"),
    }),
    compare: new Compare({
      onPick: act.chooseCompare,
      onOpen: act.openChannel,
      onMapOpen: act.openLayer,
      onReach: warmCompare,
    }),
    overlay: new OverlayBar(act.chooseOverlay),
    detailOverlay: new DetailOverlay(),
    downloads: new DownloadLinks(),
  });
  el.legend.before(ui.timeline.el, ui.bar.el);
  ui.bar.el.after(ui.overlay.el);
  ui.overlay.el.append(ui.downloads.gridEl);
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
