"""How much logging VGG16's activations costs, against the forward pass and `tf.summary.image`.

    .venv/bin/python benchmarks/bench_writer.py [--quick] [--output FILE]

VGG16 (random weights, 224x224), a real photo as the probe, the five
`blockN_conv1` layers (64 + 128 + 256 + 512 + 512 = 1472 channels). Every
figure is a median of several repeats after a warm-up, and every ratio is
against a baseline measured in the same run, so the tables compare like
with like on whatever machine runs them. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import common  # first: sets TensorFlow's log level before it loads
from common import LAYERS, median, ms, repeat, save_output, size, table, timed

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tb_activations import ActivationLogger, encoding, health, measures, metadata, summary

TARGET_BLOCKING = 1.2  # x the bare forward pass
TARGET_THROUGHPUT = 1.0  # x the per-layer `tf.summary.image` loop's cost per step
TARGET_BYTES = 1.1  # x that loop's bytes per step
# The PNG pool size `summary.ActivationWriter` picks when not told.


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


class Ours:
    """A real ActivationLogger on the model, driven as `fit` drives it."""

    def __init__(self, model, pixels, log_dir):
        self.model = model
        self.cb = ActivationLogger(
            log_dir,
            pixels,
            LAYERS,
            preprocess=keras.applications.vgg16.preprocess_input,
            verbose=0,
        )
        self.cb.set_model(model)
        self.cb.on_train_begin()  # builds the extraction model, logs step 0 and the probe
        self.session = self.cb.session
        self.flush()
        self.epoch = 0
        self.run_dir = self.cb.run_dir

    def flush(self):
        self.session.flush()

    def log(self):
        """One logging event, as at an epoch end; returns the time it blocked the loop."""
        # Training would have advanced the optimizer between two epoch ends,
        # and changed the weights: every logged map differs from the last,
        # so the measures do their whole work (an unchanged map is cheap).
        self.model.optimizer.iterations.assign_add(1)
        kernel = self.model.get_layer(LAYERS[0]).kernel
        kernel.assign(kernel * 1.001)
        self.epoch += 1
        return timed(lambda: self.cb.on_epoch_end(self.epoch - 1))

    def close(self):
        self.cb.on_train_end()


class PerLayer:
    """The script a user writes: one `tf.summary.image` per layer, its
    channels as the batch, each min-max normalized, vectorised in TensorFlow."""

    def __init__(self, extractor, batch, log_dir, graph=False):
        self.extractor = extractor
        self.batch = batch
        self.writer = tf.summary.create_file_writer(log_dir)
        self.run_dir = log_dir
        self.step = 0
        # As a `tf.function`, `tf.summary.image`'s PNG loop runs in parallel.
        self.summaries = tf.function(self.summaries) if graph else self.summaries

    def log(self):
        outs = self.extractor.predict_on_batch(self.batch)
        with self.writer.as_default():
            self.summaries([tf.constant(a) for a in outs], tf.constant(self.step, tf.int64))
        self.writer.flush()
        self.step += 1

    def summaries(self, outs, step):
        for layer, a in zip(LAYERS, outs):
            self.summarize(layer, a, step)

    def summarize(self, layer, a, step):
        # (probes, H, W, C) -> (C * probes, H, W, 1): one image per channel.
        x = tf.reshape(tf.transpose(a, [3, 0, 1, 2]), [-1, a.shape[1], a.shape[2], 1])
        lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
        norm = tf.math.divide_no_nan(x - lo, hi - lo)
        tf.summary.image(layer, norm, step=step, max_outputs=x.shape[0])

    def close(self):
        self.writer.close()


class PerChannel(PerLayer):
    """The loop of the per-channel tutorials: one `tf.summary.image` per layer and channel."""

    def summarize(self, layer, a, step):
        a = a.numpy()
        lo = a.min(axis=(1, 2), keepdims=True)
        span = a.max(axis=(1, 2), keepdims=True) - lo
        norm = np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0)
        for c in range(a.shape[-1]):
            tf.summary.image(f"{layer}/{c}", norm[..., c : c + 1], step=step)


PER_LAYER = "`tf.summary.image` per layer"
PER_LAYER_GRAPH = "`tf.summary.image` per layer in a `tf.function`"
PER_CHANNEL = "`tf.summary.image` per channel"
FORWARD = "`predict_on_batch` (as `LoggingSession.forward`)"
FORWARD_NUMPY = "`LoggingSession.forward()` (the above + to numpy)"
FORWARD_EAGER = "eager `model(x, training=False)` + `.numpy()`"


def measure_latency(ours, n):
    """Forward-pass baselines and one logging event each, interleaved.

    Interleaving keeps a baseline and the measure it divides under the
    same background load, which drifts on a shared machine.
    """
    ex, batch = ours.session.extractor, ours.session.batch
    x = tf.constant(batch)
    forms = {
        FORWARD: lambda: ex.predict_on_batch(batch),
        FORWARD_NUMPY: ours.session.forward,
        FORWARD_EAGER: lambda: [o.numpy() for o in ex(x, training=False)],
    }
    for fn in forms.values():
        fn()
        fn()
    forward: dict[str, list[float]] = {k: [] for k in forms}
    blocking, latency = [], []
    for _ in range(n):
        for name, fn in forms.items():
            forward[name].append(timed(fn))
        ours.flush()
        t = time.perf_counter()
        blocking.append(ours.log())
        ours.flush()
        latency.append(time.perf_counter() - t)
    return forward, {"blocking": blocking, "latency": latency}


def measure_throughput(ours, baselines, rounds, k):
    """Back-to-back steps of ours (k in a row, then flush) and one step of
    each baseline, alternated round by round."""
    for b in baselines.values():
        b.log()  # warm-up: traces the summary ops
    o = {"per_step": [], "busy_blocking": [], "bytes": [], "cpu": []}
    res = {name: {"per_step": [], "bytes": [], "cpu": []} for name in baselines}
    for _ in range(rounds):
        ours.flush()
        before = dir_bytes(ours.run_dir)
        cpu = time.process_time()
        t = time.perf_counter()
        # The loop logs again while the writer still encodes the last step.
        calls = [ours.log() for _ in range(k)]
        ours.flush()
        o["per_step"].append((time.perf_counter() - t) / k)
        o["cpu"].append((time.process_time() - cpu) / k)
        o["busy_blocking"].extend(calls[1:])
        o["bytes"].append((dir_bytes(ours.run_dir) - before) / k)

        for name, b in baselines.items():
            before = dir_bytes(b.run_dir)
            cpu = time.process_time()
            res[name]["per_step"].append(timed(b.log))
            res[name]["cpu"].append(time.process_time() - cpu)
            res[name]["bytes"].append(dir_bytes(b.run_dir) - before)
    return o, res


def writer_breakdown(values, n, workers):
    """The writer's work for one step, stage by stage, with the functions it calls.

    Serial stages run in this thread with the training loop idle and are
    timed by this thread's CPU time; the PNG stage is also timed on a pool
    the size of the writer's, by wall time.
    """
    clock = time.thread_time
    header = metadata.encode_header(1.0, None, 1)
    stages: dict[str, list[float]] = {
        k: []
        for k in (
            "to NHWC + channel cap",
            "compute_stats",
            "quantize",
            "set sums, change and CKA: one pass (`Tracker.update`)",
            "set measures from those sums (`health.measure_with_sums`)",
            "PNG (Pillow, zlib Z_RLE)",
            f"PNG, pool of {workers} (as the writer)",
            "encode_stats + header",
            "make_event (blobs into the proto)",
            "ByteSize x2 (pending-bytes bound)",
            "SerializeToString",
            "TFRecordWriter.write (CRC32C + write)",
            "flush",
        )
    }
    plain_write: list[float] = []
    # One tracker over the repeats: from the second on, each step has a previous one.
    tracker = measures.Tracker()
    pool = ThreadPoolExecutor(workers)
    tmp = tempfile.mkdtemp(prefix="tb_act_bench_")
    record_path = os.path.join(tmp, "records")
    for rep in range(n + 1):
        t: dict[str, float] = dict.fromkeys(stages, 0.0)
        events = []
        for value in values:
            # Each repeat a changed map, as from training: an unchanged one
            # is cheap for the measures.
            value = summary.LayerValue(value.info, value.array * (1 + rep * 1e-3))
            s = clock()
            x = value.nhwc()
            t["to NHWC + channel cap"] += clock() - s
            s = clock()
            stats = encoding.compute_stats(x)
            t["compute_stats"] += clock() - s
            s = clock()
            q = encoding.quantize(x, stats)
            t["quantize"] += clock() - s
            # As the writer does: the tracker's pass also makes the set's sums.
            s = clock()
            sums = health.set_sums(x, value.info.layout, value.info.activation)
            tracker.update(value.info.layer, rep, x, sums, copy=False)
            t["set sums, change and CKA: one pass (`Tracker.update`)"] += clock() - s
            s = clock()
            health.measure_with_sums(x, value.info.layout, value.info.activation, sums)
            t["set measures from those sums (`health.measure_with_sums`)"] += clock() - s
            groups = stacked_groups(q, value.info.channels_per_image)
            s = clock()
            pngs = [encoding.stacked_png(g) for g in groups]
            t["PNG (Pillow, zlib Z_RLE)"] += clock() - s
            s = time.perf_counter()
            # As `encoding.encode_layer_async` hands them to its pool.
            for f in [pool.submit(encoding.stacked_png, g) for g in groups]:
                f.result()
            t[f"PNG, pool of {workers} (as the writer)"] += time.perf_counter() - s
            s = clock()
            blobs = [header, metadata.encode_stats(stats), *pngs]
            t["encode_stats + header"] += clock() - s
            s = clock()
            event = summary.make_event(value.info, 1, time.time(), blobs)
            t["make_event (blobs into the proto)"] += clock() - s
            s = clock()
            event.ByteSize()
            event.ByteSize()
            t["ByteSize x2 (pending-bytes bound)"] += clock() - s
            events.append(event)
        s = clock()
        serialized = [e.SerializeToString() for e in events]
        t["SerializeToString"] += clock() - s
        w = tf.io.TFRecordWriter(record_path)
        s = clock()
        for b in serialized:
            w.write(b)
        t["TFRecordWriter.write (CRC32C + write)"] += clock() - s
        s = clock()
        w.flush()
        t["flush"] += clock() - s
        w.close()
        with open(record_path + ".plain", "wb") as f:
            s = clock()
            for b in serialized:
                f.write(b)
            f.flush()
            plain_write.append(clock() - s)
        if rep:  # the first pass warms caches and the pool
            for k in stages:
                stages[k].append(t[k])
    pool.shutdown()
    payload = sum(len(b) for b in serialized)
    # The first write opens the file; with a single step it is all there is.
    write = median(plain_write[1:] or plain_write)
    return {k: median(v) for k, v in stages.items()}, write, payload, tmp


OURS_PNG = "Pillow, adaptive filters, strategy Z_RLE, channels stacked"
PER_CHANNEL_PNG = "Pillow, adaptive filters, strategy Z_RLE, one PNG per channel (format 1)"


def stacked_groups(q, per_image):
    """(probes, channels, H, W) levels as the writer groups them into PNGs."""
    n, c = q.shape[:2]
    return [q[p, i : i + per_image] for p in range(n) for i in range(0, c, per_image)]


def pillow_png(image, level):
    """Pillow's PNG with its own strategy choice (naming a strategy, even the
    default one, changes its filters)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def png_tradeoff(values, n):
    """Time and bytes of one step's PNGs at each zlib level, and TensorFlow's encoder."""
    planes, groups = [], []
    for value in values:
        x = value.nhwc()
        q = encoding.quantize(x, encoding.compute_stats(x))
        planes += [q[p, c] for p in range(q.shape[0]) for c in range(q.shape[1])]
        groups += stacked_groups(q, value.info.channels_per_image)
    rows = []
    for level in (1, 6, 9):
        times = repeat(
            lambda level=level: [pillow_png(p, level) for p in planes],
            n,
            warmup=1,
            clock=time.thread_time,
        )
        nbytes = sum(len(pillow_png(p, level)) for p in planes)
        rows.append((f"Pillow compress_level={level} (adaptive filters)", median(times), nbytes))
    # zlib's run-length strategy, which Pillow exposes as compress_type.
    times = repeat(
        lambda: [encoding.png_bytes(p) for p in planes], n, warmup=1, clock=time.thread_time
    )
    nbytes = sum(len(encoding.png_bytes(p)) for p in planes)
    rows.append((PER_CHANNEL_PNG, median(times), nbytes))
    # The same, a PNG holding as many channels as fit in `encoding.IMAGE_PIXELS`: the writer's.
    times = repeat(
        lambda: [encoding.stacked_png(g) for g in groups], n, warmup=1, clock=time.thread_time
    )
    nbytes = sum(len(encoding.stacked_png(g)) for g in groups)
    rows.append((f"{OURS_PNG} ({len(groups)} PNGs)", median(times), nbytes))
    tf_planes = [tf.constant(p[..., None]) for p in planes]
    times = repeat(
        lambda: [tf.io.encode_png(p) for p in tf_planes], n, warmup=1, clock=time.thread_time
    )
    nbytes = sum(len(tf.io.encode_png(p).numpy()) for p in tf_planes)
    rows.append(("`tf.io.encode_png` (the baselines')", median(times), nbytes))
    raw = sum(p.size for p in planes)
    return rows, raw, len(planes)


def verdict(ratio, target):
    return "yes" if ratio <= target else "**no**"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    ap.add_argument("--repeats", type=int, help="repeats of each measure")
    ap.add_argument("--steps", type=int, help="steps logged in a row for back-to-back cost")
    ap.add_argument("--rounds", type=int, help="rounds of the back-to-back comparison")
    ap.add_argument(
        "--no-per-channel",
        action="store_true",
        help="leave out the per-channel loop (4 s a step), the second baseline",
    )
    ap.add_argument("--output", help="also write the tables to this markdown file")
    common.add_quiet_arguments(ap)
    args = ap.parse_args(argv)
    wait = args.wait if args.wait is not None else (0 if args.quick else 600)
    n = args.repeats or (3 if args.quick else 15)
    k = args.steps or (3 if args.quick else 6)
    rounds = args.rounds or (1 if args.quick else 4)

    pixels = common.probe_pixels()
    model = common.vgg16()
    tmp = tempfile.mkdtemp(prefix="tb_act_bench_")
    ours = Ours(model, pixels, os.path.join(tmp, "ours"))
    session = ours.session

    load_before = common.wait_for_quiet(args.max_load, wait)
    forward, o = measure_latency(ours, n)
    bare = median(forward[FORWARD])
    workers = summary.DEFAULT_WORKERS
    baselines = {
        PER_LAYER: PerLayer(session.extractor, session.batch, os.path.join(tmp, "per_layer")),
        PER_LAYER_GRAPH: PerLayer(
            session.extractor, session.batch, os.path.join(tmp, "per_layer_graph"), graph=True
        ),
    }
    if not args.no_per_channel:
        baselines[PER_CHANNEL] = PerChannel(
            session.extractor, session.batch, os.path.join(tmp, "per_channel")
        )
    o_tp, base = measure_throughput(ours, baselines, rounds, k)
    o.update(o_tp)
    ours.close()
    for b in baselines.values():
        b.close()
    load_after = os.getloadavg()[0]

    values = session.forward()
    stages, plain_write, payload, _ = writer_breakdown(values, max(2, n // 3), workers)
    png_rows, raw_pixels, n_planes = png_tradeoff(values, max(2, n // 3))

    blocking = median(o["blocking"])
    ours_step = median(o["per_step"])
    ours_bytes = median(o["bytes"])
    # Each round's ratio pairs measures taken under the same load.
    step_ratios = {
        name: [x / y for x, y in zip(o["per_step"], r["per_step"])] for name, r in base.items()
    }

    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    emit("# Writer benchmark: VGG16, five `blockN_conv1` layers, one 224x224 probe")
    emit()
    emit(
        f"{n_planes} channels per step ({raw_pixels / 1e6:.1f} M pixels). Median of {n} "
        f"repeats (back-to-back: {rounds} rounds) after a warm-up; back-to-back = {k} "
        "steps logged in a row, then `flush()`, total / steps, alternated round by round "
        "with one step of each baseline."
    )
    emit()
    emit(
        common.machine_info(
            [
                f"writer: {workers} PNG threads",
                f"1-min load average {load_before:.2f} before, {load_after:.2f} after "
                "(other processes share the cores; baselines are interleaved with the "
                "measures they divide)",
            ]
        )
    )
    emit()
    emit("## Targets")
    emit()
    r_block = blocking / bare
    # The headline is the faster of the two per-layer scripts in this run.
    head_name = min((PER_LAYER, PER_LAYER_GRAPH), key=lambda k: median(base[k]["per_step"]))
    head = base[head_name]
    # The median of the rounds' paired ratios, steadier under a drifting
    # load than a ratio of medians; process CPU beside it, steadier still.
    r_step = median(step_ratios[head_name])
    r_bytes = ours_bytes / median(head["bytes"])
    r_cpu = median(o["cpu"]) / median(head["cpu"])
    rounds_text = ", ".join(f"{x:.2f}" for x in step_ratios[head_name])
    rounds_text += f"; process CPU {r_cpu:.2f}x"
    rows = [
        (
            "training loop blocked per logging event",
            ms(blocking),
            f"{ms(bare)} bare forward",
            f"{r_block:.2f}x",
            f"<= {TARGET_BLOCKING}x",
            verdict(r_block, TARGET_BLOCKING),
        ),
        (
            "back-to-back cost per step",
            ms(ours_step),
            f"{ms(median(head['per_step']))} {head_name}",
            f"{r_step:.2f}x (rounds: {rounds_text})",
            f"<= {TARGET_THROUGHPUT}x",
            verdict(r_step, TARGET_THROUGHPUT),
        ),
        (
            "bytes per step",
            size(ours_bytes),
            f"{size(median(head['bytes']))} {head_name}",
            f"{r_bytes:.2f}x",
            f"<= {TARGET_BYTES}x",
            verdict(r_bytes, TARGET_BYTES),
        ),
    ]
    for name, other in base.items():
        if name == head_name:
            continue
        rows.append(
            (
                "back-to-back cost per step",
                ms(ours_step),
                f"{ms(median(other['per_step']))} {name}",
                f"{median(step_ratios[name]):.2f}x",
                "",
                "",
            )
        )
    for name, other in base.items():
        if name != head_name:
            ratio = ours_bytes / median(other["bytes"])
            bytes_row = (size(ours_bytes), f"{size(median(other['bytes']))} {name}")
            rows.append(("bytes per step", *bytes_row, f"{ratio:.2f}x", "", ""))
    emit(table(["measure", "tb_activations", "baseline", "ratio", "target", "met"], rows))
    emit()
    emit("## All measures")
    emit()
    rows = [(f"forward: {name}", ms(median(v)), ms(common.p90(v))) for name, v in forward.items()]
    rows += [
        (
            "tb_activations: `on_epoch_end` blocks, writer idle",
            ms(blocking),
            ms(common.p90(o["blocking"])),
        ),
        (
            "tb_activations: `on_epoch_end` blocks, writer busy with the previous step",
            ms(median(o["busy_blocking"])),
            ms(common.p90(o["busy_blocking"])),
        ),
        (
            "tb_activations: submit -> on disk (`flush()` returns)",
            ms(median(o["latency"])),
            ms(common.p90(o["latency"])),
        ),
        ("tb_activations: back-to-back per step", ms(ours_step), ms(common.p90(o["per_step"]))),
        (
            "tb_activations: process CPU per step, back-to-back",
            ms(median(o["cpu"])),
            ms(common.p90(o["cpu"])),
        ),
    ]
    for name, r in base.items():
        rows += [
            (
                f"{name}: per step (forward + summaries + flush)",
                ms(median(r["per_step"])),
                ms(common.p90(r["per_step"])),
            ),
            (f"{name}: process CPU per step", ms(median(r["cpu"])), ms(common.p90(r["cpu"]))),
            (f"{name}: per step less the bare forward", ms(median(r["per_step"]) - bare), ""),
            (f"{name}: bytes per step", size(median(r["bytes"])), ""),
        ]
    rows += [
        ("tb_activations: bytes per step", size(ours_bytes), ""),
    ]
    emit(table(["measure", "median", "p90"], rows))
    emit()
    emit("## Where the writer's time goes (one step, stage by stage; CPU time but the pool)")
    emit()
    pool_key = f"PNG, pool of {workers} (as the writer)"
    # Shares are of CPU time, which the load of other processes moves little;
    # the pool's wall time is shown beside them for this run's conditions.
    writer_total = sum(v for k_, v in stages.items() if k_ != pool_key)
    rows = []
    for name, v in stages.items():
        if name == pool_key:
            rows.append((f"{name}, wall time", ms(v), ""))
        else:
            rows.append((name, ms(v), f"{v / writer_total:.0%}"))
    rows.append(("**writer total, CPU**", ms(writer_total), "100%"))
    rows.append(("reference: plain file write of the same bytes", ms(plain_write), ""))
    emit(table(["stage", "median", "share of writer CPU"], rows))
    emit()
    png_share = stages["PNG (Pillow, zlib Z_RLE)"] / writer_total
    proto = sum(
        stages[k_]
        for k_ in (
            "make_event (blobs into the proto)",
            "ByteSize x2 (pending-bytes bound)",
            "SerializeToString",
        )
    )
    numeric = (
        stages["compute_stats"]
        + stages["quantize"]
        + stages["set sums, change and CKA: one pass (`Tracker.update`)"]
        + stages["set measures from those sums (`health.measure_with_sums`)"]
    )
    record = stages["TFRecordWriter.write (CRC32C + write)"] + stages["flush"]
    emit(
        f"Bounded by the machine: PNG encoding (Pillow's filters and zlib's deflate, in C) "
        f"is {png_share:.0%} of the writer's CPU time; statistics, measures and quantization "
        "(numpy) "
        f"{numeric / writer_total:.0%}; protobuf (building, sizing, serializing the events) "
        f"{proto / writer_total:.1%}; the event file (CRC32C + write + flush) "
        f"{record / writer_total:.1%}."
    )
    emit()
    emit(
        f"Serialized events: {size(payload)}. CRC32C and framing cost about "
        f"{ms(max(0.0, stages['TFRecordWriter.write (CRC32C + write)'] - plain_write))} over a "
        "plain write of the same bytes."
    )
    emit()
    emit("## PNG encoders: CPU time and bytes (one step's channels, one thread)")
    emit()
    emit(
        "Every row decodes to the same 8-bit gray levels; filters, zlib's strategy "
        "and stacking change only the time and the bytes."
    )
    emit()
    ours_png = next(r for r in png_rows if r[0].startswith(OURS_PNG))
    rows = [
        (
            name + (" (the writer's)" if name == ours_png[0] else ""),
            ms(t),
            size(b),
            f"{b / raw_pixels:.2f}",
            f"{b / ours_png[2]:.2f}x",
        )
        for name, t, b in png_rows
    ]
    emit(table(["encoder", "time", "bytes", "bytes / raw", "bytes vs the writer's"], rows))
    emit()
    save_output(args.output, out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
