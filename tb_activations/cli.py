"""The `tb-activations` command: export pictures and report on training.

    tb-activations export LOGDIR --run R --layer L --channel C [--format gif|apng] [-o out.gif]
    tb-activations export LOGDIR --run R --layer L --step S [--format png] [-o grid.png]
    tb-activations report LOGDIR [--run R] [--fail-dead-above 0.5]
                          [--fail-dormant-above 0.2] [--fail-nonfinite] [--tau 0.025]

Exit codes: 0 done; 1 `report` found what a `--fail-*` option names (a layer
with more dead or dormant units at its last step, or one that had a NaN or
an infinity); 2 bad arguments, or a run, layer, step or channel the log does
not have.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
from collections.abc import Sequence

from tb_activations import colormaps, export

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_COLUMNS = (
    "layer",
    "channels",
    "dead at last step",
    "died",
    "never active",
    "change since start",
    "dormant",
    "eff. rank / max",
    "similarity",
    "rms",
    "saturation",
    "first non-finite",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tb-activations",
        description="Read activations logged by tb_activations.ActivationLogger.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = commands.add_parser(
        "export",
        help="a channel's evolution as an animation, or a layer's channel grid at one step",
        description="With --channel: that channel over every logged step, as an animated "
        "GIF or APNG, each frame labelled with its step. With --step: the layer's "
        "labelled channel grid at that step, as a PNG.",
    )
    ex.add_argument("logdir", metavar="LOGDIR", help="the directory given to TensorBoard")
    ex.add_argument("--run", required=True, help="the run, as `report` lists it")
    ex.add_argument("--layer", required=True, help="the layer (its path, as logged)")
    which = ex.add_mutually_exclusive_group(required=True)
    which.add_argument("--channel", type=int, help="export this channel's evolution")
    which.add_argument("--step", type=int, help="export the layer's grid at this step")
    ex.add_argument("--probe", type=int, default=0, help="the probe image (default 0)")
    ex.add_argument(
        "--format",
        choices=export.FORMATS,
        help="gif or apng for --channel (default gif), png for --step",
    )
    ex.add_argument("--colormap", choices=colormaps.COLORMAPS, default="viridis")
    ex.add_argument(
        "--normalization",
        choices=export.NORMALIZATIONS,
        default="channel",
        help="the range colours span: per channel or for the layer, at each step or "
        "over all steps (-fixed); default channel, as logged",
    )
    ex.add_argument(
        "-o", "--output", help="the file to write (default: named after run, layer, channel/step)"
    )

    rep = commands.add_parser(
        "report",
        help="per run and layer: dead, dormant and never-active channels, change, "
        "effective rank, similarity, rms, saturation and the first non-finite step",
        description="Prints, per run and layer: logged channels; channels dead (every "
        "value exactly 0) at the layer's last step; channels that died during training "
        "(alive at a logged step, dead at a later one); channels never active (dead at "
        "every logged step); the layer's change since the first step, at the last "
        "(0 = the same, 1 = became or grew from zero); and, over the probe set at the "
        "last step, the share of dormant units, the effective rank against its maximum, "
        "the mean cosine similarity of the samples, the rms, the saturation of a tanh or "
        "sigmoid layer, and the first step at which the layer had a NaN or an infinity "
        "(docs/measures.md).",
    )
    rep.add_argument("logdir", metavar="LOGDIR", help="the directory given to TensorBoard")
    rep.add_argument("--run", action="append", help="only this run (may be repeated)")
    rep.add_argument(
        "--fail-dead-above",
        type=float,
        metavar="FRACTION",
        help="exit 1 when a layer's dead fraction at its last step is above FRACTION "
        "(0 to 1), naming the layers",
    )
    rep.add_argument(
        "--fail-dormant-above",
        type=float,
        metavar="FRACTION",
        help="exit 1 when a layer's dormant fraction at its last step is above FRACTION "
        "(0 to 1), naming the layers",
    )
    rep.add_argument(
        "--fail-nonfinite",
        action="store_true",
        help="exit 1 when a layer had a NaN or an infinity at any logged step, naming "
        "the layers and the first such step",
    )
    rep.add_argument(
        "--tau",
        type=float,
        default=0.025,
        help="a unit is dormant when its dormant score is at most TAU (default 0.025)",
    )
    return parser


def _without_tensorflow(path: str) -> None:
    """Reads event files with TensorBoard's own file layer instead of
    importing TensorFlow (seconds of start-up) for a local directory.

    TensorBoard imports TensorFlow for file access when it is installed,
    unless `tensorboard.compat.notf` can be imported; this process only
    reads, so it declares that module. Remote paths (gs://, s3://) keep
    TensorFlow's file systems."""
    if "://" not in path and "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("notf"))


class _Usage(Exception):
    """A bad argument found after parsing: exit 2 with the message."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on a malformed command line
    _without_tensorflow(args.logdir)
    from tb_activations import logdir

    try:
        reader = logdir.read(args.logdir)
        if args.command == "export":
            return _export(reader, args)
        return _report(reader, args)
    except (_Usage, ValueError, FileNotFoundError, logdir.NotFound) as e:
        print(f"tb-activations {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _export(reader, args) -> int:
    grid = args.step is not None
    # reader.export checks the options before it reads anything.
    fmt = args.format or ("png" if grid else "gif")
    data = reader.export(
        args.run,
        args.layer,
        channel=args.channel,
        step=args.step,
        probe=args.probe,
        format=fmt,
        colormap=args.colormap,
        normalization=args.normalization,
    )
    out = args.output or export.file_name(
        args.run,
        args.layer,
        fmt,
        channel=args.channel,
        step=args.step,
        probe=args.probe,
        info=reader.info(args.run, args.layer),
    )
    with open(out, "wb") as f:
        f.write(data)
    print(f"wrote {out} ({len(data):,} bytes)")
    return EXIT_OK


def _fraction_option(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise _Usage(f"--{name} takes a fraction from 0 to 1. Received: {value}")


def _report(reader, args) -> int:
    _fraction_option("fail-dead-above", args.fail_dead_above)
    _fraction_option("fail-dormant-above", args.fail_dormant_above)
    if not args.tau >= 0:
        raise _Usage(f"--tau takes a number >= 0. Received: {args.tau}")
    runs = reader.runs()
    if not runs:
        raise _Usage(f"No activations logged in {reader.logdir!r}.")
    for run in args.run or []:
        reader.layers(run)  # NotFound listing the runs
    failures: dict[str, list[str]] = {"dead": [], "dormant": [], "nonfinite": []}
    for i, run in enumerate(args.run or runs):
        if i:
            print()
        for kind, found in _report_run(reader, run, args).items():
            failures[kind] += found
    checks = [
        ("dead", args.fail_dead_above, "dead fraction at the last step above {:g}"),
        ("dormant", args.fail_dormant_above, "dormant fraction at the last step above {:g}"),
        ("nonfinite", True if args.fail_nonfinite else None, "a NaN or an infinity"),
    ]
    checks = [(k, limit, what.format(limit)) for k, limit, what in checks if limit is not None]
    if not checks:
        return EXIT_OK
    print()
    failed = False
    for kind, _, what in checks:
        if failures[kind]:
            failed = True
            print(f"FAILED: {what} in:")
            for line in failures[kind]:
                print(f"  {line}")
        else:
            print(f"OK: no layer with {what}.")
    return EXIT_FAILED if failed else EXIT_OK


def _cell(value: float, fmt: str) -> str:
    return "n/a" if math.isnan(value) else format(value, fmt)


def _report_run(reader, run: str, args) -> dict[str, list[str]]:
    overview = reader.overview(run, tau=args.tau)
    rows, notes = [], []
    failures: dict[str, list[str]] = {"dead": [], "dormant": [], "nonfinite": []}
    for layer, step in overview.first_nonfinite.items():
        failures["nonfinite"].append(f"{run}  {layer}: first at step {step}")
    for index, layer in enumerate(overview.layers):
        timeline = reader.timeline(run, layer)
        if not timeline.steps:
            rows.append([layer, str(timeline.channels), "-", "-", "-", "no readable step"])
            rows[-1] += ["-"] * (len(_COLUMNS) - len(rows[-1]))
            continue
        last = overview.steps.index(timeline.steps[-1])
        value = {m: overview.values[m][index, last] for m in overview.values}
        dead = timeline.values["dead"] == 1.0
        channels = timeline.channels
        dead_last = int(dead[:, -1].sum())
        died = len({e["channel"] for e in timeline.events if e["kind"] == "died"})
        change = value["change_start"]
        if math.isnan(change):
            why = overview.unavailable.get("change_start", {}).get(layer)
            notes.append(f"{layer}: change since start unavailable: {why or 'undefined'}")
        fraction = dead_last / channels if channels else 0.0
        if args.fail_dead_above is not None and fraction > args.fail_dead_above:
            failures["dead"].append(f"{run}  {layer}: {fraction:.1%}")
        dormant = value["dormant_fraction"]
        if args.fail_dormant_above is not None and dormant > args.fail_dormant_above:
            failures["dormant"].append(f"{run}  {layer}: {dormant:.1%}")
        rank = _cell(value["effective_rank"], ".2f")
        rank_max = overview.effective_rank_max.get(layer)
        broke = overview.first_nonfinite.get(layer)
        rows.append(
            [
                layer,
                str(channels),
                f"{dead_last} ({fraction:.0%})",
                str(died),
                str(len(timeline.never_active)),
                _cell(change, ".3f"),
                _cell(dormant, ".0%"),
                f"{rank} / {rank_max}" if rank_max is not None else rank,
                _cell(value["similarity"], ".3f"),
                _cell(value["rms"], ".3g"),
                _cell(value["saturation"], ".1%"),
                "-" if broke is None else str(broke),
            ]
        )
    steps = overview.steps
    span = f"steps {steps[0]}..{steps[-1]}, {len(steps)} logged" if steps else "no step"
    print(f"run {run} ({span})")
    _table([list(_COLUMNS), *rows])
    for note in notes:
        print(f"  note: {note}")
    return failures


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        # The layer name to the left, numbers to the right.
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        print("  " + "  ".join(cells).rstrip())


if __name__ == "__main__":
    sys.exit(main())
