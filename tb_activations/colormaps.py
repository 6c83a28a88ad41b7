"""The colormaps the panel colours gray levels with, as 8-bit lookup tables.

The server sends gray levels (0..255); a lookup table turns each level into
an RGB colour. matplotlib is imported only when the tables are first asked
for, so loading the plugin stays light.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["COLORMAPS", "colormap_luts"]

COLORMAPS = ("viridis", "gray", "magma", "inferno", "plasma", "coolwarm")


@functools.cache
def colormap_luts() -> dict[str, list[list[int]]]:
    """8-bit lookup tables, 256 `[r, g, b]` entries each, from matplotlib's
    colormaps of the same names, in `COLORMAPS` order."""
    import matplotlib

    luts = {}
    for name in COLORMAPS:
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
        luts[name] = np.round(rgba[:, :3] * 255).astype(int).tolist()
    return luts
