"""How activations change during training: the numeric core of the measures.

The definitions are in docs/measures.md. In short, for channel c of a layer
at kept step s, over all probes, with a_s its map and A_s the layer matrix
(rows = positions, probe x height x width; columns = channels):

    change(c, s, r) = ||a_s - a_r|| / max(||a_s||, ||a_r||)   in [0, 2]
    drift(s, r)     = 1 - linear CKA(A_s, A_r)                 in [0, 1]

against r = the kept step before s ("prev") or the first kept step ("start").

Two halves, numpy only:

- `Tracker`, on the writer's side, sees every logged map at full precision
  and returns what a reader cannot recompute from the PNGs: per (probe,
  channel) sums of squares (`MEASURE_FIELDS`, appended to the statistics) and
  the layer's CKA against the previous and the first logged step (header
  keys `HEADER_KEYS`).
- Pure functions on the reader's side (`channel_rows`, `layer_rows`,
  `statistic_rows`, `events`, `never_active`) turn one series' kept steps
  into rows of values, using a writer value only when its reference step is
  the kept step the definition names, and saying why a value is missing.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tb_activations import passes

if TYPE_CHECKING:
    from tb_activations import health

__all__ = [
    "HEADER_KEYS",
    "Logged",
    "MEASURE_FIELDS",
    "NO_MEASURES",
    "Rows",
    "Tracker",
    "channel_rows",
    "events",
    "layer_rows",
    "linear_cka",
    "never_active",
    "statistic_rows",
]

# Statistics the writer appends after `metadata.STATS_FIELDS`, per (probe,
# channel): the sum of squares of the map and of its difference to the same
# channel at the previous and at the first step the tracker saw.
MEASURE_FIELDS = ("sq_norm", "sq_diff_prev", "sq_diff_start")

# Header keys of a tracked layer's step: the steps of the two references and
# the layer's linear CKA against each (None where undefined or absent).
HEADER_KEYS = ("prev_step", "start_step", "cka_prev", "cka_start")

NO_MEASURES = "logged by a version without measures"


@dataclasses.dataclass
class _Layer:
    start: passes.Map
    prev: passes.Map
    # The storage of the last map dropped, for the next one: a fresh array
    # of a large map costs its page faults again at every step.
    spare: np.ndarray | None = None


class Tracker:
    """Keeps, per layer path, the previous and the first map it was given,
    and measures each new map against them.

    Memory: per layer, the first map and the previous one (one while they
    are the same step), each probes x height x width x channels as logged
    (after the channel cap, before any PNG downscale): a float32 copy, or
    the caller's array itself with `copy=False` (the writer's); a copying
    caller's third map reuses the storage of the map dropped last. Plus, for
    a layer with fewer positions than channels, its positions x positions
    Gram matrix per kept map (smaller than the map). For VGG16's five
    `blockN_conv1` layers and one 224 x 224 probe that is about 49 MB; for
    the demo CNN's default layers and a 256-sample probe set, about 59 MB.

    Thread-safe; meant to be fed by one writer thread, in step order.
    """

    def __init__(self) -> None:
        self._layers: dict[str, _Layer] = {}
        self._lock = threading.Lock()

    def reset(self, path: str | None = None) -> None:
        """Forgets one layer's references, or every layer's."""
        with self._lock:
            if path is None:
                self._layers.clear()
            else:
                self._layers.pop(path, None)

    def update(
        self,
        path: str,
        step: int,
        nhwc: np.ndarray,
        sums: health.SetSums | tuple[np.ndarray, np.ndarray] | None = None,
        copy: bool = True,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Measures one layer's map at `step` and keeps it as the previous one.

        `nhwc` is the logged (probes, height, width, channels) array. Returns
        `(extra_stats, header_fields)`: float32 (probes, channels, 3) in
        `MEASURE_FIELDS` order, NaN where there is no reference, and a dict
        of `HEADER_KEYS`. At the first step of a layer (or the first after
        its shape changed, as when another model logs into the same run),
        the first step is its own start reference: `start_step` is `step`,
        `sq_diff_start` is 0 and `cka_start` is 1 (or None where undefined).

        `sums` is either a `health.SetSums` (`health.set_sums`), which this
        pass fills for `health.measure_with_sums` so that the map is read
        once for both (the writer's way), or, when the caller has read the
        map already, `(sq_norm, column_sums)`: float64 (probes, channels)
        sums of squares and (channels,) sums, which spare a pass.
        `copy=False` hands the array over: a C-contiguous float32 one that
        is all of its memory is then kept as it is, not copied, and must not
        change afterwards.
        """
        with passes.BLAS.limit(limits=1, user_api="blas"):
            return self._update(path, step, nhwc, sums, copy)

    def _update(self, path, step, nhwc, sums, copy) -> tuple[np.ndarray, dict[str, Any]]:
        x = np.asarray(nhwc, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(
                f"Tracker.update takes a (probes, height, width, channels) array. "
                f"Received: nhwc.shape={x.shape}"
            )
        step = int(step)
        probes, h, w, c = x.shape
        x3 = np.ascontiguousarray(x).reshape(probes, h * w, c)
        # A converted or contiguous copy made here is the tracker's own already.
        kept = not (isinstance(nhwc, np.ndarray) and np.may_share_memory(x3, nhwc))
        n = probes * h * w
        with self._lock:
            layer = self._layers.get(path)
            if layer is not None and layer.start.x.shape != x.shape:
                layer = None
            refs = [] if layer is None else [layer.prev]
            if layer is not None and layer.start is not layer.prev:
                refs.append(layer.start)
            visit = sums if hasattr(sums, "add") else None
            if visit is not None and not refs:
                # No reference to centre by yet: the sums' own pass first.
                passes.fill(visit, x3)
                sums, visit = (visit.per_sq, visit.per_x.sum(axis=0)), None
            if sums is None:
                sums = passes.square_sums(x3), passes.column_sums(x3.reshape(-1, c))
            out = None
            if not kept and (copy or passes.base_bytes(x3) > x3.nbytes):
                # A copy of the caller's array: into the storage of the map
                # dropped last when there is one (a fresh array of a large
                # map costs its page faults again at every step).
                spare = None if layer is None else layer.spare
                out = spare if spare is not None else np.empty(x3.shape, np.float32)
            copy_to = None if out is None else out.reshape(x3.shape)
            if visit is not None:
                # One pass for the sums and everything else, the map centred
                # by the previous step's means until its own are known; not
                # centred at all where those lay within their spread, which
                # spares a subtraction per value (corrected after, exactly).
                shift = np.zeros_like(refs[0].mean) if refs[0].narrow else refs[0].mean
                products = n >= 3 and 0 < c <= n
                gram, crosses, sq_diffs = passes.one_pass(
                    x3, shift, refs, products, copy_to, visit, centre_refs=False
                )
                sq_norm, col_sums = visit.per_sq, visit.per_x.sum(axis=0)
                crosses = passes.uncentred(refs, crosses, col_sums - n * shift.astype(np.float64))
            else:
                sq_norm, col_sums = sums
            defined = n >= 3 and c > 0 and bool(np.isfinite(col_sums).all())
            mean = (col_sums / n).astype(np.float32) if defined else np.zeros(c, np.float32)
            if visit is None:
                gram, crosses, sq_diffs = passes.one_pass(
                    x3, mean, refs, defined and c <= n, copy_to, centre_refs=False
                )
                if defined:
                    crosses = passes.uncentred(
                        refs, crosses, col_sums - n * mean.astype(np.float64)
                    )
            elif defined and products:
                gram, crosses = passes.recentre(
                    x3, mean, shift, refs, col_sums, sq_norm.sum(axis=0), gram, crosses
                )
            stored = x3 if out is None else out
            cur = passes.Map(
                step, stored.reshape(x.shape), mean, None, None, own=out is not None or kept
            )
            cur.resid = col_sums - n * mean.astype(np.float64) if defined else np.zeros(c)
            if defined:
                m64 = col_sums / n
                var = np.asarray(sq_norm, np.float64).sum(axis=0) / n - m64 * m64
                with np.errstate(invalid="ignore"):
                    cur.narrow = bool(np.isfinite(var).all() and (m64 * m64 <= 4 * var).all())
            if defined:
                with np.errstate(over="ignore", invalid="ignore"):
                    if gram is None:
                        flat = x3.reshape(n, c) - mean
                        gram = cur.gram = flat @ flat.T
                    norm = math.sqrt(passes.frobenius_sq(gram))
                if math.isfinite(norm) and norm > 0:
                    cur.gram_norm = norm
                else:
                    cur.gram = None
            extra = np.full((probes, c, len(MEASURE_FIELDS)), np.nan, np.float32)
            extra[..., 0] = sq_norm
            if layer is None:
                with np.errstate(invalid="ignore"):
                    extra[..., 2] = extra[..., 0] * 0.0  # 0, or NaN where not finite
                fields = {
                    "prev_step": None,
                    "start_step": step,
                    "cka_prev": None,
                    "cka_start": 1.0 if cur.gram_norm is not None else None,
                }
                self._layers[path] = _Layer(start=cur, prev=cur)
            else:
                prev, start = layer.prev, layer.start
                extra[..., 1] = sq_diffs[0]
                cka_prev = passes.cka(cur, prev, extra[..., 1], crosses[0])
                if start is prev:
                    extra[..., 2] = extra[..., 1]
                    cka_start = cka_prev
                else:
                    extra[..., 2] = sq_diffs[1]
                    cka_start = passes.cka(cur, start, extra[..., 2], crosses[1])
                fields = {
                    "prev_step": prev.step,
                    "start_step": start.step,
                    "cka_prev": cka_prev,
                    "cka_start": cka_start,
                }
                layer.spare = prev.x if prev is not start and prev.own else None
                layer.prev = cur
        return extra, fields


def linear_cka(a: np.ndarray, b: np.ndarray) -> float | None:
    """Linear CKA of two (positions, channels) matrices, columns centred;
    None where undefined (fewer than 3 rows, a zero matrix after centring,
    values that are not finite). The channel counts may differ."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"linear_cka takes two (positions, channels) matrices with the same positions. "
            f"Received: a.shape={a.shape}, b.shape={b.shape}"
        )
    if a.shape[0] < 3 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    if not den > 0:
        return None
    return min(max(float(np.linalg.norm(b.T @ a) ** 2 / den), 0.0), 1.0)


# -- reader side ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rows:
    """Values of some measures, one per kept step (per channel, or for the
    layer), and why some are missing.

    `values[name]` is float64 with NaN for null, shaped (channels, steps) or
    (steps,); `dead` is bool. `reasons[name]` is present when values are
    null for a reason other than the definition (first step, undefined CKA,
    non-finite activations).
    """

    steps: list[int]
    values: dict[str, np.ndarray]
    reasons: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The rows as JSON can carry them: lists, None for null."""
        return {
            "steps": list(self.steps),
            "values": {k: _jsonable(v) for k, v in self.values.items()},
            "reasons": dict(self.reasons),
        }


def _jsonable(a: np.ndarray) -> list:
    if a.dtype == bool:
        return a.tolist()
    return np.where(np.isfinite(a), a, None).tolist()


@dataclasses.dataclass
class _Series:
    steps: list[int]
    stats: np.ndarray  # (steps, probes, channels, fields) float64
    field: dict[str, int]
    has_measures: bool
    prev_ok: np.ndarray  # (steps,) bool: the writer's prev reference is the kept previous step
    start_ok: np.ndarray
    prev_reason: str | None
    start_reason: str | None

    def column(self, name: str) -> np.ndarray:
        return self.stats[..., self.field[name]]


_BASE_FIELDS = ("mean", "max", "zero_fraction", "nonfinite_fraction")


def _header_step(header: Mapping[str, Any], key: str) -> int | None:
    v = header.get(key) if isinstance(header, Mapping) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(v) if v == int(v) else None


def _header_cka(header: Mapping[str, Any], key: str) -> float:
    v = header.get(key) if isinstance(header, Mapping) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return math.nan
    return min(max(float(v), 0.0), 1.0)


def _list_steps(steps: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(s) for s in steps[:limit])
    more = len(steps) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _join(reasons: dict[str, list[int]]) -> str | None:
    if not reasons:
        return None
    return "; ".join(
        f"{why} (at step{'s' if len(at) > 1 else ''} {_list_steps(at)})"
        for why, at in reasons.items()
    )


def _prev_validity(steps, headers) -> tuple[np.ndarray, str | None]:
    ok = np.zeros(len(steps), bool)
    why: dict[str, list[int]] = {}
    kept = set(steps)
    for i in range(1, len(steps)):
        ref = _header_step(headers[i], "prev_step")
        before = steps[i - 1]
        if ref == before:
            ok[i] = True
        elif ref is None:
            why.setdefault(
                "the writer measured no step before this one: the steps before it come "
                "from another logger or a layer of another shape",
                [],
            ).append(steps[i])
        elif before < ref < steps[i] and ref not in kept:
            why.setdefault(
                f"step {ref}, the step logged before, was dropped by sampling; "
                "tensorboard --samples_per_plugin=activations=N keeps more steps",
                [],
            ).append(steps[i])
        else:
            why.setdefault(
                f"the writer measured against step {ref}, not the kept step before "
                f"({before}): the steps come from more than one logger",
                [],
            ).append(steps[i])
    return ok, _join(why)


def _start_validity(steps, headers) -> tuple[np.ndarray, str | None]:
    ok = np.zeros(len(steps), bool)
    why: dict[str, list[int]] = {}
    first = steps[0] if steps else None
    for i, s in enumerate(steps):
        ref = _header_step(headers[i], "start_step")
        if ref == first:
            ok[i] = True
        elif ref is not None and ref < first:
            why.setdefault(
                f"step {ref}, the first step logged, was dropped by sampling; "
                "tensorboard --samples_per_plugin=activations=N keeps more steps",
                [],
            ).append(s)
        else:
            why.setdefault(
                f"the writer's first step is {ref}, not the first kept step ({first}): "
                "the steps come from more than one logger",
                [],
            ).append(s)
    return ok, _join(why)


class Logged(NamedTuple):
    """One series' kept steps, as the rows are made from them."""

    steps: Sequence[int]  # increasing
    stats: Sequence[np.ndarray]  # each step's (probes, channels, fields) statistics
    headers: Sequence[Mapping[str, Any]]  # each step's decoded header
    fields: Sequence[str]  # the series' `stats_fields`


def _stack(stats, fields: Sequence[str], count: int) -> tuple[np.ndarray, dict[str, int]]:
    """The steps' statistics as one (steps, probes, channels, fields) float64
    array, and the index of each field name."""
    if len(stats) != count:
        raise ValueError(
            f"Expected one statistics array per step. Received: {count} steps, "
            f"{len(stats)} statistics arrays"
        )
    field = {name: i for i, name in enumerate(fields)}
    missing = [f for f in _BASE_FIELDS if f not in field]
    if missing:
        raise ValueError(f"Statistics lack the fields {missing}. Received: fields={list(fields)}")
    shapes = {np.shape(s) for s in stats}
    if len(shapes) > 1:
        raise ValueError(f"Statistics of every step must have one shape. Received: {shapes}")
    arr = np.array(stats, np.float64) if count else np.zeros((0, 0, 0, len(fields)))
    if arr.ndim != 4 or arr.shape[3] < len(fields):
        raise ValueError(
            f"Statistics must be (probes, channels, fields) with {len(fields)} fields. "
            f"Received: shape {arr.shape[1:]}"
        )
    return arr, field


def _series(logged: Logged) -> _Series:
    steps, stats, headers, fields = logged
    steps = [int(s) for s in steps]
    if len(headers) != len(steps):
        raise ValueError(
            f"Expected one header per step. Received: {len(steps)} steps, {len(headers)} headers"
        )
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"Steps must increase. Received: steps={steps}")
    arr, field = _stack(stats, fields, len(steps))
    has = all(f in field for f in MEASURE_FIELDS)
    if has:
        prev_ok, prev_reason = _prev_validity(steps, headers)
        start_ok, start_reason = _start_validity(steps, headers)
    else:
        prev_ok = start_ok = np.zeros(len(steps), bool)
        prev_reason = start_reason = NO_MEASURES
    return _Series(steps, arr, field, has, prev_ok, start_ok, prev_reason, start_reason)


def _change(diff_sq: np.ndarray, norm_sq: np.ndarray, ref_norm_sq: np.ndarray) -> np.ndarray:
    """||a - b|| / max(||a||, ||b||) from sums of squares; 0 where both are 0."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        den = np.sqrt(np.maximum(norm_sq, ref_norm_sq))
        out = np.where(den > 0, np.sqrt(diff_sq) / den, 0.0)
        out = np.clip(out, 0.0, 2.0)
    finite = np.isfinite(diff_sq) & np.isfinite(norm_sq) & np.isfinite(ref_norm_sq)
    return np.where(finite, out, np.nan)


def _changes(series: _Series, reduce) -> dict[str, np.ndarray]:
    """change_prev and change_start, (steps, ...) with `reduce` summing a
    (steps, probes, channels) array over what one value covers."""
    n = len(series.steps)
    norm = reduce(series.column("sq_norm"))
    shape = norm.shape
    prev = np.full(shape, np.nan)
    start = np.full(shape, np.nan)
    if n:
        diff_prev = reduce(series.column("sq_diff_prev"))
        diff_start = reduce(series.column("sq_diff_start"))
        ok = series.prev_ok[1:]
        prev[1:][ok] = _change(diff_prev[1:], norm[1:], norm[:-1])[ok]
        ok = series.start_ok
        start[ok] = _change(diff_start, norm, np.broadcast_to(norm[0], shape))[ok]
        # The first kept step against itself, whichever step the writer
        # started from.
        start[0] = np.where(np.isfinite(norm[0]), 0.0, np.nan)
    return {"change_prev": prev, "change_start": start}


def _dead(series: _Series) -> np.ndarray:
    """(steps, channels): every probe's map is exactly zero."""
    return (series.column("zero_fraction") == 1.0).all(axis=1)


def _finite_mean(means: np.ndarray, nonfinite: np.ndarray, axis) -> np.ndarray:
    """Mean of the finite values, from per-map means over finite values and
    the non-finite fraction (all maps of a layer have the same size)."""
    weight = np.clip(1.0 - nonfinite, 0.0, 1.0)
    weight = np.where(np.isfinite(means), weight, 0.0)
    total = weight.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(weight > 0, means, 0.0)
        out = (out * weight).sum(axis=axis) / total
    return np.where(total > 0, out, np.nan)


def channel_rows(logged: Logged) -> Rows:
    """Per channel, per kept step: `change_prev`, `change_start`, `dead`.
    Values are (channels, steps)."""
    series = _series(logged)
    values: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    if series.has_measures:
        values.update({k: v.T for k, v in _changes(series, lambda a: a.sum(axis=1)).items()})
    else:
        empty = np.full((series.stats.shape[2], len(series.steps)), np.nan)
        values.update(change_prev=empty, change_start=empty.copy())
    if series.prev_reason:
        reasons["change_prev"] = series.prev_reason
    if series.start_reason:
        reasons["change_start"] = series.start_reason
    values["dead"] = _dead(series).T
    return Rows(series.steps, values, reasons)


def layer_rows(logged: Logged) -> Rows:
    """Per kept step, for the whole layer: `change_prev`, `change_start`,
    `drift_prev`, `drift_start`, `dead_fraction`, `mean`. Values are (steps,)."""
    series = _series(logged)
    headers = logged.headers
    n = len(series.steps)
    values: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    if series.has_measures:
        values.update(_changes(series, lambda a: a.sum(axis=(1, 2))))
        cka_prev = np.array([_header_cka(h, "cka_prev") for h in headers], np.float64)
        cka_start = np.array([_header_cka(h, "cka_start") for h in headers], np.float64)
        values["drift_prev"] = np.where(series.prev_ok, 1.0 - cka_prev, np.nan)
        values["drift_start"] = np.where(series.start_ok, 1.0 - cka_start, np.nan)
    else:
        for k in ("change_prev", "change_start", "drift_prev", "drift_start"):
            values[k] = np.full(n, np.nan)
    for k in ("change_prev", "drift_prev"):
        if series.prev_reason:
            reasons[k] = series.prev_reason
    for k in ("change_start", "drift_start"):
        if series.start_reason:
            reasons[k] = series.start_reason
    dead = _dead(series)
    channels = dead.shape[1] if dead.ndim == 2 else 0
    values["dead_fraction"] = dead.mean(axis=1) if channels else np.full(n, np.nan)
    values["mean"] = _finite_mean(
        series.column("mean"), series.column("nonfinite_fraction"), axis=(1, 2)
    )
    return Rows(series.steps, values, reasons)


def statistic_rows(stats: Sequence[np.ndarray], fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Per channel, per step, over the probes: `mean` (of the finite values),
    `max` (of the finite values; NaN where none) and `zero_fraction`.
    Values are (channels, steps) float64, NaN for null."""
    arr, field = _stack(stats, fields, len(stats))
    if not len(stats):
        empty = np.zeros((0, 0))
        return {"mean": empty, "max": empty.copy(), "zero_fraction": empty.copy()}
    maxima = arr[..., field["max"]]
    top = np.where(np.isfinite(maxima), maxima, -np.inf).max(axis=1)
    top = np.where(np.isfinite(top), top, np.nan)
    mean = _finite_mean(arr[..., field["mean"]], arr[..., field["nonfinite_fraction"]], axis=1)
    return {
        "mean": mean.T,
        "max": top.T,
        "zero_fraction": arr[..., field["zero_fraction"]].mean(axis=1).T,
    }


def events(steps: Sequence[int], dead: np.ndarray) -> list[dict[str, Any]]:
    """Deaths and revivals from a (channels, steps) `dead` row set: a
    channel "died" at the first kept step where it is dead after a kept step
    where it was not, and "revived" the other way round. Sorted by step,
    then channel."""
    dead = np.asarray(dead, bool)
    steps = [int(s) for s in steps]
    if dead.ndim != 2 or dead.shape[1] != len(steps):
        raise ValueError(
            f"dead must be (channels, {len(steps)} steps). Received: dead.shape={dead.shape}"
        )
    flips = dead[:, 1:] != dead[:, :-1]
    out = []
    for i, c in zip(*np.nonzero(flips.T)):
        kind = "died" if dead[c, i + 1] else "revived"
        out.append({"channel": int(c), "kind": kind, "step": steps[i + 1]})
    return out


def never_active(dead: np.ndarray) -> list[int]:
    """Channels dead at every kept step (none when there is no step)."""
    dead = np.asarray(dead, bool)
    if dead.ndim != 2:
        raise ValueError(f"dead must be (channels, steps). Received: dead.shape={dead.shape}")
    if dead.shape[1] == 0:
        return []
    return [int(c) for c in np.flatnonzero(dead.all(axis=1))]
