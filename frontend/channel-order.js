// @ts-check
// Which channels the grid shows, in what order, and the counts in words:
// pure functions of a layer's channel timeline (model.js's `Timeline`) and
// the current step. The grid and the channel timeline both draw the order
// computed here, so their rows and tiles always agree.

/** @typedef {import("./model.js").Timeline} Timeline */

/** @typedef {"index" | "change_prev" | "change_start" | "mean" | "max" | "on_rate" | "dormant_score"} SortKey */

/**
 * τ: a channel is dormant at a step when its dormant score is at most τ
 * (docs/measures.md). The server's default, which the overview's
 * `dormant_fraction` and its `tau` use.
 */
export const TAU = 0.025;

/** The channel timeline's measures, the rows of the `timeline` route, in words. */
export const TIMELINE_MEASURES = [
  { id: "change_prev", label: "change since previous step" },
  { id: "change_start", label: "change since start" },
  { id: "dead", label: "dead (every value 0)" },
  { id: "mean", label: "mean" },
  { id: "max", label: "max" },
  { id: "zero_fraction", label: "zero fraction" },
  { id: "on_rate", label: "on-rate (share of values > 0)" },
  { id: "dormant_score", label: "dormant score (activity ÷ the layer's average)" },
];

/**
 * The grid's orders: by channel index, or largest first by one of the
 * timeline's measures at the step.
 * @type {{id: SortKey, label: string}[]}
 */
export const SORTS = [
  { id: "index", label: "channel index" },
  .../** @type {{id: SortKey, label: string}[]} */ (
    TIMELINE_MEASURES.filter((m) => ["change_prev", "change_start", "mean", "max", "on_rate"].includes(m.id))
  ),
  { id: "dormant_score", label: "dormant score, lowest first" },
];

/** The grid's filters in words, by id; "top" is top<k> in the URL, e.g. "top16". */
const FILTER_WORDS = {
  all: "all channels",
  dead: "dead now",
  died: "died during training",
  never: "never active",
  dormant: "dormant now",
  became: "became dormant",
  top: "top k changed",
};

export const FILTERS = Object.entries(FILTER_WORDS).map(([id, label]) => ({ id, label }));

export const DEFAULT_TOP = 16;

/** What "dead", "never active" and "died" mean, for tooltips. */
export const DEFINITIONS =
  "Dead at a step: every value of the channel is exactly 0 on every probe at that step. " +
  "Never active: dead at every kept step. " +
  "Died: alive at one kept step and dead at the next one; a channel that died more than once counts once. " +
  "Revived: dead at one kept step and alive at the next one. " +
  `Dormant at a step: a dormant score (mean |a| over every sample and position, ÷ the layer's average) at most τ = ${TAU}. ` +
  "Became dormant: dormant at the shown step but not at the first kept step.";

/** @param {string} v @returns {v is SortKey} */
export function isSort(v) {
  return SORTS.some((s) => s.id === v);
}

/** @param {string} v */
export function isTimelineMeasure(v) {
  return TIMELINE_MEASURES.some((m) => m.id === v);
}

/**
 * A filter as the URL writes it: "all", "dead", "died", "never" or "top<k>".
 * @param {string} v
 * @returns {{kind: string, k: number} | null} null when `v` is none of them
 */
export function parseFilter(v) {
  const top = /^top(\d{1,5})$/.exec(v);
  if (top) return Number(top[1]) > 0 ? { kind: "top", k: Number(top[1]) } : null;
  return FILTERS.some((f) => f.id === v && v !== "top") ? { kind: v, k: DEFAULT_TOP } : null;
}

/**
 * The measure "top k changed" ranks by: the change the grid is sorted by,
 * or the change since the previous step.
 * @param {SortKey} sort
 */
export function topMeasure(sort) {
  return sort === "change_start" ? "change_start" : "change_prev";
}

/**
 * One channel's value of a timeline row at step column `j` (NaN when null).
 * @param {Timeline} tl @param {string} measure @param {number} c @param {number} j
 */
export function cell(tl, measure, c, j) {
  const row = tl.rows[measure];
  return row && j >= 0 ? row[c * tl.steps.length + j] : NaN;
}

/**
 * Why a sort or filter cannot be used with this timeline, or "" when it can.
 * @param {Timeline | null} tl
 * @param {string | null} missing why there is no timeline, when there is none
 * @param {string} measure the timeline row it reads ("" for none)
 */
function reason(tl, missing, measure) {
  if (!measure) return "";
  if (!tl) return missing || "the channel measures have not loaded";
  return tl.unavailable[measure] || (tl.rows[measure] ? "" : `the server sent no ${measure} row`);
}

/**
 * @typedef {Object} Counts
 * @property {number} total channels of the layer
 * @property {number} dead dead at the current step
 * @property {number} never dead at every kept step
 * @property {number} died channels with at least one death at or before the current step
 * @property {number} revived channels with at least one revival at or before the current step
 * @property {number | null} first the first kept step (deaths can only come after it)
 * @property {number | null} lastDeath the latest death at or before the current step
 */

/**
 * The counts sentence's numbers at `step`.
 * @param {Timeline} tl @param {number} step @param {number} total
 * @returns {Counts | null} null when the timeline has no dead row or lacks the step
 */
export function counts(tl, step, total) {
  const j = tl.steps.indexOf(step);
  if (j < 0 || !tl.rows.dead || tl.unavailable.dead) return null;
  let dead = 0;
  for (let c = 0; c < total; c++) if (cell(tl, "dead", c, j) === 1) dead++;
  const died = new Set();
  const revived = new Set();
  let lastDeath = null;
  for (const e of tl.events) {
    if (e.step > step || e.channel >= total) continue;
    if (e.kind === "died") {
      died.add(e.channel);
      lastDeath = e.step;
    } else revived.add(e.channel);
  }
  return {
    total,
    dead,
    never: tl.never_active.filter((c) => c < total).length,
    died: died.size,
    revived: revived.size,
    first: tl.steps.length ? tl.steps[0] : null,
    lastDeath,
  };
}

/**
 * "1 head", "4 heads": a count and its noun.
 * @param {number} n @param {string} one @param {string} [many]
 */
export function counted(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * "37 of 512 channels dead at step 600 (7%); 2 never active; 12 died after step 0 (the last at step 450); 1 revived".
 * @param {Counts} k @param {number} step @param {string} [noun] what a channel is called ("head")
 */
export function countsSentence(k, step, noun = "channel") {
  const pct = k.total ? Math.round((100 * k.dead) / k.total) : 0;
  const parts = [`${k.dead} of ${counted(k.total, noun)} dead at step ${step} (${pct}%)`];
  parts.push(`${k.never} never active`);
  if (k.first !== null) {
    const last = k.died && k.lastDeath !== null ? ` (the last at step ${k.lastDeath})` : "";
    parts.push(`${k.died} died after step ${k.first}${last}`);
  }
  if (k.revived) parts.push(`${k.revived} revived`);
  return parts.join("; ");
}

/**
 * @typedef {Object} Order
 * @property {number[]} order the channels to show, in order
 * @property {SortKey} sortedBy the sort applied ("index" when the chosen one cannot be)
 * @property {Map<string, string>} disabled sort and filter ids that cannot be used, and why
 * @property {string} note what was not done, in words ("" when all was)
 * @property {Counts | null} counts
 * @property {DormantCounts | null} dormant
 */

/**
 * The grid's channels after sorting and filtering, at `step`.
 * Sorts are descending (largest change, mean or max first); null values go
 * last; ties keep index order.
 * @param {Timeline | null} tl the layer's channel timeline, when it loaded
 * @param {string | null} missing why it did not, when it did not
 * @param {number} step
 * @param {number} total channels in the grid
 * @param {SortKey} sort
 * @param {string} filter
 * @returns {Order}
 */
export function channelOrder(tl, missing, step, total, sort, filter) {
  /** @type {Map<string, string>} */
  const disabled = new Map();
  for (const s of SORTS) {
    const why = reason(tl, missing, s.id === "index" ? "" : s.id);
    if (why) disabled.set(s.id, why);
  }
  for (const f of FILTERS) {
    const row = { all: "", top: topMeasure(sort), dormant: "dormant_score", became: "dormant_score" };
    const why = reason(tl, missing, row[/** @type {keyof typeof row} */ (f.id)] ?? "dead");
    if (why) disabled.set(f.id, why);
  }
  const j = tl ? tl.steps.indexOf(step) : -1;
  const notes = [];
  if (tl && j < 0 && (sort !== "index" || filter !== "all")) {
    notes.push(`the channel measures do not have step ${step} yet`);
  }
  let order = Array.from({ length: total }, (_, c) => c);
  const f = parseFilter(filter) || { kind: "all", k: DEFAULT_TOP };
  const fid = f.kind;
  if (fid !== "all") {
    if (disabled.has(fid) || !tl) notes.push(`showing all channels: ${disabled.get(fid)}`);
    else if (fid === "dead") order = order.filter((c) => cell(tl, "dead", c, j) === 1);
    else if (fid === "dormant") order = order.filter((c) => cell(tl, "dormant_score", c, j) <= TAU);
    else if (fid === "became") order = order.filter((c) => becameDormantAt(tl, c, j) !== null);
    else if (fid === "never") {
      const never = new Set(tl.never_active);
      order = order.filter((c) => never.has(c));
    } else if (fid === "died") {
      const died = new Set(tl.events.filter((e) => e.kind === "died").map((e) => e.channel));
      order = order.filter((c) => died.has(c));
    } else if (fid === "top") {
      const m = topMeasure(sort);
      order = ranked(order, (c) => cell(tl, m, c, j)).filter((c) => Number.isFinite(cell(tl, m, c, j)));
      if (order.length === 0 && j === 0) notes.push(`step ${step} is the first kept step: nothing changed before it`);
      order = order.slice(0, f.k);
    }
  }
  /** @type {SortKey} */
  let sortedBy = "index";
  if (sort !== "index") {
    if (disabled.has(sort) || !tl) notes.push(`sorted by index: ${disabled.get(sort)}`);
    else {
      // Dormant first: the lowest scores lead.
      const sign = sort === "dormant_score" ? -1 : 1;
      order = ranked(order, (c) => sign * cell(tl, sort, c, j));
      sortedBy = sort;
    }
  } else if (fid === "top") {
    order.sort((a, b) => a - b);
  }
  return {
    order,
    sortedBy,
    disabled,
    note: notes.join("; "),
    counts: tl ? counts(tl, step, total) : null,
    dormant: tl ? dormantCounts(tl, step, total) : null,
  };
}

/**
 * The step channel `c` became dormant, as of column `j`: the first step of
 * its current dormant stretch, when it is dormant at `j` (score ≤ τ) and was
 * not at the first kept step (score > τ); null otherwise.
 * @param {Timeline} tl @param {number} c @param {number} j
 * @returns {number | null}
 */
export function becameDormantAt(tl, c, j) {
  if (j < 0 || !(cell(tl, "dormant_score", c, j) <= TAU) || !(cell(tl, "dormant_score", c, 0) > TAU)) return null;
  let k = j;
  while (k > 0 && cell(tl, "dormant_score", c, k - 1) <= TAU) k--;
  return tl.steps[k];
}

/**
 * @typedef {Object} DormantCounts
 * @property {number} total channels of the layer
 * @property {number} dormant dormant at the current step
 * @property {number} became of those, not dormant at the first kept step
 * @property {number} first the first kept step
 * @property {number | null} last the latest step a channel became dormant
 */

/**
 * The dormant sentence's numbers at `step`.
 * @param {Timeline} tl @param {number} step @param {number} total
 * @returns {DormantCounts | null} null when no channel has a dormant score at the step
 */
export function dormantCounts(tl, step, total) {
  const j = tl.steps.indexOf(step);
  if (j < 0 || !tl.rows.dormant_score || tl.unavailable.dormant_score) return null;
  let dormant = 0;
  let became = 0;
  let scored = 0;
  /** @type {number | null} */
  let last = null;
  for (let c = 0; c < total; c++) {
    const v = cell(tl, "dormant_score", c, j);
    if (Number.isFinite(v)) scored++;
    if (!(v <= TAU)) continue;
    dormant++;
    const at = becameDormantAt(tl, c, j);
    if (at === null) continue;
    became++;
    if (last === null || at > last) last = at;
  }
  return scored ? { total, dormant, became, first: tl.steps[0], last } : null;
}

/**
 * "37 of 512 channels dormant at step 900 (7%); 12 became dormant after step 0 (the last at step 400)".
 * @param {DormantCounts} k @param {number} step @param {string} [noun] what a channel is called ("head")
 */
export function dormantSentence(k, step, noun = "channel") {
  const pct = k.total ? Math.round((100 * k.dormant) / k.total) : 0;
  const last = k.became && k.last !== null ? ` (the last at step ${k.last})` : "";
  return `${k.dormant} of ${counted(k.total, noun)} dormant at step ${step} (${pct}%); ${k.became} became dormant after step ${k.first}${last}`;
}

/**
 * Channels by value, largest first, nulls last, ties by index.
 * @param {number[]} channels @param {(c: number) => number} value
 */
function ranked(channels, value) {
  const keys = new Float64Array(channels.length);
  channels.forEach((c, i) => {
    const v = value(c);
    keys[i] = Number.isFinite(v) ? v : -Infinity;
  });
  const at = channels.map((_, i) => i);
  at.sort((a, b) => keys[b] - keys[a] || channels[a] - channels[b]);
  return at.map((i) => channels[i]);
}
