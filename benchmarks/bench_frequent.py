"""What logging every few batches costs a real training: the demo CNN's `fit`.

    .venv/bin/python benchmarks/bench_frequent.py [--quick] [--freqs 10,25,50] [--output FILE]

The demo's model and data (demo/train.py, demo/shapes.py: 6000 generated
images, batches of 64, 3 epochs), trained with `ActivationLogger(batch_freq=N,
batch_epochs=3)` (so also at every epoch end, as by default) and without it.
Every `fit` starts from the same weights; the fits with and without logging
alternate round by round, so that each ratio pairs fits run under the same
load. `fit` returns only once the last step is on disk. Nothing here asserts
on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import common  # first: sets TensorFlow's log level before it loads
from common import median, save_output, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
import keras  # noqa: E402
import shapes  # noqa: E402 - the demo's data
import train  # noqa: E402 - the demo's model

from tb_activations import ActivationLogger  # noqa: E402

EPOCHS = 3
TARGET_SLOWDOWN = 0.10


class _Count(logging.Handler):
    """Counts the writer's 'falls behind' warnings."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        if "falls behind" in record.getMessage():
            self.messages.append(record.getMessage())


class _TimedLogger(ActivationLogger):
    """ActivationLogger that adds up the time its hooks hold the training thread."""

    blocked = 0.0

    def _timed(self, hook, *args):
        t = time.perf_counter()
        hook(*args)
        self.blocked += time.perf_counter() - t

    def on_train_begin(self, logs=None):
        self._timed(super().on_train_begin, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._timed(super().on_train_batch_end, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed(super().on_epoch_end, epoch, logs)

    def on_train_end(self, logs=None):
        self._timed(super().on_train_end, logs)


@dataclasses.dataclass
class Fit:
    wall: float
    cpu: float
    steps: int = 0
    blocked: float = 0.0


def fit(weights, x, y, probe, log_dir: str | None, batch_freq: int | None) -> Fit:
    """One 3-epoch fit from `weights`, logged to `log_dir` when given."""
    model = train.build_model(x.shape[-1], len(shapes.CLASSES))
    model.set_weights(weights)
    callbacks = []
    if log_dir is not None:
        callbacks.append(
            _TimedLogger(log_dir, probe, batch_freq=batch_freq, batch_epochs=EPOCHS, verbose=0)
        )
    cpu = time.process_time()
    t = time.perf_counter()
    model.fit(x, y, batch_size=train.BATCH_SIZE, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    result = Fit(time.perf_counter() - t, time.process_time() - cpu)
    if log_dir is not None:
        # Read back with TensorBoard's reader, as the demo does.
        logged = train.read_back(Path(log_dir))
        result.steps = max(len(s) for tag, (_, s) in logged.items() if tag != "__probe__")
        result.blocked = callbacks[0].blocked
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_arguments(ap, "rounds (each: one fit without logging, one per batch_freq)")
    ap.add_argument(
        "--freqs",
        default="1,3,10,50",
        help="batch_freq values, comma-separated (default 1,3,10,50)",
    )
    ap.add_argument("--samples", type=int, default=6000, help="training images (default 6000)")
    args = ap.parse_args(argv)
    rounds = args.repeats or (1 if args.quick else 3)
    freqs = [int(f) for f in args.freqs.split(",")]
    samples = 1000 if args.quick else args.samples

    keras.utils.set_random_seed(0)
    x, y = shapes.dataset(samples, seed=0)
    probe = shapes.probe()
    weights = train.build_model(x.shape[-1], len(shapes.CLASSES)).get_weights()
    batches = EPOCHS * math.ceil(len(x) / train.BATCH_SIZE)
    tmp = tempfile.mkdtemp(prefix="tb_act_frequent_")
    warnings_seen = _Count()
    logging.getLogger("tb_activations").addHandler(warnings_seen)

    # A warm-up fit of each kind: graph tracing is not what is measured.
    fit(weights, x, y, probe, None, None)
    fit(weights, x, y, probe, os.path.join(tmp, "warmup"), freqs[0])
    warnings_seen.messages.clear()

    load_before = common.wait_for_quiet(args.max_load, common.wait_seconds(args))
    bare: list[Fit] = []
    fits: dict[int, list[Fit]] = {f: [] for f in freqs}
    behind: dict[int, int] = dict.fromkeys(freqs, 0)
    for r in range(rounds):
        bare.append(fit(weights, x, y, probe, None, None))
        for f in freqs:
            before = len(warnings_seen.messages)
            fits[f].append(fit(weights, x, y, probe, os.path.join(tmp, f"r{r}_f{f}"), f))
            behind[f] += len(warnings_seen.messages) > before
    load_after = os.getloadavg()[0]

    report: list[str] = []
    emit = report.append
    emit("# Frequent logging: the demo CNN's `fit`, with and without `ActivationLogger`")
    emit(
        f"{len(x)} generated 32x32 images, batches of {train.BATCH_SIZE}, {EPOCHS} epochs "
        f"({batches} batches); the demo's probe ({probe.shape[0]}x{probe.shape[1]}); the "
        "layers `ActivationLogger` picks by default. Median of "
        f"{rounds} rounds; each round runs one fit without logging, then one per "
        "`batch_freq`; a fit's time runs until its last step is on disk."
    )
    emit(
        common.machine_info(
            [
                f"1-min load average {load_before:.2f} before, {load_after:.2f} after "
                "(other processes share the cores; each ratio pairs fits of the same round)",
            ]
        )
    )
    t0 = median([b.wall for b in bare])

    def slowdown(f: int, clock: str) -> str:
        ratios = [getattr(a, clock) / getattr(b, clock) - 1 for a, b in zip(fits[f], bare)]
        return f"{median(ratios):+.1%} ({', '.join(f'{r:+.0%}' for r in ratios)})"

    rows = [("no `ActivationLogger`", "", f"{t0:.1f} s", "", "", "", "")]
    # Each logged step's share of the extra wall time, paired round by round.
    per_step: list[float] = []
    for f in freqs:
        n = fits[f][0].steps
        per_step += [(a.wall - b.wall) / n for a, b in zip(fits[f], bare)]
        blocked = median([a.blocked for a in fits[f]]) / n
        rows.append(
            (
                f"`batch_freq={f}`",
                str(n),
                f"{median([a.wall for a in fits[f]]):.1f} s",
                slowdown(f, "wall"),
                slowdown(f, "cpu"),
                f"{blocked * 1e3:.0f} ms",
                f"{behind[f]} of {rounds}",
            )
        )
    emit(
        table(
            [
                "fit",
                "steps logged",
                "fit time",
                "slowdown, wall (rounds)",
                "slowdown, process CPU (rounds)",
                "training thread in the callback, per logged step",
                "fits that warned 'falls behind'",
            ],
            rows,
        )
    )
    # Wall time on a shared machine moves with the other processes' load;
    # process CPU time moves far less, so the advice rests on it.
    cpu_per_step = median([(a.cpu - b.cpu) / a.steps for f in freqs for a, b in zip(fits[f], bare)])
    cpu_per_batch = median([b.cpu for b in bare]) / batches
    batch_seconds = t0 / batches
    wall_per_step = median(per_step)
    limit = 1 + TARGET_SLOWDOWN
    met = [f for f in freqs if median([a.wall / b.wall for a, b in zip(fits[f], bare)]) < limit]
    cpu_met = [f for f in freqs if median([a.cpu / b.cpu for a, b in zip(fits[f], bare)]) < limit]
    if cpu_per_step > 0:
        under = math.ceil(cpu_per_step / (TARGET_SLOWDOWN * cpu_per_batch))
        advice = (
            f"a logged step costs about {cpu_per_step * 1e3:.0f} ms of CPU (median over rows "
            f"and rounds; {wall_per_step * 1e3:+.0f} ms of wall time), so logging every "
            f"{under} batches or more keeps the CPU cost under {TARGET_SLOWDOWN:.0%}"
        )
    else:
        advice = "the logged steps' CPU cost is within this run's noise"

    def listed(fs):
        return ", ".join(f"`batch_freq={f}`" for f in fs) if fs else "none of the rows"

    emit(
        f"A batch takes {batch_seconds * 1e3:.0f} ms and {cpu_per_batch * 1e3:.0f} ms of CPU "
        f"without logging, and {advice}. Under {TARGET_SLOWDOWN:.0%} in this run: by wall "
        f"time {listed(met)}; by process CPU {listed(cpu_met)}."
    )
    text = "\n".join(line for part in report for line in (part, ""))
    print(text)
    save_output(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
