"""Export rendering: decoded frames and tiles show each value's colour."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from tb_activations import export, metadata
from tb_activations.colormaps import colormap_luts

LUT = np.asarray(colormap_luts()["viridis"], np.int64)
RNG = np.random.default_rng(0)


def decoded_frames(data: bytes) -> list[np.ndarray]:
    """Every frame as a viewer shows it (Pillow composes GIF deltas)."""
    with Image.open(io.BytesIO(data)) as image:
        return [np.asarray(f.convert("RGB"), np.int64) for f in ImageSequence.Iterator(image)]


def nearest_level(rgb: np.ndarray) -> np.ndarray:
    """The LUT level whose colour each pixel is."""
    d = ((rgb[..., None, :] - LUT) ** 2).sum(-1)
    return d.argmin(-1)


@pytest.mark.parametrize("format, colors, tolerance", [("gif", None, 9), ("apng", None, 1)])
def test_animation_frames_show_each_steps_levels(format, colors, tolerance):
    # Frames drift by a few levels, as training does between steps.
    base = RNG.integers(0, 200, (7, 5))
    frames = [np.clip(base + 3 * i, 0, 255).astype(np.uint8) for i in range(6)]
    own = np.array([(0.0, 1.0)] * 6)
    labels = [export.frame_label(10 * i, float(i)) for i in range(6)]
    data = export.animation(frames, own, own, labels, format=format, colors=colors)
    shown = decoded_frames(data)
    assert len(shown) == 6
    factor = export.MIN_SIDE // 7 + 1  # the longer side (7) upscaled to >= MIN_SIDE
    for levels, rgb in zip(frames, shown):
        body = rgb[export._BAND :][: 7 * factor : factor, : 5 * factor : factor]
        assert np.abs(nearest_level(body) - levels).max() <= tolerance


def test_fixed_window_recolours_real_values():
    # Step 1 spans twice step 0's range: in a window fixed over both,
    # step 0's top level is the middle colour.
    levels = np.array([[0, 255]], np.uint8)
    np.testing.assert_array_equal(export.rescale(levels, (0.0, 1.0), (0.0, 2.0)), [[0, 128]])
    stats = np.zeros((2, 1, 1, 2))
    stats[0, 0, 0] = (0.0, 1.0)
    stats[1, 0, 0] = (-1.0, 2.0)
    w = export.windows(stats, ["min", "max"], "channel-fixed")
    np.testing.assert_array_equal(w[:, 0], [[-1.0, 2.0], [-1.0, 2.0]])
    np.testing.assert_array_equal(
        export.windows(stats, ["min", "max"], "channel")[:, 0], stats[:, 0, 0]
    )


def test_windows_of_the_layer_span_its_channels():
    stats = np.array([[[[0.0, 1.0], [-2.0, 0.5], [np.nan, np.nan]]]])  # 1 step, 3 channels
    w = export.windows(stats, ["min", "max"], "layer")
    np.testing.assert_array_equal(w[0], [[-2.0, 1.0]] * 3)


def test_grid_tiles_show_their_channels():
    levels = RNG.integers(0, 256, (5, 4, 4)).astype(np.uint8)
    own = np.array([(0.0, 1.0)] * 5)
    data = export.grid(levels, own, own, "run · layer · step 3", columns=3)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int64)
    tile = export.MIN_TILE_SIDE // 4  # upscale factor of a 4 x 4 map
    cell_w = 4 * tile + export._GAP
    cell_h = 4 * tile + export._BAND + export._GAP
    for c in range(5):
        y = export._BAND + export._GAP + (c // 3) * cell_h
        x = export._GAP + (c % 3) * cell_w
        shown = rgb[y : y + 4 * tile : tile, x : x + 4 * tile : tile]
        np.testing.assert_array_equal(shown, LUT[levels[c]])


def test_grid_captions_name_heads_when_asked():
    """An attention series' tiles are captioned "head c": the caption under
    tile 0 is wider than the bare number, and the tiles are the same."""
    levels = RNG.integers(0, 256, (2, 4, 4)).astype(np.uint8)
    own = np.array([(0.0, 1.0)] * 2)
    pictures = [
        np.asarray(Image.open(io.BytesIO(export.grid(levels, own, own, "t", noun=noun))), np.int64)
        for noun in (None, "head")
    ]
    tile_h = export.MIN_TILE_SIDE
    top = export._BAND + export._GAP
    band = slice(top + tile_h, top + tile_h + export._BAND)
    cell = slice(export._GAP, export._GAP + tile_h)
    inked = [np.flatnonzero((p[band, cell].sum(axis=-1) < 300).any(axis=0)) for p in pictures]
    assert inked[0].size and inked[1].size
    assert inked[1].max() - inked[1].min() > 3 * (inked[0].max() - inked[0].min() + 1)
    tiles = slice(top, top + tile_h)
    np.testing.assert_array_equal(pictures[0][tiles], pictures[1][tiles])


def test_strips_are_stretched_to_be_seen():
    frames = [RNG.integers(0, 256, (1, 40)).astype(np.uint8)]
    data = export.animation(frames, np.array([(0, 1)]), np.array([(0, 1)]), ["step 0"])
    width, height = Image.open(io.BytesIO(data)).size
    assert height - export._BAND >= export.MIN_STRIP_HEIGHT and width >= 200


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: export.check_options("bmp"), "Unknown format 'bmp'; expected one of gif, apng"),
        (
            lambda: export.check_options("gif", grid=True),
            "Unknown format 'gif'; expected one of png",
        ),
        (
            lambda: export.check_options("gif", "jet"),
            "Unknown colormap 'jet'; expected one of viridis",
        ),
        (
            lambda: export.check_options("gif", "gray", "z"),
            "Unknown normalization 'z'.*channel-fixed",
        ),
        (lambda: export.animation([], [], [], []), "No frame"),
        (
            lambda: export.animation(
                [np.zeros((2, 2), np.uint8)], [(0, 1)], [(0, 1)], ["a"], colors=300
            ),
            "colors must be an integer from 2 to 252. Received: colors=300",
        ),
    ],
)
def test_bad_options_name_the_value_and_the_choices(call, message):
    with pytest.raises(ValueError, match=message):
        call()


IMAGE = metadata.LayerInfo(
    layer="conv",
    class_name="Conv2D",
    layout="image",
    output_shape=(None, 8, 8, 4),
    channels=4,
    total_channels=4,
    probes=1,
    height=8,
    width=8,
    source_height=8,
    source_width=8,
)
ATTENTION = dataclasses.replace(IMAGE, layer="mha/scores", kind=metadata.KIND_ATTENTION)


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        (
            ("logs/run1/activations", "block1/conv ü", "gif"),
            {"channel": 3},
            "logs_run1_activations-block1_conv-c3.gif",
        ),
        (("run", "conv", "png"), {"step": 120}, "run-conv-step120.png"),
        (("run", "conv", "apng"), {"channel": 0, "probe": 2}, "run-conv-c0-p2.png"),
        (("run", "mha/scores", "gif"), {"channel": 1, "info": ATTENTION}, "run-mha_scores-h1.gif"),
        (("run", "conv", "gif"), {"channel": 1, "info": IMAGE}, "run-conv-c1.gif"),
    ],
)
def test_file_names_say_run_layer_and_channel_or_step(args, kwargs, name):
    assert export.file_name(*args, **kwargs) == name
