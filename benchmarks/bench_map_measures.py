"""The training map's first open with the probe-set measures: 200 steps x 12 layers.

    .venv/bin/python benchmarks/bench_map_measures.py [--logdir DIR] [--repeats N]
        [--output FILE] [--max-load L --wait S] [--tree DIR]

The log: a 12-layer CNN (8 convolutions, a pooling and 3 dense layers)
trained for 200 batches on 32x32 images, an `ActivationLogger` logging every
batch with a probe set of 64 samples (8 of them pictured), so that every
step holds the format's probe-set measures (dormant scores, effective rank,
similarity, rms). At batch `BREAK_BATCH` a kernel of `conv7` is set to
infinity, so that the later steps are non-finite and the map marks them.
The log is written once per `--logdir` and reused.

For each loader (`--load_fast=false` and `true`) and each measure of the
map's menu that the probe set adds, `--repeats` samples, each on a fresh
TensorBoard (nothing cached in the server):

- server: the `overview` route fetched directly, its first request (the
  reader lists and reads every series), no browser;
- browser: the page opened on a small run, then the user picks the 12-layer
  run with the map's measure already chosen (`measure=` in the URL), timed
  from the run's `change` event to the first frame after the map reports it
  is drawn (`activations:map`, `data-map-rendered`, `data-map-measure`; see
  `frontend/hooks.js`): the `overview`, `steps`, `curves` and `probe`
  requests, the drawing and the painting.

`--tree DIR` serves the plugin and panel of another source tree (`git archive
COMMIT | tar -x -C DIR`), to measure them before a change.
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
from common import median, p90, table

import numpy as np
import panel_common
from bench_training import OTHER_RUN, write_other_run
from panel_common import api_json, timed_fetch

from support import running_tensorboard, wait_until  # tests/ is on the path: panel_common

RUN = "cnn12"
MAP_RUN = f"{RUN}/activations"
BATCHES = 200
SAMPLES = 64  # the probe set
PICTURED = 8
BREAK_BATCH = 185
LAYERS = [
    *(f"conv{i}" for i in range(1, 9)),
    "pool",
    "dense1",
    "dense2",
    "logits",
]
MEASURES = ("dormant_fraction", "effective_rank", "similarity", "rms")
TARGET_MS = 1000.0
LOADERS = {"python": False, "rust": True}


def model_12():
    import keras

    L = keras.layers
    widths = (16, 16, 32, 32, 64, 64, 96, 96)
    x = inputs = keras.Input((32, 32, 3))
    for i, w in enumerate(widths, 1):
        x = L.Conv2D(w, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i % 2 == 0 and i < 8:
            x = L.MaxPooling2D(name=f"down{i // 2}")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(128, activation="relu", name="dense1")(x)
    x = L.Dense(64, activation="tanh", name="dense2")(x)
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def write_log(logdir: Path) -> Path:
    """The 12-layer run in `logdir/cnn12`, and bench_training's small run beside it."""
    import keras

    from tb_activations import ActivationLogger

    write_other_run(logdir)
    done = logdir / RUN / "complete.json"
    want = {"batches": BATCHES, "samples": SAMPLES, "break": BREAK_BATCH}
    if done.exists() and json.loads(done.read_text()) == want:
        return logdir
    if (logdir / RUN).exists():
        raise FileExistsError(f"{logdir / RUN} holds another or an unfinished log")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCHES * 16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=len(x))
    model = model_12()

    def broken(batch, logs):
        if batch == BREAK_BATCH:
            k = model.get_layer("conv7").kernel
            v = k.numpy()
            v[0, 0, 0, 0] = np.inf
            k.assign(v)

    t = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(on_train_batch_end=broken),
            ActivationLogger(
                logdir / RUN,
                x[:SAMPLES],
                LAYERS,
                batch_freq=1,
                probe_images=PICTURED,
                verbose=0,
            ),
            keras.callbacks.TensorBoard(logdir / RUN, update_freq=1),
        ],
    )
    print(f"wrote the log in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    done.write_text(json.dumps(want))
    return logdir


def loaded(base: str) -> int:
    """Steps every layer of the run serves (the same for all, once TensorBoard has read the log)."""
    counts = [len(api_json(base, "steps", run=MAP_RUN, tag=t)["steps"]) for t in LAYERS]
    return min(counts) if len(set(counts)) == 1 else 0


def wait_loaded(base: str, steps: int) -> None:
    wait_until(lambda: loaded(base) >= steps, 600, "TensorBoard to load every step", interval=1.0)


def count_steps(logdir: Path) -> int:
    with running_tensorboard(logdir) as base:
        last = -1

        def settled():
            nonlocal last
            n = loaded(base)
            done = n > 0 and n == last
            last = n
            return done

        wait_until(settled, 600, "the step count to settle", interval=3.0)
        return last


# The plugin's environment: `--tree` puts another source tree first on its path.
ENV: dict[str, str] | None = None


def server_first(logdir: Path, load_fast: bool, steps: int) -> dict:
    """The first `overview` of a fresh TensorBoard, fetched directly."""
    with running_tensorboard(logdir, load_fast=load_fast, env=ENV) as base:
        # Listed by `steps` only (the panel's `tags` on opening does as much).
        wait_loaded(base, steps)
        seconds, size = timed_fetch(base, "overview", run=MAP_RUN)
        again, _ = timed_fetch(base, "overview", run=MAP_RUN)
        o = api_json(base, "overview", run=MAP_RUN)
    return {
        "first": seconds * 1e3,
        "again": again * 1e3,
        "bytes": size,
        "layers": len(o["layers"]),
        "steps": len(o["steps"]),
        "nonfinite": len(o.get("first_nonfinite") or {}),
    }


def browser_first(browser, logdir: Path, load_fast: bool, steps: int, measure: str) -> dict:
    """The page on the small run, then the 12-layer run picked: its map drawn with `measure`."""
    with running_tensorboard(logdir, load_fast=load_fast, env=ENV) as base:
        wait_loaded(base, steps)
        s = panel_common.Session(
            browser, base, f"&run={OTHER_RUN}&measure={measure}", {"mapRendered": OTHER_RUN}
        )
        r = s.measure(
            "select",
            ["run", MAP_RUN],
            {"mapRendered": MAP_RUN, "mapMeasure": measure},
            "activations:map",
        )
        marks = s.frame.evaluate(
            "() => document.querySelectorAll('[data-step][data-layer]').length"
        )
        s.close()
    r["marks"] = marks
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "fresh TensorBoards per loader and measure")
    ap.add_argument("--logdir", help="where to write (or reuse) the log")
    ap.add_argument("--raw", help="also write every sample to this JSON file")
    ap.add_argument("--tree", help="serve the plugin and panel of this source tree instead")
    args = ap.parse_args(argv)
    if args.tree:
        global ENV
        ENV = {
            "PYTHONPATH": os.pathsep.join(
                [str(Path(args.tree).resolve()), os.environ.get("PYTHONPATH", "")]
            )
        }
    wait = common.wait_seconds(args)
    n = args.repeats or (1 if args.quick else 3)

    from playwright.sync_api import sync_playwright

    logdir = write_log(Path(args.logdir or tempfile.mkdtemp(prefix="tb_act_map12_")))
    steps = count_steps(logdir)
    print(f"{steps} steps per layer", file=sys.stderr)
    rows: dict[str, dict[str, list]] = {name: {} for name in LOADERS}
    loads = []
    with sync_playwright() as p:
        browser = panel_common.launch(p)
        for rep in range(n):
            for name, fast in LOADERS.items():
                loads.append(common.wait_for_quiet(args.max_load, wait))
                rows[name].setdefault("server", []).append(server_first(logdir, fast, steps))
                for m in MEASURES:
                    r = browser_first(browser, logdir, fast, steps, m)
                    rows[name].setdefault(m, []).append(r)
                loads.append(os.getloadavg()[0])
                print(f"repeat {rep + 1}/{n}, {name} loader done", file=sys.stderr)
        browser.close()
    report(rows, n, steps, loads, logdir, args.output)
    if args.raw:
        Path(args.raw).write_text(json.dumps({"rows": rows, "loads": loads}))
    return 0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def report(rows, n, steps, loads, logdir, output):
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    emit(
        f"# Training map with the probe-set measures: {steps} steps x {len(LAYERS)} layers, "
        "first open"
    )
    emit()
    emit(
        f"A 12-layer CNN trained {BATCHES} batches, every batch logged with a probe set of "
        f"{SAMPLES} samples ({PICTURED} pictured); non-finite from batch {BREAK_BATCH} "
        f"(`conv7`). Every sample on a fresh TensorBoard; {n} per loader and row."
    )
    emit()
    emit(
        panel_common.machine_info(
            loads,
            [
                f"log: {logdir} ({common.size(dir_bytes(logdir))})",
                f"plugin and panel: {ENV['PYTHONPATH'] if ENV else 'this tree'}",
            ],
        )
    )
    emit()
    body = []
    for name in LOADERS:
        s = rows[name]["server"]
        first = [r["first"] for r in s]
        body.append(
            (
                f"`overview` fetched directly, first request ({name} loader; "
                f"{s[0]['layers']} layers x {s[0]['steps']} steps, "
                f"{common.size(s[0]['bytes'])})",
                f"{median(first):.0f} ms",
                f"{p90(first):.0f} ms",
                f"<= {TARGET_MS:.0f} ms",
                "yes" if median(first) <= TARGET_MS else "**no**",
            )
        )
        for m in MEASURES:
            v = [r["painted"] for r in rows[name][m]]
            body.append(
                common.target_row(
                    f"map drawn with {m}, from picking the run ({name} loader)", v, TARGET_MS
                )
            )
    emit(table(common.TARGET_HEADER, body))
    emit()
    emit("## Where the time goes (medians, ms from picking the run)")
    emit()
    body = []
    for name in LOADERS:
        again = [r["again"] for r in rows[name]["server"]]
        body.append((f"{name}: `overview` again (cached)", f"{median(again):.0f} ms", "", "", ""))
        for m in MEASURES:
            v = rows[name][m]
            routes = sorted({k for r in v for k in r["routes"]})
            body.append(
                (
                    f"{name}: {m}",
                    ", ".join(
                        f"{k} {median([r['routes'].get(k, 0) for r in v]):.0f} ms" for k in routes
                    ),
                    f"map {median([r['measures'].get('activations:map', 0) for r in v]):.0f} ms",
                    f"{median([r['ready'] for r in v]):.0f} ms",
                    f"{median([r['painted'] for r in v]):.0f} ms",
                )
            )
    emit(table(["measure", "routes in", "map draw", "ready", "painted"], body))
    emit()
    if output:
        Path(output).write_text(out.getvalue())


if __name__ == "__main__":
    sys.exit(main())
