"""What a logging event costs with a 256-sample probe set, against the bare forward pass.

    .venv/bin/python benchmarks/bench_probe_set.py [--quick] [--repeats N] [--output FILE]

The demo CNN (demo/train.py's `build_model`, on demo/shapes.py's 32x32
images), `ActivationLogger` with its default layers and `probe=x[:256]`
(`probe_images=8`, the default: 8 samples get pictures, all 256 feed the
statistics and the measures). Round by round, interleaved so that each
ratio pairs figures taken under the same load:

- the bare forward pass of the 256 samples (`model.predict_on_batch`): its
  wall time and its process CPU time (TensorFlow's threads included);
- one logging event (`on_epoch_end`): the time it blocks the training loop,
  then, once written, the CPU time the writer spent on it: its background
  thread's and its PNG pool's, read from their own thread CPU clocks.

A stage-by-stage breakdown of the writer's work (statistics, set measures,
change and CKA, pictures) follows, timed by this thread's CPU time with PNGs
encoded serially. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import common  # first: sets TensorFlow's log level before it loads
from common import median, ms, save_output, table, timed

import keras
import numpy as np

from tb_activations import (
    ActivationLogger,
    encoding,
    health,
    measures,
    metadata,
    passes,
    summary,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
import shapes  # noqa: E402 - the demo's data
import train  # noqa: E402 - the demo's model

SAMPLES = 256
TARGET_BLOCKING = 1.2  # x the bare forward pass's wall time
TARGET_WRITER_CPU = 1.0  # x the bare forward pass's process CPU time


def thread_cpu(threads) -> float:
    """The CPU seconds the given threads have used so far, from their own clocks."""
    total = 0.0
    for t in threads:
        if t is not None and t.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return total


class Logged:
    """A real ActivationLogger on the demo CNN, driven as `fit` drives it."""

    def __init__(self, model, probe, log_dir):
        self.model = model
        self.cb = ActivationLogger(log_dir, probe, verbose=0)
        self.cb.set_model(model)
        self.cb.on_train_begin()  # builds the extraction model, logs step 0 and the probe
        self.session = self.cb.session
        self.session.flush()
        self.epoch = 0

    def writer_threads(self):
        writer = self.session._writer
        pool = writer._executor
        return [writer._thread, *(pool._threads if pool is not None else ())]

    def log(self) -> tuple[float, float]:
        """One logging event, as at an epoch end: the seconds it blocked the
        loop, and the writer's CPU seconds for it (thread and PNG pool)."""
        # Training would have changed the weights between two epoch ends:
        # every map differs from the last, so the measures do all their work.
        self.model.optimizer.iterations.assign_add(1)
        kernel = self.model.get_layer("conv1").kernel
        kernel.assign(kernel * 1.001)
        self.epoch += 1
        self.session.flush()
        threads = self.writer_threads()
        before = thread_cpu(threads)
        blocked = timed(lambda: self.cb.on_epoch_end(self.epoch - 1))
        self.session.flush()
        return blocked, thread_cpu(threads) - before

    def close(self):
        self.cb.on_train_end()


STAGES = (
    "to NHWC + channel cap",
    "pictured probes: compute_stats",
    "pictured probes: quantize",
    "pictured probes: PNG (Pillow, zlib Z_RLE)",
    "set measures from the pass's sums (`health.measure_with_sums`)",
    "one pass: set sums, change and CKA (`Tracker.update`)",
    "blobs and event (encode_stats, header, make_event, serialize)",
)


def writer_breakdown(values, n):
    """The writer's work for one event, stage by stage, by this thread's CPU time."""
    clock = time.thread_time
    tracker = measures.Tracker()
    out: dict[str, list[float]] = {k: [] for k in STAGES}
    shapes_ = {}
    for rep in range(n + 1):
        t = dict.fromkeys(STAGES, 0.0)
        for value in values:
            # A changed map each repeat, as from training.
            value = summary.LayerValue(value.info, value.array * (1 + rep * 1e-3))
            info = value.info
            s = clock()
            x = value.nhwc()
            t[STAGES[0]] += clock() - s
            shapes_[info.layer] = x.shape
            pictured = x[: info.probes]
            s = clock()
            stats = encoding.compute_stats(pictured)
            t[STAGES[1]] += clock() - s
            s = clock()
            q = encoding.quantize(pictured, stats)
            t[STAGES[2]] += clock() - s
            per = info.channels_per_image
            groups = [
                q[p, i : i + per] for p in range(q.shape[0]) for i in range(0, q.shape[1], per)
            ]
            s = clock()
            pngs = [encoding.stacked_png(g) for g in groups]
            t[STAGES[3]] += clock() - s
            s = clock()
            # As the writer does: the tracker's pass also makes the set's sums.
            sums = health.set_sums(x, info.layout, info.activation)
            extra, refs = tracker.update(info.layer, rep, x, sums, copy=False)
            t[STAGES[5]] += clock() - s
            s = clock()
            set_base, units, header, _ = health.measure_with_sums(
                x, info.layout, info.activation, sums
            )
            t[STAGES[4]] += clock() - s
            s = clock()
            blobs = [
                metadata.encode_header(1.0, None, rep, **header, **refs),
                metadata.encode_stats(np.concatenate([stats, extra[: info.probes]], axis=2)),
                *pngs,
                metadata.encode_stats(
                    np.concatenate([set_base, extra.sum(axis=0, dtype=np.float64)], axis=1)
                ),
                metadata.encode_stats(units),
            ]
            summary.make_event(info, rep, time.time(), blobs).SerializeToString()
            t[STAGES[6]] += clock() - s
        if rep:  # the first pass has no previous step to measure against
            for k in STAGES:
                out[k].append(t[k])
    return {k: median(v) for k, v in out.items()}, shapes_


def forward_flops(model, layer_shapes) -> float:
    """The floating-point operations of the model's convolutions and Dense
    layers (a multiply and an add per weight use), from the logged (N, H, W,
    C) shapes of their outputs; every layer with a kernel must be logged."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        samples, height, width, _ = layer_shapes[layer.name]
        # A Dense layer's units are logged as positions of one channel.
        uses = samples if "Dense" in type(layer).__name__ else samples * height * width
        total += 2 * uses * int(np.prod(kernel.shape, dtype=np.int64))
    return float(total)


def products_floor(values, n):
    """CKA's three `c x c` products per layer (the map's own and its cross
    products with two references) alone: float32 BLAS calls on one thread,
    block by block as the tracker's pass makes them. No exact drift over
    all the set's positions costs less; returns (flops, CPU seconds)."""
    flops, times = 0.0, []
    maps = []
    for value in values:
        x = np.ascontiguousarray(value.nhwc(), np.float32)
        probes, height, width, c = x.shape
        if height * width == 1:
            continue  # a Dense layer: units as positions of one channel, no c x c product
        x3 = x.reshape(probes, height * width, c)
        maps.append((x3, x3 * 1.001, x3 * 0.999))
        flops += 3 * 2 * x3.shape[0] * x3.shape[1] * c * c
    with passes.BLAS.limit(limits=1, user_api="blas"):
        for _ in range(n + 1):
            s = time.thread_time()
            for x3, r1, r2 in maps:
                c = x3.shape[-1]
                for p, count, i, rows in passes.blocks(*x3.shape, passes._CHUNK_VALUES):
                    b, b1, b2 = (
                        a[p : p + count, i : i + rows].reshape(-1, c) for a in (x3, r1, r2)
                    )
                    _ = b.T @ b, b1.T @ b, b2.T @ b
            times.append(time.thread_time() - s)
    return flops, median(times[1:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "rounds of the interleaved measures (default 15; 3 with --quick)")
    args = ap.parse_args(argv)
    n = args.repeats or (3 if args.quick else 15)

    keras.utils.set_random_seed(0)
    x, _ = shapes.dataset(2 * SAMPLES, seed=0)
    probe = x[:SAMPLES]
    model = train.build_model(x.shape[-1], len(shapes.CLASSES))
    # An optimizer gives the callback its step counter, as in training.
    model.optimizer.build(model.trainable_variables)
    tmp = tempfile.mkdtemp(prefix="tb_act_bench_")
    ours = Logged(model, probe, os.path.join(tmp, "ours"))
    extractor = ours.session.extractor
    batch = ours.session.batch

    load_before = common.wait_for_quiet(args.max_load, common.wait_seconds(args))
    for _ in range(2):  # warm-up: traces the predict functions, fills the caches
        model.predict_on_batch(probe)
        extractor.predict_on_batch(batch)
        ours.log()
    fwd_wall, fwd_cpu, ex_wall, blocking, writer_cpu = [], [], [], [], []
    for _ in range(n):
        cpu = time.process_time()
        fwd_wall.append(timed(lambda: model.predict_on_batch(probe)))
        fwd_cpu.append(time.process_time() - cpu)
        ex_wall.append(timed(lambda: extractor.predict_on_batch(batch)))
        b, w = ours.log()
        blocking.append(b)
        writer_cpu.append(w)
    ours.close()
    load_after = os.getloadavg()[0]

    values = ours.session.forward()
    stages, layer_shapes = writer_breakdown(values, max(3, n // 3))
    cka_flops, cka_cpu = products_floor(values, max(3, n // 3))
    fwd_flops = forward_flops(model, layer_shapes)

    block_ratios = [b / f for b, f in zip(blocking, fwd_wall)]
    cpu_ratios = [w / f for w, f in zip(writer_cpu, fwd_cpu)]
    r_block, r_cpu = median(block_ratios), median(cpu_ratios)

    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    def verdict(ratio, target):
        return "yes" if ratio <= target else "**no**"

    layers = ", ".join(
        f"`{name}` {'x'.join(str(d) for d in shape[1:])}" for name, shape in layer_shapes.items()
    )
    emit(f"# Probe set: the demo CNN, its default layers, a {SAMPLES}-sample probe set")
    emit()
    emit(
        f"`probe=x[:{SAMPLES}]` of demo/shapes.py's 32x32 images, `probe_images=8` (the "
        f"default); layers (as logged, NHWC): {layers}. Medians of {n} rounds; each round "
        "times the bare forward pass, then one logging event, so each ratio pairs figures "
        "taken under the same load (the ratio is the median of the rounds' ratios)."
    )
    emit()
    emit(
        common.machine_info(
            [
                f"writer: {summary.DEFAULT_WORKERS} PNG threads",
                f"1-min load average {load_before:.2f} before, {load_after:.2f} after "
                "(other processes share the cores; wall times move with it)",
            ]
        )
    )
    emit()
    emit("## Targets")
    emit()
    rows = [
        (
            "training loop blocked per logging event",
            ms(median(blocking)),
            f"{ms(median(fwd_wall))} bare forward (`model.predict_on_batch`), wall",
            f"{r_block:.2f}x",
            f"<= {TARGET_BLOCKING}x",
            verdict(r_block, TARGET_BLOCKING),
        ),
        (
            "the writer's CPU per event (writer thread + PNG pool)",
            ms(median(writer_cpu)),
            f"{ms(median(fwd_cpu))} that forward pass's process CPU",
            f"{r_cpu:.2f}x",
            f"<= {TARGET_WRITER_CPU}x",
            verdict(r_cpu, TARGET_WRITER_CPU),
        ),
    ]
    emit(table(["measure", "tb_activations", "baseline", "ratio", "target", "met"], rows))
    emit()
    emit("## All measures")
    emit()
    rows = [
        (
            "bare forward, `model.predict_on_batch`, wall",
            ms(median(fwd_wall)),
            ms(common.p90(fwd_wall)),
        ),
        ("bare forward, process CPU", ms(median(fwd_cpu)), ms(common.p90(fwd_cpu))),
        (
            "the extraction model's `predict_on_batch` (the event's own forward pass), wall",
            ms(median(ex_wall)),
            ms(common.p90(ex_wall)),
        ),
        ("`on_epoch_end` blocks, writer idle", ms(median(blocking)), ms(common.p90(blocking))),
        ("writer CPU per event", ms(median(writer_cpu)), ms(common.p90(writer_cpu))),
        ("rounds' blocking ratios", ", ".join(f"{r:.2f}" for r in block_ratios), ""),
        ("rounds' writer CPU ratios", ", ".join(f"{r:.2f}" for r in cpu_ratios), ""),
    ]
    emit(table(["measure", "median", "p90"], rows))
    emit()
    emit("## Where the writer's CPU goes (one event, stage by stage, this thread's CPU time)")
    emit()
    total = sum(stages.values())
    rows = [(k, ms(v), f"{v / total:.0%}") for k, v in stages.items()]
    rows.append(("**total**", ms(total), "100%"))
    rows.append(("reference: the bare forward pass's process CPU", ms(median(fwd_cpu)), ""))
    emit(table(["stage", "median", "share"], rows))
    emit()
    emit("## The floor: CKA's products against the forward pass's")
    emit()
    rows = [
        (
            "the forward pass: its convolutions and Dense layers",
            f"{fwd_flops / 1e9:.2f}",
            ms(median(fwd_cpu)) + " process CPU",
            f"{fwd_flops / median(fwd_cpu) / 1e9:.0f}",
        ),
        (
            "CKA's three `c x c` products per layer alone (float32 BLAS, one thread)",
            f"{cka_flops / 1e9:.2f}",
            ms(cka_cpu) + " thread CPU",
            f"{cka_flops / cka_cpu / 1e9:.0f}",
        ),
    ]
    emit(table(["work", "GFLOP", "CPU", "GFLOP/s"], rows))
    emit()
    emit(
        f"The products alone are {cka_cpu / median(fwd_cpu):.2f}x the forward pass's CPU: "
        "exact CKA over all the set's positions does about as much arithmetic as the "
        "forward pass itself."
    )
    emit()
    save_output(args.output, out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
