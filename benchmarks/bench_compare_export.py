"""How fast a GIF export, `read()`, the overlay toggle and a compared run answer.

    .venv/bin/python benchmarks/bench_compare_export.py --logdir DIR [--quick]
        [--workdir DIR] [--output FILE]

The logs: `bench_training.py`'s 200-step VGG16 log (the five `blockN_conv1`
layers), reused from its `--logdir` (written there first when missing), and a
second, 30-step run of the same model written by the same builder with
another seed for its weights' noise, in `--workdir` (default: `DIR-compare`).
TensorBoard serves `WORKDIR/served`, which holds both as sibling runs
(`vgg16/` and `vgg16_seed1/`, hard links to the files: nothing is copied).

Measured, each against its target and, where a user has a simple
alternative, against that alternative in the same run:

- GIF of one 224x224 channel (block1_conv1) over 200 steps, through
  `tb_activations.read(...).export(...)` and through the export route
  (`export?channel=`, each sample a channel the server has not exported yet).
  Baselines, from the same channel's frames already in memory (read with
  `activations()` at every step, that time given apart): Pillow (each frame
  scaled to its own min..max, viridis from matplotlib, `Image.save(...,
  save_all=True)`), and matplotlib's `FuncAnimation` (`imshow` of the frame
  and its step as the title, `PillowWriter`).
- `read()` of the 200-step log, then `activations(run, layer, step)` of each
  of the five layers at steps not read before. Baseline: TensorBoard's
  `EventAccumulator(run, size_guidance={TENSORS: 0}).Reload()`, then one
  layer-step by hand: its PNGs decoded with Pillow and mapped back to real
  units with each channel's min/max statistics (docs/format.md).
- The overlay toggle on block1_conv1 (64 channels of 224x224), to the
  panel's "activations:overlay" measure and the next frame.
- Compare: choosing the second run in "Compare with" on block1_conv1 at the
  last step (the second run's nearest earlier step is drawn), to the panel's
  "activations:compare" measure and the next frame, in a fresh browser
  context each sample: the choice made without reaching for the menu first
  (a script setting the value: nothing is warmed, as before the menu warmed
  its runs); after a pointer down on the menu and a pause as long as a user
  takes to open it and pick (`--gaps`); and choosing it again once drawn.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import common
from common import LAYERS, median, p90, save_output, table

import bench_training
import numpy as np
import panel_common
from panel_common import rendered, timed_fetch

from support import running_tensorboard, wait_until

STEPS = bench_training.STEPS
SECOND_STEPS = 30
SECOND_SEED = 1
MAIN = f"{panel_common.RUN}/activations"
SECOND = f"{panel_common.RUN}_seed{SECOND_SEED}/activations"
BIG = bench_training.BIG  # 64 channels of 224x224
GAPS_MS = (250, 600)
TARGETS = {"gif": 2.0, "gif_bytes": 2 * 1024 * 1024, "open": 3.0, "layer": 0.1}  # s, bytes
COMPARE_LABELS = {
    "compare_cold": "compare: a second run's grid on screen, first choice, no reach for the menu",
    **{
        f"compare_gap{g}": f"the same, pointer down on the menu {g} ms before the choice"
        for g in GAPS_MS
    },
    "compare_again": "the same run chosen again (its step loaded)",
}


# -- the logs ----------------------------------------------------------------


def link_tree(src: Path, dst: Path) -> None:
    for f in src.rglob("*"):
        if f.is_file():
            to = dst / f.relative_to(src)
            if not to.exists():
                to.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, to)


def build_logs(logdir: Path, workdir: Path, steps: int) -> Path:
    """Both runs, side by side in `workdir/served`; returns that directory."""
    main_run = panel_common.write_vgg16_log(logdir, steps, bench_training.training_evolution(steps))
    second = panel_common.write_vgg16_log(
        workdir / "second",
        SECOND_STEPS,
        bench_training.training_evolution(SECOND_STEPS),
        seed=SECOND_SEED,
    )
    served = workdir / "served"
    link_tree(main_run, served / panel_common.RUN)
    link_tree(second, served / f"{panel_common.RUN}_seed{SECOND_SEED}")
    return served


# -- read() and the GIF, in this process -------------------------------------


def by_hand(run_dir: Path, layer: str, step: int) -> dict:
    """The baseline: TensorBoard's EventAccumulator, then one layer-step decoded by hand."""
    from tensorboard.backend.event_processing import event_accumulator

    t = time.perf_counter()
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    opened = time.perf_counter() - t
    t = time.perf_counter()
    event = next(e for e in acc.Tensors(layer) if e.step == step)
    values = panel_common.values_by_hand(event)
    return {"open": opened, "layer": time.perf_counter() - t, "shape": values.shape}


def measure_read(run_parent: Path, n_open: int, loads, args) -> dict:
    """`read()`, then each layer at steps not read before; the baseline interleaved."""
    import tb_activations

    out: dict[str, list] = {"open": [], "layers": {t: [] for t in LAYERS}, "hand": []}
    for i in range(n_open):
        loads.append(common.wait_for_quiet(args.max_load, common.wait_seconds(args)))
        t = time.perf_counter()
        reader = tb_activations.read(run_parent)
        run = reader.runs()[0]
        out["open"].append(time.perf_counter() - t)
        steps = reader.steps(run, LAYERS[0])
        for k in range(args.per_layer):
            step = steps[(i * args.per_layer + k) * 7 % len(steps)]
            for tag in LAYERS:
                t = time.perf_counter()
                reader.activations(run, tag, step)
                out["layers"][tag].append(time.perf_counter() - t)
        del reader
        out["hand"].append(by_hand(run_parent / "activations", BIG, steps[-1]))
        loads.append(os.getloadavg()[0])
        print(f"read {i + 1}/{n_open} done", file=sys.stderr)
    return out


def pil_gif(frames: list[np.ndarray]) -> bytes:
    from matplotlib import colormaps
    from PIL import Image

    from tb_activations.export import FRAME_MS

    lut = (colormaps["viridis"](np.arange(256))[:, :3] * 255).astype(np.uint8)
    images = []
    for f in frames:
        lo, hi = float(f.min()), float(f.max())
        g = np.round((f - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
        images.append(Image.fromarray(lut[g]))
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0)
    return buf.getvalue()


def matplotlib_gif(frames: list[np.ndarray], steps: list[int], path: Path) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    from tb_activations.export import FRAME_MS

    h, w = frames[0].shape
    fig, ax = plt.subplots(figsize=(w / 100, (h + 24) / 100), dpi=100)
    ax.set_axis_off()
    im = ax.imshow(frames[0], cmap="viridis")
    title = ax.set_title(f"step {steps[0]}", fontsize=8)

    def update(i):
        im.set_data(frames[i])
        im.set_clim(frames[i].min(), frames[i].max())
        title.set_text(f"step {steps[i]}")
        return im, title

    anim = FuncAnimation(fig, update, frames=len(frames), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=1000 / FRAME_MS))
    plt.close(fig)
    return path.read_bytes()


def measure_gif(run_parent: Path, n: int, workdir: Path, loads, args) -> dict:
    import tb_activations

    reader = tb_activations.read(run_parent)
    run = reader.runs()[0]
    steps = reader.steps(run, BIG)
    out: dict[str, list] = {"reader": [], "pil": [], "mpl": []}
    loads.append(common.wait_for_quiet(args.max_load, common.wait_seconds(args)))
    t = time.perf_counter()
    frames = [reader.activations(run, BIG, s)[0, :, :, 0] for s in steps]
    frames_s = time.perf_counter() - t
    for c in range(n):
        t = time.perf_counter()
        data = reader.export(run, BIG, channel=c)
        out["reader"].append((time.perf_counter() - t, len(data)))
        t = time.perf_counter()
        data = pil_gif(frames)
        out["pil"].append((time.perf_counter() - t, len(data)))
        if c < args.mpl_repeats:
            t = time.perf_counter()
            data = matplotlib_gif(frames, steps, workdir / "matplotlib.gif")
            out["mpl"].append((time.perf_counter() - t, len(data)))
        print(f"gif {c + 1}/{n} done", file=sys.stderr)
    loads.append(os.getloadavg()[0])
    out["frames"] = frames_s
    out["steps"] = len(steps)
    return out


# -- the panel and the routes ------------------------------------------------


def open_big(browser, base, step: int) -> panel_common.Session:
    params = f"&run={MAIN}&view=layer&layer={BIG}&step={step}"
    return panel_common.Session(browser, base, params, rendered(run=MAIN, layer=BIG, step=step))


def measure_panel(browser, base, last: int, second_step: int, n: int, gaps, loads, args):
    rows: dict[str, list] = {}

    def add(name, r):
        rows.setdefault(name, []).append(r)

    # Warm-up: the browser, and the server's answers for both runs.
    s = open_big(browser, base, last)
    s.measure("select", ["compare-run", SECOND], {"compareRendered": SECOND}, "activations:compare")
    s.close()
    loads.append(common.wait_for_quiet(args.max_load, common.wait_seconds(args)))
    want = {"compareRendered": SECOND, "compareStep": str(second_step)}
    for rep in range(n):
        # Overlay: on (the probe image fetched), off, then on and off again.
        s = open_big(browser, base, last)
        for key, expect in (("on_first", "0.6"), ("off", ""), ("on", "0.6"), ("off", "")):
            r = s.measure("click", "#overlay-toggle", {}, "activations:overlay")
            if r["data"].get("overlay") != expect:
                raise RuntimeError(f"overlay drew {r['data'].get('overlay')!r}, not {expect!r}")
            add(f"overlay_{key}", r)
        s.close()
        # Compare: a fresh context for each way of choosing.
        for gap in (None, *gaps):
            s = open_big(browser, base, last)
            if gap is not None:
                s.frame.locator("#compare-run").dispatch_event("pointerdown")
                s.page.wait_for_timeout(gap)
            r = s.measure("select", ["compare-run", SECOND], want, "activations:compare")
            r["warmed"] = SECOND in (r["data"].get("compareWarmed") or "")
            add("compare_cold" if gap is None else f"compare_gap{gap}", r)
            if gap is None:
                s.measure("select", ["compare-run", ""], {"compareRendered": ""})
                add(
                    "compare_again",
                    s.measure("select", ["compare-run", SECOND], want, "activations:compare"),
                )
            s.close()
        # The routes alone: the other run's layer (cached by then), and a GIF
        # of a channel the server has not exported yet.
        add("http_layer", timed_fetch(base, "layer", run=SECOND, tag=BIG, step=second_step))
        add("http_gif", timed_fetch(base, "export", run=MAIN, tag=BIG, channel=rep, format="gif"))
        print(f"panel {rep + 1}/{n} done", file=sys.stderr)
    loads.append(os.getloadavg()[0])
    return rows


# -- the report --------------------------------------------------------------


def report(offline, gif, panel, args, loads, served: Path) -> str:
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    def ms_row(label, key, target):
        return common.target_row(label, [r["painted"] for r in panel[key]], target)

    def s_row(label, xs, target):
        m = median(xs)
        return (label, f"{m:.2f} s", f"{p90(xs):.2f} s", f"<= {target:g} s", _met(m <= target))

    emit(
        f"# Export, read(), overlay and compare: VGG16 ({args.steps} steps, five `blockN_conv1` "
        f"layers) and a second {SECOND_STEPS}-step run"
    )
    emit()
    emit(
        panel_common.machine_info(
            loads, [f"logs: {served} ({common.size(bench_training.dir_bytes(served))})"]
        )
    )
    emit()
    gif_reader = [t for t, _ in gif["reader"]]
    gif_route = [t for t, _ in panel["http_gif"]]
    size_reader = max(b for _, b in gif["reader"])
    size_route = max(b for _, b in panel["http_gif"])
    open_s = offline["open"]
    rows = [
        s_row(
            f"GIF of one 224x224 channel ({BIG}) over {gif['steps']} steps, "
            "`read(...).export(channel=...)`",
            gif_reader,
            TARGETS["gif"],
        ),
        s_row(
            "the same through the export route, a channel not exported before",
            gif_route,
            TARGETS["gif"],
        ),
        (
            "its size (largest of the channels)",
            common.size(max(size_reader, size_route)),
            "",
            "<= 2 MiB",
            _met(max(size_reader, size_route) <= TARGETS["gif_bytes"]),
        ),
        s_row(f"`read()` of the {args.steps}-step log (to its runs)", open_s, TARGETS["open"]),
    ]
    for tag in LAYERS:
        xs = [x * 1e3 for x in offline["layers"][tag]]
        target = TARGETS["layer"] * 1e3
        rows.append(common.target_row(f"then `activations(run, {tag!r}, step)`", xs, target))
    rows.append(ms_row(f"overlay toggle on ({BIG}, 64 channels of 224x224)", "overlay_on", 150))
    rows.append(ms_row("overlay toggle off", "overlay_off", 150))
    for key in ("compare_cold", *(f"compare_gap{g}" for g in GAPS_MS), "compare_again"):
        rows.append(ms_row(COMPARE_LABELS[key], key, 300))
    emit(table(common.TARGET_HEADER, rows))
    emit()
    for gap in GAPS_MS:
        warm = sum(r["warmed"] for r in panel[f"compare_gap{gap}"])
        emit(
            f"- pointer down {gap} ms before the choice: the other run's layer was in the "
            f"cache at the choice in {warm} of {len(panel[f'compare_gap{gap}'])} samples "
            "(else the choice joined its request in flight)."
        )
    layer_t = [t for t, _ in panel["http_layer"]]
    emit(
        "- the second run's `layer` answer at that step: "
        f"{common.size(panel['http_layer'][0][1])}, "
        f"{median(layer_t) * 1e3:.0f} ms fetched directly (median, the server's cache warm)."
    )
    emit()
    emit("## Baselines: what a user would do without the tab, same run")
    emit()
    reader_t = median(gif_reader)
    pil = gif["pil"]
    mpl = gif["mpl"]
    gif_rows = [
        (
            "`read(...).export(run, layer, channel=c)` (frames labelled with step and epoch)",
            f"{reader_t:.2f} s",
            common.size(median([b for _, b in gif["reader"]])),
            "1x",
        ),
        (
            "export route (`export?channel=c&format=gif`), fetched",
            f"{median(gif_route):.2f} s",
            common.size(median([b for _, b in panel["http_gif"]])),
            f"{median(gif_route) / reader_t:.1f}x",
        ),
        (
            f"reading the channel's {gif['steps']} frames with `activations()` "
            "(the baselines' input)",
            f"{gif['frames']:.2f} s",
            "",
            f"{gif['frames'] / reader_t:.1f}x",
        ),
        (
            "+ Pillow: per-frame min..max, viridis, `save(save_all=True)`",
            f"{median([t for t, _ in pil]):.2f} s",
            common.size(median([b for _, b in pil])),
            f"{(gif['frames'] + median([t for t, _ in pil])) / reader_t:.1f}x with the reading",
        ),
    ]
    if mpl:
        gif_rows.append(
            (
                "+ matplotlib `FuncAnimation` (`imshow`, step as title), `PillowWriter`",
                f"{median([t for t, _ in mpl]):.2f} s",
                common.size(median([b for _, b in mpl])),
                f"{(gif['frames'] + median([t for t, _ in mpl])) / reader_t:.1f}x with the reading",
            )
        )
    emit(table(["GIF of one channel over the run", "median", "size", "x export"], gif_rows))
    emit()
    hand = offline["hand"]
    read_layer = median(offline["layers"][BIG])
    hand_layer = median([h["layer"] for h in hand])
    emit(
        table(
            ["open the log, then one layer-step", "open (median)", f"{BIG} at a step (median)"],
            [
                (
                    "`tb_activations.read(dir)` then `activations(run, layer, step)`",
                    f"{median(open_s):.2f} s",
                    f"{read_layer * 1e3:.0f} ms",
                ),
                (
                    "`EventAccumulator(run, size_guidance={TENSORS: 0}).Reload()`, then the "
                    "layer-step's 64 PNGs decoded with Pillow and scaled by each channel's min/max",
                    f"{median([h['open'] for h in hand]):.2f} s",
                    f"{hand_layer * 1e3:.0f} ms",
                ),
            ],
        )
    )
    emit()
    emit("## Where the panel's time goes (medians, ms from operating the control)")
    emit()
    emit(
        table(
            ["measure", "routes in", "panel draws", "ready", "painted", "requests", "bytes"],
            [bench_training.where_row(k, v) for k, v in panel.items() if not k.startswith("http")],
        )
    )
    emit()
    return out.getvalue()


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "samples of each browser measure (fresh contexts)")
    ap.add_argument("--logdir", required=True, help="bench_training.py's log directory")
    ap.add_argument("--steps", type=int, default=STEPS, help="its logged steps (default: 200)")
    ap.add_argument("--workdir", help="where the second run and the served links go")
    ap.add_argument("--opens", type=int, help="read() samples")
    ap.add_argument("--per-layer", type=int, default=3, help="steps read per layer and open")
    ap.add_argument("--gifs", type=int, help="GIF samples")
    ap.add_argument("--mpl-repeats", type=int, default=2, help="matplotlib GIF samples")
    args = ap.parse_args(argv)
    n = args.repeats or (2 if args.quick else 8)
    n_open = args.opens or (1 if args.quick else 3)
    n_gif = args.gifs or (1 if args.quick else 5)
    logdir = Path(args.logdir)
    workdir = Path(args.workdir or f"{logdir}-compare")
    served = build_logs(logdir, workdir, args.steps)
    loads: list[float] = []
    offline = measure_read(served / panel_common.RUN, n_open, loads, args)
    gif = measure_gif(served / panel_common.RUN, n_gif, workdir, loads, args)

    from playwright.sync_api import sync_playwright

    with running_tensorboard(served) as base, sync_playwright() as p:
        wait_until(
            lambda: (
                len(panel_common.api_json(base, "steps", run=MAIN, tag=BIG)["steps"]) == args.steps
                and len(panel_common.api_json(base, "steps", run=SECOND, tag=BIG)["steps"])
                == SECOND_STEPS
            ),
            bench_training.LOAD_TIMEOUT,
            "TensorBoard to load every step",
            interval=1.0,
        )
        last = panel_common.api_json(base, "steps", run=MAIN, tag=BIG)["steps"][-1]["step"]
        second = panel_common.api_json(base, "steps", run=SECOND, tag=BIG)["steps"]
        second_step = max(x["step"] for x in second if x["step"] <= last)
        browser = panel_common.launch(p)
        panel = measure_panel(browser, base, last, second_step, n, GAPS_MS, loads, args)
        browser.close()
    text = report(offline, gif, panel, args, loads, served)
    save_output(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
