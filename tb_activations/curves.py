"""Loss and metric curves on the activations' step axis.

The tab draws a run's scalars under its step slider. Keras's `TensorBoard`
callback writes them into sibling runs (`train/`, `validation/` beside
`activations/`) and on two different x-axes:

- `batch_*` and `evaluation_*_vs_iterations` are at the optimizer's
  iteration count: the axis the activations' steps are in;
- `epoch_*` are at the epoch index `e`, the value of the epoch that ends at
  the state "e + 1 epochs completed".

This module maps both onto iterations. An epoch's value goes to the step of
the logged state whose header says that `e + 1` epochs were completed. An
epoch without such a state is placed by linear interpolation between the
nearest logged states before and after it (exact while the epochs between
them have the same number of batches), and is marked so; one outside the
logged states is returned unmapped, with the reason. Pure Python: the plugin
reads the scalars and the headers, this module only maps them.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

ITERATION = "iteration"
EPOCH = "epoch"
# A scalar whose tag does not say its axis: drawn as it was written, which
# for scalars logged beside training is usually the iteration count.
STEP = "step"


def axis_of(tag: str) -> str:
    """The x-axis a Keras `TensorBoard` scalar is written on, from its tag."""
    name = tag.rsplit("/", 1)[-1]
    if name.startswith("epoch_"):
        return EPOCH
    if name.startswith("batch_") or (
        name.startswith("evaluation_") and name.endswith("_vs_iterations")
    ):
        return ITERATION
    return STEP


def sibling_runs(run: str, runs: Iterable[str]) -> list[str]:
    """`run` and the runs in the same parent directory, `run` first.

    `logs/a/activations` has the siblings `logs/a/train` and
    `logs/a/validation`; a run at the top of the log dir has the other
    top-level runs."""
    parent = posixpath.dirname(run)
    others = sorted(r for r in runs if r != run and posixpath.dirname(r) == parent)
    return [run, *others]


def epoch_anchors(headers: Iterable[tuple[int, Any]]) -> list[tuple[float, int]]:
    """(epochs completed, step) for every logged state whose header has an
    epoch, sorted by epochs; the first step wins for a repeated epoch value
    (a later `fit` logs its untrained state again at the same epoch count)."""
    seen: dict[float, int] = {}
    for step, epoch in headers:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)):
            continue
        if not math.isfinite(epoch):
            continue
        seen.setdefault(float(epoch), int(step))
    return sorted(seen.items())


def _locate(completed: float, anchors: Sequence[tuple[float, int]]) -> tuple[float, bool] | None:
    """The iteration at which `completed` epochs were done: (step, exact)."""
    lo = None
    for epochs, step in anchors:
        if epochs == completed:
            return float(step), True
        if epochs < completed:
            lo = (epochs, step)
        else:
            if lo is None:
                return None
            (e0, s0), (e1, s1) = lo, (epochs, step)
            return s0 + (s1 - s0) * (completed - e0) / (e1 - e0), False
    return None


def _value(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def map_series(
    run: str,
    tag: str,
    points: Iterable[tuple[int, float]],
    anchors: Sequence[tuple[float, int]],
) -> dict[str, Any]:
    """One scalar series on the iteration axis.

    Returns `{"run", "tag", "axis", "points", "unmapped", "note"}`: `points`
    are `[iteration, value, source_step, exact]` lists, sorted by iteration
    (`exact` is false for an interpolated epoch); `unmapped` are
    `[source_step, value]` for epoch values no logged state places, and
    `note` says why (null when everything is placed)."""
    axis = axis_of(tag)
    mapped: list[list[Any]] = []
    unmapped: list[list[Any]] = []
    for source_step, value in points:
        value = _value(value)
        if axis != EPOCH:
            mapped.append([int(source_step), value, int(source_step), True])
            continue
        where = _locate(source_step + 1.0, anchors)
        if where is None:
            unmapped.append([int(source_step), value])
        else:
            mapped.append([where[0], value, int(source_step), where[1]])
    mapped.sort(key=lambda p: p[0])
    note = None
    if unmapped:
        if not anchors:
            why = "the activations' steps carry no epochs (log_activations snapshots)"
        else:
            why = (
                f"no logged state is at or around the end of epoch index "
                f"{', '.join(str(u[0]) for u in unmapped[:5])}"
                f"{', ...' if len(unmapped) > 5 else ''}; logged states cover "
                f"{anchors[0][0]:g} to {anchors[-1][0]:g} epochs completed"
            )
        note = f"{len(unmapped)} of {len(unmapped) + len(mapped)} epoch values unmapped: {why}."
    return {
        "run": run,
        "tag": tag,
        "axis": axis,
        "points": mapped,
        "unmapped": unmapped,
        "note": note,
    }
