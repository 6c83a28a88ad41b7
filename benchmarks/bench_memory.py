"""TensorBoard's resident memory with a 200-step VGG16 log, on both loaders.

    .venv/bin/python benchmarks/bench_memory.py [--steps N] [--output FILE] [--logdir DIR]

The log is `bench_training.py`'s (VGG16 with random weights, the five
`blockN_conv1` layers, a 224x224 probe, `--steps` steps written through
`ActivationLogger`'s logging session), written once per `--logdir` and
reused; pass that benchmark's `--logdir` to measure the log it made.

For each loader (`--load_fast false`, the Python loader in TensorBoard's
process; `--load_fast true`, the Rust data server, a child process) a real
`tensorboard` is measured at three points:

- empty: the same command on an empty log directory, once it serves and
  the plugin has answered `tags`;
- loaded: on the log, once the plugin's `tags` says every layer keeps every
  step (TensorBoard holds every kept step's blobs in RAM);
- after the panel: after the requests the panel makes to open the run and a
  layer (`tags`, `overview`, `curves`, `steps`, `timeline` of block4_conv1,
  `layer` of a few steps and layers, one channel's `series`, the probe),
  which fill the plugin's caches; then again after the same requests a
  second time, which the caches answer.

Resident memory is VmRSS from /proc, summed over every process TensorBoard
started (found by an environment variable they inherit), after the
server has been idle for `--settle` seconds. The growth from "loaded" to
"after the panel" bounds what the plugin's caches hold: it also counts what
reading and decoding left in glibc's allocator, which keeps an arena per
thread (the reader's threads among them). So each loader is measured again
with `MALLOC_ARENA_MAX=--arenas`, and the caches' own content is counted
directly: the same requests to a TensorBoard in this process, then the
sizes the reader's caches account for (statistics and headers, computed
answers) and the bytes of the blob references its series cache holds.

Memory does not move with the machine's load, so this benchmark does not
wait for a quiet machine; it records the load all the same.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common
from common import LAYERS, save_output

import bench_training
import panel_common
from panel_common import api_json

from support import running_tensorboard, wait_until

WIDE = bench_training.WIDE  # block4_conv1: 512 channels of 28x28
BIG = bench_training.BIG  # block1_conv1: 64 channels of 224x224
_MARK = "TB_ACTIVATIONS_MEMORY_RUN"


def tree_memory(mark: str) -> dict[int, tuple[str, int, int]]:
    """{pid: (command name, VmRSS, VmHWM)} in bytes of every process whose
    environment holds `mark`: TensorBoard and the data server it starts."""
    needle = f"{_MARK}={mark}".encode()
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # gone, or not ours to read
            continue
        kib = {k: int(status.get(k, "0 kB").split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}
        out[int(entry)] = (status["Name"].strip(), kib["VmRSS"], kib["VmHWM"])
    return out


def snapshot(mark: str, settle: float) -> dict:
    """The process tree's memory once the server has been idle `settle` s."""
    time.sleep(settle)
    procs = tree_memory(mark)
    return {
        "rss": sum(p[1] for p in procs.values()),
        "hwm": sum(p[2] for p in procs.values()),
        "procs": sorted(procs.values(), key=lambda p: -p[1]),
        "load": os.getloadavg()[0],
    }


def kept_everywhere(base: str, run: str, steps: int) -> bool:
    tags = api_json(base, "tags").get(run, {})
    return all(tags.get(t, {}).get("steps_kept") == steps for t in LAYERS)


def panel_requests(base: str, run: str, steps: int) -> int:
    """What the panel asks to open the run, its training map and two layers;
    returns the bytes answered."""
    last, mid = steps - 1, steps // 2
    asks = [
        ("tags", {}),
        ("overview", {"run": run}),
        ("curves", {"run": run}),
        *[("steps", {"run": run, "tag": t}) for t in LAYERS],
        ("timeline", {"run": run, "tag": WIDE}),
        ("layer", {"run": run, "tag": WIDE, "step": last}),
        ("layer", {"run": run, "tag": WIDE, "step": mid}),
        ("layer", {"run": run, "tag": BIG, "step": last}),
        ("layer", {"run": run, "tag": BIG, "step": 0}),
        ("layer", {"run": run, "tag": LAYERS[-1], "step": last}),
        ("series", {"run": run, "tag": WIDE, "channel": 0}),
    ]
    total = sum(panel_common.timed_fetch(base, route, **q)[1] for route, q in asks)
    return total + panel_common.timed_fetch(base, "probe", run=run)[1]


def wait_loaded(base: str, run: str, steps: int) -> None:
    wait_until(
        lambda: kept_everywhere(base, run, steps),
        bench_training.LOAD_TIMEOUT,
        "TensorBoard to load every step",
        interval=2.0,
    )


def measure(logdir: Path, empty: Path, run: str, steps: int, load_fast: bool, settle: float, env):
    marks = {"empty": uuid.uuid4().hex, "log": uuid.uuid4().hex}
    got = {}
    with running_tensorboard(
        empty, load_fast=load_fast, env={**env, _MARK: marks["empty"]}
    ) as base:
        api_json(base, "tags")
        got["empty"] = snapshot(marks["empty"], settle)
    t = time.perf_counter()
    with running_tensorboard(logdir, load_fast=load_fast, env={**env, _MARK: marks["log"]}) as base:
        wait_loaded(base, run, steps)
        got["load_seconds"] = time.perf_counter() - t
        got["loaded"] = snapshot(marks["log"], settle)
        got["answered"] = panel_requests(base, run, steps)
        got["panel"] = snapshot(marks["log"], settle)
        panel_requests(base, run, steps)
        got["again"] = snapshot(marks["log"], settle)
    return got


def cache_contents(logdir: Path, run: str, steps: int, load_fast: bool) -> dict[str, int]:
    """Bytes the plugin's caches hold after the panel's requests, twice, to a
    TensorBoard in this process: the sizes its reader accounts for, and the
    blob references of its cached series."""
    import gc

    from tensorboard import program

    from tb_activations.plugin import ActivationsPlugin

    tb = program.TensorBoard()
    fast = "true" if load_fast else "false"
    argv = [None, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0"]
    tb.configure(argv=[*argv, "--load_fast", fast])
    base = tb.launch()
    wait_loaded(base, run, steps)
    for _ in range(2):
        panel_requests(base, run, steps)
    plugins = [o for o in gc.get_objects() if isinstance(o, ActivationsPlugin)]
    reader = plugins[-1]._reader  # the newest: this loader's server
    refs = 0
    for _, series in [item[0] for item in list(reader._series_cache._items.values())]:
        for d in series.data:
            refs += sys.getsizeof(d) + sys.getsizeof(d.values)
            refs += sum(sys.getsizeof(v) + sys.getsizeof(v.blob_key) for v in d.values)
    return {
        "statistics and headers": reader._cache._cost,
        "computed answers": reader._answers._cost,
        "series (blob references)": refs,
    }


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:,.0f} MiB"


def report(results: dict, caches: dict, args, event_bytes: int, logdir: Path) -> str:
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    loads = [f"{r[k]['load']:.2f}" for r in results.values() for k in ("empty", "loaded", "panel")]
    emit(
        f"# TensorBoard's memory: VGG16, five `blockN_conv1` layers, {args.steps} steps, "
        "224x224 probe"
    )
    emit()
    emit(
        "Resident memory (VmRSS, summed over TensorBoard's process and the data server it "
        f"starts), after {args.settle:.0f} s idle. Growth after the panel: from loaded to "
        "after the panel's requests, as a share of loaded; it bounds the plugin's caches from "
        "above, since it also counts what reading left in the allocator's per-thread arenas "
        f"(compare the `MALLOC_ARENA_MAX={args.arenas}` rows). Caches: what the plugin's "
        "caches hold after the same requests twice, counted in a TensorBoard in this process, "
        "as a share of loaded."
    )
    emit()
    emit(
        common.machine_info(
            [
                f"log: {logdir} ({common.size(event_bytes)} of event files, every step kept)",
                "1-min load average at empty, loaded and after the panel, per row: "
                + ", ".join(loads)
                + " (the cores are shared with other processes; memory does not move with it)",
            ]
        )
    )
    emit()
    rows = []
    for name, r in results.items():
        loaded, panel = r["loaded"]["rss"], r["panel"]["rss"]
        held = sum(caches.get(r["loader"], {}).values())
        rows.append(
            (
                name,
                mib(r["empty"]["rss"]),
                mib(loaded),
                mib(panel),
                f"{mib(panel - loaded)} ({(panel - loaded) / loaded:.1%})",
                f"{mib(held)} ({held / loaded:.1%})" if held else "",
                common.size(event_bytes),
            )
        )
    emit(
        common.table(
            (
                "loader",
                "empty log dir",
                "log loaded",
                "after the panel's requests",
                "growth after the panel",
                "caches",
                "event files",
            ),
            rows,
        )
    )
    emit()
    if caches:
        kinds = list(next(iter(caches.values())))
        emit(
            common.table(
                ("loader", *kinds),
                [(name, *(mib(c[k]) for k in kinds)) for name, c in caches.items()],
            )
        )
        emit()
    detail = []
    for name, r in results.items():
        for point in ("empty", "loaded", "panel", "again"):
            s = r[point]
            procs = "; ".join(f"{p[0]} {mib(p[1])}" for p in s["procs"])
            detail.append((name, point, mib(s["rss"]), mib(s["hwm"]), procs))
    emit(common.table(("loader", "point", "RSS", "peak RSS (VmHWM)", "processes"), detail))
    emit()
    emit(
        "Points: empty = an empty log directory; loaded = every step kept, by the plugin's "
        "`tags`; panel = after the panel's requests; again = after the same requests a "
        "second time (answered from the caches)."
    )
    emit()
    emit(
        "Time to load every step: "
        + ", ".join(f"{name} {r['load_seconds']:.0f} s" for name, r in results.items())
        + ". The panel's requests answered "
        + common.size(next(iter(results.values()))["answered"])
        + "."
    )
    return out.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=bench_training.STEPS, help="logged steps")
    ap.add_argument("--logdir", help="where to write (or reuse) the training benchmark's logs")
    ap.add_argument("--output", help="also write the tables to this markdown file")
    ap.add_argument("--settle", type=float, default=5.0, help="idle seconds before each reading")
    ap.add_argument(
        "--loaders", default="false,true", help="--load_fast values to measure, in order"
    )
    ap.add_argument(
        "--arenas",
        type=int,
        default=2,
        help="also measure with MALLOC_ARENA_MAX set to this (0: do not)",
    )
    args = ap.parse_args(argv)

    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="tb_act_training_"))
    print(f"logs in {logdir}", file=sys.stderr)
    panel_common.write_vgg16_log(logdir, args.steps, bench_training.training_evolution(args.steps))
    bench_training.write_other_run(logdir)
    run = bench_training.MAP_RUN
    results, caches = {}, {}
    envs = {"": {}}
    if args.arenas:
        envs[f", MALLOC_ARENA_MAX={args.arenas}"] = {"MALLOC_ARENA_MAX": str(args.arenas)}
    with tempfile.TemporaryDirectory(prefix="tb_act_empty_") as empty:
        for fast in args.loaders.split(","):
            loader = f"--load_fast {fast}"
            for suffix, env in envs.items():
                print(f"measuring {loader}{suffix}", file=sys.stderr)
                got = measure(
                    logdir, Path(empty), run, args.steps, fast == "true", args.settle, env
                )
                results[loader + suffix] = {**got, "loader": loader}
    for fast in args.loaders.split(","):
        print(f"counting the caches' content, --load_fast {fast}", file=sys.stderr)
        caches[f"--load_fast {fast}"] = cache_contents(logdir, run, args.steps, fast == "true")
    text = report(results, caches, args, bench_training.dir_bytes(logdir / run), logdir)
    save_output(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
