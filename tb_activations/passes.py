"""The writer's passes over a logged map, for `measures.Tracker`: block by
block while each block is in cache, the map's sums, its differences to the
references and CKA's products (the definitions are in docs/measures.md,
the costs in its "Cost" section)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "BLAS",
    "Map",
    "base_bytes",
    "blocks",
    "cka",
    "column_reduce",
    "column_sums",
    "fill",
    "frobenius_sq",
    "one_pass",
    "recentre",
    "square_sums",
    "uncentred",
]

# The Gram products run with BLAS on one thread. The tracker works in the
# writer's background thread while the framework trains on every core; a
# multi-threaded BLAS then spins against training for the same cores, and a
# VGG16 step's measures went from 0.13 s to 3 s on two loaded cores.
BLAS = ThreadpoolController()

# Values per chunk in the sums: float32 partial sums of at most
# _BLOCK_ROWS rows go into float64 totals, so the error stays within about
# 1e-5 of float64's while the temporaries stay in cache. The partial sums
# are products with a vector of ones: BLAS reduces down the columns several
# times faster than numpy's reductions of a narrow matrix. Blocks of 2**18
# values (1 MB) rather than 2**17: fewer, larger BLAS calls, about 8% off
# the tracker's pass over the demo CNN's 256-sample set (bench_probe_set.py).
_CHUNK_VALUES = 1 << 18
_BLOCK_ROWS = 1024


def square_sums(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(P, n, C) float32 to (P, C) float64 sums of x**2, or of (x - ref)**2."""
    probes, n, c = x.shape
    out = np.zeros((probes, c), np.float64)
    rows = min(n, _BLOCK_ROWS)
    if not probes or not n or not c:
        return out
    # Whole probes per chunk when they are small, else row blocks of one.
    per = max(1, _CHUNK_VALUES // (n * c))
    buf = np.empty((min(per, probes), rows, c), np.float32)
    ones = np.ones((1, rows), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for p in range(0, probes, per):
            count = min(per, probes - p)
            for i in range(0, n, rows):
                part = x[p : p + count, i : i + rows]
                b = buf[:count, : part.shape[1]]
                if ref is not None:
                    np.subtract(part, ref[p : p + count, i : i + rows], out=b)
                    np.multiply(b, b, out=b)
                else:
                    np.multiply(part, part, out=b)
                out[p : p + count] += (ones[:, : part.shape[1]] @ b)[:, 0, :]
    return out


def column_sums(x: np.ndarray) -> np.ndarray:
    """(n, C) float32 to (C,) float64 sums, in blocks like `square_sums`."""
    n, c = x.shape
    out = np.zeros(c, np.float64)
    ones = np.ones(min(n, _BLOCK_ROWS), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, n, _BLOCK_ROWS):
            part = x[i : i + _BLOCK_ROWS]
            out += ones[: len(part)] @ part
    return out


def column_reduce(ufunc: np.ufunc, m: np.ndarray, width: int = 1024) -> np.ndarray:
    """`ufunc.reduce` down the rows of a (..., rows, columns) array
    (`np.maximum`: each column's max, per leading index). Rows are folded
    into rows of about `width` values first: numpy reduces a narrow matrix
    down its columns an order of magnitude slower than a wide one. At least
    one row."""
    *lead, rows, u = m.shape
    k = max(1, min(rows, width // max(u, 1)))
    if lead:
        # A fold that divides the rows: slicing off a remainder would make
        # the leading rows a copy.
        while rows % k:
            k -= 1
    whole = rows // k * k
    folded = m[..., :whole, :].reshape(*lead, whole // k, k * u)
    out = ufunc.reduce(ufunc.reduce(folded, axis=-2).reshape(*lead, k, u), axis=-2)
    if whole < rows:
        out = ufunc(out, ufunc.reduce(m[..., whole:, :], axis=-2))
    return out


def blocks(probes: int, positions: int, channels: int, values: int):
    """(first probe, probes, first position, positions) blocks of about
    `values` values of a (probes, positions, channels) array: whole probes
    when one is smaller than that, else rows of one probe. Either way a
    block of a C-contiguous array is one contiguous (rows, channels) matrix,
    and sums over its positions are sums per probe."""
    per = values // max(positions * channels, 1)
    if per >= 1:
        for p in range(0, probes, per):
            yield p, min(per, probes - p), 0, positions
        return
    rows = max(1, values // max(channels, 1))
    for p in range(probes):
        for i in range(0, positions, rows):
            yield p, 1, i, min(rows, positions - i)


def base_bytes(a: np.ndarray) -> int:
    """The size of the array that holds `a`'s memory: keeping a view of a
    larger one (the first replica's share of a batch) would keep it all."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.nbytes


def frobenius_sq(m: np.ndarray) -> float:
    m = m.ravel()
    return float(np.dot(m.astype(np.float64), m.astype(np.float64)))


@dataclasses.dataclass
class Map:
    """One logged map and what CKA needs of it.

    `mean` holds the column means CKA centres by (0 where CKA is
    undefined). `gram_norm` is ||X^T X||_F = ||X X^T||_F of the centred
    matrix X, or None when CKA with this map is undefined. `gram` (X X^T,
    n x n) is kept only when positions n < channels c, where the cross term
    is the cheap sum(K_s * K_r); otherwise the cross term ||X_r^T X_s||_F^2
    comes from the products of the update's pass.
    """

    step: int
    x: np.ndarray  # (probes, height, width, channels) float32, C-contiguous
    mean: np.ndarray  # (channels,) float32
    gram_norm: float | None
    gram: np.ndarray | None
    own: bool  # `x` is the tracker's copy, free for reuse once dropped
    # sum(x - mean) per channel in float64: what float32 means leave.
    resid: np.ndarray | None = None
    # Every mean within twice its channel's spread: the map's float32
    # products need not be centred first (corrected after, exactly).
    narrow: bool = False


def one_pass(
    x3: np.ndarray,
    mean: np.ndarray,
    refs: Sequence[Map],
    products: bool,
    copy: np.ndarray | None = None,
    visit=None,
    centre_refs: bool = True,
):
    """One pass over the (probes, positions, channels) map, block by block
    while each block is in cache: into `copy` when given, the centred Gram
    X^T X and the cross products X_r^T X with each reference's centred map
    (with `products`, c <= n), centred in a small buffer (not at all when
    `mean` is 0: the caller corrects), and per (probe, channel) the sum of
    squares of the map's difference to each reference.

    Float32 products and sums within a block, float64 across blocks."""
    probes, positions, c = x3.shape
    gram = np.zeros((c, c)) if products else None
    crosses = [np.zeros((c, c)) if products and r.gram_norm is not None else None for r in refs]
    sq_diffs = [np.zeros((probes, c)) for _ in refs]
    parts = list(blocks(probes, positions, c, _CHUNK_VALUES))
    size = max((n * rows * c for _, n, _, rows in parts), default=0)
    diff, centred, ref_centred = (np.empty(size, np.float32) for _ in range(3))
    ones = np.ones((1, max((rows for *_, rows in parts), default=0)), np.float32)
    ref_maps = [r.x.reshape(x3.shape) for r in refs]
    # References whose products are made uncentred, X_r^T (X - mean),
    # for the caller to correct (`uncentred`).
    plain = [not centre_refs and r.narrow for r in refs]
    # The means repeated along a block's rows: a subtraction whose inner
    # loop runs over a whole row of the block, not over c values, is
    # several times faster for the few channels of early layers.
    tiles = [np.tile(m, ones.shape[1]) for m in [mean, *(r.mean for r in refs)]]
    # Means of 0: the map's own products, with no subtraction.
    centre = bool(mean.any())
    with np.errstate(over="ignore", invalid="ignore"):
        for p, count, i, rows in parts:
            width = rows * c
            src = x3[p : p + count, i : i + rows].reshape(count, width)
            if copy is not None:
                np.copyto(copy[p : p + count, i : i + rows].reshape(count, width), src)
            squares = None
            if gram is not None:
                flat = src.reshape(-1, c)
                if centre:
                    cur = centred[: count * width].reshape(count, width)
                    flat = np.subtract(src, tiles[0][:width], out=cur).reshape(-1, c)
                    gram += flat.T @ flat
                elif visit is not None and rows >= 4 * c:
                    # Uncentred, a Gram per sample: their diagonals are the
                    # sums of squares the set's sums need, which spares
                    # those a pass (where positions outnumber channels
                    # enough for the smaller products to cost no more).
                    by_sample = flat.reshape(count, rows, c)
                    per = np.matmul(by_sample.transpose(0, 2, 1), by_sample)
                    gram += per.sum(axis=0, dtype=np.float64)
                    squares = np.diagonal(per, axis1=1, axis2=2)
                else:
                    gram += flat.T @ flat
            if visit is not None:
                visit.add(p, x3[p : p + count, i : i + rows], squares)
            for k in range(len(refs)):
                ref = ref_maps[k][p : p + count, i : i + rows].reshape(count, width)
                if crosses[k] is not None and plain[k]:
                    crosses[k] += ref.reshape(-1, c).T @ flat
                elif crosses[k] is not None:
                    rc = ref_centred[: count * width].reshape(count, width)
                    np.subtract(ref, tiles[k + 1][:width], out=rc)
                    crosses[k] += rc.reshape(-1, c).T @ flat
                d = diff[: count * width].reshape(count, width)
                np.subtract(src, ref, out=d)
                np.multiply(d, d, out=d)
                sq_diffs[k][p : p + count] += (ones[:, :rows] @ d.reshape(count, rows, c))[:, 0, :]
    return gram, crosses, sq_diffs


def uncentred(refs, crosses, s):
    """Cross products made with uncentred references (`one_pass` with
    `centre_refs=False`, for the references whose `narrow` holds), made
    those of the centred ones: X_r^T Y - mean_r (1^T Y), with `s` = 1^T Y
    the column sums of the other factor, in float64. A non-finite map makes
    NaNs here quietly: its step's measures are null."""
    with np.errstate(over="ignore", invalid="ignore"):
        return [
            cross - np.outer(r.mean.astype(np.float64), s)
            if cross is not None and r.narrow
            else cross
            for r, cross in zip(refs, crosses)
        ]


def recentre(x3, mean, shift, refs, col_sums, sq_sums, gram, crosses):
    """The Gram and cross products of a pass that centred the map by
    `shift` (the previous step's means), made those of the map centred by
    its own `mean`: exact algebra, X - mean = (X - shift) - 1 f^T with f =
    mean - shift. Float32 products of X - shift carry rounding in
    proportion to |X - shift|, so where a mean moved by more than twice its
    channel's spread since the previous step, the products are made again
    with the map centred by its own means."""
    n = x3.shape[0] * x3.shape[1]
    m = col_sums / n
    var = sq_sums / n - m * m
    e = m - shift
    with np.errstate(over="ignore", invalid="ignore"):
        near = bool(np.isfinite(var).all() and (e * e <= 4 * np.maximum(var, 0)).all())
    if not near:
        gram, crosses, _ = one_pass(x3, mean, refs, True)
        return gram, crosses
    f = mean.astype(np.float64) - shift
    s = col_sums - n * shift.astype(np.float64)  # sum(X - shift)
    gram = gram - np.outer(s, f) - np.outer(f, s) + n * np.outer(f, f)
    # (X_r - mean_r)^T (X - mean) = (X_r - mean_r)^T (X - shift) - resid_r f^T
    crosses = [
        None if cross is None else cross - np.outer(r.resid if r.resid is not None else 0, f)
        for r, cross in zip(refs, crosses)
    ]
    return gram, crosses


def cka(cur: Map, ref: Map, sq_diff: np.ndarray, cross: np.ndarray | None) -> float | None:
    if cur.gram_norm is None or ref.gram_norm is None:
        return None
    if not sq_diff.any():
        # The same map: exactly 1, where float32 Gram products would leave
        # a drift of 1e-7 on a layer that did not move (a frozen one).
        return 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        if cur.gram is not None and ref.gram is not None:
            hsic = float(np.dot(cur.gram.ravel().astype(np.float64), ref.gram.ravel()))
        elif cross is not None:
            hsic = frobenius_sq(cross)
        else:
            return None
    value = hsic / (cur.gram_norm * ref.gram_norm)
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), 1.0)


def fill(visit, x3: np.ndarray) -> None:
    """Feeds a (probes, positions, channels) map to `visit.add`, block by
    block, with nothing else to do in the same pass."""
    probes, positions, c = x3.shape
    for p, count, i, rows in blocks(probes, positions, c, _CHUNK_VALUES):
        visit.add(p, x3[p : p + count, i : i + rows])
