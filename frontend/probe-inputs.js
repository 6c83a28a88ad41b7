// @ts-check
// The sidebar's probes: each pictured sample of the probe set, one button
// each, showing every input of the model in a form that suits it (format
// version 3's `probe_kind`): an image as the model saw it, token IDs (or the
// strings logged with them) as a row of tokens, other arrays as a strip of
// their values. With several inputs, each is labelled with its name.

import { h } from "./dom.js";
import { report } from "./hooks.js";
import { PROBE_TAG, messageOf } from "./model.js";
import { clearErrors, currentInfo, model, setError, state, store, ui } from "./panel.js";
import { derived, tokenRow } from "./tokens.js";

/**
 * One input of the model, as its probe series describes it.
 * @typedef {Object} ProbeInput
 * @property {string} tag `__probe__` (the main input) or `__probe__/<input name>`
 * @property {string | null} name the input's name; null when the log does not say
 * @property {string} kind "image", "tokens" or "values"
 * @property {(number | string)[][] | null} tokens per sample, a tokens input's tokens
 * @property {number} height @property {number} width of its picture
 */

const drawn = { key: "" };

/**
 * The run's inputs: the main one first, then the others by name.
 * @param {string | null} run
 * @returns {ProbeInput[]}
 */
export function probeInputs(run) {
  const tags = (run !== null && model.tags[run]) || {};
  /** @type {ProbeInput[]} */
  const out = [];
  for (const [tag, info] of Object.entries(tags)) {
    const other = tag.startsWith(`${PROBE_TAG}/`);
    if (!info || (tag !== PROBE_TAG && !other)) continue;
    const d = derived(info);
    out.push({
      tag,
      name: d.input_name ?? (other ? tag.slice(PROBE_TAG.length + 1) : null),
      kind: d.probe_kind,
      tokens: d.tokens,
      height: info.height,
      width: info.width,
    });
  }
  const rank = (/** @type {ProbeInput} */ i) => (i.tag === PROBE_TAG ? "" : i.tag);
  return out.sort((a, b) => (rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0));
}

/** The sidebar's probes, drawn again only when they change. @param {(probe: number) => void} onPick */
export function probesView(onPick) {
  const run = state.run;
  const info = currentInfo();
  const count = Math.max(1, info?.probes || 1);
  if (state.probe >= count) store.correct({ probe: 0 });
  const inputs = probeInputs(run);
  const key = JSON.stringify([run, count, state.probe, inputs.map((i) => model.version(run, i.tag))]);
  if (key === drawn.key || run === null) return;
  drawn.key = key;
  clearErrors("probe");
  const wide = inputs.some((i) => i.kind !== "image") || inputs.length > 1;
  const items = [];
  for (let p = 0; p < count; p++) {
    const shown = inputs.map((input) => inputView(run, p, input, wide));
    const label = count > 1 ? h("span", { className: "probe-label" }, `#${p}`) : null;
    items.push(
      h(
        "button",
        {
          type: "button",
          className: `probe${p === state.probe ? " selected" : ""}${wide ? " wide" : ""}`,
          title:
            count > 1
              ? `Show the activations of probe ${p}`
              : "The probe the activations come from",
          "aria-pressed": String(p === state.probe),
          dataset: { probe: String(p) },
          onclick: () => onPick(p),
        },
        wide ? label : null,
        shown.length ? shown : h("span", { className: "muted" }, "not logged"),
        wide ? null : label,
      ),
    );
  }
  ui.el.probes.replaceChildren(...items);
  report({ probeInputs: inputs.map((i) => i.name ?? "").join(",") });
}

/**
 * One input of probe `p`: its tokens as chips, else its logged picture.
 * @param {string} run @param {number} p @param {ProbeInput} input @param {boolean} named
 */
function inputView(run, p, input, named) {
  const tokens = input.kind === "tokens" ? input.tokens?.[p] : null;
  let body;
  if (tokens) {
    body = tokenRow(tokens);
  } else {
    const main = input.tag === PROBE_TAG;
    const img = h("img", {
      alt: `${input.name ?? "probe"} of probe ${p}`,
      className: input.kind === "image" ? "" : "value-strip",
    });
    if (input.kind !== "image") {
      // A strip of values (or a row of IDs without their tokens): one pixel per value.
      img.style.height = `${Math.min(64, Math.max(12, input.height * 4))}px`;
    }
    body = h("span", { className: "probe-img" }, img);
    model.probeUrl(run, p, main ? null : input.name).then(
      (url) => {
        img.src = url;
      },
      (e) => {
        body.replaceChildren(h("span", { className: "muted" }, "no image"));
        setError(`probe${p}${input.tag}`, messageOf(e));
      },
    );
  }
  return h(
    "span",
    { className: "probe-input", dataset: { input: input.name ?? "", kind: input.kind } },
    named ? h("span", { className: "input-name" }, input.name ?? "input") : null,
    body,
  );
}
