"""The writer's measures stage of this tree against an older one, interleaved.

    git archive REV tb_activations | tar -x -C DIR
    .venv/bin/python benchmarks/bench_measures_ab.py --old DIR [--rounds 3]

The set measures (`health`) and the change and CKA (`measures.Tracker`) of
one logged step, as the writer makes them, on maps of VGG16's five
`blockN_conv1` shapes (one probe) and of the demo CNN's conv layers (a
256-sample probe set), ReLU-like values that change every step. Each tree
runs in its own process (DIR first on the path for the old one), rounds
alternated; the figure is the median thread CPU of 6 steps after 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SETS = {
    "VGG16 `block1_conv1`..`block5_conv1`, one probe": [
        (1, 224, 224, 64),
        (1, 112, 112, 128),
        (1, 56, 56, 256),
        (1, 28, 28, 512),
        (1, 14, 14, 512),
    ],
    "demo CNN `conv1`..`conv3`, 256 samples": [
        (256, 32, 32, 16),
        (256, 16, 16, 32),
        (256, 8, 8, 64),
    ],
}


def child() -> None:
    """One tree's figures, one line per set: name<TAB>seconds."""
    import numpy as np

    from tb_activations import health, measures

    one_pass = hasattr(health, "set_sums")
    rng = np.random.default_rng(0)
    for name, shapes in SETS.items():
        base = [np.maximum(rng.standard_normal(s, dtype=np.float32) - 0.3, 0) for s in shapes]
        tracker = measures.Tracker()
        times = []
        for step in range(8):
            maps = [b * np.float32(1 + 0.01 * step) + np.float32(0.001 * step) for b in base]
            t = time.thread_time()
            for k, x in enumerate(maps):
                if one_pass:  # as the writer does since the one pass
                    sums = health.set_sums(x, "image")
                    tracker.update(str(k), step, x, sums, copy=False)
                    health.measure_with_sums(x, "image", None, sums)
                else:
                    health.measure(x, "image")
                    tracker.update(str(k), step, x)
            if step >= 2:
                times.append(time.thread_time() - t)
        print(f"{name}\t{statistics.median(times)}")


def run(path: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout
    return {k: float(v) for k, v in (line.split("\t") for line in out.splitlines())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", help="a directory holding an older tb_activations package")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child()
        return 0
    if not args.old:
        ap.error("--old DIR is required")
    old: dict[str, list[float]] = {k: [] for k in SETS}
    new: dict[str, list[float]] = {k: [] for k in SETS}
    for _ in range(args.rounds):
        for k, v in run(args.old).items():
            old[k].append(v)
        for k, v in run(None).items():
            new[k].append(v)
    print(f"1-min load average {os.getloadavg()[0]:.2f}")
    print("| maps | before (rounds) | after (rounds) | after / before |")
    print("|---|---|---|---|")
    for k in SETS:
        a, b = statistics.median(old[k]), statistics.median(new[k])
        rounds_a = ", ".join(f"{v * 1e3:.1f}" for v in old[k])
        rounds_b = ", ".join(f"{v * 1e3:.1f}" for v in new[k])
        before, after = f"{a * 1e3:.1f} ms ({rounds_a})", f"{b * 1e3:.1f} ms ({rounds_b})"
        print(f"| {k} | {before} | {after} | {b / a:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
