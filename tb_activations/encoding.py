"""Activations (numpy) to the blobs of one step: statistics and PNGs.

Pure numpy and Pillow, so the result does not depend on which Keras backend
computed the activations. See `metadata` for the layout of the blobs.
"""

from __future__ import annotations

import io
import math
import zlib
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from tb_activations import metadata, passes

# PNGs are Pillow's, with its adaptive row filters and zlib's run-length
# strategy: activation maps are smooth and, after a ReLU, mostly runs of
# zeros, which run-length matching finds about as well as zlib's full search
# (the same bytes, give or take 2%, on VGG16's five `blockN_conv1` layers) at
# half the time (benchmarks/bench_writer.py's PNG table).
PNG_COMPRESS_LEVEL = 6
PNG_STRATEGY = zlib.Z_RLE

# Pixels a PNG holds at most when it stacks several channels
# (`metadata.LayerInfo.channels_per_image`). One PNG per channel costs about
# 40 us of Python and zlib's setup each, a quarter of the encoding time on
# VGG16's small maps; past about 2**15 pixels, stacking more saves nothing
# (benchmarks/bench_writer.py's PNG table), and a reader that wants one
# channel decodes no more than this.
IMAGE_PIXELS = 1 << 16

# A layer's pictures smaller than this (pixels before any downscale) are
# encoded in the caller's thread, not on the pool: about 110 ns a pixel, so
# at most about 30 ms. The pool's threads, running beside the writer's pass
# over the probe set on the same cores, cost more CPU than they save wall
# time there: with the demo CNN's 8 pictured samples (at most 131,072
# pixels a layer) on the pool, the writer's CPU per event was 1.21x the
# forward pass's, and 1.12x encoded in its own thread
# (benchmarks/results-probe-set.md). A large layer (VGG16's `block1_conv1`,
# 3.2 million pixels a probe) still has its PNGs made in parallel.
POOL_PIXELS = 1 << 18


def channels_per_image(height: int, width: int, channels: int) -> int:
    """How many `height` x `width` channel maps the writer stacks in one PNG."""
    return max(1, min(channels, IMAGE_PIXELS // max(1, height * width)))


def layout_of(rank: int) -> str:
    """How an output of this rank (batch included) is shown."""
    layouts = {2: "units", 3: "sequence", 4: "image", 5: "image"}
    if rank not in layouts:
        raise ValueError(
            f"Only outputs of rank 2 to 5 (batch included) can be shown. Received: rank={rank}"
        )
    return layouts[rank]


def to_nhwc(x: np.ndarray, data_format: str = "channels_last") -> np.ndarray:
    """Brings any loggable output to (N, H, W, C).

    Rank 2 (N, U) becomes one channel, a 1 x U strip; rank 3 (N, T, C) becomes
    C channels of 1 x T; rank 5 (N, D, H, W, C) is averaged over depth D.
    """
    x = np.asarray(x)
    channels_first = data_format == "channels_first"
    if x.ndim == 2:
        return x[:, None, :, None]
    if x.ndim == 3:
        if channels_first:
            x = x.transpose(0, 2, 1)
        return x[:, None, :, :]
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1) if channels_first else x
    if x.ndim == 5:
        if channels_first:
            x = x.transpose(0, 2, 3, 4, 1)
        with np.errstate(invalid="ignore", over="ignore"):
            return x.mean(axis=1, dtype=np.float32)
    layout_of(x.ndim)  # raises
    raise AssertionError("unreachable")


def rank5_reduction(data_format: str, axis_name: str = "depth") -> str:
    """What `to_nhwc` did to a rank-5 output, for `LayerInfo.reduction`:
    `axis_name` is "time" for a layer applied to each frame."""
    axis = 2 if data_format == "channels_first" else 1
    return f"mean over {axis_name} (axis {axis} of the 5-D output)"


# Rows per chunk when summing: float64 partial sums of a chunk of float32
# maps stay in cache, where whole-map float64 temporaries (50 MB for a
# 224 x 224 x 64 map) cost page faults and memory traffic.
_CHUNK_VALUES = 1 << 17


def compute_stats(x: np.ndarray) -> np.ndarray:
    """Per (probe, channel) statistics of an (N, H, W, C) array.

    Returns float32 (N, C, len(STATS_FIELDS)). min, max, mean and std are over
    the finite values only; the last field says how many were not finite. A
    channel with no finite value has NaN for the first four.
    """
    x = np.asarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    count = h * w
    stats = np.empty((n, c, len(metadata.STATS_FIELDS)), dtype=np.float32)
    lo, hi = passes.column_reduce(np.minimum, flat), passes.column_reduce(np.maximum, flat)
    # min and max are NaN or infinite wherever a channel has a value that is.
    if np.isfinite(lo).all() and np.isfinite(hi).all():
        stats[..., 0], stats[..., 1] = lo, hi
        mean, var, zeros = _finite_moments(flat)
        stats[..., 2] = mean
        stats[..., 3] = np.sqrt(var)
        stats[..., 4] = zeros / count
        stats[..., 5] = 0.0
        return stats
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats[..., 0] = np.where(finite, flat, np.inf).min(axis=1)
        stats[..., 1] = np.where(finite, flat, -np.inf).max(axis=1)
        n_finite = finite.sum(axis=1)
        clean = np.where(finite, flat, 0.0).astype(np.float64)
        mean = clean.sum(axis=1) / n_finite
        var = (np.where(finite, clean - mean[:, None, :], 0.0) ** 2).sum(axis=1) / n_finite
        stats[..., 2] = mean
        stats[..., 3] = np.sqrt(var)
        stats[..., 5] = 1.0 - n_finite / count
    none_finite = n_finite == 0
    stats[..., 0][none_finite] = np.nan
    stats[..., 1][none_finite] = np.nan
    stats[..., 4] = (flat == 0).sum(axis=1) / count
    return stats


def _finite_moments(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, HW, C) finite float32 to float64 (N, C) means, variances (two
    passes, as numpy's `std`) and counts of exact zeros, chunk by chunk.
    The sums down the columns are products with a vector of ones, in
    float64 (exact counts for the zeros' float32 flags): BLAS reduces a
    narrow matrix down its columns several times faster than numpy."""
    n, count, c = flat.shape
    rows = max(1, min(count, _CHUNK_VALUES // max(c, 1)))
    total = np.zeros((n, c))
    dev = np.zeros((n, c))
    zeros = np.zeros((n, c))
    buf = np.empty((rows, c))
    flags = np.empty((rows, c), np.float32)
    ones, ones32 = np.ones(rows), np.ones(rows, np.float32)
    for p in range(n):
        for i in range(0, count, rows):
            part = flat[p, i : i + rows]
            m = len(part)
            b = buf[:m]
            np.copyto(b, part)
            total[p] += ones[:m] @ b
            zeros[p] += ones32[:m] @ np.equal(part, 0, out=flags[:m], casting="unsafe")
        mean = total[p] / count
        for i in range(0, count, rows):
            part = flat[p, i : i + rows]
            m = len(part)
            d = np.subtract(part, mean, out=buf[:m])
            dev[p] += ones[:m] @ np.multiply(d, d, out=d)
    return total / count, dev / count, zeros


def quantize(x: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """(N, H, W, C) floats to (N, C, H, W) uint8, each channel scaled from
    its own min..max to 0..255. Non-finite values and constant channels map
    to 0."""
    lo = stats[:, None, None, :, 0]
    hi = stats[:, None, None, :, 1]
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scale = np.where(span > 0, 255.0 / span, 0.0).astype(np.float32)
        q = (np.asarray(x, dtype=np.float32) - lo) * scale + 0.5
    # Only non-finite values, or a scale that overflowed, leave a NaN or an
    # infinity in q; the statistics say whether there were any.
    if stats[..., 5].any() or not np.isfinite(scale).all():
        np.nan_to_num(q, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(q, 0, 255, out=q)
    return np.ascontiguousarray(q.astype(np.uint8).transpose(0, 3, 1, 2))


def downscale_factor(height: int, width: int, max_size: int | None) -> int:
    if not max_size or max(height, width) <= max_size:
        return 1
    return math.ceil(max(height, width) / max_size)


def png_bytes(image: np.ndarray, factor: int = 1) -> bytes:
    """One uint8 (H, W) or (H, W, 3) array to PNG; box-reduced by `factor`."""
    img = Image.fromarray(image)
    if factor > 1:
        img = img.reduce(factor)
    buf = io.BytesIO()
    strategy = PNG_STRATEGY if img.mode == "L" else zlib.Z_DEFAULT_STRATEGY
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=strategy)
    return buf.getvalue()


def stacked_png(maps: np.ndarray, factor: int = 1) -> bytes:
    """uint8 (K, H, W) maps to one gray PNG of the K maps top to bottom,
    each box-reduced by `factor` on its own."""
    k, h, w = maps.shape
    if factor > 1 and h % factor:
        # A box would straddle two maps: reduce each, then stack.
        reduced = [np.asarray(Image.fromarray(m).reduce(factor)) for m in maps]
        return png_bytes(np.concatenate(reduced))
    return png_bytes(maps.reshape(k * h, w), factor)


def encode_layer(
    x: np.ndarray,
    *,
    max_size: int | None = None,
    per_image: int = 1,
    executor: Executor | None = None,
    pool_pixels: int = POOL_PIXELS,
) -> tuple[np.ndarray, list[bytes]]:
    """Encodes an (N, H, W, C) array: returns (stats, PNGs), each PNG
    `per_image` channels of one probe stacked, probe-major
    (`metadata.LayerInfo.image_index`).

    Channel caps are the caller's business; pass the channels to keep.
    """
    stats, pending = encode_layer_async(
        x, max_size=max_size, per_image=per_image, executor=executor, pool_pixels=pool_pixels
    )
    return stats, pending()


def encode_layer_async(
    x: np.ndarray,
    *,
    max_size: int | None = None,
    per_image: int = 1,
    executor: Executor | None = None,
    pool_pixels: int = POOL_PIXELS,
):
    """`encode_layer` with its PNGs still encoding on `executor`.

    Returns (stats, pngs) where `pngs()` waits for the PNGs and returns
    them (raising what encoding raised), so that the caller can work
    meanwhile. Without an executor, or for pictures of fewer than
    `pool_pixels` pixels in all, the PNGs are done before it returns.
    """
    stats = compute_stats(x)
    q = quantize(x, stats)
    n, c, h, w = q.shape
    factor = downscale_factor(h, w, max_size)
    groups = [q[p, i : i + per_image] for p in range(n) for i in range(0, c, per_image)]
    if executor is None or q.size < pool_pixels:
        pngs = [stacked_png(g, factor) for g in groups]
        return stats, lambda: pngs
    # Pillow releases the GIL while it encodes, so the pool's threads run
    # in parallel. A PNG holds up to IMAGE_PIXELS pixels, or one large map:
    # work enough per task to make the pool's overhead small.
    futures = [executor.submit(stacked_png, g, factor) for g in groups]
    return stats, lambda: [f.result() for f in futures]


def probe_nhwc(x: np.ndarray) -> np.ndarray:
    """A channels-last probe batch of any rank as (N, H, W, 1 or 3) pixels.

    1 channel stays grayscale, 3 are RGB, any other count is averaged. A
    sequence (N, T, C) shows time down and features across.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :, None]
    elif x.ndim == 3:
        x = x[:, :, :, None]
    elif x.ndim == 5:
        x = x.mean(axis=1)
    if x.shape[-1] not in (1, 3):
        x = x.mean(axis=-1, keepdims=True)
    return x


def probe_images(x: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """The probe as the model sees it: one PNG per probe, scaled from that
    probe's own min..max. Returns ((N, 1, fields) stats, pngs)."""
    x = probe_nhwc(x)
    n = x.shape[0]
    stats = compute_stats(x.reshape(n, 1, -1, 1))
    lo = stats[:, 0, 0].reshape(n, 1, 1, 1)
    hi = stats[:, 0, 1].reshape(n, 1, 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(hi > lo, (x - lo) / (hi - lo) * 255.0 + 0.5, 0.0)
    q = np.clip(np.nan_to_num(q), 0, 255).astype(np.uint8)
    pngs = [png_bytes(img[..., 0] if img.shape[-1] == 1 else img) for img in q]
    return stats, pngs
