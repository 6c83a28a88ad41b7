"""The probe set's health measures: dormant units, effective rank,
similarity, rms, saturation and the first non-finite step.

The definitions are in docs/measures.md. For a layer at a logged step, the
N samples of the probe set give the unit matrix M (rows: every sample x
position; columns: the units, i.e. the logged channels, or a Dense layer's
units) and the pooled features G (N x units, each unit's mean over the
positions of a sample).

Two halves, numpy only:

- `measure`, on the writer's side, in its background thread, on the
  float32 activations of the whole set: per-unit sums in float64 over chunks
  of rows (as `encoding.compute_stats`), the set statistics of each logged
  channel, and the layer values that need the full matrix (effective rank,
  similarity, rms, saturation), which go into the step's header.
- `unit_rows`, `layer_rows` and `first_nonfinite`, on the reader's side,
  turn a series' kept steps into rows, as `measures` does for the change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tb_activations import metadata, passes
from tb_activations.passes import BLAS

__all__ = [
    "DEFAULT_TAU",
    "LAYER_MEASURES",
    "UNIT_MEASURES",
    "bounded_activation",
    "effective_rank",
    "first_nonfinite",
    "layer_rows",
    "measure",
    "similarity",
    "unit_rows",
]

# Sokar et al. (2023)'s threshold for a tau-dormant unit.
DEFAULT_TAU = 0.025

# A saturated value: |tanh| above this, or a sigmoid this close to 0 or 1.
SATURATED = 0.99

UNIT_MEASURES = ("on_rate", "dormant_score")
LAYER_MEASURES = ("dormant_fraction", "effective_rank", "similarity", "rms", "saturation")

NO_SET_MEASURES = "logged by a version without probe-set measures"

# The tracker's pass cuts the blocks `SetSums` gets; its own passes cut the same.
_CHUNK_VALUES = passes._CHUNK_VALUES


def bounded_activation(layer) -> str | None:
    """`"tanh"` or `"sigmoid"` when the layer's output is that function's
    (its `activation` attribute, as on Dense, Conv or Activation layers),
    else None. Recurrent layers apply theirs inside the cell, so not theirs;
    a wrapper's (`TimeDistributed`'s) output is the wrapped layer's."""
    wrapped = getattr(layer, "layer", None)
    if wrapped is not None and wrapped is not layer:
        return bounded_activation(wrapped)
    if hasattr(layer, "cell"):
        return None
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", fn if isinstance(fn, str) else None)
    return name if name in metadata.BOUNDED_ACTIVATIONS else None


def effective_rank(g: np.ndarray) -> float | None:
    """exp of the entropy of the normalized nonzero singular values of `g`
    with its columns centred (Roy & Vetterli, 2007); None when every
    singular value is 0 or a value is not finite."""
    g = np.asarray(g, np.float64)
    if g.size == 0 or not np.isfinite(g).all():
        return None
    centred = g - g.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    top = s.max(initial=0.0)
    if not top > 0:
        return None
    # "Nonzero" as numpy's matrix_rank counts it: above rounding's reach.
    s = s[s > top * max(centred.shape) * np.finfo(np.float64).eps]
    p = s / s.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def similarity(g: np.ndarray) -> float | None:
    """Mean cosine similarity over pairs of rows of `g` (uncentred), over the
    rows that are not zero; None with fewer than 2 or a non-finite value."""
    g = np.asarray(g, np.float64)
    if not np.isfinite(g).all():
        return None
    norms = np.sqrt(np.einsum("nc,nc->n", g, g))
    keep = norms > 0
    n = int(keep.sum())
    if n < 2:
        return None
    total = (g[keep] / norms[keep, None]).sum(axis=0)
    # sum over i != j of cos = |sum of unit vectors|^2 - n
    return float((total @ total - n) / (n * (n - 1)))


def _sample_matrix(x: np.ndarray, layout: str) -> np.ndarray:
    """(N, H, W, C) logged activations to a C-contiguous (N, positions,
    units) array: a Dense layer's units count as channels, at one position."""
    n = x.shape[0]
    if layout == "units":
        return np.ascontiguousarray(x).reshape(n, 1, -1)
    return np.ascontiguousarray(x).reshape(n, x.shape[1] * x.shape[2], x.shape[-1])


class SetSums:
    """Sums over a (samples, positions, units) float32 array, fed block by
    block (`add`, as `passes.blocks` cuts it; the tracker's pass feeds
    them while each block is in cache): per sample and unit of the values
    and of their squares (the pooled features, the tracker's sums of
    squares), per unit of |a|, of a > 0 and of a == 0, and each unit's max.
    Float32 partial sums of a block (products with a vector of ones, which
    BLAS does several times faster than numpy's column reductions) go into
    float64 totals."""

    def __init__(self, shape: tuple[int, int, int], activation: str | None):
        probes, positions, u = shape
        self.shape = shape
        self.activation = activation
        self.per_x, self.per_sq = np.zeros((probes, u)), np.zeros((probes, u))
        self.abs, self.positive, self.zeros = np.zeros(u), np.zeros(u), np.zeros(u)
        self.top = np.full(u, -np.inf, np.float32)
        self.saturated = 0
        self._buf = self._flags = self._ones = np.empty(0, np.float32)

    def add(self, p: int, block: np.ndarray, squares: np.ndarray | None = None) -> None:
        """Adds a C-contiguous (count, rows, units) block: samples p.. p + count.
        `squares`: the block's (count, units) sums of squares when the caller
        has them (the diagonals of per-sample Gram products)."""
        count, rows, u = block.shape
        length = count * rows
        if self._buf.size < length * u:
            self._buf, self._flags = (np.empty(length * u, np.float32) for _ in range(2))
            self._ones = np.ones(length, np.float32)
        part = block.reshape(length, u)
        one = self._ones[:length]
        b = self._buf[: length * u].reshape(length, u)
        f = self._flags[: length * u].reshape(length, u)
        with np.errstate(over="ignore", invalid="ignore"):
            o = self._ones[:rows].reshape(1, rows)
            block_sums = part if rows == 1 else (o @ block)[:, 0, :]
            if squares is None:
                sq = np.multiply(part, part, out=b)
                squares = sq if rows == 1 else (o @ sq.reshape(count, rows, u))[:, 0, :]
            self.per_sq[p : p + count] += squares
            self.per_x[p : p + count] += block_sums
            zeros = one @ np.equal(part, 0, out=f, casting="unsafe")
            self.zeros += zeros
            if self.activation is None and length and part.min() >= 0:
                # No negative value (a ReLU's block): |a| is a, and every
                # value that is not 0 is positive.
                self.abs += block_sums.sum(axis=0, dtype=np.float64)
                self.positive += length - zeros
            else:
                a = np.abs(part, out=b)
                self.abs += one @ a
                if self.activation == "tanh":
                    self.saturated += np.count_nonzero(a > SATURATED)
                elif self.activation == "sigmoid":
                    self.saturated += np.count_nonzero(part < 1 - SATURATED)
                    self.saturated += np.count_nonzero(part > SATURATED)
                self.positive += one @ np.greater(part, 0, out=f, casting="unsafe")
            np.maximum(self.top, passes.column_reduce(np.maximum, part), out=self.top)

    def result(self) -> dict[str, Any]:
        probes, positions, u = self.shape
        return {
            "per_x": self.per_x,
            "per_sq": self.per_sq,
            "total": self.per_x.sum(axis=0),
            "sq": self.per_sq.sum(axis=0),
            "abs": self.abs,
            "positive": self.positive,
            "zeros": self.zeros,
            "max": self.top.astype(np.float64),
            "finite": np.full(u, probes * positions, np.int64),
            "saturated": self.saturated,
        }


def set_sums(x: np.ndarray, layout: str, activation: str | None = None) -> SetSums | None:
    """Empty sums for `x` for the tracker's pass to fill (`measures.Tracker.update`'s
    `sums`), then `measure_with_sums(..., sums=)`; None for a Dense layer's
    units, which the tracker sees as positions of one channel."""
    if layout == "units":
        return None
    return SetSums(_sample_matrix(np.asarray(x, np.float32), layout).shape, activation)


def _sums(x3: np.ndarray, activation: str | None) -> dict[str, Any]:
    """`SetSums` over the whole array, block by block."""
    acc = SetSums(x3.shape, activation)
    for p, count, i, rows in passes.blocks(*x3.shape, _CHUNK_VALUES):
        acc.add(p, x3[p : p + count, i : i + rows])
    return acc.result()


def _finite_sums(m: np.ndarray, sums: dict[str, Any]) -> None:
    """Replaces `total`, `max` and `finite` with their values over the
    finite entries only (a second pass, for a layer with NaN or infinity)."""
    rows, u = m.shape
    step = max(1, _CHUNK_VALUES // max(u, 1))
    total = np.zeros(u)
    finite = np.zeros(u, np.int64)
    top = np.full(u, -np.inf)
    for i in range(0, rows, step):
        part = m[i : i + step]
        ok = np.isfinite(part)
        total += np.where(ok, part, 0).sum(axis=0, dtype=np.float64)
        finite += ok.sum(axis=0)
        top = np.maximum(top, np.where(ok, part, -np.inf).max(axis=0))
    sums.update(total=total, finite=finite, max=top)


def measure(
    x: np.ndarray, layout: str, activation: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The probe set's values of one layer at one step.

    `x` is the logged (N, H, W, C) float32 array of the whole set. Returns
    `(set_base, units, header)`: float32 (C, 4) `metadata.SET_FIELDS[:4]`
    per logged channel (mean and max of the finite values, zero and
    non-finite fractions); float32 (units, len(`metadata.UNIT_FIELDS`));
    and the `metadata.SET_HEADER_KEYS` values. A layer with a value that is
    not finite has NaN unit values and null layer values.
    """
    return measure_with_sums(x, layout, activation)[:3]


def measure_with_sums(
    x: np.ndarray, layout: str, activation: str | None = None, sums: SetSums | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """`measure`, and the sums `measures.Tracker.update` takes (`sums`) to
    spare its own pass over the same array: float64 (N, C) sums of squares
    and (C,) sums, or None for a Dense layer's units (the tracker sees them
    as positions of one channel) and where float32 sums did not hold.
    `sums` given (`set_sums`, filled by the tracker's pass) spares this
    function's own pass."""
    with BLAS.limit(limits=1, user_api="blas"):
        return _measure(np.asarray(x, np.float32), layout, activation, sums)


def _measure(x, layout, activation, given=None):
    x3 = _sample_matrix(x, layout)
    n, positions, u = x3.shape
    m = x3.reshape(-1, u)
    rows = len(m)
    sums = given.result() if given is not None else _sums(x3, activation)
    finite = bool(np.isfinite(sums["total"]).all() and np.isfinite(sums["sq"]).all())
    shared = (sums["per_sq"], sums["total"]) if finite and layout != "units" else None
    overflow = not finite and bool(np.isfinite(m).all())
    if overflow:
        # Finite values whose float32 squares or sums overflow: float64 throughout.
        m = m.astype(np.float64)
        sums.update(
            per_x=x3.sum(axis=1, dtype=np.float64),
            total=m.sum(axis=0),
            sq=np.einsum("nc,nc->c", m, m),
            abs=np.abs(m).sum(axis=0),
        )
        finite = True
    units = np.full((u, len(metadata.UNIT_FIELDS)), np.nan, np.float32)
    header: dict[str, Any] = {"nonfinite": not finite}
    header.update(rms=None, effective_rank=None, similarity=None, saturation=None)
    if finite:
        units[:, 0] = sums["positive"] / rows if rows else np.nan
        units[:, 1] = sums["abs"] / rows if rows else np.nan
        if m.size:
            header["rms"] = math.sqrt(sums["sq"].sum() / m.size)
            # The pooled features: each sample's sums over its positions.
            g = sums["per_x"] / positions
            header["effective_rank"] = effective_rank(g)
            header["similarity"] = similarity(g)
            if activation in metadata.BOUNDED_ACTIVATIONS:
                header["saturation"] = sums["saturated"] / m.size
    else:
        _finite_sums(m, sums)
    count = sums["finite"]
    with np.errstate(invalid="ignore", divide="ignore"):
        if layout == "units":
            kept = count.sum()
            base = [
                sums["total"].sum() / kept if kept else np.nan,
                sums["max"].max() if kept else np.nan,
                sums["zeros"].sum() / m.size,
                1.0 - kept / m.size,
            ]
            set_base = np.array([base], np.float32)
        else:
            set_base = np.stack(
                [
                    np.where(count > 0, sums["total"] / count, np.nan),
                    np.where(count > 0, sums["max"], np.nan),
                    sums["zeros"] / rows,
                    1.0 - count / rows,
                ],
                axis=1,
            ).astype(np.float32)
    return set_base, units, header, shared


# -- reader side ----------------------------------------------------------------


def _layer_flags(headers: Sequence[Mapping[str, Any]], nonfinite_stats) -> np.ndarray:
    """(steps,) bool: the layer had a NaN or infinity at the step, from the
    header's `nonfinite` where logged, else from the statistics."""
    out = np.zeros(len(headers), bool)
    for i, h in enumerate(headers):
        v = h.get("nonfinite") if isinstance(h, Mapping) else None
        out[i] = v if isinstance(v, bool) else bool(nonfinite_stats[i])
    return out


def first_nonfinite(steps: Sequence[int], headers, nonfinite_stats) -> int | None:
    """The first kept step at which the layer had a NaN or an infinity."""
    flags = _layer_flags(headers, nonfinite_stats)
    return int(steps[int(np.argmax(flags))]) if flags.any() else None


def _nonfinite_reason(steps, flags) -> str:
    at = [int(s) for s, f in zip(steps, flags) if f]
    shown = ", ".join(map(str, at[:5])) + (f" and {len(at) - 5} more" if len(at) > 5 else "")
    plural = "s" if len(at) > 1 else ""
    return f"non-finite values (NaN or infinity) in the layer at step{plural} {shown}"


def _scores(units: np.ndarray) -> np.ndarray:
    """(steps, units) abs means to dormant scores; NaN where the layer's
    mean is 0 or unknown."""
    if not units.shape[1]:
        return np.full(units.shape, np.nan)  # no units: no mean to divide by
    with np.errstate(invalid="ignore", divide="ignore"):
        den = units.mean(axis=1, keepdims=True)
        return np.where(den > 0, units / den, np.nan)


def unit_rows(
    steps: Sequence[int],
    headers: Sequence[Mapping[str, Any]],
    units: Sequence[np.ndarray | None],
    fields: Sequence[str],
    nonfinite_stats,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per unit, per kept step: `on_rate` and `dormant_score`, (units,
    steps) float64 with NaN for null, and the reasons for nulls beyond the
    definition's."""
    flags = _layer_flags(headers, nonfinite_stats)
    count = max((u.shape[0] for u in units if u is not None), default=0)
    on = np.full((len(steps), count), np.nan)
    absolute = np.full((len(steps), count), np.nan)
    field = {f: i for i, f in enumerate(fields)}
    for i, u in enumerate(units):
        if u is not None and u.shape[0] == count and not flags[i]:
            on[i] = u[:, field["on_rate"]]
            absolute[i] = u[:, field["abs_mean"]]
    reasons = {}
    if any(u is None for u in units) or "on_rate" not in field:
        reasons = dict.fromkeys(UNIT_MEASURES, NO_SET_MEASURES)
    elif flags.any():
        reasons = dict.fromkeys(UNIT_MEASURES, _nonfinite_reason(steps, flags))
    return {"on_rate": on.T, "dormant_score": _scores(absolute).T}, reasons


def layer_rows(
    steps: Sequence[int],
    headers: Sequence[Mapping[str, Any]],
    units: Sequence[np.ndarray | None],
    fields: Sequence[str],
    nonfinite_stats,
    activation: str | None,
    tau: float = DEFAULT_TAU,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per kept step, for the whole layer: `LAYER_MEASURES` (steps,)
    float64 with NaN for null, and the reasons for nulls beyond the
    definition's. `dormant_fraction` counts the units whose score is at
    most `tau`."""
    if not (isinstance(tau, (int, float)) and 0 <= tau):
        raise ValueError(f"tau must be a number >= 0. Received: tau={tau!r}")
    rows, reasons = unit_rows(steps, headers, units, fields, nonfinite_stats)
    scores = rows["dormant_score"]
    if scores.shape[0]:
        known = np.isfinite(scores).all(axis=0)
        fraction = np.where(known, (scores <= tau).mean(axis=0), np.nan)
    else:
        fraction = np.full(scores.shape[1], np.nan)  # no units, no fraction
    values = {"dormant_fraction": fraction}
    for key in LAYER_MEASURES[1:]:
        got = [h.get(key) if isinstance(h, Mapping) else None for h in headers]
        values[key] = np.array(
            [
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                for v in got
            ],
            np.float64,
        ).reshape(len(steps))
    out = {k: reasons[UNIT_MEASURES[0]] for k in LAYER_MEASURES if reasons}
    if activation not in metadata.BOUNDED_ACTIVATIONS:
        # Null by definition: saturation applies to bounded activations only.
        out.pop("saturation", None)
    return values, out
