"""How fast the Activations panel answers, in headless Chromium on a real TensorBoard.

    .venv/bin/python benchmarks/bench_panel.py [--quick] [--output FILE] [--logdir DIR]
        [--part all|panel|reference] [--raw FILE]

The log: VGG16 (random weights, perturbed between steps so that steps
differ), the five `blockN_conv1` layers, 30 steps written through
`ActivationLogger`'s logging session (`panel_common.write_vgg16_log`). A
real `tensorboard` serves it, loaded before any measure. Each measure runs
inside the panel's iframe: it starts just before the control is operated (by
the same DOM event a user's input makes) and ends at the first animation
frame after the panel reports the render done (`body[data-state=ready]` with
the expected `data-rendered-*`), so it includes fetching (the server decodes
the PNGs), colouring and painting, but no browser automation latency. Every
repeat uses a fresh browser context: nothing is cached in the page at its
start.

Reference: TensorBoard's own Images dashboard showing the same 64
block1_conv1 channels, logged the usual way (one `tf.summary.image` tag per
channel), timed from switching to its tab until every image has loaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import common
from common import LAYERS, median, p90, table

import numpy as np
import panel_common
from panel_common import TIMEOUT_MS, VIEWPORT, api_json, rendered

from support import running_tensorboard, wait_until  # tests/ is on the path: panel_common

STEPS = 30
SWITCH_LAYER = "block4_conv1"  # 512 channels of 28x28
OTHER_512 = "block5_conv1"  # 512 channels of 14x14
BIG_LAYER = "block1_conv1"  # 64 channels of 224x224
TARGETS = {"switch": 300.0, "evolution": 300.0, "notch": 150.0}  # ms
PAGINATION_KEY = "TF.TensorBoard.PaginatedView.limit"

# The reference: switch TensorBoard to its Images tab and wait until `want`
# images (inside the dashboard's shadow DOM) have loaded.
IMAGES_JS = """
async ([want]) => {
  const imgs = () => {
    const out = [];
    const walk = (root) => {
      for (const el of root.querySelectorAll("*")) {
        if (el.tagName === "IMG") out.push(el);
        if (el.shadowRoot) walk(el.shadowRoot);
      }
    };
    walk(document);
    return out.filter((i) => i.src && !i.src.startsWith("data:") && i.closest && true);
  };
  const t0 = performance.now();
  window.location.hash = "#images";
  const deadline = t0 + 60000;
  for (;;) {
    await new Promise((r) => requestAnimationFrame(r));
    const all = imgs().filter((i) => i.src.includes("/data/plugin/images/"));
    if (all.length >= want && all.every((i) => i.complete && i.naturalWidth > 0)) {
      await new Promise((r) => requestAnimationFrame(r));
      return { painted: performance.now() - t0, images: all.length };
    }
    if (performance.now() > deadline) {
      return { painted: NaN, images: all.length,
               loaded: all.filter((i) => i.complete && i.naturalWidth > 0).length };
    }
  }
}
"""


# The panel's counterpart of the reference: switch TensorBoard to the
# Activations tab (its iframe loads) until the grid of `layer` is drawn.
TAB_JS = """
async ([hash, layer]) => {
  const t0 = performance.now();
  window.location.hash = hash;
  for (;;) {
    await new Promise((r) => requestAnimationFrame(r));
    const f = document.querySelector("iframe");
    const b = f && f.contentDocument && f.contentDocument.body;
    if (b && b.dataset.state === "ready" && b.dataset.renderedLayer === layer) {
      await new Promise((r) => requestAnimationFrame(r));
      return { painted: performance.now() - t0 };
    }
    if (performance.now() - t0 > 60000) return { painted: NaN };
  }
}
"""


def write_logs(logdir: Path, steps: int) -> None:
    """The activations log and the reference image summaries, once per directory."""
    import keras
    import tensorflow as tf

    # Small changes to every kernel between steps, so that every step shows something new.
    panel_common.write_vgg16_log(logdir, steps, panel_common.Evolution(noise=0.03))
    done = logdir / "reference" / "complete.json"
    if done.exists():
        return
    # The same 64 channels of block1_conv1, the usual way: one image tag per channel.
    model = common.vgg16()
    extractor = keras.Model(model.inputs[0], model.get_layer(BIG_LAYER).output)
    batch = keras.applications.vgg16.preprocess_input(common.probe_pixels())
    writer = tf.summary.create_file_writer(str(logdir / "reference" / "images"))
    with writer.as_default():
        for s in range(3):
            a = np.asarray(extractor.predict_on_batch(batch))
            lo = a.min(axis=(1, 2), keepdims=True)
            span = a.max(axis=(1, 2), keepdims=True) - lo
            norm = np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0)
            for c in range(a.shape[-1]):
                tf.summary.image(f"{BIG_LAYER}/{c:02d}", norm[..., c : c + 1], step=s)
    writer.close()
    done.write_text(json.dumps({"steps": 3}))


class Session(panel_common.Session):
    """One fresh browser context on the panel, showing BIG_LAYER."""

    def __init__(self, browser, base):
        super().__init__(
            browser, base, f"&run=activations&layer={BIG_LAYER}", rendered(layer=BIG_LAYER)
        )

    def measure(self, action, arg, **expect):
        return super().measure(action, arg, rendered(**expect))

    def slider_index(self) -> int:
        return int(self.frame.evaluate("() => document.getElementById('step-slider').value"))

    def close_detail(self) -> None:
        self.frame.evaluate(
            """() => document.body.dispatchEvent(
                new KeyboardEvent("keydown", { key: "Escape", bubbles: true }))"""
        )
        self.frame.wait_for_selector('body[data-rendered-channel=""]', state="attached")


def measure_panel(browser, base, steps, n, notches):
    rows: dict[str, list[dict]] = {}

    def add(name, r):
        rows.setdefault(name, []).append(r)

    for rep in range(n):
        s = Session(browser, base)
        # (c) One notch of the step slider on the 64-channel 224x224 layer; the
        # panel prefetches the neighbouring steps, as it does for a user.
        for _ in range(notches):
            i = s.slider_index() - 1
            add("notch", s.measure("slider", i, step=steps[i], layer=BIG_LAYER))
        # A jump the prefetch did not foresee: fetch all 64 channels.
        i = s.slider_index() - 10
        add("jump", s.measure("slider", i, step=steps[i], layer=BIG_LAYER))
        # (b) One channel's evolution over all steps, on the largest images.
        c = (5 + 11 * rep) % 64
        r = s.measure("channel", c, channel=c, layer=BIG_LAYER)
        add("evolution", r)
        s.close_detail()
        # (a) Switching to a 512-channel layer: its whole grid.
        add("switch", s.measure("layer", SWITCH_LAYER, layer=SWITCH_LAYER))
        c = (7 + 13 * rep) % 512
        add("evolution512", s.measure("channel", c, channel=c, layer=SWITCH_LAYER))
        s.close_detail()
        add("switch512b", s.measure("layer", OTHER_512, layer=OTHER_512))
        add("back64", s.measure("layer", BIG_LAYER, layer=BIG_LAYER))
        add("back512", s.measure("layer", SWITCH_LAYER, layer=SWITCH_LAYER))
        s.close()
        print(f"panel repeat {rep + 1}/{n} done", file=sys.stderr)
    return rows


def measure_tab_switch(browser, base, n):
    out = []
    for _ in range(n):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base}#scalars")
        page.wait_for_function("() => document.querySelector('tb-webapp') !== null")
        page.wait_for_timeout(1000)
        hash_ = f"#activations&run=activations&layer={BIG_LAYER}"
        out.append(page.evaluate(TAB_JS, [hash_, BIG_LAYER]))
        context.close()
    return out


def measure_reference(browser, base, n, want=64):
    out = []
    for rep in range(n):
        context = browser.new_context(viewport=VIEWPORT)
        # Show all the tags on one page, as the panel does (TensorBoard's default is 12).
        context.add_init_script(
            f"localStorage.setItem({PAGINATION_KEY!r}, '{want}');"
            f"localStorage.setItem('_tb_global_settings', '{{\"paginationSize\": {want}}}');"
        )
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base}#scalars")
        page.wait_for_function(
            "() => document.querySelector('tb-webapp') !== null", timeout=TIMEOUT_MS
        )
        page.wait_for_timeout(1000)
        r = page.evaluate(IMAGES_JS, [want])
        out.append(r)
        context.close()
        print(f"reference repeat {rep + 1}/{n}: {r}", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "fresh browser contexts per measure")
    ap.add_argument("--logdir", help="where to write (or reuse) the logs")
    ap.add_argument("--part", choices=("all", "panel", "reference"), default="all")
    ap.add_argument(
        "--raw", help="also write every measured repeat to this JSON file (to pool runs)"
    )
    args = ap.parse_args(argv)
    wait = common.wait_seconds(args)
    n = args.repeats or (2 if args.quick else 8)
    notches = 2 if args.quick else 3

    from playwright.sync_api import sync_playwright

    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="tb_act_panel_"))
    write_logs(logdir, STEPS)

    with sync_playwright() as p:
        browser = panel_common.launch(p)
        panel, reference = {}, []
        loads = []
        if args.part != "reference":
            panel = run_panel(browser, logdir, n, notches, args.max_load, wait, loads)
        if args.part != "panel":
            reference = run_reference(browser, logdir, n, args.max_load, wait, loads)
        browser.close()
    report(panel, reference, n, notches, args.output, loads)
    if args.raw:
        Path(args.raw).write_text(
            json.dumps({"panel": panel, "reference": reference, "loads": loads})
        )
    return 0


def run_panel(browser, logdir, n, notches, max_load, wait, loads):
    with running_tensorboard(logdir / "vgg16") as base:
        wait_until(
            lambda: all(
                len(api_json(base, "steps", run="activations", tag=t)["steps"]) == STEPS
                for t in LAYERS
            ),
            300,
            "TensorBoard to load every step",
            interval=1.0,
        )
        steps = [
            s["step"] for s in api_json(base, "steps", run="activations", tag=BIG_LAYER)["steps"]
        ]
        Session(browser, base).close()  # warm-up: the browser, the server's caches
        loads.append(common.wait_for_quiet(max_load, wait))
        rows = measure_panel(browser, base, steps, n, notches)
        rows["tab"] = measure_tab_switch(browser, base, n)
        loads.append(os.getloadavg()[0])
        return rows


def run_reference(browser, logdir, n, max_load, wait, loads):
    with running_tensorboard(logdir / "reference") as base:
        wait_until(
            lambda: len(api_json(base, "tags", plugin="images").get("images", {})) >= 64,
            300,
            "TensorBoard to load the reference images",
            interval=1.0,
        )
        loads.append(common.wait_for_quiet(max_load, wait))
        rows = measure_reference(browser, base, n)
        loads.append(os.getloadavg()[0])
        return rows


def report(panel, reference, n, notches, output, loads):
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    def painted(name):
        return [r["painted"] for r in panel[name]]

    emit("# Panel benchmark: VGG16, five `blockN_conv1` layers, 30 steps, headless Chromium")
    emit()
    emit(
        f"Each row: {n} fresh browser contexts (notches: {notches} per context). Time from "
        "operating the control to the first frame after the panel reports the render done "
        "(fetch, the server decoding the PNGs, colouring, painting). Viewport "
        f"{VIEWPORT['width']}x{VIEWPORT['height']}, tiles at the panel's default size."
    )
    emit()
    emit(panel_common.machine_info(loads))
    emit()
    rows = []
    for key, label in (
        ("switch", f"(a) switch to a 512-channel layer ({SWITCH_LAYER}, 28x28): whole grid"),
        (
            "evolution",
            f"(b) open one channel's evolution over {STEPS} steps ({BIG_LAYER}, 224x224)",
        ),
        ("notch", f"(c) step slider one notch, {BIG_LAYER} (64 channels, 224x224)"),
    ):
        if key not in panel:
            continue
        rows.append(common.target_row(label, painted(key), TARGETS[key]))
    emit(table(common.TARGET_HEADER, rows))
    emit()
    emit("## More measures (no target)")
    emit()
    ref = [r["painted"] for r in reference if r["painted"] == r["painted"]]
    rows = []
    for key, label in (
        ("jump", f"step slider jump of 10 steps (not prefetched), {BIG_LAYER}"),
        (
            "evolution512",
            f"open one channel's evolution over {STEPS} steps ({SWITCH_LAYER}, 28x28)",
        ),
        ("switch512b", f"switch to the other 512-channel layer ({OTHER_512}, 14x14)"),
        ("back64", f"switch back to {BIG_LAYER} (already fetched)"),
        ("back512", f"switch back to {SWITCH_LAYER} (already fetched)"),
        (
            "tab",
            f"tab switch to Activations (iframe load included) until {BIG_LAYER}'s 64 "
            "channels are drawn",
        ),
    ):
        if key not in panel:
            continue
        v = painted(key)
        rows.append((label, f"{median(v):.0f} ms", f"{p90(v):.0f} ms"))
    if ref:
        rows.append(
            (
                f"reference: TensorBoard's Images dashboard, {reference[0]['images']} images of "
                f"{BIG_LAYER} (one tag per channel), tab switch until all loaded",
                f"{median(ref):.0f} ms",
                f"{p90(ref):.0f} ms",
            )
        )
    elif reference:
        rows.append(("reference: Images dashboard did not load its images", str(reference), ""))
    emit(table(["measure", "median", "p90"], rows))
    emit()
    rows = [
        (
            key,
            f"{median([r['fetched'] for r in v]):.0f} ms",
            f"{median([r['ready'] for r in v]):.0f} ms",
            f"{median(painted(key)):.0f} ms",
            f"{median([r['requests'] for r in v]):.0f}",
            common.size(median([r["bytes"] for r in v])),
        )
        for key, v in panel.items()
        if "ready" in v[0]
    ]
    if rows:
        emit("## Where the time goes (medians, ms from operating the control)")
        emit()
        emit(
            "`responses in`: the panel's requests for this render have all arrived (server "
            "and transfer); `ready`: unpacked, coloured and drawn to canvases; `painted`: "
            "the next frames are presented."
        )
        emit()
        emit(table(["measure", "responses in", "ready", "painted", "requests", "bytes"], rows))
        emit()
    if output:
        with open(output, "w") as f:
            f.write(out.getvalue())


if __name__ == "__main__":
    sys.exit(main())
