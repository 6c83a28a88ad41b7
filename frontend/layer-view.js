// @ts-check
// The layer view: one step of one layer as a grid of tiles (or strips), its
// bar, channel timeline, legend, the opened channel with its evolution, and
// the second run beside it. It reads the fields in LAYER_READS; a newer
// update makes an older one's answers stale (`latest`), so what arrives for
// a state no longer shown is dropped.

import {
  channelTables,
  fmt,
  needsAllSteps,
  normalization,
  seriesTables,
  stepWindows,
} from "./color.js";
import { drawCompare, loadCompare } from "./compare-view.js";
import { h } from "./dom.js";
import { measure, phase, report } from "./hooks.js";
import { messageOf } from "./model.js";
import {
  currentDiff,
  diffCaption,
  diffLut,
  drawTimeline,
  gridOrder,
  loadDiffReference,
  loadTimeline,
} from "./order-view.js";
import {
  drawDetailOverlay,
  loadOverlayProbe,
  overlayPainter,
  repaintOverlay,
} from "./overlay-view.js";
import {
  clearError,
  currentInfo,
  lut,
  model,
  setError,
  shown,
  state,
  stepIndex,
  steps,
  store,
  tileSize,
  ui,
} from "./panel.js";
import { Latest } from "./store.js";
import { channelNoun } from "./tokens.js";
import { colorbar, layerTitle, legend } from "./views.js";

/** @typedef {import("./model.js").Layer} Layer */
/** @typedef {import("./model.js").LayerInfo} LayerInfo */
/** @typedef {import("./state.js").ViewState} ViewState */

/** What makes the view load and draw a step again. */
const RENDER = /** @type {const} */ ([
  "view",
  "run",
  "tag",
  "steps",
  "step",
  "probe",
  "channel",
  "cmap",
  "norm",
  "diff",
  "compare",
]);
/** What is drawn again from the step on screen, with nothing fetched. */
const REDRAW = /** @type {const} */ (["size", "sort", "show"]);
const OVERLAY = /** @type {const} */ (["overlay", "overlayResize"]);
const TIMELINE = /** @type {const} */ (["tmeasure", "timelineOpen"]);

/** @type {(keyof ViewState)[]} */
export const LAYER_READS = [...RENDER, ...REDRAW, ...OVERLAY, ...TIMELINE];

const latest = new Latest();
/** What the evolution was last drawn for. */
const drawn = { evolution: "" };

/**
 * Reacts to a change of the fields it reads.
 * @param {Set<keyof ViewState>} changed
 */
export function layerView(changed) {
  const closed = changed.has("channel") && state.channel === null;
  if (closed) closeDetail();
  if (state.view !== "layer") {
    latest.begin();
    return;
  }
  /** @param {readonly (keyof ViewState)[]} keys */
  const any = (keys) => keys.some((k) => changed.has(k));
  if (any(RENDER)) {
    if (closed && changed.size === 1) return;
    return renderStep();
  }
  const info = currentInfo();
  if (any(REDRAW)) {
    if (shown.layer && info) drawLayer(info, shown.layer);
  } else if (any(OVERLAY)) {
    return redrawOverlay();
  } else if (any(TIMELINE) && state.timelineOpen && shown.layer && info) {
    drawTimeline(gridOrder(info));
  }
}

async function redrawOverlay() {
  if (await repaintOverlay()) return;
  const info = currentInfo();
  if (shown.layer && info && state.view === "layer") {
    drawLayer(info, shown.layer);
    if (state.channel !== null) drawDetailOverlay();
  }
}

function closeDetail() {
  ui.detail?.hide();
  ui.grid.select(null);
  report({ renderedChannel: "" });
}

async function renderStep() {
  const stale = latest.begin();
  const { run, tag, step, probe } = state;
  const list = state.steps;
  // The kept steps of another layer: the view waits for this one's.
  if (!list || list.run !== run || list.tag !== tag) return;
  if (!list.steps.length) {
    ui.el.view.replaceChildren(
      h("div", { className: "muted" }, "No steps of this layer are kept yet."),
    );
    phase("ready");
    return;
  }
  const info = currentInfo();
  if (step === null || run === null || tag === null || !info) return;
  phase("loading");
  const other = loadCompare();
  // The timeline is made from every step's statistics: ask for it with the
  // layer rather than after it, so the two wait for the server together,
  // and draw it as soon as it is in; it needs nothing from the layer.
  let timelineIn = false;
  let gridDrawn = false;
  const timeline = loadTimeline(run, tag).then(() => {
    timelineIn = true;
    if (!stale() && !gridDrawn) drawTimeline(gridOrder(info));
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
      if (!stale()) prefetch();
    }
    clearError("layer");
    if (wantStats) {
      try {
        stats = await wantStats;
        clearError("stats");
      } catch (e) {
        if (!stale()) setError("stats", messageOf(e));
      }
    }
  } catch (e) {
    if (stale()) return;
    setError("layer", messageOf(e));
    // What is still drawn belongs to another step: say so by fading it.
    ui.el.view.classList.add("stale");
    phase("error");
    return;
  }
  if (stale()) return;
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
  if (stale()) return;
  const drawStart = performance.now();
  ui.el.view.classList.remove("stale");
  drawLayer(info, layer);
  gridDrawn = true;
  measure("draw", drawStart);
  if (state.channel !== null) {
    await renderDetail(stale, info, layer);
    if (stale()) return;
  }
  report({
    renderedStep: String(step),
    renderedLayer: tag,
    renderedRun: run,
    renderedProbe: String(probe),
    renderedCmap: state.cmap,
    renderedNorm: state.norm,
    renderedChannel: state.channel === null ? "" : String(state.channel),
  });
  phase("ready");
  prefetch();
  if (!timelineIn) {
    await timeline;
    if (stale() || shown.layer !== layer) return;
    // A sort or filter chosen meanwhile reorders the grid itself.
    if (state.sort !== "index" || state.show !== "all") drawLayer(info, layer);
    else drawOrderViews(info, currentDiff().note);
  }
}

/** @param {LayerInfo} info @param {Layer} layer */
export function drawLayer(info, layer) {
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
    ui.grid.name(channelNoun(info) === "channel" ? "" : channelNoun(info));
    ui.grid.show(drawnLayer, tables, tileSize(n), state.channel, order.order, painter);
  } else {
    if (view.firstChild !== ui.strips.el) view.replaceChildren(ui.strips.el);
    ui.strips.show(drawnLayer, tables, info.layout, state.size ?? 96);
  }
  const head = order.order.slice(0, 32).join(",");
  report({
    gridOrder: order.order.length > 32 ? `${head},…` : head,
    gridCount: String(order.order.length),
    diff: diff ? String(diff.ref) : state.diff === "off" ? "" : "none",
  });
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
      noun: channelNoun(info),
    },
    order,
    note,
  );
  drawTimeline(order);
  return order;
}

/** @param {() => boolean} stale @param {LayerInfo} info @param {Layer} layer */
async function renderDetail(stale, info, layer) {
  const c = state.channel;
  if (c === null || c >= layer.channels.length || state.step === null) {
    store.correct({ channel: null });
    ui.detail?.hide();
    return;
  }
  // The pane and the map's token axes load with the first channel opened;
  // without the axes the map still shows, unlabelled.
  const axesIn = import("./attention-view.js").catch((e) => {
    if (!stale()) setError("module", `No axes on the opened map: ${messageOf(e)}`);
    return null;
  });
  let detail;
  try {
    detail = await ui.openDetail();
    clearError("module");
  } catch (e) {
    if (!stale()) setError("module", `The opened channel did not load: ${messageOf(e)}`);
    return;
  }
  const axes = await axesIn;
  if (stale()) return;
  const { diff } = currentDiff();
  const values = diff?.values[c];
  const map = diff ? diff.maps[c] : layer.channels[c];
  detail.show({
    info,
    channelIndex: c,
    step: state.step,
    epoch: steps()[stepIndex()]?.epoch ?? layer.meta.epoch,
    channel: map,
    row: layer.stats[c],
    fields: layer.fields,
    table: diff ? diff.table : shown.tables[c],
    lut: diff ? diffLut() : lut(),
    win: diff ? [-diff.m, diff.m] : shown.windows[c],
    caption: diff ? diffCaption(diff) : `Colours span ${normalization(state.norm).short}`,
    valueAt:
      diff && values
        ? (i) =>
            `difference ${fmt(values[i])} (${diff.what ?? `step ${diff.step} − step ${diff.ref}`})`
        : undefined,
    whereAt: axes?.whereOnAxes(info, map.height, map.width),
  });
  axes?.detailAxes(info);
  drawDetailOverlay();
  await renderEvolution(stale, detail, info, layer, c);
}

/**
 * The opened channel over every kept step, drawn again only when what it
 * shows changes: the series, the channel, the probe or the colours.
 * @param {() => boolean} stale @param {import("./detail.js").Detail} detail
 * @param {LayerInfo} info @param {Layer} layer @param {number} channel
 */
async function renderEvolution(stale, detail, info, layer, channel) {
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
    detail.markStep(state.step);
    return;
  }
  let series;
  try {
    series = await model.fetchSeries(run, tag, channel, probe);
    clearError("series");
  } catch (e) {
    if (stale()) return;
    setError("series", messageOf(e));
    detail.evolutionMessage(messageOf(e));
    drawn.evolution = "";
    return;
  }
  if (stale()) return;
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
  detail.showEvolution(frames, ix, info.layout, state.step, growth);
  drawn.evolution = key;
  report({ evolutionChannel: String(channel), evolutionSteps: String(frames.length) });
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
  const stale = latest.current();
  for (const j of order) {
    const s = steps()[j];
    if (!s || model.peekLayer(run, tag, s.step, probe, s.wall_time)) continue;
    try {
      await model.fetchLayer(run, tag, s.step, probe, s.wall_time);
    } catch {
      // Shown if the user actually goes there.
    }
    // A newer render prefetches around itself.
    if (stale()) return;
  }
}
