"""A small image task made on the spot, so the demo needs no download.

Five classes of 32x32 grayscale images whose telling features are the kind a
first convolution layer learns to see: horizontal edges, vertical edges,
diagonal edges, curves, and line crossings. Each image varies in position,
size, thickness, contrast and noise, and carries stray blobs of no class,
so the task takes some learning.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("horizontal stripes", "vertical stripes", "diagonal lines", "ring", "cross")
SIZE = 32


def _stripes(rng, yy, xx, coord) -> np.ndarray:
    period = rng.uniform(4.0, 9.0)
    duty = rng.uniform(0.3, 0.6)  # line thickness as a share of the period
    phase = rng.uniform(0, period)
    img = (((coord + phase) % period) < duty * period).astype(np.float32)
    # Stripes fill a random rectangle, not always the whole image.
    h, w = yy.shape
    y0, x0 = rng.integers(0, h // 3), rng.integers(0, w // 3)
    y1, x1 = rng.integers(2 * h // 3, h + 1), rng.integers(2 * w // 3, w + 1)
    return img * ((yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1))


def _diagonal(rng, yy, xx) -> np.ndarray:
    sign = rng.choice([-1.0, 1.0])
    return _stripes(rng, yy, xx, (xx + sign * yy) / np.sqrt(2))


def _ring(rng, yy, xx) -> np.ndarray:
    h, w = yy.shape
    r = rng.uniform(0.18, 0.38) * min(h, w)
    cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
    thickness = rng.uniform(1.2, 3.0)
    d = np.hypot(yy - cy, xx - cx)
    return (np.abs(d - r) < thickness / 2).astype(np.float32)


def _cross(rng, yy, xx) -> np.ndarray:
    h, w = yy.shape
    arm = rng.uniform(0.2, 0.42) * min(h, w)
    cy, cx = rng.uniform(arm, h - arm), rng.uniform(arm, w - arm)
    t = rng.uniform(1.0, 2.5)
    vertical = (np.abs(xx - cx) < t) & (np.abs(yy - cy) < arm)
    horizontal = (np.abs(yy - cy) < t) & (np.abs(xx - cx) < arm)
    return (vertical | horizontal).astype(np.float32)


def _clutter(rng, yy, xx) -> np.ndarray:
    """Up to two small blobs, which belong to no class: the model must look past them."""
    out = np.zeros_like(yy)
    h, w = yy.shape
    for _ in range(rng.integers(0, 3)):
        r = rng.uniform(1.5, 3.5)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        out += rng.uniform(0.4, 1.0) * (np.hypot(yy - cy, xx - cx) < r)
    return out


def draw(
    label: int,
    rng: np.random.Generator,
    size: int = SIZE,
    noise: float | None = None,
    background: float | None = None,
):
    """One image of class `label`, values roughly 0..1, shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if label == 0:
        img = _stripes(rng, yy, xx, yy)
    elif label == 1:
        img = _stripes(rng, yy, xx, xx)
    elif label == 2:
        img = _diagonal(rng, yy, xx)
    elif label == 3:
        img = _ring(rng, yy, xx)
    elif label == 4:
        img = _cross(rng, yy, xx)
    else:
        raise ValueError(f"label must be in 0..{len(CLASSES) - 1}. Received: label={label}")
    if noise is None:
        img = img + _clutter(rng, yy, xx)
    contrast = rng.uniform(0.25, 1.0)
    if background is None:
        background = rng.uniform(0.0, 0.3)
    sigma = rng.uniform(0.05, 0.5) if noise is None else noise
    img = background + contrast * img + rng.normal(0.0, sigma, img.shape)
    return img.astype(np.float32)


def dataset(n: int, seed: int = 0, size: int = SIZE):
    """`n` images, balanced over the classes: x of shape (n, size, size, 1), y of int32."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    rng.shuffle(y)
    x = np.stack([draw(int(label), rng, size) for label in y])[..., None]
    return x, y.astype("int32")


def probe(seed: int = 1234, size: int = SIZE) -> np.ndarray:
    """One image holding every kind of feature: a 2x3 mosaic, shape (2*size, 3*size, 1).

    Tiles: horizontal stripes, vertical stripes, diagonal lines / ring, cross,
    and diagonal lines the other way, all with little noise so that what a
    channel responds to is easy to see.
    """
    rng = np.random.default_rng(seed)
    tiles = []
    for label in (0, 1, 2, 3, 4, 2):
        tiles.append(draw(label, rng, size, noise=0.03, background=0.1))
    # The last tile's diagonals run the other way from the first's, whatever the draw.
    tiles[5] = tiles[2][:, ::-1]
    rows = [np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:], axis=1)]
    return np.concatenate(rows, axis=0)[..., None].astype(np.float32)
