// Data access for the Activations tab: every request the panel makes goes
// through here, so caching, in-flight de-duplication and error text live in
// one place. URLs are relative: the iframe's <base> points at the plugin.

/** A failed request, carrying the server's plain-text explanation. */
export class RequestError extends Error {
  constructor(what, status, text) {
    const detail = (text || "").trim();
    super(status ? `${what}: ${detail || `HTTP ${status}`}` : `${what}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

function query(route, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `${route}?${s}` : route;
}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new RequestError(what, 0, `the TensorBoard server did not answer (${e.message})`);
  }
  if (!response.ok) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // The status alone still tells the user something.
    }
    // TensorBoard answers some errors with an HTML page; never show markup.
    if (/^\s*</.test(text)) text = `HTTP ${response.status} ${response.statusText}`;
    throw new RequestError(what, response.status, text.slice(0, 500));
  }
  return response;
}

async function fetchJson(url, what) {
  const response = await fetchOk(url, what);
  try {
    return await response.json();
  } catch (e) {
    throw new RequestError(what, response.status, `the answer is not JSON (${e.message})`);
  }
}

export function urlFor(route, params) {
  return query(route, params);
}

function base64Bytes(b64) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Splits the server's gray levels (base64 of `count` maps of height x width
 * bytes, one after another) into one view per map, without copying.
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

/** A small byte-bounded LRU map of decoded data. */
class Lru {
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.map = new Map();
  }
  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }
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
  delete(key) {
    const e = this.map.get(key);
    if (e) {
      this.map.delete(key);
      this.bytes -= e.bytes;
    }
  }
  deleteWhere(pred) {
    for (const k of [...this.map.keys()]) if (pred(k)) this.delete(k);
  }
}

const SEP = "\u0000";
const key = (...parts) => parts.join(SEP);

export class Model {
  constructor() {
    // Decoded layers: gray levels for every channel of one (run, tag, step, probe).
    this.layers = new Lru(192 * 1024 * 1024);
    this.series = new Lru(64 * 1024 * 1024);
    this.pending = new Map();
    this.probes = new Map();
    this.steps = new Map();
    this.stats = new Map();
    this.colormaps = null;
  }

  _once(k, make) {
    const inflight = this.pending.get(k);
    if (inflight) return inflight;
    const p = make().finally(() => this.pending.delete(k));
    this.pending.set(k, p);
    return p;
  }

  fetchTags() {
    return fetchJson("tags", "Could not list the logged layers");
  }

  async fetchColormaps() {
    if (!this.colormaps) {
      this.colormaps = this._once("colormaps", () =>
        fetchJson("colormaps", "Could not load the colormaps"),
      ).catch((e) => {
        this.colormaps = null;
        throw e;
      });
    }
    return this.colormaps;
  }

  /** Steps of one series; `version` (max_step, steps_kept) invalidates it. */
  fetchSteps(run, tag, version) {
    const k = key(run, tag);
    const cached = this.steps.get(k);
    if (cached && cached.version === version) return cached.promise;
    const promise = fetchJson(query("steps", { run, tag }), `Could not list the steps of ${tag}`);
    this.steps.set(k, { version, promise });
    promise.catch(() => {
      if (this.steps.get(k)?.promise === promise) this.steps.delete(k);
    });
    return promise;
  }

  /** Per-step statistics of every channel and probe, for the fixed scales. */
  fetchStats(run, tag, version) {
    const k = key(run, tag);
    const cached = this.stats.get(k);
    if (cached && cached.version === version) return cached.promise;
    const promise = fetchJson(
      query("stats", { run, tag }),
      `Could not load the statistics of ${tag}`,
    );
    this.stats.set(k, { version, promise });
    promise.catch(() => {
      if (this.stats.get(k)?.promise === promise) this.stats.delete(k);
    });
    return promise;
  }

  peekLayer(run, tag, step, probe) {
    return this.layers.get(key(run, tag, step, probe));
  }

  /** One step of one layer, decoded: {meta, stats, channels: [{width, height, gray}]}. */
  fetchLayer(run, tag, step, probe) {
    const k = key(run, tag, step, probe);
    const hit = this.layers.get(k);
    if (hit) return Promise.resolve(hit);
    return this._once(`layer${SEP}${k}`, async () => {
      const what = `Could not load ${tag} at step ${step}`;
      // Only the levels are kept: the base64 text would double what the cache holds.
      const { pixels, ...meta } = await fetchJson(query("layer", { run, tag, step, probe }), what);
      const channels = grayMaps(pixels, meta.channels, meta.height, meta.width, what);
      const decoded = { meta, stats: meta.stats || [], channels };
      const bytes = meta.channels * meta.height * meta.width + 1024;
      this.layers.set(k, decoded, bytes);
      return decoded;
    });
  }

  /** One channel over every kept step: [{step, epoch, stats, width, height, gray}]. */
  fetchSeries(run, tag, channel, probe, version) {
    const k = key(run, tag, channel, probe, version);
    const hit = this.series.get(k);
    if (hit) return Promise.resolve(hit);
    return this._once(`series${SEP}${k}`, async () => {
      const what = `Could not load the evolution of channel ${channel} of ${tag}`;
      const data = await fetchJson(query("series", { run, tag, channel, probe }), what);
      const steps = (data.steps || []).map((s) => ({
        step: s.step,
        epoch: s.epoch,
        wall_time: s.wall_time,
        stats: s.stats,
        ...grayMaps(s.pixels, 1, s.height, s.width, what)[0],
      }));
      const bytes = steps.reduce((n, s) => n + s.gray.length, 0) + 1024;
      this.series.set(k, steps, bytes);
      return steps;
    });
  }

  /** An object URL for a probe image (fetched, so a failure has the server's text). */
  probeUrl(run, probe) {
    const k = key("probe", run, probe);
    let p = this.probes.get(k);
    if (!p) {
      p = fetchOk(query("probe", { run, probe }), `Could not load probe ${probe} of ${run}`)
        .then((r) => r.blob())
        .then((b) => URL.createObjectURL(b));
      p.catch(() => this.probes.delete(k));
      this.probes.set(k, p);
    }
    return p;
  }

  /** Forgets what a new step may have changed (kept steps can be resampled). */
  invalidate(run, tag) {
    const prefix = key(run, tag) + SEP;
    this.series.deleteWhere((k) => k.startsWith(prefix));
  }

  /** Forgets a step that was written again (a restarted run reuses its steps). */
  forgetStep(run, tag, step) {
    const prefix = key(run, tag, step) + SEP;
    this.layers.deleteWhere((k) => k.startsWith(prefix));
  }
}
