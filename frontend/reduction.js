// @ts-check
// Maps the writer shrank to fit `max_size` (docs/format.md, "PNGs"): both
// sides are box-reduced by one whole factor f = ceil(max(H, W) / max_size),
// to ceil(H / f) x ceil(W / f), the last box of a side holding what is
// left. Pixel i of a reduced side is the mean of the original positions
// i·f .. min(i·f + f, H) − 1. The header keeps the original size
// (`source_height`, `source_width`) but not f, which is the one whole
// factor that turns the longer original side into the longer kept side:
// ceil(max(H, W) / max(h, w)) (docs/format.md says why).

/** @typedef {import("./model.js").LayerInfo} LayerInfo */

/**
 * The factor a series' maps were reduced by; 1 when they are full size
 * (and for a header without the original size).
 * @param {LayerInfo | null | undefined} info
 */
export function reductionFactor(info) {
  if (!info) return 1;
  const long = Math.max(info.source_height, info.source_width);
  const kept = Math.max(info.height, info.width);
  if (!(kept > 0) || !(long > kept)) return 1;
  return Math.ceil(long / kept);
}

/**
 * The original positions pixel `i` of a reduced side covers, first and last.
 * @param {number} i @param {number} factor @param {number} n the side's original length
 * @returns {[number, number]}
 */
export function span(i, factor, n) {
  const first = i * factor;
  return [first, Math.max(first, Math.min(first + factor, n) - 1)];
}

/** "12–13", or "12" for one position. @param {[number, number]} s */
export function spanText([first, last]) {
  return first === last ? String(first) : `${first}–${last}`;
}

/** How many original positions a span holds. @param {[number, number]} s */
export function spanLength([first, last]) {
  return last - first + 1;
}

/**
 * The plural of an axis's name: "query" → "queries", "key" → "keys".
 * @param {string} name
 */
export function plural(name) {
  return /[^aeiou]y$/.test(name) ? `${name.slice(0, -1)}ies` : `${name}s`;
}
