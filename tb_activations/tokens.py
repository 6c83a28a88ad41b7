"""Token sequences that are an image's patch grid, drawn as images.

A vision transformer cuts its `H x W` input into `gh x gw` patches of
`p x p` pixels and makes one token of each, row by row, often after a class
token: its layers output `(N, T, C)` with `T = gh * gw` or `1 + gh * gw`. Drawn
as a sequence, a channel is a strip of `T` pixels; drawn on the grid, it is a
`gh x gw` map that lines up with the probe image, so the panel's image tools
(overlay, diff, compare) work as for a CNN.

A sequence layer is drawn on the grid when the model's input is one image
and its token count fits one: `T - prefix = gh * gw` with `H / gh = W / gw`
a whole number of pixels (square patches), for `prefix` 0, else 1. That is
how keras-hub's `ViTBackbone` lays out its tokens (`patch_size`,
`use_class_token`), and any ViT built the same way. The series then holds the
`(N, gh, gw, C)` grid (layout `image`, `kind="token_grid"`,
`prefix_tokens=prefix`); a class token goes to a series of its own,
`path/class_token`, `(N, C)` (layout `units`, `kind="class_token"`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tb_activations import metadata

__all__ = ["Grid", "CLASS_TOKEN_SUFFIX", "patch_grid", "TokenGrids"]

CLASS_TOKEN_SUFFIX = "/class_token"

# A grid's rows and columns (metadata.LayerInfo.axes).
AXES = ("patch row", "patch column")


@dataclasses.dataclass(frozen=True)
class Grid:
    """`rows x cols` patches of `patch` pixels, after `prefix` other tokens."""

    rows: int
    cols: int
    prefix: int
    patch: int


def patch_grid(height: int | None, width: int | None, tokens: int) -> Grid | None:
    """The patch grid of an `height x width` image that `tokens` tokens are,
    or None when they are not one (an unknown size, no whole square patch)."""
    if not height or not width or tokens < 2:
        return None
    for prefix in (0, 1):
        patches = tokens - prefix
        if patches < 2:
            continue
        patch = math.isqrt(height * width // patches)
        if patch < 1 or height % patch or width % patch:
            continue
        rows, cols = height // patch, width // patch
        if rows * cols == patches:
            return Grid(rows, cols, prefix, patch)
    return None


def image_size(batch_shape: Sequence[int], input_format: str) -> tuple[int | None, int | None]:
    """(height, width) of a probe batch that is one image per probe, else Nones."""
    if len(batch_shape) != 4:
        return None, None
    if input_format == "channels_first":
        return int(batch_shape[2]), int(batch_shape[3])
    return int(batch_shape[1]), int(batch_shape[2])


class TokenGrids:
    """Redraws a recorder's sequence values whose tokens are the probe's patch grid.

    Decided once per layer, at its first value, from its token count.
    """

    def __init__(self, taps: Sequence[Any], batch_shape: Sequence[int], input_format: str):
        self.height, self.width = image_size(batch_shape, input_format)
        self._taps = {t.path: t for t in taps}
        self._grids: dict[str, tuple[Grid, Any, Any] | None] = {}

    def apply(self, values: list, describe: Callable) -> list:
        """`values` with each patch-grid sequence redrawn, its class token after it.

        `describe(tap, array)` is the recorder's, for a layer's LayerInfo.
        """
        if self.height is None:
            return values
        out = []
        for value in values:
            found = self._grid(value, describe)
            if found is None:
                out.append(value)
                continue
            grid, info, class_info = found
            out.extend(self._split(value, grid, info, class_info))
        return out

    def _grid(self, value, describe):
        info = value.info
        if info.layer in self._grids:
            return self._grids[info.layer]
        found = None
        eligible = (
            info.layer in self._taps
            and info.kind is None
            and info.layout == "sequence"
            and value.data_format == "channels_last"
            and value.array.ndim == 3
        )
        grid = patch_grid(self.height, self.width, value.array.shape[1]) if eligible else None
        if grid is not None:
            tap = self._taps[info.layer]
            patches, first = _split(value.array, grid)
            with warnings.catch_warnings():
                # The layer's own description already warned (a channel cap).
                warnings.simplefilter("ignore")
                as_grid = describe(tap, patches)
                as_units = describe(tap, first)
            grid_info = dataclasses.replace(
                as_grid,
                kind=metadata.KIND_TOKEN_GRID,
                source=info.layer,
                axes=AXES,
                prefix_tokens=grid.prefix,
            )
            class_info = None
            if grid.prefix:
                class_info = dataclasses.replace(
                    as_units,
                    layer=info.layer + CLASS_TOKEN_SUFFIX,
                    kind=metadata.KIND_CLASS_TOKEN,
                    source=info.layer,
                    prefix_tokens=grid.prefix,
                )
            found = (grid, grid_info, class_info)
        self._grids[info.layer] = found
        return found

    @staticmethod
    def _split(value, grid: Grid, info, class_info) -> list:
        from tb_activations.summary import LayerValue

        patches, first = _split(value.array, grid)
        out = [LayerValue(info, patches, data_format="channels_last")]
        if class_info is not None:
            out.append(LayerValue(class_info, first, data_format="channels_last"))
        return out


def _split(a: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, C) tokens to the (N, rows, cols, C) grid and the first token (N, C)."""
    n, _, c = a.shape
    return a[:, grid.prefix :].reshape(n, grid.rows, grid.cols, c), a[:, 0]
