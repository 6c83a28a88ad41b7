"""What logging VGG16's activations blocks on Keras's JAX and torch backends, without TensorFlow.

    KERAS_BACKEND=jax .venv-jax/bin/python benchmarks/bench_backends.py [--quick]
    KERAS_BACKEND=torch .venv-torch/bin/python benchmarks/bench_backends.py [--quick]

VGG16 (random weights, 224x224), a real photo as the probe, the five
`blockN_conv1` layers. Without TensorFlow, the event file's records are
checksummed by `summary.CRecordWriter` (google-crc32c, in C); `--crc python`
makes the writer fall back to TensorBoard's pure-Python checksum instead, as
it did before, to show what that costs.

Per logging event, interleaved so that each ratio's two sides share the
machine's load:
- the bare forward pass: the logger's extraction model's `predict_on_batch`;
- the time a logging event (`LoggingSession.log`, as `on_epoch_end` calls it)
  blocks the training loop with the writer idle, and one forward pass after
  the last event (the writer may still be busy with it); each is also divided by
  the forward pass inside that same event ("x own forward"), which does not
  drift with the load as a baseline measured a second apart may;
- the forward pass while the writer works on the previous step, as the
  training loop's next batches would meet it;
and, for where JAX's time goes, the forward pass split into its jitted call
and the copy of its outputs to numpy; last, the CPU time the checksum of one
step's records takes in C and in pure Python. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import common  # first: sets TensorFlow's log level before it loads
from common import LAYERS, median, ms, p90, repeat, save_output, size, table, timed

import keras
import numpy as np

from tb_activations import summary
from tb_activations.session import LoggingSession

TARGET_BLOCKING = 1.2  # x the bare forward pass
JAX_PARTS = ("jitted call, outputs ready", "outputs to numpy (np.array)")


class Events:
    """Logging events of a real `LoggingSession` (what `ActivationLogger`'s hooks call).

    The callback's hook adds reading the optimizer's step, a fraction of a
    millisecond, to what is timed here.
    """

    def __init__(self, model, pixels, log_dir):
        self.session = LoggingSession(
            log_dir, pixels, LAYERS, preprocess=keras.applications.vgg16.preprocess_input, verbose=0
        )
        self.session.bind(model)
        # The event's own forward pass, timed inside it: the ratio of an event
        # to it does not drift with the load as a separate baseline may.
        self.inner: list[float] = []
        extractor = self.session.extractor
        self.predict = predict = extractor.predict_on_batch

        def timed_predict(x):
            t = time.perf_counter()
            out = predict(x)
            self.inner.append(time.perf_counter() - t)
            return out

        extractor.predict_on_batch = timed_predict
        self.step = 0
        self.session.log(self.step)  # builds the extraction model, logs step 0 and the probe
        self.session.flush()

    def event(self) -> tuple[float, float]:
        """One logging event; returns the time it blocked the loop, and its forward pass."""
        self.step += 1
        return timed(lambda: self.session.log(self.step)), self.inner[-1]


def jax_split(extractor, batch):
    """The jitted forward call alone, and the copy of its outputs to numpy (JAX only)."""
    import jax

    def state():
        # Read at each call: Keras's predict function donates these buffers.
        return (
            [v.value for v in extractor.trainable_variables],
            [v.value for v in extractor.non_trainable_variables],
        )

    x = jax.device_put(batch)

    @jax.jit
    def call(trainable, non_trainable, x):
        out, _ = extractor.stateless_call(trainable, non_trainable, x, training=False)
        return out

    outs = jax.block_until_ready(call(*state(), x))
    jitted, to_numpy = JAX_PARTS
    return {
        jitted: lambda: jax.block_until_ready(call(*state(), x)),
        to_numpy: lambda: [np.array(o) for o in outs],
    }


def measure(events, n):
    ex, batch = events.session.extractor, events.session.batch
    forward = lambda: events.predict(batch)  # noqa: E731
    parts = jax_split(ex, batch) if keras.backend.backend() == "jax" else {}
    for fn in (forward, *parts.values()):
        fn()
    o = {"forward": [], "idle": [], "busy": [], "forward_busy": [], "idle_own": [], "busy_own": []}
    o.update({k: [] for k in parts})
    for _ in range(n):
        o["forward"].append(timed(forward))
        for name, fn in parts.items():
            o[name].append(timed(fn))
        events.session.flush()
        blocked, own = events.event()
        o["idle"].append(blocked)
        o["idle_own"].append(blocked / own)
        # The writer now encodes and writes that step: the loop goes on.
        o["forward_busy"].append(timed(forward))
        blocked, own = events.event()
        o["busy"].append(blocked)
        o["busy_own"].append(blocked / own)
        events.session.flush()
    return o


def step_bytes(run_dir) -> tuple[int, int]:
    files = [os.path.join(run_dir, f) for f in os.listdir(run_dir) if "tfevents" in f]
    return sum(os.path.getsize(f) for f in files), len(files)


def crc_costs(run_dir, n):
    """CPU time to checksum one logged step's records, in C and in pure Python."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as py_crc

    files = sorted(f for f in os.listdir(run_dir) if "tfevents" in f)
    loader = event_file_loader.RawEventFileLoader(os.path.join(run_dir, files[-1]))
    records = list(loader.Load())
    last_step = records[-len(LAYERS) :]
    total = sum(len(r) for r in last_step)
    out = {"bytes": total}
    if summary._crc32c is not None:
        out["c"] = median(
            repeat(lambda: [summary.masked_crc32c(r) for r in last_step], n, clock=time.thread_time)
        )
    out["python"] = timed(lambda: [py_crc(r) for r in last_step], clock=time.thread_time)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repeats: checks the script runs")
    ap.add_argument("--repeats", type=int, help="logging events measured (default 7, 2 quick)")
    ap.add_argument(
        "--crc",
        choices=["c", "python"],
        default="c",
        help="the writer's checksum: google-crc32c (default) or TensorBoard's pure Python",
    )
    ap.add_argument("--output", help="also write the report (markdown) to this file")
    common.add_quiet_arguments(ap)
    args = ap.parse_args()
    n = args.repeats or (2 if args.quick else 7)
    wait = args.wait if args.wait is not None else (0 if args.quick else 600)
    load = common.wait_for_quiet(args.max_load, wait)
    if "tensorflow" in sys.modules:
        sys.exit("TensorFlow is loaded: run this in a venv without it (make backends).")
    if args.crc == "python":
        summary._crc32c = None
    elif summary._crc32c is None:
        sys.exit("google-crc32c's C extension is missing: pip install google-crc32c.")

    model = common.vgg16()
    pixels = common.probe_pixels()
    with tempfile.TemporaryDirectory() as log_dir:
        events = Events(model, pixels, log_dir)
        o = measure(events, n)
        events.session.close()
        run_dir = events.session.run_dir
        total, files = step_bytes(run_dir)
        crc = crc_costs(run_dir, n)
        probe_file = summary.EventFile(os.path.join(log_dir, "writer"))
        probe_file.close()
        writer = type(probe_file._records).__name__

    bare = median(o["forward"])
    backend = keras.backend.backend()

    def row(label, key, own=None):
        xs = o[key]
        # The event against the forward pass inside it, event by event.
        x_own = f"{median(o[own]):.2f}x" if own else ""
        return [label, ms(median(xs)), ms(p90(xs)), f"{median(xs) / bare:.2f}x", x_own]

    rows = [
        row("bare forward pass (`predict_on_batch`)", "forward"),
        row("logging event blocks, writer idle", "idle", "idle_own"),
        row("logging event one forward pass after the last", "busy", "busy_own"),
        row("forward pass while the writer works on the last step", "forward_busy"),
    ]
    rows += [row(f"of the forward pass: {name}", name) for name in JAX_PARTS if name in o]
    crc_rows = [["google-crc32c (C)", ms(crc["c"])]] if "c" in crc else []
    crc_rows.append(["TensorBoard's pure Python", ms(crc["python"])])
    versions = common.versions("jax", "jaxlib", "torch")
    report = "\n".join(
        [
            f"# VGG16, five `blockN_conv1` layers, on Keras's {backend} backend, no TensorFlow",
            "",
            common.machine_info(
                [
                    versions,
                    f"record writer: {writer} (--crc {args.crc})",
                    f"1-minute load average when measuring began: {load:.2f}",
                    f"{n} logging events, medians and p90",
                ]
            ),
            "",
            f"Target: a logging event blocks <= {TARGET_BLOCKING}x the forward pass.",
            "",
            table(["per logging event", "median", "p90", "x bare forward", "x own forward"], rows),
            "",
            f"Checksumming one step's records ({size(crc['bytes'])}, {len(LAYERS)} records), "
            f"CPU time in the writer's thread, holding Python's lock:",
            "",
            table(["checksum", "per step"], crc_rows),
            "",
            f"{files} event file(s), {size(total)} in all.",
        ]
    )
    print(report)
    save_output(args.output, report + "\n")


if __name__ == "__main__":
    main()
