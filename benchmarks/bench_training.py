"""How fast the training map, the channel timeline, sorting, filtering and diff answer.

    .venv/bin/python benchmarks/bench_training.py [--quick] [--steps N] [--output FILE]
        [--logdir DIR]

The log: VGG16 (random weights, seeded), the five `blockN_conv1` layers, 200
steps written through `ActivationLogger`'s logging session. Between two steps
every kernel gets a little Gaussian noise, decaying faster in lower blocks so
that layers settle from the bottom up, with one shock to block 3 at 60% of
the run; about 3% of each layer's channels die at steps spread over the middle
of the run (their bias is pushed far below any activation), a third of those
come back later. Beside it, `train/` holds loss scalars as Keras's
`TensorBoard` callback writes them (`batch_loss` by iteration, `epoch_loss` by
epoch), so the loss strip has curves to map; their values are a decaying curve,
since the weights are perturbed, not trained. A second, three-step run
(`other/activations`, a tiny model) is where each page opens. The log is about
560 MB; it is written once per `--logdir` and reused.

A real `tensorboard` serves the whole log directory, loaded before any
measure. Each measure runs inside the panel's iframe as in `bench_panel.py`:
from operating the control (the DOM event a user's input makes) to the first
animation frame after the panel reports the render done, in a fresh browser
context each repeat (nothing cached in the page):

- training map: choose the VGG16 run in the run menu, until its map is drawn.
  First open: a fresh TensorBoard process per sample, so the server computes
  the overview from the statistics of 1000 stored steps; cached: the same
  server again, a new page.
- timeline: from the map, click block4_conv1 (512 channels) in the layer
  list, until its grid and its channel timeline over 200 steps are drawn.
- sort / filter: change the grid's sort or filter menu on block4_conv1.
- diff: the diff menu on block1_conv1 (64 channels of 224x224).

Reference, measured in the same run: the per-layer change table without the
tab, as a user would compute it from the documented format (docs/format.md):
TensorBoard's `EventAccumulator` over the run with every tensor kept, then
per layer and step the PNGs decoded with Pillow, mapped back to real units
with each channel's min/max statistics, and ||A_s - A_prev|| / max(||A_s||,
||A_prev||) in numpy; and the same table from the stored sums of squares
(`sq_norm`, `sq_diff_prev`), no PNG decoded.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import common
from common import LAYERS, median, p90, save_output, table

import numpy as np
import panel_common
from panel_common import VIEWPORT, api_json, rendered, timed_fetch

from support import running_tensorboard, wait_until

STEPS = 200
MAP_RUN = f"{panel_common.RUN}/activations"
OTHER_RUN = "other/activations"
WIDE = "block4_conv1"  # 512 channels of 28x28
BIG = "block1_conv1"  # 64 channels of 224x224
TARGETS = {  # ms
    "map_first": 1000.0,
    "map_cached": 300.0,
    "timeline": 500.0,
    "timeline_first": 500.0,
    "sort": 150.0,
    "filter": 150.0,
    "diff_prev": 150.0,
    "diff_off": 150.0,
}
LOAD_TIMEOUT = 900  # s: TensorBoard reading ~560 MB of events on a busy machine


def training_evolution(steps: int) -> panel_common.Evolution:
    return panel_common.Evolution(
        noise=0.03,
        settle=steps // 8,
        shock_step=steps * 3 // 5,
        shock_block=3,
        deaths=1 / 32,
        revivals=1 / 3,
        epoch_steps=max(1, steps // 20),
        loss=True,
    )


def write_other_run(logdir: Path) -> None:
    """A three-step run of a tiny model: the page opens there, then the user picks VGG16."""
    import keras

    from tb_activations import ActivationLogger

    done = logdir / "other" / "complete.json"
    if done.exists():
        return
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv")]
    )
    logger = ActivationLogger(logdir / "other", np.ones((1, 16, 16, 3), "float32"), verbose=0)
    logger.set_model(model)
    logger.session.bind(model)
    for s in range(3):
        k = model.layers[0].kernel
        k.assign(k.numpy() * 1.1)
        logger.session.log(s, strict=True)
    logger.session.close()
    done.write_text("{}")


def wait_loaded(base: str, steps: int) -> None:
    wait_until(
        lambda: all(
            len(api_json(base, "steps", run=MAP_RUN, tag=t)["steps"]) == steps for t in LAYERS
        ),
        LOAD_TIMEOUT,
        "TensorBoard to load every step",
        interval=1.0,
    )


def open_on_other(browser, base) -> panel_common.Session:
    return panel_common.Session(browser, base, f"&run={OTHER_RUN}", {"mapRendered": OTHER_RUN})


def measure_map(s) -> dict:
    return s.measure("select", ["run", MAP_RUN], {"mapRendered": MAP_RUN}, "activations:map")


def measure_timeline(s) -> dict:
    expect = {**rendered(layer=WIDE), "timelineRendered": WIDE, "view": "layer"}
    return s.measure("layer", WIDE, expect, "activations:timeline")


# -- the reference: the change table without the tab ------------------------


def change_table_reference(run_dir: Path) -> dict:
    """Per layer, change since the previous step at every step, two ways; seconds of each part."""
    from tensorboard.backend.event_processing import event_accumulator

    from tb_activations import metadata

    t = time.perf_counter()
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    loaded = time.perf_counter() - t

    def change(a, b):
        top = max(np.linalg.norm(a), np.linalg.norm(b))
        return float(np.linalg.norm(a - b) / top) if top else 0.0

    t = time.perf_counter()
    from_png = {}
    for tag in LAYERS:
        row, prev = [], None
        for event in acc.Tensors(tag):
            a = panel_common.values_by_hand(event)
            row.append(None if prev is None else change(a, prev))
            prev = a
        from_png[tag] = row
    png = time.perf_counter() - t

    t = time.perf_counter()
    from_sums = {}
    for tag in LAYERS:
        info = metadata.parse_plugin_metadata(acc.SummaryMetadata(tag).plugin_data.content)
        norm_i = info.stats_fields.index("sq_norm")
        diff_i = info.stats_fields.index("sq_diff_prev")
        row, prev_norm = [], None
        for event in acc.Tensors(tag):
            stats = metadata.decode_stats(event.tensor_proto.string_val[metadata.STATS_INDEX])
            norm = float(stats[..., norm_i].sum())
            if prev_norm is None:
                row.append(None)
            else:
                top = max(norm, prev_norm)
                row.append(float(np.sqrt(stats[..., diff_i].sum() / top)) if top else 0.0)
            prev_norm = norm
        from_sums[tag] = row
    sums = time.perf_counter() - t
    return {"load": loaded, "png": png, "sums": sums, "from_png": from_png, "from_sums": from_sums}


def agreement(reference: dict, overview: dict) -> tuple[float, float]:
    """Largest |difference| to the tab's layer change_prev, for the PNG and the sums tables."""
    out = []
    for key in ("from_png", "from_sums"):
        worst = 0.0
        for i, tag in enumerate(overview["layers"]):
            tab = overview["rows"]["change_prev"][i]
            for a, b in zip(reference[key][tag], tab):
                if a is not None and b is not None:
                    worst = max(worst, abs(a - b))
        out.append(worst)
    return out[0], out[1]


# -- the server alone --------------------------------------------------------


def server_sequence(steps: list[int]) -> list[tuple[str, str]]:
    """The requests a page makes from opening the tab to diffing block1_conv1, in order."""
    run = f"run={MAP_RUN}"
    last, before = steps[-1], steps[-2]
    return [
        ("tags", "tags"),
        ("overview", f"overview?{run}"),
        ("curves", f"curves?{run}"),
        (f"layer {WIDE} at {last}", f"layer?{run}&tag={WIDE}&step={last}"),
        (f"timeline {WIDE}", f"timeline?{run}&tag={WIDE}"),
        ("overview again", f"overview?{run}"),
        ("curves again", f"curves?{run}"),
        (f"layer {BIG} at {before}", f"layer?{run}&tag={BIG}&step={before}"),
        (f"timeline {WIDE} again", f"timeline?{run}&tag={WIDE}"),
        ("overview again", f"overview?{run}"),
    ]


def server_alone(logdir: Path, steps: list[int], series_refs: int | None) -> list[float]:
    """Seconds of each request of `server_sequence`, in this process.

    The plugin over TensorBoard's `EventMultiplexer` (the Python loader's),
    through its WSGI app: no HTTP, no browser. `series_refs` replaces the
    reader's bound on the blob references of the series it keeps listed
    (`reader._SERIES_CACHE_REFS`), to show what that bound costs.
    """
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    from tb_activations import plugin, reader

    saved = reader._SERIES_CACHE_REFS
    if series_refs:
        reader._SERIES_CACHE_REFS = series_refs
    try:
        mux = plugin_event_multiplexer.EventMultiplexer(
            size_guidance={"tensors": plugin.DEFAULT_MAX_STEPS, "scalars": 10_000}
        )
        mux.AddRunsFromDirectory(str(logdir))
        mux.Reload()
        provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
        context = base_plugin.TBContext(logdir=str(logdir), data_provider=provider, multiplexer=mux)
        client = Client(application.TensorBoardWSGI([plugin.ActivationsPlugin(context)]))
        out = []
        for _, url in server_sequence(steps):
            t = time.perf_counter()
            r = client.get(f"/data/plugin/activations/{url}")
            out.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise ValueError(f"{url} answered {r.status_code}: {r.data[:200]!r}")
        return out
    finally:
        reader._SERIES_CACHE_REFS = saved


def run_refs(tags: dict) -> int:
    """Blob references of the run's series: per kept step, a header, statistics and each
    probe's PNGs, which hold `channels_per_image` channels each (one in format version 1)."""
    return sum(
        e["steps_kept"] * (2 + e["probes"] * -(-e["channels"] // e.get("channels_per_image", 1)))
        for e in tags[MAP_RUN].values()
    )


def server_rounds(logdir: Path, steps: list[int], refs: int, rounds: int) -> dict:
    """`server_alone` with the reader's bound and with a bound that fits the run, alternated."""
    from tb_activations import reader

    bounds = {"default": None, "fits": max(2 * refs, reader._SERIES_CACHE_REFS)}
    out: dict[str, list[list[float]]] = {k: [] for k in bounds}
    for _ in range(rounds):
        for key, bound in bounds.items():
            out[key].append(server_alone(logdir, steps, bound))
    return {
        "bounds": {"default": reader._SERIES_CACHE_REFS, "fits": bounds["fits"]},
        "refs": refs,
        "rounds": rounds,
        "times": {k: [median(col) for col in zip(*v)] for k, v in out.items()},
    }


# -- the measures ------------------------------------------------------------


def first_opens(browser, logdir, steps, n, n_reference, max_load, wait, loads):
    """A fresh TensorBoard per sample: the map and the timeline as first asked of the server."""
    rows: dict[str, list] = {"map_first": [], "timeline_first": [], "tb_load": [], "reference": []}
    for i in range(n):
        loads.append(common.wait_for_quiet(max_load, wait))
        t = time.perf_counter()
        with running_tensorboard(logdir) as base:
            wait_loaded(base, steps)
            rows["tb_load"].append(time.perf_counter() - t)
            s = open_on_other(browser, base)
            rows["map_first"].append(measure_map(s))
            rows["timeline_first"].append(measure_timeline(s))
            s.close()
        loads.append(os.getloadavg()[0])
        # Interleaved with the panel's samples, after the server has gone.
        if i < n_reference:
            rows["reference"].append(change_table_reference(logdir / MAP_RUN))
        print(f"first open {i + 1}/{n} done", file=sys.stderr)
    return rows


def cached(browser, logdir, n_steps, n, max_load, wait, loads):
    """One TensorBoard, its caches warm; every repeat a fresh page."""
    rows: dict[str, list] = {}

    def add(name, r):
        rows.setdefault(name, []).append(r)

    with running_tensorboard(logdir) as base:
        wait_loaded(base, n_steps)
        # Warm-up: the browser, and the server's answers for this run.
        s = open_on_other(browser, base)
        measure_map(s)
        measure_timeline(s)
        s.measure("layer", BIG, {**rendered(layer=BIG), "timelineRendered": BIG})
        s.close()
        overview = api_json(base, "overview", run=MAP_RUN)
        timeline = api_json(base, "timeline", run=MAP_RUN, tag=WIDE)
        tags = api_json(base, "tags")
        steps = timeline["steps"]
        loads.append(common.wait_for_quiet(max_load, wait))
        for rep in range(n):
            s = open_on_other(browser, base)
            add("map_cached", measure_map(s))
            add("timeline", measure_timeline(s))
            # The run opened at the step the other run showed: go to the last one.
            s.measure("slider", len(steps) - 1, rendered(layer=WIDE, step=steps[-1]))
            # Sort and filter the 512 tiles.
            for sort in ("change_prev", "mean", "index"):
                add("sort", s.measure("select", ["grid-sort", sort], {}, "activations:order"))
            for show in ("dead", "died", "top", "all"):
                add("filter", s.measure("select", ["grid-filter", show], {}, "activations:order"))
            # Diff on the 64 channels of 224x224: the previous step is prefetched.
            s.measure("layer", BIG, {**rendered(layer=BIG), "timelineRendered": BIG})
            for diff, ref, key in (
                ("prev", steps[-2], "diff_prev"),
                ("off", "", "diff_off"),
                ("start", steps[0], "diff_start"),
                ("off", "", "diff_off"),
            ):
                expect = {"diff": str(ref), **rendered(layer=BIG, step=steps[-1])}
                add(key, s.measure("select", ["grid-diff", diff], expect, "activations:diff"))
            s.close()
            # The server alone, fetched directly: its cached answers.
            for route, params in (
                ("overview", {"run": MAP_RUN}),
                ("timeline", {"run": MAP_RUN, "tag": WIDE}),
                ("curves", {"run": MAP_RUN}),
            ):
                add(f"http_{route}", timed_fetch(base, route, **params))
            print(f"cached repeat {rep + 1}/{n} done", file=sys.stderr)
        loads.append(os.getloadavg()[0])
    return rows, overview, timeline, tags


# -- the report --------------------------------------------------------------


def report(results, args, loads, logdir):
    first, warm = results["first"], results["warm"]
    overview, timeline = results["overview"], results["timeline"]
    steps = args.steps
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    rows = {**first, **warm}

    def painted(key):
        return [r["painted"] for r in rows.get(key, [])]

    n_cold = len(first["map_first"])
    n_warm = len(warm.get("map_cached", []))
    emit(
        f"# Training map benchmark: VGG16, five `blockN_conv1` layers, {steps} steps, "
        "headless Chromium"
    )
    emit()
    emit(
        f"From operating the control to the first frame after the panel reports the render "
        f"done (fetch, server, drawing, painting). First open: one sample in each of {n_cold} "
        f"fresh TensorBoard processes; the rest: {n_warm} fresh browser contexts on one "
        f"TensorBoard (sort: 3 and filter: 4 changes per context). Viewport "
        f"{VIEWPORT['width']}x{VIEWPORT['height']}."
    )
    emit()
    dead_now = sum(1 for c in range(timeline["channels"]) if _rows(timeline, "dead")[c, -1] == 1.0)
    emit(
        panel_common.machine_info(
            loads,
            [
                f"log: {logdir} ({common.size(dir_bytes(logdir / MAP_RUN))}), "
                f"{len(timeline['events'])} died/revived events and {dead_now} dead channels "
                f"at the last step in {WIDE}",
            ],
        )
    )
    emit()
    labels = {
        "map_first": "training map drawn from a click on the run, first open (a fresh TensorBoard)",
        "map_cached": "training map drawn from a click on the run, cached (server), new page",
        "timeline_first": f"timeline of a 512-channel layer ({WIDE}) over {steps} steps "
        "drawn, first asked of the server",
        "timeline": f"timeline of {WIDE} over {steps} steps drawn, cached (server), new page",
        "sort": f"sort of the 512-channel grid ({WIDE})",
        "filter": f"filter of the 512-channel grid ({WIDE})",
        "diff_prev": f"diff toggle on ({BIG}, 64 channels of 224x224; vs previous step)",
        "diff_off": f"diff toggle off ({BIG})",
    }
    target_rows = []
    for key, label in labels.items():
        if painted(key):
            target_rows.append(common.target_row(label, painted(key), TARGETS[key]))
    emit(table(common.TARGET_HEADER, target_rows))
    emit()
    emit("## More measures (no target)")
    emit()
    more = []
    v = painted("diff_start")
    if v:
        more.append(
            (
                f"diff against the first step ({BIG}; that step fetched)",
                f"{median(v):.0f} ms",
                f"{p90(v):.0f} ms",
            )
        )
    tb_load = first["tb_load"]
    if tb_load:
        more.append(
            (
                "TensorBoard started until every step of the log is served",
                f"{median(tb_load):.1f} s",
                f"{p90(tb_load):.1f} s",
            )
        )
    for key, label in (
        ("http_overview", "`overview` fetched directly, cached"),
        ("http_timeline", f"`timeline` of {WIDE} fetched directly, cached"),
        ("http_curves", "`curves` fetched directly, cached"),
    ):
        if key in warm:
            t = [x[0] for x in warm[key]]
            more.append(
                (
                    f"{label} ({common.size(warm[key][0][1])})",
                    f"{median(t) * 1e3:.0f} ms",
                    f"{p90(t) * 1e3:.0f} ms",
                )
            )
    emit(table(["measure", "median", "p90"], more))
    emit()
    ref = first["reference"]
    if ref:
        png = [r["load"] + r["png"] for r in ref]
        sums = [r["load"] + r["sums"] for r in ref]
        worst_png, worst_sums = agreement(ref[0], overview)
        map_first = median(painted("map_first")) / 1e3
        emit("## Reference: the per-layer change table without the tab")
        emit()
        emit(
            f"Samples: {len(ref)}, interleaved with the first opens above, in this process. "
            "`EventAccumulator(run, size_guidance={TENSORS: 0}).Reload()`, then for each "
            "layer and step: (PNG) decode its PNGs (1472 channels' maps a step) with Pillow, "
            "back to real units with each channel's min/max, ||A_s - A_prev|| / "
            "max(||A_s||, ||A_prev||) in numpy; (sums) the same from the stored `sq_norm` "
            "and `sq_diff_prev` statistics. Largest difference to the tab's layer "
            f"`change_prev`: {worst_png:.4f} (PNG, 8-bit levels), {worst_sums:.2e} (sums)."
        )
        emit()
        emit(
            table(
                ["step", "median", "p90", "x the tab's first open"],
                [
                    (
                        "`EventAccumulator.Reload()` of the run",
                        f"{median([r['load'] for r in ref]):.1f} s",
                        f"{p90([r['load'] for r in ref]):.1f} s",
                        "",
                    ),
                    (
                        "+ PNG decoding and numpy: the table",
                        f"{median(png):.1f} s",
                        f"{p90(png):.1f} s",
                        f"{median(png) / map_first:.1f}x",
                    ),
                    (
                        "+ the stored sums instead: the table",
                        f"{median(sums):.1f} s",
                        f"{p90(sums):.1f} s",
                        f"{median(sums) / map_first:.1f}x",
                    ),
                ],
            )
        )
        emit()
    where = [
        where_row(key, rows[key])
        for key in (
            "map_first",
            "map_cached",
            "timeline_first",
            "timeline",
            "sort",
            "filter",
            "diff_prev",
            "diff_off",
            "diff_start",
        )
        if rows.get(key)
    ]
    emit(server_table(results["server"], timeline["steps"]))
    emit()
    emit("## Where the time goes (medians, ms from operating the control)")
    emit()
    emit(
        "`routes in`: each route's answer has arrived in the page (server and transfer); "
        "`panel draws`: the panel's own performance measures (drawing on canvases, "
        "synchronous); `ready`: the panel reports the render done; `painted`: the next "
        "frames are presented."
    )
    emit()
    emit(
        table(
            ["measure", "routes in", "panel draws", "ready", "painted", "requests", "bytes"],
            where,
        )
    )
    emit()
    save_output(args.output, out.getvalue())


def server_table(server: dict, steps: list[int]) -> str:
    b = server["bounds"]
    head = (
        "## The server alone\n\n"
        "The plugin's routes in this process over TensorBoard's `EventMultiplexer`, "
        "through its WSGI app (no HTTP, no browser), in the order a page asks them; the "
        f"median of {server['rounds']} round(s), each with a new multiplexer and plugin. "
        "The run's series "
        f"hold {server['refs']:,} blob references; the reader keeps listed series up to "
        f"`reader._SERIES_CACHE_REFS` = {b['default']:,} of them (left), or, replaced by the "
        f"benchmark, {b['fits']:,} (right).\n\n"
    )
    rows = [
        (label, f"{d * 1e3:,.0f} ms", f"{f * 1e3:,.0f} ms")
        for (label, _), d, f in zip(
            server_sequence(steps), server["times"]["default"], server["times"]["fits"]
        )
    ]
    return head + table(["request", "reader as it is", "series bound fits the run"], rows)


def where_row(key: str, samples: list[dict]) -> tuple:
    """Medians of one measure's parts: its routes' answers in, the panel's draws, ready, painted."""

    def med(get):
        return median([get(r) for r in samples])

    def listed(field):
        names = sorted({name for r in samples for name in r[field]})
        times = [med(lambda r, n=name: r[field].get(n, 0)) for name in names]
        return ", ".join(
            f"{name.removeprefix('activations:')} {t:.0f} ms" for name, t in zip(names, times)
        )

    return (
        key,
        listed("routes"),
        listed("measures"),
        f"{med(lambda r: r['ready']):.0f} ms",
        f"{med(lambda r: r['painted']):.0f} ms",
        f"{med(lambda r: r['requests']):.0f}",
        common.size(med(lambda r: r["bytes"])),
    )


def _rows(timeline: dict, measure: str) -> np.ndarray:
    import base64

    raw = np.frombuffer(base64.b64decode(timeline["rows"][measure]), "<f4")
    return raw.reshape(timeline["channels"], len(timeline["steps"]))


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "fresh browser contexts on a warm server")
    ap.add_argument("--steps", type=int, default=STEPS, help="logged steps (default: 200)")
    ap.add_argument("--first-opens", type=int, help="fresh TensorBoard processes")
    ap.add_argument("--references", type=int, help="samples of the reference (slow)")
    ap.add_argument("--logdir", help="where to write (or reuse) the logs")
    args = ap.parse_args(argv)
    wait = common.wait_seconds(args)
    n = args.repeats or (2 if args.quick else 8)
    n_first = args.first_opens or (1 if args.quick else 5)
    n_reference = min(n_first, args.references or (1 if args.quick else 3))

    from playwright.sync_api import sync_playwright

    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="tb_act_training_"))
    print(f"logs in {logdir}", file=sys.stderr)
    panel_common.write_vgg16_log(logdir, args.steps, training_evolution(args.steps))
    write_other_run(logdir)

    loads: list[float] = []
    with sync_playwright() as p:
        browser = panel_common.launch(p)
        first = first_opens(
            browser, logdir, args.steps, n_first, n_reference, args.max_load, wait, loads
        )
        warm, overview, timeline, tags = cached(
            browser, logdir, args.steps, n, args.max_load, wait, loads
        )
        browser.close()
    loads.append(common.wait_for_quiet(args.max_load, wait))
    server = server_rounds(logdir, timeline["steps"], run_refs(tags), 1 if args.quick else 2)
    loads.append(os.getloadavg()[0])
    results = {
        "first": first,
        "warm": warm,
        "overview": overview,
        "timeline": timeline,
        "server": server,
    }
    report(results, args, loads, logdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
