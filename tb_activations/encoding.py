"""Activations (numpy) to the blobs of one step: statistics and PNGs.

Pure numpy and Pillow, so the result does not depend on which Keras backend
computed the activations. See `metadata` for the layout of the blobs.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from concurrent.futures import Executor

import numpy as np
from PIL import Image

from tb_activations import metadata

# Gray PNGs are written here, not by Pillow: each row gets the PNG filter
# (None, Sub or Up) that leaves the smallest residuals, chosen for a whole
# layer at once in numpy, and zlib compresses with its run-length strategy.
# Activation maps are smooth and, after a ReLU, mostly runs of zeros, which
# run-length matching finds as well as zlib's full search at a fraction of
# the time: on VGG16's five `blockN_conv1` layers, 0.11 s a step for the
# bytes Pillow's level 6 gives in 0.42 s (benchmarks/bench_writer.py).
PNG_COMPRESS_LEVEL = 6
PNG_STRATEGY = zlib.Z_RLE

# Channels per task of the PNG pool: enough to keep the per-task overhead
# small, few enough that a layer spreads over every thread.
_CHANNELS_PER_TASK = 16

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"



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


def rank5_reduction(data_format: str) -> str:
    axis = 2 if data_format == "channels_first" else 1
    return f"mean over depth (axis {axis} of the 5-D output)"


def compute_stats(x: np.ndarray) -> np.ndarray:
    """Per (probe, channel) statistics of an (N, H, W, C) array.

    Returns float32 (N, C, len(STATS_FIELDS)). min, max, mean and std are over
    the finite values only; the last field says how many were not finite. A
    channel with no finite value has NaN for the first four.
    """
    x = np.asarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    finite = np.isfinite(flat)
    count = h * w
    stats = np.empty((n, c, len(metadata.STATS_FIELDS)), dtype=np.float32)
    if finite.all():
        stats[..., 0] = flat.min(axis=1)
        stats[..., 1] = flat.max(axis=1)
        mean = flat.mean(axis=1, dtype=np.float64)
        stats[..., 2] = mean
        stats[..., 3] = flat.std(axis=1, dtype=np.float64)
        stats[..., 5] = 0.0
    else:
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
    if not (np.isfinite(scale).all() and not stats[..., 5].any()):
        np.nan_to_num(q, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(q, 0, 255, out=q)
    return np.ascontiguousarray(q.astype(np.uint8).transpose(0, 3, 1, 2))


def downscale_factor(height: int, width: int, max_size: int | None) -> int:
    if not max_size or max(height, width) <= max_size:
        return 1
    return math.ceil(max(height, width) / max_size)


def filter_rows(planes: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W) gray planes to their PNG scanlines, (..., H, 1 + W).

    Each row starts with its filter type: None (0), Sub (1, minus the pixel
    to the left) or Up (2, minus the pixel above), whichever has the
    smallest sum of residuals as signed bytes (libpng's heuristic for the
    filter that compresses best). A decoder undoes any of them exactly.
    """
    q = np.ascontiguousarray(planes, dtype=np.uint8)
    *lead, h, w = q.shape
    # The three candidates of every row, None, Sub and Up, side by side.
    cand = np.empty((3, *q.shape), np.uint8)
    cand[0] = q
    cand[1, ..., 0] = q[..., 0]
    np.subtract(q[..., 1:], q[..., :-1], out=cand[1, ..., 1:])
    cand[2, ..., 0, :] = q[..., 0, :]
    np.subtract(q[..., 1:, :], q[..., :-1, :], out=cand[2, ..., 1:, :])
    cand = cand.reshape(3, -1, w)
    # Residuals as signed bytes; abs(-128) wraps to -128, 128 unsigned.
    cost = np.abs(cand.view(np.int8)).view(np.uint8).sum(axis=-1, dtype=np.int32)
    best = cost.argmin(axis=0)
    rows = np.empty((best.size, w + 1), np.uint8)
    rows[:, 0] = best
    rows[:, 1:] = cand[best, np.arange(best.size)]
    return rows.reshape(*lead, h, w + 1)
    return rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    return b"".join(
        (
            struct.pack(">I", len(data)),
            kind,
            data,
            struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))),
        )
    )


def gray_png(rows: np.ndarray) -> bytes:
    """An 8-bit gray PNG from one plane's scanlines (`filter_rows`)."""
    h, w = rows.shape[0], rows.shape[1] - 1
    z = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 8, PNG_STRATEGY)
    data = z.compress(np.ascontiguousarray(rows)) + z.flush()
    # width, height, bit depth 8, colour type 0 (gray), deflate, adaptive filters, no interlace
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"".join((_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", data), _IEND))


def png_bytes(image: np.ndarray, factor: int = 1) -> bytes:
    """One uint8 (H, W) or (H, W, 3) array to PNG; box-reduced by `factor`."""
    img = Image.fromarray(image)
    if factor > 1:
        img = img.reduce(factor)
    if img.mode == "L":
        return gray_png(filter_rows(np.asarray(img)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _png_planes(planes: np.ndarray, factor: int) -> list[bytes]:
    """uint8 (K, H, W) planes to K gray PNGs, box-reduced by `factor`."""
    if factor > 1:
        return [png_bytes(plane, factor) for plane in planes]
    return [gray_png(rows) for rows in filter_rows(planes)]


def encode_layer(
    x: np.ndarray,
    *,
    max_size: int | None = None,
    executor: Executor | None = None,
) -> tuple[np.ndarray, list[bytes]]:
    """Encodes an (N, H, W, C) array: returns (stats, pngs in probe-major order).

    Channel caps are the caller's business; pass the channels to keep.
    """
    stats, pending = encode_layer_async(x, max_size=max_size, executor=executor)
    return stats, pending()


def encode_layer_async(
    x: np.ndarray,
    *,
    max_size: int | None = None,
    executor: Executor | None = None,
):
    """`encode_layer` with its PNGs still encoding on `executor`.

    Returns (stats, pngs) where `pngs()` waits for the PNGs and returns
    them (raising what encoding raised), so that the caller can work
    meanwhile. Without an executor the PNGs are done before it returns.
    """
    stats = compute_stats(x)
    q = quantize(x, stats)
    n, c, h, w = q.shape
    factor = downscale_factor(h, w, max_size)
    planes = q.reshape(n * c, h, w)
    if executor is None:
        pngs = _png_planes(planes, factor)
        return stats, lambda: pngs
    # zlib and numpy release the GIL, so the pool's threads run in parallel.
    step = _CHANNELS_PER_TASK
    futures = [
        executor.submit(_png_planes, planes[i : i + step], factor)
        for i in range(0, len(planes), step)
    ]
    return stats, lambda: [png for f in futures for png in f.result()]


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
