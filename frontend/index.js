// The Activations tab: state, URL, polling and the wiring between model.js
// (data) and views.js (DOM). TensorBoard imports this module inside its
// plugin iframe and calls render().
//
// Scripts (tests, benchmarks) can tell when a view is on screen from the
// iframe's <body>: data-state is "loading", "ready", "empty" or "error";
// after each completed render data-rendered-{run,layer,step,probe,cmap,norm,
// channel} name what is shown, and data-evolution-channel /
// data-evolution-steps once a channel's evolution is drawn. Each grid draw is
// also a performance.measure named "activations:draw".

import {
  COLORMAPS,
  NORMALIZATIONS,
  buildTable,
  channelRange,
  displayWindow,
  fmt,
  fmtEpoch,
  grayLut,
  unionRange,
} from "./color.js";
import { Model } from "./model.js";
import {
  Detail,
  StripMap,
  TileGrid,
  buildShell,
  colorbar,
  emptyState,
  errorList,
  fillLayerList,
  fillProbes,
  fillSelect,
  h,
  shapeText,
} from "./views.js";

const PLUGIN = "activations";
const PROBE_TAG = "__probe__";
const POLL_MS = 5000;
const PLAY_FRAME_MS = 300;
const URL_KEYS = ["run", "layer", "channel", "step", "probe", "cmap", "norm"];

const model = new Model();
const state = {
  tags: {},
  run: null,
  tag: null,
  step: null,
  probe: 0,
  channel: null,
  cmap: "viridis",
  norm: "channel",
  size: null,
  filter: "",
  steps: [],
  stepsData: null,
  version: null,
  layer: null,
  statsData: null,
  luts: { gray: grayLut() },
  playing: false,
  direction: 1,
};
const errors = new Map();
let el = null;
let grid = null;
let stripMap = null;
let detail = null;
let renderGen = 0;
let evolutionKey = null;
let urlTimer = null;
let pollBusy = false;

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

function readUrlState() {
  const host = hostWindow();
  let hash = "";
  if (host && host.location.hash.startsWith(`#${PLUGIN}&`)) {
    hash = host.location.hash.slice(PLUGIN.length + 2);
  } else if (location.hash.length > 1) {
    hash = location.hash.slice(1);
  }
  const params = new URLSearchParams(hash);
  const out = {};
  for (const k of URL_KEYS) if (params.has(k)) out[k] = params.get(k);
  return out;
}

function urlParams() {
  const params = new URLSearchParams();
  if (state.run !== null) params.set("run", state.run);
  if (state.tag !== null) params.set("layer", state.tag);
  if (state.step !== null) params.set("step", String(state.step));
  if (state.channel !== null) params.set("channel", String(state.channel));
  if (state.probe) params.set("probe", String(state.probe));
  if (state.cmap !== "viridis") params.set("cmap", state.cmap);
  if (state.norm !== "channel") params.set("norm", state.norm);
  return params.toString();
}

function writeUrlNow() {
  urlTimer = null;
  const params = urlParams();
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
  if (urlTimer === null) urlTimer = setTimeout(writeUrlNow, 150);
}

// ---------------------------------------------------------------------------
// Errors and the benchmark hook.

function setError(kind, message) {
  errors.set(kind, message);
  errorList(el.errors, errors);
}

function clearError(kind) {
  if (errors.delete(kind)) errorList(el.errors, errors);
}

function setPhase(phase) {
  document.body.dataset.state = phase;
}

// ---------------------------------------------------------------------------
// Selection helpers.

// In the model's order (the writer's `position`); the data providers list
// tags in an order of their own. Layers without a position come last, by name.
function infosOf(run) {
  const tags = state.tags[run] || {};
  const rank = (info) => (Number.isInteger(info.position) ? info.position : Infinity);
  return Object.entries(tags)
    .filter(([tag, info]) => tag !== PROBE_TAG && info && info.layout !== "probe")
    .map(([tag, info]) => ({ ...info, layer: tag }))
    .sort((a, b) => rank(a) - rank(b) || (a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0));
}

function currentInfo() {
  const info = state.tags[state.run]?.[state.tag];
  return info ? { ...info, layer: state.tag } : null;
}

function versionOf(info) {
  return info ? `${info.max_step}:${info.steps_kept}:${info.max_wall_time}` : null;
}

function stepIndex() {
  return state.steps.findIndex((s) => s.step === state.step);
}

function nearestStep(step) {
  if (!state.steps.length) return null;
  let best = state.steps[0].step;
  for (const s of state.steps) if (Math.abs(s.step - step) < Math.abs(best - step)) best = s.step;
  return best;
}

function runHasProbe(run) {
  return Boolean(state.tags[run]?.[PROBE_TAG]);
}

// ---------------------------------------------------------------------------
// Tags: the list of runs and layers, polled for live training.

async function poll() {
  if (pollBusy) return;
  pollBusy = true;
  try {
    await refreshTags();
  } finally {
    pollBusy = false;
  }
}

async function refreshTags() {
  let tags;
  try {
    tags = await model.fetchTags();
    clearError("tags");
  } catch (e) {
    setError("tags", e.message);
    if (!state.run) setPhase("error");
    return;
  }
  state.tags = tags && typeof tags === "object" ? tags : {};
  const runs = Object.keys(state.tags).filter((r) => infosOf(r).length);
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
  if (!runs.includes(state.run)) {
    state.run = runs[0];
    changed = true;
  }
  fillSelect(el.runSelect, runs, state.run);
  const infos = infosOf(state.run);
  if (!infos.some((i) => i.layer === state.tag)) {
    state.tag = infos[0].layer;
    state.channel = null;
    changed = true;
  }
  renderLayerList();
  renderProbes();
  const version = versionOf(currentInfo());
  if (changed || version !== state.version) await loadSteps();
}

let layerListKey = null;
function renderLayerList() {
  const infos = infosOf(state.run);
  // Polling must not rebuild an unchanged list: that would reset its scroll.
  const key = JSON.stringify([
    state.run,
    state.tag,
    state.filter,
    infos.map((i) => [i.layer, i.class_name, i.output_shape, i.channels]),
  ]);
  if (key === layerListKey) return;
  layerListKey = key;
  fillLayerList(el.layerList, infos, state.filter, state.tag, selectLayer);
}

let probesKey = null;
function renderProbes() {
  const info = currentInfo();
  const count = Math.max(1, info?.probes || 1);
  if (state.probe >= count) state.probe = 0;
  const key = `${state.run}\u0000${count}\u0000${state.probe}\u0000${runHasProbe(state.run)}`;
  if (key === probesKey) return;
  probesKey = key;
  for (const k of [...errors.keys()]) if (k.startsWith("probe")) errors.delete(k);
  errorList(el.errors, errors);
  const run = state.run;
  fillProbes(
    el.probes,
    count,
    state.probe,
    runHasProbe(run),
    (p) => model.probeUrl(run, p),
    selectProbe,
    (p, e) => setError(`probe${p}`, e.message),
  );
}

// ---------------------------------------------------------------------------
// Steps.

async function loadSteps() {
  const { run, tag } = state;
  const info = currentInfo();
  const version = versionOf(info);
  const sameSeries = state.stepsData && state.stepsData.run === run && state.stepsData.tag === tag;
  const wasLatest =
    sameSeries && state.steps.length && state.step === state.steps[state.steps.length - 1].step;
  let data;
  try {
    data = await model.fetchSteps(run, tag, version);
    clearError("steps");
  } catch (e) {
    if (run === state.run && tag === state.tag) {
      setError("steps", e.message);
      setPhase("error");
    }
    return;
  }
  if (run !== state.run || tag !== state.tag) return;
  if (sameSeries && version !== state.version) {
    model.invalidate(run, tag);
    const before = new Map(state.steps.map((x) => [x.step, x.wall_time]));
    for (const x of data.steps || []) {
      if (before.has(x.step) && before.get(x.step) !== x.wall_time)
        model.forgetStep(run, tag, x.step);
    }
  }
  state.version = version;
  state.stepsData = { ...data, run, tag };
  state.steps = Array.isArray(data.steps) ? data.steps : [];
  if (!state.steps.length) {
    state.step = null;
    updateStepControls();
    el.view.replaceChildren(
      h("div", { className: "muted" }, "No steps of this layer are kept yet."),
    );
    setPhase("ready");
    return;
  }
  const last = state.steps[state.steps.length - 1].step;
  if (state.step === null || wasLatest) state.step = last;
  else if (stepIndex() < 0) state.step = nearestStep(state.step);
  updateStepControls();
  await renderStep();
}

function updateStepControls() {
  const n = state.steps.length;
  const i = stepIndex();
  el.slider.max = String(Math.max(0, n - 1));
  el.slider.value = String(Math.max(0, i));
  el.slider.disabled = n < 2;
  el.prev.disabled = i <= 0;
  el.next.disabled = i < 0 || i >= n - 1;
  el.play.disabled = n < 2;
  if (document.activeElement !== el.stepInput)
    el.stepInput.value = state.step === null ? "" : String(state.step);
  const s = state.steps[i];
  const parts = [];
  const hasBatch = s && s.batch !== null && s.batch !== undefined;
  if (s && s.epoch !== null && s.epoch !== undefined) {
    parts.push(s.epoch === 0 && !hasBatch ? "epoch 0 (before training)" : fmtEpoch(s.epoch));
  }
  if (hasBatch) parts.push(`batch ${s.batch}`);
  el.epoch.textContent = parts.join(", ");
  el.stepCount.textContent = n
    ? `Step ${i + 1} of ${n} kept (steps ${state.steps[0].step}–${state.steps[n - 1].step})`
    : "";
  const d = state.stepsData;
  if (d && d.steps_logged > d.steps_kept) {
    el.sampling.hidden = false;
    el.sampling.replaceChildren(
      `Showing ${d.steps_kept} of ${d.steps_logged} logged steps: TensorBoard keeps a sample of ${d.sampling_limit ?? d.steps_kept} per layer. To keep them all, start it with `,
      h("code", {}, `--samples_per_plugin=${PLUGIN}=${Math.max(1000, d.steps_logged * 2)}`),
      ".",
    );
  } else {
    el.sampling.hidden = true;
  }
}

function goToIndex(i) {
  if (!state.steps.length) return;
  const j = Math.max(0, Math.min(state.steps.length - 1, i));
  if (state.steps[j].step === state.step) return;
  state.direction = j < stepIndex() ? -1 : 1;
  state.step = state.steps[j].step;
  updateStepControls();
  renderStep();
}

function goToStep(step) {
  const s = nearestStep(step);
  if (s === null) return;
  state.step = s;
  updateStepControls();
  renderStep();
}

// ---------------------------------------------------------------------------
// Colour windows for the four normalization modes.

let fixedMemo = { data: null, probe: null, value: null };
function fixedRanges(statsData, probe) {
  if (fixedMemo.data === statsData && fixedMemo.probe === probe) return fixedMemo.value;
  const perChannel = [];
  const perStep = new Map();
  for (const s of statsData?.steps || []) {
    const rows = s.stats?.[probe] || [];
    const ranges = rows.map(channelRange);
    ranges.forEach((r, c) => {
      perChannel[c] = unionRange([perChannel[c], r]);
    });
    perStep.set(s.step, unionRange(ranges));
  }
  const value = { perChannel, perStep, layer: unionRange(perChannel) };
  fixedMemo = { data: statsData, probe, value };
  return value;
}

function needsStats(norm) {
  return norm !== "channel";
}

function lut() {
  return state.luts[state.cmap] || state.luts.gray;
}

/** The window (real units) channel c's colours span at the shown step. */
function windowsFor(layer) {
  const own = layer.stats.map(channelRange);
  const layerNow = unionRange(own);
  const fixed = needsStats(state.norm) ? fixedRanges(state.statsData, state.probe) : null;
  return own.map((r, c) => {
    let range;
    switch (state.norm) {
      case "layer":
        range = layerNow;
        break;
      case "channel-fixed":
        range = unionRange([r, fixed?.perChannel[c]]);
        break;
      case "layer-fixed":
        range = unionRange([layerNow, fixed?.layer]);
        break;
      default:
        range = r;
    }
    return displayWindow(range, state.cmap, state.norm);
  });
}

function tablesFor(layer, windows) {
  const map = lut();
  const shared = state.norm === "channel" ? buildTable(map, [0, 1], [0, 1]) : null;
  return layer.stats.map((row, c) => {
    const own = channelRange(row);
    if (shared && own) return shared;
    return buildTable(map, own, windows[c]);
  });
}

// ---------------------------------------------------------------------------
// Rendering one step.

async function renderStep() {
  const gen = ++renderGen;
  const { run, tag, step, probe } = state;
  const info = currentInfo();
  if (step === null || !info) return;
  setPhase("loading");
  writeUrl();
  if (state.channel !== null) {
    // Start the evolution's request now, so the server works while we draw.
    model.fetchSeries(run, tag, state.channel, probe, state.version).catch(() => {
      // Reported when the evolution is drawn.
    });
  }
  let layer = model.peekLayer(run, tag, step, probe);
  let statsData = null;
  try {
    const wantStats = needsStats(state.norm) ? model.fetchStats(run, tag, state.version) : null;
    if (!layer) {
      layer = await model.fetchLayer(run, tag, step, probe);
      // Ask for the next step while this one is drawn.
      if (gen === renderGen) prefetch();
    }
    clearError("layer");
    if (wantStats) {
      try {
        statsData = await wantStats;
        clearError("stats");
      } catch (e) {
        if (gen === renderGen) setError("stats", e.message);
      }
    }
  } catch (e) {
    if (gen !== renderGen) return;
    setError("layer", e.message);
    // What is still drawn belongs to another step: say so by fading it.
    el.view.classList.add("stale");
    setPhase("error");
    return;
  }
  if (gen !== renderGen) return;
  state.layer = layer;
  state.statsData = statsData;
  const drawStart = performance.now();
  el.view.classList.remove("stale");
  drawLayer(info, layer);
  performance.measure("activations:draw", { start: drawStart, end: performance.now() });
  if (state.channel !== null) {
    await renderDetail(gen, info, layer);
    if (gen !== renderGen) return;
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
}

/** Tiles shrink as channels grow, until the user picks a size. */
function tileSize(n) {
  if (state.size !== null) return state.size;
  const auto = n <= 16 ? 128 : n <= 64 ? 96 : n <= 256 ? 64 : 48;
  el.size.value = String(auto);
  return auto;
}

function drawLayer(info, layer) {
  const windows = windowsFor(layer);
  const tables = tablesFor(layer, windows);
  state.windows = windows;
  state.tables = tables;
  const n = layer.channels.length;
  const reduced = info.source_height > info.height || info.source_width > info.width;
  el.title.replaceChildren(
    h("h1", { className: "layer-heading" }, info.layer),
    h(
      "span",
      { className: "muted" },
      ` ${info.class_name} ${shapeText(info.output_shape)} · ${
        info.layout === "units"
          ? `${info.width} units`
          : info.layout === "sequence"
            ? `${n} channels × ${info.width} time steps`
            : `${n}${info.total_channels > n ? ` of ${info.total_channels}` : ""} channels, ${info.height}×${info.width}`
      }${reduced ? ` (reduced from ${info.source_height}×${info.source_width})` : ""}${
        info.reduction ? ` · ${info.reduction}` : ""
      }`,
    ),
  );
  const norm = NORMALIZATIONS.find((x) => x.id === state.norm);
  if (state.norm === "channel") {
    el.legend.replaceChildren(
      colorbar(
        lut(),
        null,
        `Scale: ${norm.short}${info.layout === "image" ? "; hover a tile for its range, click to open it" : ""}`,
        ["min", "max"],
      ),
    );
  } else {
    const shared = state.norm.startsWith("layer") ? windows.find(Boolean) : null;
    el.legend.replaceChildren(
      colorbar(
        lut(),
        shared,
        `Scale: ${norm.short}${shared ? "" : " (open a channel for its values)"}`,
        shared ? null : ["min", "max"],
      ),
    );
  }
  if (info.layout === "image") {
    if (el.view.firstChild !== grid.el) el.view.replaceChildren(grid.el);
    grid.show(layer, tables, tileSize(n), state.channel);
  } else {
    if (el.view.firstChild !== stripMap.el) el.view.replaceChildren(stripMap.el);
    stripMap.show(layer, tables, info.layout, state.size ?? 96);
  }
}

async function renderDetail(gen, info, layer) {
  const c = state.channel;
  if (c === null || c >= layer.channels.length) {
    state.channel = null;
    detail.hide();
    evolutionKey = null;
    return;
  }
  const norm = NORMALIZATIONS.find((x) => x.id === state.norm);
  const stepObj = state.steps[stepIndex()];
  detail.show({
    info,
    layout: info.layout,
    tag: info.layer,
    channelIndex: c,
    step: state.step,
    epoch: stepObj?.epoch ?? layer.meta.epoch,
    channel: layer.channels[c],
    row: layer.stats[c],
    fields: layer.meta.stats_fields,
    table: state.tables[c],
    lut: lut(),
    win: state.windows[c],
    caption: `Colours span ${norm.short}`,
  });
  await renderEvolution(gen, info);
}

async function renderEvolution(gen, info) {
  const { run, tag, channel, probe, version } = state;
  const key = [
    run,
    tag,
    channel,
    probe,
    version,
    state.cmap,
    state.norm,
    state.statsData ? 1 : 0,
  ].join("\u0000");
  if (key === evolutionKey) {
    detail.markStep(state.step);
    return;
  }
  let series;
  try {
    series = await model.fetchSeries(run, tag, channel, probe, version);
    clearError("series");
  } catch (e) {
    if (gen !== renderGen) return;
    setError("series", e.message);
    detail.evolutionMessage(e.message);
    evolutionKey = null;
    return;
  }
  if (gen !== renderGen) return;
  const map = lut();
  const fixed = needsStats(state.norm) ? fixedRanges(state.statsData, probe) : null;
  const ownAll = unionRange(series.map((s) => channelRange(s.stats)));
  const frames = series.map((s) => {
    const own = channelRange(s.stats);
    let range;
    switch (state.norm) {
      case "layer":
        range = unionRange([own, fixed?.perStep.get(s.step)]);
        break;
      case "channel-fixed":
        range = unionRange([ownAll, fixed?.perChannel[channel]]);
        break;
      case "layer-fixed":
        range = unionRange([ownAll, fixed?.layer]);
        break;
      default:
        range = own;
    }
    return {
      step: s.step,
      epoch: s.epoch,
      channel: s,
      table: buildTable(map, own, displayWindow(range, state.cmap, state.norm)),
    };
  });
  const growth = ownAll ? `range over all steps ${fmt(ownAll[0])} … ${fmt(ownAll[1])}` : "";
  detail.showEvolution(frames, info.layout, state.step, growth);
  evolutionKey = key;
  document.body.dataset.evolutionChannel = String(channel);
  document.body.dataset.evolutionSteps = String(frames.length);
}

/** Warms the cache for the steps a slider notch or playback reaches next. */
async function prefetch() {
  const i = stepIndex();
  const { run, tag, probe } = state;
  const d = state.direction;
  // The next notch in the direction of travel first, one request at a time,
  // so the likeliest step is ready soonest.
  const order = state.playing ? [i + 1, i + 2] : [i + d, i - d, i + 2 * d];
  const gen = renderGen;
  for (const j of order) {
    const s = state.steps[j];
    if (!s || model.peekLayer(run, tag, s.step, probe)) continue;
    try {
      await model.fetchLayer(run, tag, s.step, probe);
    } catch {
      // Shown if the user actually goes there.
    }
    // A newer render prefetches around itself.
    if (gen !== renderGen) return;
  }
}

/** Recolours without fetching: colormap, normalization and size changes. */
function redraw() {
  writeUrl();
  renderStep();
}

// ---------------------------------------------------------------------------
// User actions.

function selectRun(run) {
  if (run === state.run) return;
  state.run = run;
  const infos = infosOf(run);
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

function selectLayer(tag) {
  if (tag === state.tag) return;
  state.tag = tag;
  speculate();
  state.channel = null;
  detail.hide();
  evolutionKey = null;
  renderLayerList();
  renderProbes();
  loadSteps();
}

function selectProbe(p) {
  if (p === state.probe) return;
  state.probe = p;
  probesKey = null;
  renderProbes();
  renderStep();
}

function openChannel(c) {
  state.channel = c;
  evolutionKey = null;
  renderStep();
}

function closeDetail() {
  state.channel = null;
  evolutionKey = null;
  detail.hide();
  grid.select(null);
  document.body.dataset.renderedChannel = "";
  writeUrl();
}

function closeDetailIfInvalid() {
  const info = currentInfo();
  if (state.channel !== null && (!info || state.channel >= info.channels)) closeDetail();
}

async function play() {
  if (state.playing) {
    state.playing = false;
    el.play.textContent = "▶ Play";
    return;
  }
  if (state.steps.length < 2) return;
  state.playing = true;
  el.play.textContent = "❚❚ Pause";
  if (stepIndex() >= state.steps.length - 1) goToIndex(0);
  while (state.playing) {
    await new Promise((r) => setTimeout(r, PLAY_FRAME_MS));
    if (!state.playing) break;
    // Wait for the frame in flight, so playback never outruns the network.
    while (document.body.dataset.state === "loading") await new Promise((r) => setTimeout(r, 20));
    const i = stepIndex();
    if (i >= state.steps.length - 1) {
      state.playing = false;
      el.play.textContent = "▶ Play";
      break;
    }
    goToIndex(i + 1);
  }
}

function isTyping(target) {
  if (!target || !target.tagName) return false;
  const t = target.tagName;
  if (t === "TEXTAREA" || t === "SELECT") return true;
  return t === "INPUT" && target.type !== "range" && target.type !== "button";
}

function wire() {
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
  el.cmap.addEventListener("change", () => {
    state.cmap = el.cmap.value;
    evolutionKey = null;
    redraw();
  });
  el.norm.addEventListener("change", () => {
    state.norm = el.norm.value;
    evolutionKey = null;
    redraw();
  });
  el.size.addEventListener("input", () => {
    state.size = Number(el.size.value);
    if (state.layer && currentInfo()) drawLayer(currentInfo(), state.layer);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || isTyping(ev.target)) return;
    // The slider moves itself on arrow keys; only handle them elsewhere.
    const onSlider = ev.target === el.slider;
    if (ev.key === "ArrowLeft" && !onSlider) goToIndex(stepIndex() - 1);
    else if (ev.key === "ArrowRight" && !onSlider) goToIndex(stepIndex() + 1);
    else if (ev.key === "Home" && !onSlider) goToIndex(0);
    else if (ev.key === "End" && !onSlider) goToIndex(state.steps.length - 1);
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

function applyUrlState(s) {
  if (s.run !== undefined) state.run = s.run;
  if (s.layer !== undefined) state.tag = s.layer;
  const step = Number(s.step);
  if (s.step !== undefined && Number.isFinite(step)) state.step = step;
  const channel = Number(s.channel);
  if (s.channel !== undefined && Number.isInteger(channel) && channel >= 0) state.channel = channel;
  const probe = Number(s.probe);
  if (s.probe !== undefined && Number.isInteger(probe) && probe >= 0) state.probe = probe;
  if (COLORMAPS.includes(s.cmap)) state.cmap = s.cmap;
  if (NORMALIZATIONS.some((n) => n.id === s.norm)) state.norm = s.norm;
}

async function loadColormaps() {
  try {
    const maps = await model.fetchColormaps();
    for (const name of COLORMAPS) {
      const m = maps?.[name];
      if (Array.isArray(m) && m.length === 256) state.luts[name] = m;
    }
    clearError("colormaps");
  } catch (e) {
    setError("colormaps", `${e.message}. Showing gray.`);
  }
  const names = COLORMAPS.filter((n) => state.luts[n]);
  if (!names.includes(state.cmap)) state.cmap = names.includes("viridis") ? "viridis" : "gray";
  fillSelect(el.cmap, names, state.cmap);
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
  el = buildShell(document.body);
  grid = new TileGrid(openChannel);
  stripMap = new StripMap(openChannel);
  detail = new Detail(el.detail, { onClose: closeDetail, onStep: goToStep });
  applyUrlState(readUrlState());
  el.norm.value = state.norm;
  wire();
  await loadColormaps();
  await poll();
  setInterval(poll, POLL_MS);
}
