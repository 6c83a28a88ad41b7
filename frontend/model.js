// @ts-check
// Data access for the Activations tab: every request the panel makes goes
// through here, so caching, in-flight de-duplication and error text live in
// one place. URLs are relative: the iframe's <base> points at the plugin.
//
// Cache keys come from what is asked (route, run, tag, step, probe, channel)
// and from the series' version in the last `tags` answer (its newest step and
// step count): a new step makes a new key, so nothing is ever cleared by hand.
// A new route is one method here over `_versioned` or the layer/series LRUs.

import { fixedRanges, statIndex } from "./color.js";
import { LATEST, takeEarly, takeEarlyJson } from "./index.js";
import { PROBE_TAG, layersOf, runsOf } from "./layer-order.js";
import { channelNoun } from "./tokens.js";

/** @typedef {import("./color.js").Lut} Lut */
/** @typedef {import("./color.js").StatIndex} StatIndex */
/** @typedef {import("./color.js").StatsRow} StatsRow */

/**
 * One series as `tags` lists it (the layer's metadata and the server's counts).
 * @typedef {Object} LayerInfo
 * @property {string} layer
 * @property {string} class_name
 * @property {string} layout "image" | "sequence" | "units" | "probe"
 * @property {(number | null)[]} output_shape
 * @property {number} channels
 * @property {number} total_channels
 * @property {number} probes
 * @property {number} height
 * @property {number} width
 * @property {number} source_height
 * @property {number} source_width
 * @property {string | null} reduction
 * @property {number} [position]
 * @property {string[]} stats_fields
 * @property {number} steps_kept
 * @property {number} max_step
 * @property {number} max_wall_time
 * @property {number | null} sampling_limit
 */

/** @typedef {Record<string, Record<string, LayerInfo>>} Tags */

/**
 * @typedef {Object} StepInfo
 * @property {number} step
 * @property {number} wall_time
 * @property {number | null} epoch
 * @property {number | null} batch
 */

/**
 * The kept steps of one series, as `steps` answers, with the version it belongs to.
 * @typedef {Object} StepList
 * @property {string} run
 * @property {string} tag
 * @property {string | null} version
 * @property {StepInfo[]} steps
 * @property {number} steps_kept
 * @property {number} steps_logged
 * @property {number | null} sampling_limit
 */

/** @typedef {{width: number, height: number, gray: Uint8Array}} GrayMap */

/**
 * One step of one layer, decoded.
 * @typedef {Object} Layer
 * @property {{epoch: number | null, wall_time: number, stats_fields: string[], channels: number, height: number, width: number}} meta
 * @property {StatsRow[]} stats
 * @property {StatIndex} fields
 * @property {GrayMap[]} channels
 */

/** @typedef {GrayMap & {step: number, epoch: number | null, wall_time: number, stats: StatsRow}} SeriesFrame */

/**
 * One layer's per-channel measures over its kept steps, as `timeline`
 * answers: each row is (channels x steps) float32, channel-major; NaN = null.
 * @typedef {Object} Timeline
 * @property {string} run
 * @property {string} tag
 * @property {number[]} steps
 * @property {number} channels
 * @property {Record<string, Float32Array>} rows by measure name
 * @property {{channel: number, kind: "died" | "revived", step: number}[]} events sorted by step
 * @property {number[]} never_active
 * @property {Record<string, string>} unavailable measure -> why it is null
 */

/**
 * A run's layer measures, as `overview` answers.
 * @typedef {Object} Overview
 * @property {string} run
 * @property {string[]} layers model order
 * @property {number[]} steps the union of the layers' kept steps
 * @property {string[]} measures
 * @property {Record<string, (number | null)[][]>} rows measure -> [layer][step]
 * @property {Record<string, Record<string, string>>} unavailable measure -> layer -> why it is null
 * @property {Record<string, number>} first_nonfinite layer -> its first step with a NaN or infinity
 * @property {Record<string, number>} effective_rank_max layer -> min(N − 1, units)
 * @property {number | null} tau the dormant threshold of `dormant_fraction`
 */

/**
 * One scalar series on the activations' iteration axis.
 * @typedef {Object} CurveSeries
 * @property {string} run
 * @property {string} tag
 * @property {"iteration" | "epoch" | "step"} axis the axis it was written on
 * @property {[number, number | null, number, boolean][]} points [iteration, value, source step, exact]
 * @property {[number, number | null][]} unmapped [source step, value] no logged state places
 * @property {string | null} note why some are unmapped
 */

/**
 * The loss and metric curves of a run and its sibling runs, as `curves` answers.
 * @typedef {Object} Curves
 * @property {string} run
 * @property {number[]} steps
 * @property {CurveSeries[]} series
 */

/**
 * Every channel's statistics at every kept step, for the fixed scales.
 * @typedef {Object} LayerStats
 * @property {StatIndex} fields
 * @property {{step: number, stats: StatsRow[][]}[]} steps
 */

export { PROBE_TAG };

/** A failed request, carrying the server's plain-text explanation. */
export class RequestError extends Error {
  /** @param {string} what @param {number} status @param {string} text */
  constructor(what, status, text) {
    const detail = (text || "").trim();
    super(status ? `${what}: ${detail || `HTTP ${status}`}` : `${what}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

/** @param {string} route @param {Record<string, string | number | null | undefined>} params */
function query(route, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `${route}?${s}` : route;
}

/** @param {string} url @param {string} what */
async function fetchOk(url, what) {
  let response;
  try {
    response = await (takeEarly(url) ?? fetch(url));
  } catch (e) {
    throw new RequestError(what, 0, `the TensorBoard server did not answer (${messageOf(e)})`);
  }
  if (!response.ok) {
    // Without a body, the status alone still tells the user something.
    let text = await response.text().catch(() => "");
    // TensorBoard answers some errors with an HTML page; never show markup.
    if (/^\s*</.test(text)) text = `HTTP ${response.status} ${response.statusText}`;
    throw new RequestError(what, response.status, text.slice(0, 500));
  }
  return response;
}

/** @param {string} url @param {string} what @returns {Promise<any>} */
async function fetchJson(url, what) {
  const response = await fetchOk(url, what);
  try {
    return await response.json();
  } catch (e) {
    throw new RequestError(what, response.status, `the answer is not JSON (${messageOf(e)})`);
  }
}

/** @param {unknown} e */
export function messageOf(e) {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A list field of a JSON answer; [] when the answer lacks it or has something else there.
 * @param {any} data @param {string} name @returns {any[]}
 */
function listField(data, name) {
  return Array.isArray(data?.[name]) ? data[name] : [];
}

/** @param {string} b64 */
function base64Bytes(b64) {
  const from = /** @type {any} */ (Uint8Array).fromBase64;
  if (typeof from === "function") return /** @type {Uint8Array} */ (from(b64));
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Splits the server's gray levels (base64 of `count` maps of height x width
 * bytes, one after another) into one view per map, without copying.
 * @param {string} b64 @param {number} count @param {number} height @param {number} width
 * @param {string} what
 * @returns {GrayMap[]}
 */
function grayMaps(b64, count, height, width, what) {
  const gray = base64Bytes(b64 || "");
  const size = height * width;
  if (!(size >= 0) || gray.length !== count * size) {
    throw new RequestError(
      what,
      0,
      `expected ${count} × ${height} × ${width} gray levels, received ${gray.length}`,
    );
  }
  return Array.from({ length: count }, (_, i) => ({
    width,
    height,
    gray: gray.subarray(i * size, (i + 1) * size),
  }));
}

/**
 * A small byte-bounded LRU map of decoded data.
 * @template V
 */
class Lru {
  /** @param {number} maxBytes */
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.bytes = 0;
    /** @type {Map<string, {value: V, bytes: number}>} */
    this.map = new Map();
  }
  /** @param {string} key */
  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }
  /** @param {string} key @param {V} value @param {number} bytes */
  set(key, value, bytes) {
    this.delete(key);
    this.map.set(key, { value, bytes });
    this.bytes += bytes;
    for (const [k, e] of this.map) {
      if (this.bytes <= this.maxBytes || this.map.size <= 1) break;
      this.map.delete(k);
      this.bytes -= e.bytes;
    }
  }
  /** @param {string} key */
  delete(key) {
    const e = this.map.get(key);
    if (e) {
      this.map.delete(key);
      this.bytes -= e.bytes;
    }
  }
}

const SEP = "\u0000";
const key = (/** @type {unknown[]} */ ...parts) => parts.join(SEP);

export class Model {
  constructor() {
    /** @type {Tags} The last `tags` answer. */
    this.tags = {};
    /** @type {Lru<Layer>} Every channel of one (run, tag, step, probe). */
    this.layers = new Lru(192 * 1024 * 1024);
    /** @type {Lru<SeriesFrame[]>} One channel over the kept steps of one version. */
    this.series = new Lru(64 * 1024 * 1024);
    /** @type {Map<string, Promise<any>>} */
    this.pending = new Map();
    /** @type {Map<string, Promise<string>>} */
    this.probes = new Map();
    /** @type {Map<string, {version: string | null, promise: Promise<any>}>} */
    this.versioned = new Map();
    /** @type {WeakMap<LayerStats, Map<number, ReturnType<typeof fixedRanges>>>} */
    this.fixed = new WeakMap();
    /** @type {Promise<Map<string, Lut>> | null} */
    this.colormaps = null;
  }

  /**
   * @template T
   * @param {string} k
   * @param {() => Promise<T>} make
   * @returns {Promise<T>}
   */
  _once(k, make) {
    const inflight = this.pending.get(k);
    if (inflight) return inflight;
    const p = make().finally(() => this.pending.delete(k));
    this.pending.set(k, p);
    return p;
  }

  /**
   * A JSON answer cached under its URL while `version` holds.
   * @template T
   * @param {string} route
   * @param {Record<string, string | number | null>} params
   * @param {string | null} version
   * @param {string} what
   * @param {(data: any) => T} decode
   * @returns {Promise<T>}
   */
  _versioned(route, params, version, what, decode) {
    const url = query(route, params);
    const hit = this.versioned.get(url);
    if (hit && hit.version === version) return hit.promise;
    const promise = fetchJson(url, what).then(decode);
    this.versioned.set(url, { version, promise });
    promise.catch(() => {
      if (this.versioned.get(url)?.promise === promise) this.versioned.delete(url);
    });
    return promise;
  }

  // -- tags: runs, layers and their versions --------------------------------

  /** @returns {Promise<Tags>} */
  async fetchTags() {
    const tags = await fetchJson("tags", "Could not list the logged layers");
    this.tags = tags && typeof tags === "object" ? tags : {};
    return this.tags;
  }

  /** Runs with at least one layer. */
  runs() {
    return runsOf(this.tags);
  }

  /** A run's layers in the model's order (layer-order.js). @param {string | null} run */
  layersOf(run) {
    return layersOf(this.tags, run);
  }

  /** @param {string | null} run @param {string | null} tag @returns {LayerInfo | null} */
  info(run, tag) {
    const info = run !== null && tag !== null ? this.tags[run]?.[tag] : undefined;
    return info && tag !== null ? { ...info, layer: tag } : null;
  }

  /** @param {string | null} run */
  hasProbe(run) {
    return run !== null && Boolean(this.tags[run]?.[PROBE_TAG]);
  }

  /**
   * What changes when the series gains or loses a step.
   * @param {string | null} run @param {string | null} tag
   */
  version(run, tag) {
    const info = this.info(run, tag);
    return info ? `${info.max_step}:${info.steps_kept}:${info.max_wall_time}` : null;
  }

  // -- cached answers ------------------------------------------------------

  /** @returns {Promise<Map<string, Lut>>} The server's colormaps, in its order. */
  fetchColormaps() {
    if (!this.colormaps) {
      this.colormaps = this._once("colormaps", async () => {
        const maps = await fetchJson("colormaps", "Could not load the colormaps");
        const out = /** @type {Map<string, Lut>} */ (new Map());
        for (const [name, m] of Object.entries(maps || {})) {
          if (Array.isArray(m) && m.length === 256) out.set(name, m);
        }
        return out;
      }).catch((e) => {
        this.colormaps = null;
        throw e;
      });
    }
    return this.colormaps;
  }

  /** @param {string} run @param {string} tag @returns {Promise<StepList>} */
  fetchSteps(run, tag) {
    const version = this.version(run, tag);
    return this._versioned(
      "steps",
      { run, tag },
      version,
      `Could not list the steps of ${tag}`,
      (data) => ({
        ...data,
        run,
        tag,
        version,
        steps: listField(data, "steps"),
      }),
    );
  }

  /** @param {string} run @param {string} tag @returns {Promise<LayerStats>} */
  fetchStats(run, tag) {
    return this._versioned(
      "stats",
      { run, tag },
      this.version(run, tag),
      `Could not load the statistics of ${tag}`,
      (data) => ({ fields: statIndex(data?.fields), steps: data?.steps || [] }),
    );
  }

  /** Derived once per answer and probe. @param {LayerStats} stats @param {number} probe */
  fixedRanges(stats, probe) {
    let perProbe = this.fixed.get(stats);
    if (!perProbe) this.fixed.set(stats, (perProbe = new Map()));
    let value = perProbe.get(probe);
    if (!value) perProbe.set(probe, (value = fixedRanges(stats.steps, probe, stats.fields)));
    return value;
  }

  /**
   * A cached layer, if it is still the one logged at that step: a restarted
   * run writes its steps again, with new wall times.
   * @param {string} run @param {string} tag @param {number} step @param {number} probe
   * @param {number} [wallTime] the step's wall time in the step list, when known
   */
  peekLayer(run, tag, step, probe, wallTime) {
    const hit = this.layers.get(key(run, tag, step, probe));
    return hit && (wallTime === undefined || hit.meta.wall_time === wallTime) ? hit : undefined;
  }

  /**
   * One step of one layer, decoded.
   * @param {string} run @param {string} tag @param {number} step @param {number} probe
   * @param {number} [wallTime]
   * @returns {Promise<Layer>}
   */
  fetchLayer(run, tag, step, probe, wallTime) {
    const hit = this.peekLayer(run, tag, step, probe, wallTime);
    if (hit) return Promise.resolve(hit);
    const k = key(run, tag, step, probe);
    return this._once(`layer${SEP}${k}`, async () => {
      // index.js may have asked for the latest kept step before the step list was in.
      const latest = await takeEarlyJson(query("layer", { run, tag, step: LATEST, probe }));
      if (latest) this._keepLayer(run, tag, probe, latest, `Could not load ${tag}`);
      const early = this.peekLayer(run, tag, step, probe, wallTime);
      if (early) return early;
      const what = `Could not load ${tag} at step ${step}`;
      const body = await fetchJson(query("layer", { run, tag, step, probe }), what);
      return this._keepLayer(run, tag, probe, body, what);
    });
  }

  /**
   * Decodes a `layer` answer and caches it under the step it holds.
   * @param {string} run @param {string} tag @param {number} probe @param {any} body @param {string} what
   * @returns {Layer}
   */
  _keepLayer(run, tag, probe, body, what) {
    // Only the levels are kept: the base64 text would double what the cache holds.
    const { pixels, ...meta } = body;
    const channels = grayMaps(pixels, meta.channels, meta.height, meta.width, what);
    /** @type {Layer} */
    const decoded = { meta, stats: meta.stats || [], fields: statIndex(meta.stats_fields), channels };
    const bytes = meta.channels * meta.height * meta.width + 1024;
    this.layers.set(key(run, tag, meta.step, probe), decoded, bytes);
    return decoded;
  }

  /**
   * One channel over every kept step; its rows follow the layer's `stats_fields`.
   * @param {string} run @param {string} tag @param {number} channel @param {number} probe
   * @returns {Promise<SeriesFrame[]>}
   */
  fetchSeries(run, tag, channel, probe) {
    const k = key(run, tag, channel, probe, this.version(run, tag));
    const hit = this.series.get(k);
    if (hit) return Promise.resolve(hit);
    return this._once(`series${SEP}${k}`, async () => {
      const info = this.info(run, tag);
      const noun = info ? channelNoun(info) : "channel";
      const what = `Could not load the evolution of ${noun} ${channel} of ${tag}`;
      const data = await fetchJson(query("series", { run, tag, channel, probe }), what);
      const steps = (data.steps || []).map((/** @type {any} */ s) => ({
        step: s.step,
        epoch: s.epoch,
        wall_time: s.wall_time,
        stats: s.stats,
        ...grayMaps(s.pixels, 1, s.height, s.width, what)[0],
      }));
      const bytes = steps.reduce(
        (/** @type {number} */ n, /** @type {SeriesFrame} */ s) => n + s.gray.length,
        0,
      );
      this.series.set(k, steps, bytes + 1024);
      return steps;
    });
  }

  /**
   * A layer's channel timeline, decoded once per version of the series.
   * @param {string} run @param {string} tag @returns {Promise<Timeline>}
   */
  fetchTimeline(run, tag) {
    const what = `Could not load the channel timeline of ${tag}`;
    return this._versioned("timeline", { run, tag }, this.version(run, tag), what, (data) => {
      const steps = listField(data, "steps");
      const channels = Number(data?.channels) || 0;
      /** @type {Record<string, Float32Array>} */
      const rows = {};
      for (const [name, b64] of Object.entries(data?.rows || {})) {
        const bytes = base64Bytes(String(b64));
        if (bytes.length !== channels * steps.length * 4) {
          throw new RequestError(
            what,
            0,
            `expected ${channels} × ${steps.length} float32 values of ${name}, received ${bytes.length} bytes`,
          );
        }
        // A fresh, aligned copy: the decoded bytes may be a view at any offset.
        rows[name] = new Float32Array(bytes.slice().buffer);
      }
      return {
        run,
        tag,
        steps,
        channels,
        rows,
        events: listField(data, "events"),
        never_active: listField(data, "never_active"),
        unavailable: data?.unavailable || {},
      };
    });
  }

  /** What changes when any layer of a run gains or loses a step. @param {string | null} run */
  runVersion(run) {
    const infos = this.layersOf(run);
    return infos.length ? infos.map((i) => this.version(run, i.layer)).join("|") : null;
  }

  /**
   * A run-wide answer, cached while none of the run's layers changes.
   * @template T
   * @param {string} route @param {string} run @param {string} what @param {(data: any) => T} decode
   */
  _ofRun(route, run, what, decode) {
    return this._versioned(route, { run }, this.runVersion(run), `Could not load ${what} of ${run}`, decode);
  }

  /** @param {string} run @returns {Promise<Overview>} */
  fetchOverview(run) {
    return this._ofRun("overview", run, "the training map", (data) => ({
      run,
      layers: listField(data, "layers"),
      steps: listField(data, "steps"),
      measures: listField(data, "measures"),
      rows: data?.rows || {},
      unavailable: data?.unavailable || {},
      first_nonfinite: data?.first_nonfinite || {},
      effective_rank_max: data?.effective_rank_max || {},
      tau: data?.tau ?? null,
    }));
  }

  /** @param {string} run @returns {Promise<Curves>} */
  fetchCurves(run) {
    return this._ofRun("curves", run, "the loss curves", (data) => ({
      run,
      steps: listField(data, "steps"),
      series: listField(data, "series"),
    }));
  }

  /**
   * An object URL for a probe image (fetched, so a failure has the server's
   * text): of the model's main input, or of the input named `input`.
   * @param {string} run @param {number} probe @param {string | null} [input]
   */
  probeUrl(run, probe, input = null) {
    const k = key(run, probe, input ?? "");
    let p = this.probes.get(k);
    if (!p) {
      p = fetchOk(query("probe", { run, probe, input }), `Could not load probe ${probe} of ${run}`)
        .then((r) => r.blob())
        .then((b) => URL.createObjectURL(b));
      p.catch(() => this.probes.delete(k));
      this.probes.set(k, p);
    }
    return p;
  }
}
