"""This panel against an older one, interleaved, in headless Chromium on real TensorBoards.

    git archive COMMIT | tar -x -C /tmp/old-tree
    .venv/bin/python benchmarks/bench_panel_ab.py --old /tmp/old-tree [--repeats N]
        [--first-open-only]
        [--logdir DIR] [--output FILE] [--raw FILE]

Two TensorBoards serve the same log (`bench_panel.py`'s, written once in
`--logdir`): one runs the plugin and panel of the tree in `--old` (put
first on its `PYTHONPATH`), the other this tree's. Each repeat runs
`bench_panel.py`'s measures in one fresh browser context on each, old and
new in alternating order, then the tab switch (the first open, iframe and
modules loaded) once on each, with the iframe's resource timings. Old and
new are measured seconds apart, so a machine whose load moves (other
processes) weighs on both alike; whole runs of `bench_panel.py` one after
the other do not give that.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import common
from common import LAYERS, median, p90, table

import bench_panel
import panel_common
from bench_panel import BIG_LAYER, OTHER_512, STEPS, SWITCH_LAYER, Session
from panel_common import TIMEOUT_MS, VIEWPORT, api_json, fetch

from support import running_tensorboard, wait_until  # tests/ is on the path: panel_common

NOTCHES = 3
KEYS = (
    ("switch", f"(a) switch to {SWITCH_LAYER} (512 channels): whole grid"),
    ("evolution", f"(b) one channel's evolution over {STEPS} steps ({BIG_LAYER})"),
    ("notch", f"(c) step slider one notch, {BIG_LAYER}"),
    ("jump", "step slider jump of 10 steps (not prefetched)"),
    ("evolution512", f"one channel's evolution, {SWITCH_LAYER}"),
    ("switch512b", f"switch to {OTHER_512}"),
    ("back64", f"switch back to {BIG_LAYER} (already fetched)"),
    ("back512", f"switch back to {SWITCH_LAYER} (already fetched)"),
    ("tab", f"tab switch until {BIG_LAYER}'s grid is drawn (first open)"),
)

# After the tab switch: the iframe's own timings (ms from its navigation).
WATERFALL_JS = """() => {
  const w = document.querySelector("iframe").contentWindow;
  const res = w.performance.getEntriesByType("resource");
  const of = (ext) => res.filter((e) => e.name.includes("/static/") && e.name.endsWith(ext));
  const data = res.filter((e) => !e.name.includes("/static/") &&
                                 e.name.includes("/data/plugin/activations/"));
  const js = of(".js");
  const css = of(".css");
  const end = (list) => (list.length ? Math.max(...list.map((e) => e.responseEnd)) : 0);
  return { js: js.length, css: css.length, js_in: end(js), css_in: end(css),
           first_data: data.length ? Math.min(...data.map((e) => e.startTime)) : 0 };
}"""


def panel_repeat(browser, base, steps, rep, add):
    """`bench_panel.measure_panel`'s measures, once, in a fresh browser context."""
    s = Session(browser, base)
    for _ in range(NOTCHES):
        i = s.slider_index() - 1
        add("notch", s.measure("slider", i, step=steps[i], layer=BIG_LAYER))
    i = s.slider_index() - 10
    add("jump", s.measure("slider", i, step=steps[i], layer=BIG_LAYER))
    c = (5 + 11 * rep) % 64
    add("evolution", s.measure("channel", c, channel=c, layer=BIG_LAYER))
    s.close_detail()
    add("switch", s.measure("layer", SWITCH_LAYER, layer=SWITCH_LAYER))
    c = (7 + 13 * rep) % 512
    add("evolution512", s.measure("channel", c, channel=c, layer=SWITCH_LAYER))
    s.close_detail()
    add("switch512b", s.measure("layer", OTHER_512, layer=OTHER_512))
    add("back64", s.measure("layer", BIG_LAYER, layer=BIG_LAYER))
    add("back512", s.measure("layer", SWITCH_LAYER, layer=SWITCH_LAYER))
    s.close()


def tab_switch(browser, base) -> dict:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{base}#scalars")
    page.wait_for_function("() => document.querySelector('tb-webapp') !== null")
    page.wait_for_timeout(1000)
    hash_ = f"#activations&run=activations&layer={BIG_LAYER}"
    r = page.evaluate(bench_panel.TAB_JS, [hash_, BIG_LAYER])
    r.update(page.evaluate(WATERFALL_JS))
    context.close()
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="a source tree of the older panel")
    ap.add_argument("--repeats", type=int, default=8, help="browser contexts per panel")
    ap.add_argument("--logdir", help="where to write (or reuse) bench_panel.py's logs")
    ap.add_argument("--output", help="also write the tables to this markdown file")
    ap.add_argument("--raw", help="also write every measured repeat to this JSON file")
    ap.add_argument(
        "--first-open-only",
        action="store_true",
        help="only the tab switch (the first open) in each repeat, not the interactions",
    )
    args = ap.parse_args(argv)
    old_tree = Path(args.old).resolve()
    if not (old_tree / "tb_activations" / "plugin.py").is_file():
        raise SystemExit(f"--old must be a source tree with tb_activations/; got {old_tree}")

    from playwright.sync_api import sync_playwright

    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="tb_act_panel_"))
    bench_panel.write_logs(logdir, STEPS)
    rows: dict[str, dict[str, list]] = {"old": {}, "new": {}}
    loads = []
    with sync_playwright() as p:
        browser = panel_common.launch(p)
        env = {"PYTHONPATH": os.pathsep.join([str(old_tree), os.environ.get("PYTHONPATH", "")])}
        with (
            running_tensorboard(logdir / "vgg16", env=env) as old,
            running_tensorboard(logdir / "vgg16") as new,
        ):
            bases = {"old": old, "new": new}
            for name, base in bases.items():
                wait_until(
                    lambda base=base: all(
                        len(api_json(base, "steps", run="activations", tag=t)["steps"]) == STEPS
                        for t in LAYERS
                    ),
                    300,
                    f"the {name} TensorBoard to load every step",
                    interval=1.0,
                )
                lines = fetch(f"{base}data/plugin/activations/static/index.js").body.count(b"\n")
                print(f"{name}: {base}, index.js of {lines} lines", file=sys.stderr)
                Session(browser, base).close()  # warm-up
            steps = [
                s["step"] for s in api_json(new, "steps", run="activations", tag=BIG_LAYER)["steps"]
            ]
            loads.append(os.getloadavg()[0])
            t = time.monotonic()
            for rep in range(args.repeats):
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                for name in () if args.first_open_only else order:
                    panel_repeat(
                        browser,
                        bases[name],
                        steps,
                        rep,
                        lambda k, r, name=name: rows[name].setdefault(k, []).append(r),
                    )
                for name in reversed(order):
                    rows[name].setdefault("tab", []).append(tab_switch(browser, bases[name]))
                loads.append(os.getloadavg()[0])
                print(
                    f"repeat {rep + 1}/{args.repeats}, load {loads[-1]:.2f}, "
                    f"{time.monotonic() - t:.0f} s",
                    file=sys.stderr,
                )
        browser.close()
    report(rows, args.repeats, loads, old_tree, args.output)
    if args.raw:
        Path(args.raw).write_text(json.dumps({"rows": rows, "loads": loads}))
    return 0


def report(rows, n, loads, old_tree, output):
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    emit("# Panel A/B: an older panel and this one, interleaved per browser context")
    emit()
    emit(
        f"{n} fresh browser contexts on each (notches: {NOTCHES} per context), old and new "
        f"alternating; old: the tree in {old_tree}. Times from operating the control to the "
        "first frame after the render, as in bench_panel.py."
    )
    emit()
    emit(
        panel_common.machine_info(
            loads, ["(here the load is read at the start and after each repeat)"]
        )
    )
    emit()
    body = []
    for key, label in KEYS:
        o = [r["painted"] for r in rows["old"].get(key, [])]
        w = [r["painted"] for r in rows["new"].get(key, [])]
        if not o or not w:
            continue
        body.append(
            (
                label,
                f"{median(o):.0f} / {p90(o):.0f} ms",
                f"{median(w):.0f} / {p90(w):.0f} ms",
                f"{median(w) / median(o):.2f}x",
            )
        )
    emit(table(["measure", "old median / p90", "new median / p90", "new / old"], body))
    emit()
    body = []
    for key, _ in KEYS[:-1]:
        for name in ("old", "new"):
            v = rows[name].get(key, [])
            if not v:
                continue
            body.append(
                (
                    key,
                    name,
                    f"{median([r['fetched'] for r in v]):.0f} ms",
                    f"{median([r['ready'] for r in v]):.0f} ms",
                    f"{median([r['painted'] for r in v]):.0f} ms",
                    f"{median([r['requests'] for r in v]):.0f}",
                    common.size(median([r["bytes"] for r in v])),
                )
            )
    emit("## Where the time goes (medians, ms from operating the control)")
    emit()
    emit(table(["measure", "panel", "responses in", "ready", "painted", "requests", "bytes"], body))
    emit()
    emit("## First open: the iframe's files (medians, ms from the iframe's navigation)")
    emit()
    body = []
    for name in ("old", "new"):
        v = rows[name]["tab"]
        body.append(
            (
                name,
                f"{median([r['js'] for r in v]):.0f} + {median([r['css'] for r in v]):.0f}",
                f"{median([r['js_in'] for r in v]):.0f} ms",
                f"{median([r['css_in'] for r in v]):.0f} ms",
                f"{median([r['first_data'] for r in v]):.0f} ms",
                f"{median([r['painted'] for r in v]):.0f} ms",
            )
        )
    emit(
        table(
            [
                "panel",
                "JS + CSS files",
                "last JS in",
                "last CSS in",
                "first data request",
                "drawn (from the tab switch)",
            ],
            body,
        )
    )
    if output:
        Path(output).write_text(out.getvalue())


if __name__ == "__main__":
    sys.exit(main())
