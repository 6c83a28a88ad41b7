"""Shared pieces of the benchmarks: machine facts, the VGG16 probe, timing and tables."""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LAYERS = [f"block{i}_conv1" for i in range(1, 6)]
SIZE = 224


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(*modules: str) -> str:
    out = []
    for name in modules:
        try:
            mod = importlib.import_module(name)
            out.append(f"{name} {getattr(mod, '__version__', '?')}")
        except ImportError:
            continue
    return ", ".join(out)


def machine_info(extra: Sequence[str] = ()) -> str:
    lines = [
        f"- CPU: {cpu_model()}, nproc {os.cpu_count()}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- {versions('tensorflow', 'keras', 'tensorboard', 'numpy', 'PIL', 'google.protobuf')}",
    ]
    lines.extend(f"- {e}" for e in extra)
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "tb_activations", "frontend"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            timeout=10,
        ).stdout.split()[1::2]
        if rev:
            changed = f" plus uncommitted changes to {', '.join(dirty)}" if dirty else ""
            lines.append(f"- commit {rev}{changed}")
    except (OSError, subprocess.SubprocessError):
        pass
    lines.append(f"- command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`")
    return "\n".join(lines)


def probe_pixels(size: int = SIZE):
    """A real photo (matplotlib's sample), as a (1, size, size, 3) float32 batch of 0..255."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)[None]


def vgg16():
    import keras

    # The same random weights in every run, so bytes per step compare across runs.
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    # An optimizer gives the callback its step counter, as in training.
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    t = clock()
    fn()
    return clock() - t


def repeat(
    fn: Callable[[], object],
    n: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """`clock=time.thread_time` times single-threaded work by its CPU time, which other
    processes on a shared machine disturb far less than wall time."""
    for _ in range(warmup):
        fn()
    return [timed(fn, clock) for _ in range(n)]


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p90(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def size(n: float) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:,.2f} MiB"
    return f"{n / 1024:,.1f} KiB"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wait_for_quiet(max_load: float, timeout: float) -> float:
    """Waits (up to `timeout` s) for the 1-minute load average to drop below `max_load`.

    Other processes on a shared machine take cores from the measures; waiting
    for a quiet moment makes runs comparable. Returns the load at the end.
    """
    deadline = time.monotonic() + timeout
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        print(f"waiting for a quieter machine: load {load:.2f} >= {max_load}", file=sys.stderr)
        time.sleep(10)
        load = os.getloadavg()[0]
    return load


def target_row(label: str, ms_values: Sequence[float], target: float) -> tuple[str, ...]:
    """A row of a targets table: median and p90 of times in ms against a target in ms."""
    m = median(ms_values)
    return (
        label,
        f"{m:.0f} ms",
        f"{p90(ms_values):.0f} ms",
        f"<= {target:.0f} ms",
        "yes" if m <= target else "**no**",
    )


TARGET_HEADER = ("measure", "median", "p90", "target", "met")


def add_run_arguments(ap, repeats_help: str) -> None:
    """--quick, --repeats, --output, and the waiting for a quiet machine."""
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    ap.add_argument("--repeats", type=int, help=repeats_help)
    ap.add_argument("--output", help="also write the tables to this markdown file")
    add_quiet_arguments(ap)


def wait_seconds(args) -> float:
    """--wait, else 600 s (none with --quick)."""
    return args.wait if args.wait is not None else (0 if args.quick else 600)


def add_quiet_arguments(ap) -> None:
    ap.add_argument(
        "--max-load",
        type=float,
        default=1.0,
        help="wait for the 1-minute load average to drop below this before measuring",
    )
    ap.add_argument(
        "--wait",
        type=float,
        help="seconds to wait at most for that (default: 600, 0 with --quick)",
    )


def save_output(path: str | None, text: str) -> None:
    """Writes a benchmark's report to `path` (its `--output`), if given."""
    if path:
        with open(path, "w") as f:
            f.write(text)
