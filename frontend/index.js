// @ts-check
// The Activations tab: state, URL, polling and the wiring between model.js
// (data) and the views (DOM). TensorBoard imports this module inside its
// plugin iframe and calls render().
//
// Scripts (tests, benchmarks) can tell when a view is on screen from the
// iframe's <body>: data-state is "loading", "ready", "empty" or "error";
// after each completed render data-rendered-{run,layer,step,probe,cmap,norm,
// channel} name what is shown, and data-evolution-channel /
// data-evolution-steps once a channel's evolution is drawn. Each grid draw is
// also a performance.measure named "activations:draw".
// The channel timeline sets data-timeline-rendered (the layer) and
// data-timeline-measure when drawn; each grid draw sets data-grid-order (the
// first 32 channels of the grid's order, comma-separated, "…" when more
// follow), data-grid-count (tiles shown) and data-diff (the reference step
// drawn; "" when diff is off, "none" when asked but not drawn). Measures:
// "activations:timeline" (a timeline draw), "activations:order" (a sort or
// filter change redrawn) and "activations:diff" (a diff choice drawn).
// data-view is "map" or "layer", the view on screen. Once the training map
// is drawn, data-map-rendered names its run and data-map-measure its measure
// (data-rendered-run is set too; data-rendered-layer and -channel are
// removed: no layer is shown); each map draw is a performance.measure named
// "activations:map". Once the loss strip under the slider is settled,
// data-curves-rendered names its run and data-curves-series the series drawn
// ("" when the run has none).
// With a second run chosen (compare=), once its side is settled
// data-compare-rendered names that run and data-compare-step the step of it
// drawn ("none" when it has no step at or before this one, lacks the layer
// or the probe: the pane says why in words); data-compare-diff names it
// while this run's grid shows this run minus it (diff=run; data-diff is then
// its step), "" otherwise; in the map view data-compare-map names it once
// its map is drawn. Choosing a run until its side is on screen is a
// performance.measure named "activations:compare". Reaching for the "Compare
// with" menu (pointer down, focus) loads what choosing its first runs would
// draw into the model's cache; once loaded, data-compare-warmed lists those
// runs as a JSON array.
// The overlay on the probe sets data-overlay on each grid draw: the opacity
// drawn ("0.6"), "" when off, "none" when asked but not drawn (a layer with
// no spatial map, a run without probe images); turning it on or off, or
// moving its opacity or resizing, until the grid is drawn again is a
// performance.measure named "activations:overlay".
//
// Where things go: a new choice is a field of ViewState (state.js) and, if
// the URL carries it, an entry of URL_KEYS there; a new request is a Model
// method (model.js); a new view is a file of its own, created in render() and
// drawn from renderStep() here.

import {
  channelTables,
  fmt,
  grayLut,
  isNorm,
  needsAllSteps,
  normalization,
  seriesTables,
  stepWindows,
} from "./color.js";
import { Detail } from "./detail.js";
import { h } from "./dom.js";
import { Model, messageOf } from "./model.js";
import { fromParams, initialState, nothingShown, toParams } from "./state.js";
import { StripMap } from "./strip-map.js";
import { TileGrid } from "./tile-grid.js";
import { CurveStrip } from "./curves.js";
import { TrainingMap, ViewTabs } from "./training-map.js";
import { SORTS, channelOrder } from "./channel-order.js";
import { diffLayer, diffReference } from "./diff.js";
import { GridBar } from "./grid-bar.js";
import { DetailOverlay, OverlayBar, ProbeImages, overlayNote, tilePainter } from "./overlay.js";
import { DownloadLinks } from "./downloads.js";
import { ChannelTimeline } from "./timeline.js";
import { Compare } from "./compare.js";
import {
  buildShell,
  emptyState,
  errorList,
  fillLayerList,
  fillProbes,
  fillSelect,
  layerTitle,
  colorbar,
  legend,
  stepStatus,
} from "./views.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./model.js").Layer} Layer */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */
/** @typedef {import("./views.js").Shell} Shell */

const PLUGIN = "activations";
const POLL_MS = 5000;
const PLAY_FRAME_MS = 300;

const model = new Model();
const state = initialState();
let shown = nothingShown();
/** @type {Map<string, string>} Errors on screen, by what failed. */
const errors = new Map();
/** @type {Map<string, Lut>} The server's colormaps, in its order. */
const luts = new Map();
/** Needs no server: shown until (or if) the colormaps fail to load. */
const GRAY = grayLut();
/** The probe images the overlay draws under the channels, decoded once. */
const probes = new ProbeImages((run, p) => model.probeUrl(run, p));

/**
 * The views, built once by render().
 * @typedef {Object} Ui
 * @property {Shell} el
 * @property {TileGrid} grid image layers
 * @property {StripMap} strips sequence and units layers
 * @property {Detail} detail the opened channel
 * @property {ChannelTimeline} timeline the layer's channels over the steps
 * @property {GridBar} bar sort, filter and diff over the grid
 * @property {TrainingMap} map layers x steps of a layer measure
 * @property {ViewTabs} tabs the training map / layer switch
 * @property {CurveStrip} curves loss and metric curves under the slider
 * @property {Compare} compare a second run beside this one
 * @property {OverlayBar} overlay the overlay on the probe: on/off, opacity, resizing
 * @property {DetailOverlay} detailOverlay the opened channel over its probe
 * @property {DownloadLinks} downloads the export route's files
 */
/** @type {Ui} */
let ui;

/** What the lists and the evolution were last drawn for: a key derived from the state. */
const drawn = { layerList: "", probes: "", evolution: "" };
/**
 * The render loop: `gen` numbers the newest render (older ones stop), `pollBusy`
 * keeps polls from overlapping, `urlTimer` batches URL writes.
 * @type {{gen: number, pollBusy: boolean, urlTimer: ReturnType<typeof setTimeout> | null}}
 */
const loop = { gen: 0, pollBusy: false, urlTimer: null };

// ---------------------------------------------------------------------------
// URL state. The tab lives in an iframe; TensorBoard keeps the top page's
// hash (#activations) across reloads and leaves extra "&key=value" pairs
// alone, so the selection is written there, in the style of TensorBoard's
// older hash storage. If the parent is out of reach, the iframe's own hash
// is used instead.

function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.href) return window.parent;
  } catch {
    // A cross-origin embedder: fall back to our own URL.
  }
  return null;
}

function readUrl() {
  const host = hostWindow();
  let hash = "";
  if (host && host.location.hash.startsWith(`#${PLUGIN}&`)) {
    hash = host.location.hash.slice(PLUGIN.length + 2);
  } else if (location.hash.length > 1) {
    hash = location.hash.slice(1);
  }
  fromParams(state, new URLSearchParams(hash));
}

function writeUrlNow() {
  loop.urlTimer = null;
  const params = toParams(state);
  const host = hostWindow();
  try {
    // Only while our tab is the one shown: never steal another tab's hash.
    if (
      host &&
      (host.location.hash === `#${PLUGIN}` || host.location.hash.startsWith(`#${PLUGIN}&`))
    ) {
      const want = params ? `#${PLUGIN}&${params}` : `#${PLUGIN}`;
      if (host.location.hash !== want) host.history.replaceState(host.history.state, "", want);
      return;
    }
  } catch {
    // Fall through to the iframe's own URL.
  }
  if (!host)
    history.replaceState(
      history.state,
      "",
      params ? `#${params}` : location.pathname + location.search,
    );
}

function writeUrl() {
  if (loop.urlTimer === null) loop.urlTimer = setTimeout(writeUrlNow, 150);
}

// ---------------------------------------------------------------------------
// Errors and the benchmark hook.

/** @param {string} kind @param {string} message */
function setError(kind, message) {
  errors.set(kind, message);
  errorList(ui.el.errors, errors);
}

/** @param {string} kind */
function clearError(kind) {
  if (errors.delete(kind)) errorList(ui.el.errors, errors);
}

/** @param {"loading" | "ready" | "empty" | "error"} phase */
function setPhase(phase) {
  document.body.dataset.state = phase;
}

// ---------------------------------------------------------------------------
// Selection helpers.

function currentInfo() {
  return model.info(state.run, state.tag);
}

function steps() {
  return shown.steps?.steps || [];
}

function stepIndex() {
  return steps().findIndex((s) => s.step === state.step);
}

/** @param {number} step */
function nearestStep(step) {
  const all = steps();
  if (!all.length) return null;
  let best = all[0].step;
  for (const s of all) if (Math.abs(s.step - step) < Math.abs(best - step)) best = s.step;
  return best;
}

function lut() {
  return luts.get(state.cmap) || GRAY;
}

// ---------------------------------------------------------------------------
// Tags: the list of runs and layers, polled for live training.

async function poll() {
  if (loop.pollBusy) return;
  loop.pollBusy = true;
  try {
    await refreshTags();
  } finally {
    loop.pollBusy = false;
  }
}

async function refreshTags() {
  const el = ui.el;
  try {
    await model.fetchTags();
    clearError("tags");
  } catch (e) {
    setError("tags", messageOf(e));
    if (!state.run) setPhase("error");
    return;
  }
  const runs = model.runs();
  if (!runs.length) {
    el.app.hidden = true;
    el.empty.hidden = false;
    emptyState(el.empty);
    el.empty.prepend(el.errors);
    setPhase("empty");
    return;
  }
  if (!el.empty.hidden) {
    el.empty.hidden = true;
    el.app.hidden = false;
    el.panel.insertBefore(el.errors, el.content);
  }
  let changed = false;
  if (state.run === null || !runs.includes(state.run)) {
    state.run = runs[0];
    changed = true;
  }
  fillSelect(el.runSelect, runs, state.run);
  syncCompare(runs);
  const infos = model.layersOf(state.run);
  if (!infos.some((i) => i.layer === state.tag)) {
    state.tag = infos[0].layer;
    state.channel = null;
    changed = true;
  }
  renderLayerList();
  renderProbes();
  if (changed || shown.steps?.version !== model.version(state.run, state.tag)) await loadSteps();
}

function renderLayerList() {
  const infos = model.layersOf(state.run);
  // Polling must not rebuild an unchanged list: that would reset its scroll.
  const key = JSON.stringify([
    state.run,
    state.tag,
    state.filter,
    infos.map((i) => [i.layer, i.class_name, i.output_shape, i.channels]),
  ]);
  if (key === drawn.layerList) return;
  drawn.layerList = key;
  fillLayerList(ui.el.layerList, infos, state.filter, state.tag, selectLayer);
}

function renderProbes() {
  const run = state.run;
  const info = currentInfo();
  const count = Math.max(1, info?.probes || 1);
  if (state.probe >= count) state.probe = 0;
  const key = JSON.stringify([run, count, state.probe, model.hasProbe(run)]);
  if (key === drawn.probes || run === null) return;
  drawn.probes = key;
  for (const k of [...errors.keys()]) if (k.startsWith("probe")) errors.delete(k);
  errorList(ui.el.errors, errors);
  fillProbes(
    ui.el.probes,
    count,
    state.probe,
    model.hasProbe(run),
    (p) => model.probeUrl(run, p),
    selectProbe,
    (p, e) => setError(`probe${p}`, messageOf(e)),
  );
}

// ---------------------------------------------------------------------------
// Steps.

async function loadSteps() {
  const { run, tag } = state;
  if (run === null || tag === null) return;
  const before = shown.steps;
  const sameSeries = before !== null && before.run === run && before.tag === tag;
  const all = steps();
  const wasLatest = sameSeries && all.length > 0 && state.step === all[all.length - 1].step;
  let list;
  try {
    list = await model.fetchSteps(run, tag);
    clearError("steps");
  } catch (e) {
    if (run === state.run && tag === state.tag) {
      setError("steps", messageOf(e));
      setPhase("error");
    }
    return;
  }
  if (run !== state.run || tag !== state.tag) return;
  shown.steps = list;
  // A run seen for the first time opens on its training map, when it has one.
  if (state.view === null) state.view = list.steps.length > 1 ? "map" : "layer";
  if (!list.steps.length) {
    state.step = null;
    updateStepControls();
    ui.el.view.replaceChildren(
      h("div", { className: "muted" }, "No steps of this layer are kept yet."),
    );
    setPhase("ready");
    return;
  }
  const last = list.steps[list.steps.length - 1].step;
  if (state.step === null || wasLatest) state.step = last;
  else if (stepIndex() < 0) state.step = nearestStep(state.step);
  updateStepControls();
  renderCurves();
  await renderStep();
}

function updateStepControls() {
  stepStatus(ui.el, shown.steps, state.step, PLUGIN);
  ui.curves.markStep(state.step);
  ui.map.markStep(state.step);
}

/** @param {number} i */
function goToIndex(i) {
  const all = steps();
  if (!all.length) return;
  const j = Math.max(0, Math.min(all.length - 1, i));
  if (all[j].step === state.step) return;
  state.direction = j < stepIndex() ? -1 : 1;
  state.step = all[j].step;
  updateStepControls();
  renderStep();
}

/** @param {number} step */
function goToStep(step) {
  const s = nearestStep(step);
  if (s === null) return;
  state.step = s;
  updateStepControls();
  renderStep();
}

// ---------------------------------------------------------------------------
// Rendering one step.

async function renderStep() {
  showView();
  if (state.view === "map") return renderMap();
  const gen = ++loop.gen;
  const { run, tag, step, probe } = state;
  const info = currentInfo();
  if (step === null || run === null || tag === null || !info) return;
  setPhase("loading");
  writeUrl();
  const other = loadCompare();
  // The timeline is made from every step's statistics: ask for it with the
  // layer rather than after it, so the two wait for the server together,
  // and draw it as soon as it is in; it needs nothing from the layer.
  let timelineIn = false;
  let gridDrawn = false;
  const timeline = loadTimeline(run, tag).then(() => {
    timelineIn = true;
    if (gen === loop.gen && !gridDrawn) drawTimeline(gridOrder(info));
  });
  if (state.channel !== null) {
    // Start the evolution's request now, so the server works while we draw.
    model.fetchSeries(run, tag, state.channel, probe).catch(() => {
      // Reported when the evolution is drawn.
    });
  }
  const wallTime = steps()[stepIndex()]?.wall_time;
  let layer = model.peekLayer(run, tag, step, probe, wallTime);
  let stats = null;
  try {
    const wantStats = needsAllSteps(state.norm) ? model.fetchStats(run, tag) : null;
    if (!layer) {
      layer = await model.fetchLayer(run, tag, step, probe, wallTime);
      // Ask for the next step while this one is drawn.
      if (gen === loop.gen) prefetch();
    }
    clearError("layer");
    if (wantStats) {
      try {
        stats = await wantStats;
        clearError("stats");
      } catch (e) {
        if (gen === loop.gen) setError("stats", messageOf(e));
      }
    }
  } catch (e) {
    if (gen !== loop.gen) return;
    setError("layer", messageOf(e));
    // What is still drawn belongs to another step: say so by fading it.
    ui.el.view.classList.add("stale");
    setPhase("error");
    return;
  }
  if (gen !== loop.gen) return;
  shown.layer = layer;
  shown.stats = stats;
  await loadDiffReference();
  // The grid in channel order needs nothing from the timeline but the
  // counts above it: draw it without waiting, and the counts when the
  // timeline comes.
  const waitForTimeline = info.layout !== "image" || state.sort !== "index" || state.show !== "all";
  if (waitForTimeline) await timeline;
  if (other) await other;
  await loadOverlayProbe();
  if (gen !== loop.gen) return;
  const drawStart = performance.now();
  ui.el.view.classList.remove("stale");
  drawLayer(info, layer);
  gridDrawn = true;
  performance.measure("activations:draw", { start: drawStart, end: performance.now() });
  if (state.channel !== null) {
    await renderDetail(gen, info, layer);
    if (gen !== loop.gen) return;
  }
  const b = document.body.dataset;
  b.renderedStep = String(step);
  b.renderedLayer = tag;
  b.renderedRun = run;
  b.renderedProbe = String(probe);
  b.renderedCmap = state.cmap;
  b.renderedNorm = state.norm;
  b.renderedChannel = state.channel === null ? "" : String(state.channel);
  setPhase("ready");
  prefetch();
  if (!timelineIn) {
    await timeline;
    if (gen !== loop.gen || shown.layer !== layer) return;
    // A sort or filter chosen meanwhile reorders the grid itself.
    if (state.sort !== "index" || state.show !== "all") drawLayer(info, layer);
    else drawOrderViews(info, currentDiff().note);
  }
}

/**
 * Tiles shrink as channels grow, until the user picks a size.
 * @param {number} n
 */
function tileSize(n) {
  if (state.size !== null) return state.size;
  const auto = n <= 16 ? 128 : n <= 64 ? 96 : n <= 256 ? 64 : 48;
  ui.el.size.value = String(auto);
  return auto;
}

/** @param {LayerInfo} info @param {Layer} layer */
function drawLayer(info, layer) {
  const ix = layer.fields;
  const fixed = shown.stats ? model.fixedRanges(shown.stats, state.probe) : null;
  const windows = stepWindows(layer.stats, ix, fixed, state.norm, state.cmap);
  shown.windows = windows;
  shown.tables = channelTables(lut(), layer.stats, ix, windows, state.norm);
  const n = layer.channels.length;
  layerTitle(ui.el.title, info, n);
  const shared = state.norm.startsWith("layer") ? windows.find(Boolean) : null;
  legend(
    ui.el.legend,
    lut(),
    state.norm,
    normalization(state.norm).short,
    shared,
    info.layout === "image",
  );
  const view = ui.el.view;
  const { diff, note } = currentDiff();
  const drawnLayer = diff ? { ...layer, channels: diff.maps } : layer;
  const tables = diff ? layer.channels.map(() => diff.table) : shown.tables;
  if (diff) ui.el.legend.replaceChildren(colorbar(diffLut(), [-diff.m, diff.m], diffCaption(diff)));
  const order = drawOrderViews(info, note);
  const painter = overlayPainter(info, drawnLayer.channels, tables);
  if (info.layout === "image") {
    if (view.firstChild !== ui.grid.el) view.replaceChildren(ui.grid.el);
    ui.grid.show(drawnLayer, tables, tileSize(n), state.channel, order.order, painter);
  } else {
    if (view.firstChild !== ui.strips.el) view.replaceChildren(ui.strips.el);
    ui.strips.show(drawnLayer, tables, info.layout, state.size ?? 96);
  }
  const b = document.body.dataset;
  const head = order.order.slice(0, 32).join(",");
  b.gridOrder = order.order.length > 32 ? `${head},…` : head;
  b.gridCount = String(order.order.length);
  b.diff = diff ? String(diff.ref) : state.diff === "off" ? "" : "none";
  drawCompare(info, order.order, diff !== null && state.diff === "run");
}

/**
 * The grid's order, with what is drawn from it and the timeline: the bar's
 * counts and the channel timeline.
 * @param {LayerInfo} info @param {string} note why no difference is drawn, or ""
 */
function drawOrderViews(info, note) {
  const order = gridOrder(info);
  ui.bar.update(
    {
      sort: state.sort,
      show: state.show,
      diff: state.diff,
      step: state.step,
      grid: info.layout === "image",
    },
    order,
    note,
  );
  drawTimeline(order);
  return order;
}

/** @param {number} gen @param {LayerInfo} info @param {Layer} layer */
async function renderDetail(gen, info, layer) {
  const c = state.channel;
  if (c === null || c >= layer.channels.length || state.step === null) {
    state.channel = null;
    ui.detail.hide();
    return;
  }
  const { diff } = currentDiff();
  const values = diff?.values[c];
  ui.detail.show({
    info,
    channelIndex: c,
    step: state.step,
    epoch: steps()[stepIndex()]?.epoch ?? layer.meta.epoch,
    channel: diff ? diff.maps[c] : layer.channels[c],
    row: layer.stats[c],
    fields: layer.fields,
    table: diff ? diff.table : shown.tables[c],
    lut: diff ? diffLut() : lut(),
    win: diff ? [-diff.m, diff.m] : shown.windows[c],
    caption: diff ? diffCaption(diff) : `Colours span ${normalization(state.norm).short}`,
    valueAt:
      diff && values
        ? (i) => `difference ${fmt(values[i])} (${diff.what ?? `step ${diff.step} − step ${diff.ref}`})`
        : undefined,
  });
  drawDetailOverlay();
  await renderEvolution(gen, info, layer, c);
}

/**
 * The opened channel over every kept step, drawn again only when what it
 * shows changes: the series, the channel, the probe or the colours.
 * @param {number} gen @param {LayerInfo} info @param {Layer} layer @param {number} channel
 */
async function renderEvolution(gen, info, layer, channel) {
  const { run, tag, probe } = state;
  if (run === null || tag === null) return;
  const key = JSON.stringify([
    run,
    tag,
    channel,
    probe,
    model.version(run, tag),
    state.cmap,
    state.norm,
    shown.stats !== null,
  ]);
  if (key === drawn.evolution) {
    ui.detail.markStep(state.step);
    return;
  }
  let series;
  try {
    series = await model.fetchSeries(run, tag, channel, probe);
    clearError("series");
  } catch (e) {
    if (gen !== loop.gen) return;
    setError("series", messageOf(e));
    ui.detail.evolutionMessage(messageOf(e));
    drawn.evolution = "";
    return;
  }
  if (gen !== loop.gen) return;
  const ix = layer.fields;
  const fixed = shown.stats ? model.fixedRanges(shown.stats, probe) : null;
  const { ownAll, tables } = seriesTables(
    lut(),
    series,
    ix,
    fixed,
    channel,
    state.norm,
    state.cmap,
  );
  const frames = series.map((s, i) => ({
    step: s.step,
    epoch: s.epoch,
    channel: s,
    table: tables[i],
  }));
  const growth = ownAll ? `range over all steps ${fmt(ownAll[0])} … ${fmt(ownAll[1])}` : "";
  ui.detail.showEvolution(frames, ix, info.layout, state.step, growth);
  drawn.evolution = key;
  document.body.dataset.evolutionChannel = String(channel);
  document.body.dataset.evolutionSteps = String(frames.length);
}

// ---------------------------------------------------------------------------
// Channel timeline, grid order and diff: all drawn from what is cached.

/** What the timeline last drew, so an unchanged one is not drawn again. */
const timelineDrawn = { timeline: /** @type {unknown} */ (null), key: "" };

/**
 * The layer's channel timeline into `shown`, through the model's cache; a
 * failure is kept there to be shown, never thrown.
 * @param {string} run @param {string} tag
 * @returns {Promise<void>}
 */
function loadTimeline(run, tag) {
  return model.fetchTimeline(run, tag).then(
    (t) => {
      if (run !== state.run || tag !== state.tag) return;
      shown.timeline = t;
      shown.timelineError = null;
    },
    (e) => {
      if (run !== state.run || tag !== state.tag) return;
      shown.timeline = null;
      shown.timelineError = messageOf(e);
    },
  );
}

/** The diff's reference step into `shown`; a failure becomes its note. */
async function loadDiffReference() {
  const { run, tag, step, probe } = state;
  if (run === null || tag === null || step === null) return;
  const { ref, note } = diffReference(
    state.diff,
    steps().map((s) => s.step),
    step,
  );
  shown.ref = null;
  shown.refNote = note;
  if (ref === null) return;
  const wall = steps().find((s) => s.step === ref)?.wall_time;
  try {
    shown.ref = { step: ref, layer: await model.fetchLayer(run, tag, ref, probe, wall) };
  } catch (e) {
    shown.refNote = `No difference drawn: ${messageOf(e)}.`;
  }
}

function diffLut() {
  return luts.get("coolwarm") || lut();
}

/** @param {import("./diff.js").Diff} d */
function diffCaption(d) {
  if (d.caption) return d.caption;
  return d.m > 0
    ? `Difference a_s − a_ref in real units: step ${d.step} minus step ${d.ref}; window ±${fmt(d.m)}, the largest |difference| in the layer`
    : `No difference: every value is the same at step ${d.step} and step ${d.ref}`;
}

/** The drawn step minus its reference, when diff is on and both are here. */
function currentDiff() {
  const layer = shown.layer;
  const ref = shown.ref;
  if (state.diff === "off") return { diff: null, note: "" };
  if (state.diff === "run") {
    const info = currentInfo();
    if (!layer || !info || state.step === null) return { diff: null, note: "" };
    return ui.compare.runDiff(info, layer, state.step, diffLut());
  }
  if (!layer || !ref || state.step === null) return { diff: null, note: shown.refNote };
  const start = performance.now();
  const d = diffLayer(layer, state.step, ref.layer, ref.step, diffLut());
  if (typeof d === "string") return { diff: null, note: `No difference drawn: ${d}` };
  performance.measure("activations:diff-compute", { start, end: performance.now() });
  return { diff: d, note: "" };
}

/**
 * The order the grid and the timeline show the open layer's channels in;
 * it needs the timeline only, not the drawn step.
 * @param {LayerInfo} info
 */
function gridOrder(info) {
  const tl = shown.timeline?.tag === state.tag && shown.timeline.run === state.run ? shown.timeline : null;
  const grid = info.layout === "image";
  const total = grid ? info.channels : (tl?.channels ?? info.channels);
  return channelOrder(
    tl,
    shown.timelineError,
    state.step ?? -1,
    total,
    grid ? state.sort : "index",
    grid ? state.show : "all",
  );
}

/** @param {import("./channel-order.js").Order} order */
function drawTimeline(order) {
  if (!state.timelineOpen) return;
  const tl = shown.timeline;
  if (!tl || tl.run !== state.run || tl.tag !== state.tag) {
    timelineDrawn.timeline = null;
    ui.timeline.message(
      shown.timelineError ? `The channel timeline is unavailable: ${shown.timelineError}` : "Loading…",
    );
    return;
  }
  const measureLut = luts.get(state.cmap) && state.cmap !== "coolwarm" ? state.cmap : "viridis";
  const sorted = SORTS.find((s) => s.id === order.sortedBy);
  const orderText =
    order.sortedBy === "index"
      ? "by channel index"
      : `sorted by ${sorted?.label} at step ${state.step}, largest first`;
  const rows = order.order.filter((c) => c < tl.channels);
  const key = JSON.stringify([state.tmeasure, measureLut, rows, orderText]);
  if (timelineDrawn.timeline === tl && timelineDrawn.key === key) {
    ui.timeline.markStep(state.step);
    return;
  }
  const start = performance.now();
  ui.timeline.show({
    timeline: tl,
    order: rows,
    measure: state.tmeasure,
    step: state.step,
    lut: luts.get(measureLut) || lut(),
    orderText,
  });
  performance.measure("activations:timeline", { start, end: performance.now() });
  timelineDrawn.timeline = tl;
  timelineDrawn.key = key;
  document.body.dataset.timelineRendered = tl.tag;
  document.body.dataset.timelineMeasure = state.tmeasure;
}

/** @param {number} channel @param {number} step */
function openAt(channel, step) {
  const info = currentInfo();
  state.channel = info?.layout === "units" ? 0 : channel;
  const s = nearestStep(step);
  if (s !== null) state.step = s;
  updateStepControls();
  renderStep();
}

/** @param {import("./grid-bar.js").BarChoice} choice */
function chooseGrid(choice) {
  const start = performance.now();
  if (choice.sort !== undefined) state.sort = choice.sort;
  if (choice.show !== undefined) state.show = choice.show;
  writeUrl();
  if (choice.diff !== undefined) {
    state.diff = choice.diff;
    renderStep().then(() =>
      performance.measure("activations:diff", { start, end: performance.now() }),
    );
    return;
  }
  const info = currentInfo();
  if (shown.layer && info) drawLayer(info, shown.layer);
  performance.measure("activations:order", { start, end: performance.now() });
}

/** @param {string} measure */
function chooseTimelineMeasure(measure) {
  state.tmeasure = measure;
  writeUrl();
  const info = currentInfo();
  if (shown.layer && info) drawTimeline(gridOrder(info));
}

/** @param {boolean} open */
function toggleTimeline(open) {
  state.timelineOpen = open;
  const info = currentInfo();
  if (open && shown.layer && info) drawTimeline(gridOrder(info));
}

/** Warms the cache for the steps a slider notch or playback reaches next. */
async function prefetch() {
  const i = stepIndex();
  const { run, tag, probe } = state;
  if (run === null || tag === null) return;
  const d = state.direction;
  // The next notch in the direction of travel first, one request at a time,
  // so the likeliest step is ready soonest.
  const order = state.playing ? [i + 1, i + 2] : [i + d, i - d, i + 2 * d];
  const gen = loop.gen;
  for (const j of order) {
    const s = steps()[j];
    if (!s || model.peekLayer(run, tag, s.step, probe, s.wall_time)) continue;
    try {
      await model.fetchLayer(run, tag, s.step, probe, s.wall_time);
    } catch {
      // Shown if the user actually goes there.
    }
    // A newer render prefetches around itself.
    if (gen !== loop.gen) return;
  }
}

// ---------------------------------------------------------------------------
// The training map and the loss strip.

/** What the map last drew, so a step move only moves its cursor. */
const mapDrawn = { key: "" };

/** The view on screen, for the stylesheet and the tabs. */
function showView() {
  document.body.dataset.view = state.view === "map" ? "map" : "layer";
  ui.tabs.update(state.view === "map" ? "map" : "layer", state.tag);
}

/** @param {boolean} [force] draw again even if nothing it shows changed (a resize) */
async function renderMap(force = false) {
  const gen = ++loop.gen;
  const run = state.run;
  if (run === null) return;
  setPhase("loading");
  writeUrl();
  const other = state.compare;
  // Both runs' maps are asked for at once.
  const otherLoad = other === null ? null : ui.compare.loadMap(model, other);
  let overview;
  try {
    overview = await model.fetchOverview(run);
    clearError("overview");
  } catch (e) {
    if (gen !== loop.gen) return;
    setError("overview", messageOf(e));
    setPhase("error");
    return;
  }
  if (gen !== loop.gen) return;
  const otherOverview = otherLoad === null ? null : await otherLoad;
  if (gen !== loop.gen) return;
  const key = JSON.stringify([
    run,
    model.runVersion(run),
    state.measure,
    shown.steps?.version,
    other,
    other !== null && model.runVersion(other),
  ]);
  if (force || key !== mapDrawn.key) {
    const start = performance.now();
    const epochs = new Map(steps().map((s) => [s.step, s.epoch]));
    // Two runs' maps share one colour scale.
    const scaleValues = otherOverview
      ? [overview, otherOverview].flatMap((o) => (o.rows[state.measure] || []).flat())
      : undefined;
    ui.map.show({ overview, measure: state.measure, step: state.step, epochs, luts, scaleValues });
    if (other !== null) {
      const at = { run, other, measure: state.measure, step: state.step, luts, scaleValues };
      ui.compare.drawMap(otherOverview, at);
    }
    performance.measure("activations:map", { start, end: performance.now() });
    mapDrawn.key = key;
  } else {
    ui.map.markStep(state.step);
    if (other !== null) ui.compare.map.markStep(state.step);
  }
  const b = document.body.dataset;
  b.mapRendered = run;
  b.mapMeasure = state.measure;
  b.renderedRun = run;
  b.renderedStep = state.step === null ? "" : String(state.step);
  delete b.renderedLayer;
  delete b.renderedChannel;
  setPhase("ready");
}

/** @param {import("./map-measures.js").MapMeasure} measure */
function chooseMeasure(measure) {
  state.measure = measure;
  renderMap();
}

function openMap() {
  state.view = "map";
  state.playing = false;
  renderStep();
}

/**
 * The layer view of `layer` at `step` (the nearest kept one; the latest when null).
 * @param {string | null} layer @param {number | null} step
 */
function openLayer(layer, step) {
  state.view = "layer";
  if (layer !== null && layer !== state.tag) {
    state.tag = layer;
    state.channel = null;
    ui.detail.hide();
  }
  state.step = step;
  showView();
  renderLayerList();
  renderProbes();
  loadSteps();
}

/** The run's loss and metric curves under the slider, drawn again only when they change. */
const curvesDrawn = { key: "" };

async function renderCurves() {
  const run = state.run;
  if (run === null) return;
  let curves;
  try {
    curves = await model.fetchCurves(run);
    clearError("curves");
  } catch (e) {
    if (run === state.run) setError("curves", messageOf(e));
    return;
  }
  if (run !== state.run) return;
  const kept = steps().map((s) => s.step);
  const key = JSON.stringify([run, model.runVersion(run), kept, state.curve]);
  if (key === curvesDrawn.key) {
    ui.curves.markStep(state.step);
    return;
  }
  curvesDrawn.key = key;
  const drawn = ui.curves.show(curves, kept, state.step, state.curve);
  const b = document.body.dataset;
  b.curvesSeries = drawn ? ui.curves.select.value : "";
  b.curvesRendered = run;
}

/** @param {string} key */
function chooseCurve(key) {
  state.curve = key;
  writeUrl();
  renderCurves();
}

// ---------------------------------------------------------------------------
// The overlay on the probe (overlay.js) and the export links (downloads.js).

/** Decodes the shown probe's image when the overlay needs it. */
async function loadOverlayProbe() {
  const { run, probe } = state;
  const info = currentInfo();
  if (state.overlay <= 0 || run === null || info?.layout !== "image" || !model.hasProbe(run)) {
    return;
  }
  try {
    await probes.get(run, probe);
    clearError("overlay");
  } catch (e) {
    setError("overlay", `No overlay: ${messageOf(e)}`);
  }
}

/**
 * The grid's painter while the overlay is on and applies, else null; the
 * bar says why it does not apply.
 * @param {LayerInfo} info @param {import("./model.js").GrayMap[]} channels @param {Uint32Array[]} tables
 */
function overlayPainter(info, channels, tables) {
  const run = state.run;
  let note = overlayNote(info, model.hasProbe(run));
  const probe = run === null || note ? undefined : probes.peek(run, state.probe);
  if (!note && !probe) note = "No overlay: the probe image did not load.";
  ui.overlay.update(state.overlay, state.overlayResize, note);
  updateDownloads();
  const on = state.overlay > 0;
  document.body.dataset.overlay = on && probe ? String(state.overlay) : on ? "none" : "";
  if (!on || !probe) return null;
  return tilePainter(probes, probe, channels, tables, state.overlay, state.overlayResize);
}

/** The opened channel over its probe, as the grid draws it. */
function drawDetailOverlay() {
  const s = ui.detail.shown;
  const run = state.run;
  const applies = s && run !== null && state.overlay > 0 && !overlayNote(s.info, model.hasProbe(run));
  const probe = applies && run !== null ? probes.peek(run, state.probe) : undefined;
  if (s && probe) {
    ui.detailOverlay.draw(probe, s.channel, s.table, state.overlay, state.overlayResize);
  } else {
    ui.detailOverlay.hide();
  }
  updateDownloads();
}

function updateDownloads() {
  const { run, tag, step, channel, probe, cmap, norm } = state;
  ui.downloads.update({ run, tag, step, channel, probe, cmap, norm, diff: state.diff !== "off" });
}

/** @param {import("./overlay.js").OverlayChoice} choice */
async function chooseOverlay(choice) {
  const start = performance.now();
  if (choice.overlay !== undefined) state.overlay = choice.overlay;
  if (choice.resize !== undefined) state.overlayResize = choice.resize;
  writeUrl();
  await loadOverlayProbe();
  const info = currentInfo();
  if (!shown.layer || !info || state.view === "map") return;
  drawLayer(info, shown.layer);
  if (state.channel !== null) drawDetailOverlay();
  performance.measure("activations:overlay", { start, end: performance.now() });
}

// ---------------------------------------------------------------------------
// A second run beside this one (compare.js).

/** Drops a compared run that is gone or is this run; fills the choice. @param {string[]} runs */
function syncCompare(runs) {
  const c = state.compare;
  if (c !== null && runs.length && (c === state.run || !runs.includes(c))) state.compare = null;
  ui.compare.fillRuns(runs, state.run, state.compare);
  ui.compare.setOn(state.compare !== null);
}

/** Starts loading the other run's side of this step, when one is chosen. */
function loadCompare() {
  const { run, tag, step, probe, compare } = state;
  if (compare === null || run === null || tag === null || step === null) return null;
  const fixed = needsAllSteps(state.norm);
  return ui.compare.load(model, { run, other: compare, tag, step, probe, fixed });
}

/**
 * The other run's grid, in this grid's order and colours.
 * @param {LayerInfo} info @param {number[]} order @param {boolean} diffOn
 */
function drawCompare(info, order, diffOn) {
  if (state.compare === null) return;
  const size = info.layout === "image" ? tileSize(info.channels) : (state.size ?? 96);
  const { norm, cmap, channel } = state;
  ui.compare.draw({ info, order, lut: lut(), norm, cmap, size, selected: channel, diffOn });
  document.body.dataset.compareDiff = diffOn ? state.compare : "";
}

/** The user reaches for the "Compare with" menu: load what a choice would draw. */
function warmCompare() {
  const { run, tag, step, probe } = state;
  if (run === null) return;
  const fixed = needsAllSteps(state.norm);
  ui.compare.warm(model, { run, tag, step, probe, fixed, map: state.view === "map" });
}

/** @param {string | null} run */
function chooseCompare(run) {
  const start = performance.now();
  state.compare = run;
  if (run === null && state.diff === "run") state.diff = "off";
  ui.compare.setOn(run !== null);
  writeUrl();
  renderStep().then(() => {
    if (state.compare === run && run !== null) {
      performance.measure("activations:compare", { start, end: performance.now() });
    }
  });
}

// ---------------------------------------------------------------------------
// User actions.

/** @param {string} run */
function selectRun(run) {
  if (run === state.run) return;
  state.run = run;
  syncCompare(model.runs());
  const infos = model.layersOf(run);
  if (!infos.some((i) => i.layer === state.tag)) {
    state.tag = infos[0]?.layer ?? null;
    state.channel = null;
  }
  closeDetailIfInvalid();
  renderLayerList();
  renderProbes();
  loadSteps();
}

/** Layers of a run share their steps: ask for the same step before the list arrives. */
function speculate() {
  if (state.step === null || !state.run || !state.tag) return;
  model.fetchLayer(state.run, state.tag, state.step, state.probe).catch(() => {
    // The step may not exist for this layer; loadSteps picks one that does.
  });
}

/** @param {string} tag */
function selectLayer(tag) {
  if (state.view === "map") return openLayer(tag, state.step);
  if (tag === state.tag) return;
  state.tag = tag;
  speculate();
  state.channel = null;
  ui.detail.hide();
  renderLayerList();
  renderProbes();
  loadSteps();
}

/** @param {number} p */
function selectProbe(p) {
  if (p === state.probe) return;
  state.probe = p;
  renderProbes();
  renderStep();
}

/** @param {number} c */
function openChannel(c) {
  state.channel = c;
  renderStep();
}

function closeDetail() {
  state.channel = null;
  ui.detail.hide();
  ui.grid.select(null);
  document.body.dataset.renderedChannel = "";
  writeUrl();
}

function closeDetailIfInvalid() {
  const info = currentInfo();
  if (state.channel !== null && (!info || state.channel >= info.channels)) closeDetail();
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function play() {
  const button = ui.el.play;
  if (state.playing) {
    state.playing = false;
    button.textContent = "▶ Play";
    return;
  }
  if (steps().length < 2) return;
  state.playing = true;
  button.textContent = "❚❚ Pause";
  if (stepIndex() >= steps().length - 1) goToIndex(0);
  while (state.playing) {
    await sleep(PLAY_FRAME_MS);
    if (!state.playing) break;
    // Wait for the frame in flight, so playback never outruns the network.
    while (document.body.dataset.state === "loading") await sleep(20);
    const i = stepIndex();
    if (i >= steps().length - 1) {
      state.playing = false;
      button.textContent = "▶ Play";
      break;
    }
    goToIndex(i + 1);
  }
}

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
  el.filter.addEventListener("input", () => {
    state.filter = el.filter.value;
    renderLayerList();
  });
  el.slider.addEventListener("input", () => goToIndex(Number(el.slider.value)));
  el.stepInput.addEventListener("change", () => {
    const v = Number(el.stepInput.value);
    if (Number.isFinite(v)) goToStep(v);
  });
  el.stepInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      const v = Number(el.stepInput.value);
      if (Number.isFinite(v)) goToStep(v);
      el.stepInput.value = String(state.step ?? "");
    }
  });
  el.prev.addEventListener("click", () => goToIndex(stepIndex() - 1));
  el.next.addEventListener("click", () => goToIndex(stepIndex() + 1));
  el.play.addEventListener("click", play);
  // Colormap, scale and size recolour what is cached: no new request.
  el.cmap.addEventListener("change", () => {
    state.cmap = el.cmap.value;
    renderStep();
  });
  el.norm.addEventListener("change", () => {
    const norm = el.norm.value;
    if (isNorm(norm)) state.norm = norm;
    renderStep();
  });
  el.size.addEventListener("input", () => {
    state.size = Number(el.size.value);
    const info = currentInfo();
    if (shown.layer && info) drawLayer(info, shown.layer);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || isTyping(ev.target)) return;
    // The slider moves itself on arrow keys; only handle them elsewhere.
    const onSlider = ev.target === el.slider;
    if (ev.key === "ArrowLeft" && !onSlider) goToIndex(stepIndex() - 1);
    else if (ev.key === "ArrowRight" && !onSlider) goToIndex(stepIndex() + 1);
    else if (ev.key === "Home" && !onSlider) goToIndex(0);
    else if (ev.key === "End" && !onSlider) goToIndex(steps().length - 1);
    else if (ev.key === "Escape" && state.channel !== null) closeDetail();
    else return;
    ev.preventDefault();
  });
  // Coming back to the tab, TensorBoard resets the hash to "#activations":
  // put the selection back so the address stays shareable.
  const host = hostWindow();
  if (host) {
    host.addEventListener("hashchange", () => {
      try {
        if (host.location.hash === `#${PLUGIN}`) writeUrl();
      } catch {
        // Out of reach: nothing to restore.
      }
    });
  }
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
  if (!names.includes(state.cmap)) state.cmap = names.includes("viridis") ? "viridis" : "gray";
  fillSelect(ui.el.cmap, names, state.cmap);
}

function loadStyles() {
  return new Promise((resolve) => {
    const link = h("link", { rel: "stylesheet", href: "static/style.css" });
    link.addEventListener("load", resolve);
    link.addEventListener("error", resolve);
    document.head.append(link);
    setTimeout(resolve, 2000);
  });
}

export async function render() {
  setPhase("loading");
  await loadStyles();
  const el = buildShell(document.body);
  ui = {
    el,
    grid: new TileGrid(openChannel),
    strips: new StripMap(openChannel),
    detail: new Detail(el.detail, { onClose: closeDetail, onStep: goToStep }),
    timeline: new ChannelTimeline({
      onOpen: openAt,
      onMeasure: chooseTimelineMeasure,
      onToggle: toggleTimeline,
    }),
    bar: new GridBar(chooseGrid),
    map: new TrainingMap({
      onOpen: openLayer,
      onMeasure: chooseMeasure,
      onLayerView: () => openLayer(state.tag, state.step),
    }),
    tabs: new ViewTabs({ onMap: openMap, onLayer: () => openLayer(state.tag, state.step) }),
    curves: new CurveStrip({ onStep: goToStep, onSeries: chooseCurve }),
    compare: new Compare({
      onPick: chooseCompare,
      onOpen: openChannel,
      onMapOpen: openLayer,
      onReach: warmCompare,
    }),
    overlay: new OverlayBar(chooseOverlay),
    detailOverlay: new DetailOverlay(),
    downloads: new DownloadLinks(),
  };
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
  readUrl();
  el.norm.value = state.norm;
  wire();
  await loadColormaps();
  await poll();
  setInterval(poll, POLL_MS);
}
