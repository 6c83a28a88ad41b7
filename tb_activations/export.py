"""Logged activations as pictures to keep: a channel's evolution over
training as an animated GIF or APNG, a layer's channel grid at one step as a
PNG.

Two halves:

- Rendering, pure numpy and Pillow over gray levels and statistics
  (`windows`, `animation`, `grid`): a channel's levels are scaled to its own
  min..max at its step (docs/format.md), so its real value is
  `min + level / 255 * (max - min)`; a normalization picks the window of real
  values the colormap spans, as in the panel. Colours are the panel's
  (`colormaps.colormap_luts`, matplotlib's data).
- `render` reads what it renders through a `reader.Reader`, so the
  plugin's export route, `tb_activations.read(...)` and the command line
  give the same bytes. Unknown runs, tags, steps, channels or probes raise
  `tensorboard.errors.NotFoundError`; bad options raise ValueError
  (a `Picture` checks them when it is made).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tensorboard import errors

from tb_activations import metadata
from tb_activations.colormaps import COLORMAPS, colormap_luts

__all__ = [
    "FORMATS",
    "NORMALIZATIONS",
    "Picture",
    "animation",
    "check_options",
    "file_name",
    "frame_label",
    "grid",
    "render",
    "windows",
]

# The panel's normalization ids (frontend/color.js): the window of real
# values the colours span, per channel or for the layer, at the step or over
# every kept step.
NORMALIZATIONS = ("channel", "layer", "channel-fixed", "layer-fixed")

# Animated formats of a channel's evolution, and the grid's.
ANIMATION_FORMATS = ("gif", "apng")
GRID_FORMATS = ("png",)
FORMATS = ANIMATION_FORMATS + GRID_FORMATS

MEDIA_TYPES = {"gif": "image/gif", "apng": "image/apng", "png": "image/png"}
_SUFFIXES = {"gif": ".gif", "apng": ".png", "png": ".png"}

# Maps are upscaled (nearest neighbour, by a whole factor) until their longer
# side reaches this, and one-pixel strips (units, sequences) to this height.
MIN_SIDE = 200
MIN_STRIP_HEIGHT = 24
MIN_TILE_SIDE = 64
MIN_TILE_STRIP_HEIGHT = 12
FRAME_MS = 100

# A frame has 256 palette entries: up to MAX_COLORS for the map, then the
# label band's white and black and a GIF's transparent "unchanged".
MAX_COLORS = 252
GIF_COLORS = 64
_WHITE = 252
_BLACK = 253
_CLEAR = 255
_FONT_SIZE = 12
_BAND = 16  # label band height, pixels
_GAP = 4


def _choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(
            f"Unknown {name} {value!r}; expected one of {', '.join(choices)}. "
            f"Received: {name}={value!r}"
        )


def check_options(
    format: str, colormap: str = "viridis", normalization: str = "channel", *, grid: bool = False
) -> None:
    """ValueError naming the bad value and the choices, if any is bad.
    `grid` says whether the format is for a layer's grid (png) or a
    channel's evolution (gif, apng)."""
    _choice("format", format, GRID_FORMATS if grid else ANIMATION_FORMATS)
    _choice("colormap", colormap, COLORMAPS)
    _choice("normalization", normalization, NORMALIZATIONS)


def file_name(
    run: str,
    layer: str,
    format: str,
    *,
    channel: int | None = None,
    step: int | None = None,
    probe: int = 0,
    info: metadata.LayerInfo | None = None,
) -> str:
    """A download's file name: run, layer, then channel or step, made safe
    for any file system (`logs/run1/activations`, `block1/conv` ->
    `logs_run1_activations-block1_conv-c3.gif`). A channel of an attention
    layer (`info`, the series' metadata) is a head, as the panel names it
    (`h3`)."""
    _choice("format", format, FORMATS)
    head = getattr(info, "kind", None) == metadata.KIND_ATTENTION

    def safe(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "_"

    parts = [safe(run), safe(layer)]
    if channel is not None:
        parts.append(f"{'h' if head else 'c'}{channel}")
    if step is not None:
        parts.append(f"step{step}")
    if probe:
        parts.append(f"p{probe}")
    return "-".join(parts) + _SUFFIXES[format]


# -- rendering -----------------------------------------------------------------


def windows(stats: np.ndarray, fields: Sequence[str], normalization: str, probe: int = 0):
    """The (steps, channels, 2) lo..hi windows of real values one probe's
    channels are coloured over, from `(steps, probes, channels, fields)`
    statistics: per channel or for the layer (over its channels), at each
    step or over every step. Channels with no finite value have NaN."""
    _choice("normalization", normalization, NORMALIZATIONS)
    stats = np.asarray(stats, np.float64)
    fields = list(fields)
    lo = stats[:, probe, :, fields.index("min")]
    hi = stats[:, probe, :, fields.index("max")]
    axes = {"channel": (), "layer": (1,), "channel-fixed": (0,), "layer-fixed": (0, 1)}
    axis = axes[normalization]
    if axis:
        with warnings.catch_warnings():
            # An all-NaN slice (no finite value anywhere) stays NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.broadcast_to(np.nanmin(lo, axis=axis, keepdims=True), lo.shape)
            hi = np.broadcast_to(np.nanmax(hi, axis=axis, keepdims=True), hi.shape)
    return np.stack([lo, hi], axis=-1)


def rescale(levels: np.ndarray, own: Sequence[float], window: Sequence[float]) -> np.ndarray:
    """Levels scaled to `own` (lo, hi) as levels of `window` (lo, hi): the
    same real values, clipped to the window. A window of no width, or of
    unknown bounds, gives 0."""
    lo, hi = float(own[0]), float(own[1])
    wlo, whi = float(window[0]), float(window[1])
    if (lo, hi) == (wlo, whi):
        return np.asarray(levels, np.uint8)
    if not all(map(math.isfinite, (lo, hi, wlo, whi))) or whi <= wlo:
        return np.zeros(np.shape(levels), np.uint8)
    # Each level's real value, then its level in the window, as one table
    # over the 256 levels.
    values = metadata.real_values(np.arange(256), lo, hi)
    table = np.clip(np.round((values - wlo) / (whi - wlo) * 255.0), 0, 255).astype(np.uint8)
    return table[np.asarray(levels, np.uint8)]


def _factors(height: int, width: int, min_side: int, min_strip: int) -> tuple[int, int]:
    f = max(1, math.ceil(min_side / max(height, width, 1)))
    return max(f, math.ceil(min_strip / max(height, 1))), f


def _upscale(a: np.ndarray, fy: int, fx: int) -> np.ndarray:
    return a.repeat(fy, axis=0).repeat(fx, axis=1) if fy > 1 or fx > 1 else a


def _font(size: int = _FONT_SIZE):
    try:
        return ImageFont.load_default(size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _lut(colormap: str) -> np.ndarray:
    _choice("colormap", colormap, COLORMAPS)
    return np.asarray(colormap_luts()[colormap], np.uint8)


def frame_label(step: int, epoch: float | None = None) -> str:
    """A frame's label: `step 120 · epoch 3`, or `step 120` when the epoch
    is not known."""
    if epoch is None or not math.isfinite(epoch):
        return f"step {step}"
    return f"step {step} · epoch {epoch:g}"


def animation(
    frames: Sequence[np.ndarray],
    own: np.ndarray,
    window: np.ndarray,
    labels: Sequence[str],
    *,
    colormap: str = "viridis",
    format: str = "gif",
    colors: int | None = None,
    frame_ms: int = FRAME_MS,
    min_side: int = MIN_SIDE,
) -> bytes:
    """One channel's frames as an animated GIF or APNG.

    `frames` are (height, width) gray levels, one per step; `own[i]` is the
    (min, max) frame i's levels are scaled to, `window[i]` the (lo, hi) its
    colours span; `labels[i]` is written above it. Every frame is upscaled
    by the same whole factor (nearest neighbour) until its longer side
    reaches `min_side`, or to `MIN_STRIP_HEIGHT` for one-pixel strips.

    `colors` is how many colours of the colormap the map is drawn with, at
    most 252. An APNG uses all 252 by default and draws every frame whole:
    each pixel is within half a colour of its value. A GIF, made to be
    shared, uses `GIF_COLORS` (64) by default and redraws only the pixels
    whose colour moved by more than one colour since they were last drawn
    (the rest stay transparent, showing the frame before): each pixel is
    within one colour of its value, and a 224 x 224 photograph-like channel
    over 200 steps takes about 1.5 MB instead of 6.
    """
    _choice("format", format, ANIMATION_FORMATS)
    if not frames:
        raise ValueError("No frame to animate. Received: frames=[]")
    if not len(frames) == len(own) == len(window) == len(labels):
        raise ValueError(
            "Expected one range, window and label per frame. Received: "
            f"{len(frames)} frames, {len(own)} ranges, {len(window)} windows, {len(labels)} labels"
        )
    gif = format == "gif"
    if colors is None:
        colors = GIF_COLORS if gif else MAX_COLORS
    if isinstance(colors, bool) or not isinstance(colors, int) or not 2 <= colors <= MAX_COLORS:
        raise ValueError(f"colors must be an integer from 2 to {MAX_COLORS}. Received: {colors=}")
    lut = _lut(colormap)
    entries = np.round(np.arange(colors) * 255 / (colors - 1)).astype(int)
    palette = np.zeros((256, 3), np.uint8)
    palette[:colors] = lut[entries]
    palette[_WHITE] = 255
    to_index = np.round(np.arange(256) * (colors - 1) / 255).astype(np.uint8)
    height = max(f.shape[0] for f in frames)
    width = max(f.shape[1] for f in frames)
    fy, fx = _factors(height, width, min_side, MIN_STRIP_HEIGHT)
    font = _font()
    measure = ImageDraw.Draw(Image.new("P", (1, 1)))
    label_width = max(measure.textlength(t, font=font) for t in labels)
    canvas_w = max(width * fx, int(label_width) + 2 * _GAP)
    images = []
    shown = None  # what a GIF viewer shows after the frames so far
    for levels, o, w, label in zip(frames, own, window, labels):
        image = Image.new("P", (canvas_w, _BAND + height * fy), _WHITE)
        ImageDraw.Draw(image).text((_GAP, 1), label, fill=_BLACK, font=font)
        canvas = np.array(image)
        body = _upscale(to_index[rescale(levels, o, w)], fy, fx)
        canvas[_BAND : _BAND + body.shape[0], : body.shape[1]] = body
        if gif:
            frame = canvas
            if shown is not None:
                keep = np.abs(canvas.astype(np.int16) - shown) <= 1
                keep[:_BAND] = canvas[:_BAND] == shown[:_BAND]  # labels exactly
                frame = np.where(keep, _CLEAR, canvas).astype(np.uint8)
                canvas = np.where(keep, shown, canvas).astype(np.uint8)
            shown = canvas
            canvas = frame
        image = Image.fromarray(canvas, "P")
        image.putpalette(palette.tobytes())
        images.append(image)
    buf = io.BytesIO()
    # optimize=False: a palette Pillow compacts would move the transparent index.
    options = {"transparency": _CLEAR, "disposal": 1, "optimize": False} if gif else {}
    images[0].save(
        buf,
        format="GIF" if gif else "PNG",
        save_all=True,
        append_images=images[1:],
        duration=frame_ms,
        loop=0,
        **options,
    )
    return buf.getvalue()


def grid(
    levels: np.ndarray,
    own: np.ndarray,
    window: np.ndarray,
    title: str,
    *,
    colormap: str = "viridis",
    columns: int | None = None,
    channel_numbers: Sequence[int] | None = None,
    noun: str | None = None,
) -> bytes:
    """A layer's channels at one step as one labelled PNG.

    `levels` is (channels, height, width); `own[c]` and `window[c]` are
    channel c's (min, max) and colour window as in `animation`. Tiles are
    upscaled to at least `MIN_TILE_SIDE` on their longer side, numbered
    under each tile (`channel_numbers`, 0.. by default; "head 3" with
    `noun="head"`), under `title`. `columns` defaults to a square-ish grid."""
    levels = np.asarray(levels, np.uint8)
    if levels.ndim != 3:
        raise ValueError(
            f"Expected (channels, height, width) levels. Received: shape {levels.shape}"
        )
    count, height, width = levels.shape
    numbers = list(range(count)) if channel_numbers is None else list(channel_numbers)
    if columns is None:
        columns = max(1, math.ceil(math.sqrt(count)))
    if columns < 1:
        raise ValueError(f"columns must be at least 1. Received: columns={columns}")
    lut = _lut(colormap)
    fy, fx = _factors(height, width, MIN_TILE_SIDE, MIN_TILE_STRIP_HEIGHT)
    font = _font()
    tile_h, tile_w = height * fy, width * fx
    cell_w = max(tile_w, 24) + _GAP
    cell_h = tile_h + _BAND + _GAP
    rows = max(1, math.ceil(count / columns))
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_w = int(draw_probe.textlength(title, font=font)) + 2 * _GAP
    out_w = max(columns * cell_w + _GAP, title_w)
    canvas = np.full((_BAND + _GAP + rows * cell_h, out_w, 3), 255, np.uint8)
    for c in range(count):
        y = _BAND + _GAP + (c // columns) * cell_h
        x = _GAP + (c % columns) * cell_w
        tile = lut[_upscale(rescale(levels[c], own[c], window[c]), fy, fx)]
        canvas[y : y + tile_h, x : x + tile_w] = tile
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    draw.text((_GAP, 2), title, fill=(0, 0, 0), font=font)
    for c in range(count):
        y = _BAND + _GAP + (c // columns) * cell_h + tile_h
        x = _GAP + (c % columns) * cell_w
        label = f"{noun} {numbers[c]}" if noun else str(numbers[c])
        draw.text((x, y + 1), label, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# -- over a reader -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Picture:
    """What `render` draws of one layer: a channel's evolution over every
    kept step (`channel`; `"gif"`, the default, or `"apng"`) or the channel
    grid at one step (`step`; `"png"`), of one probe, with the panel's
    colormap and normalization. Checked when made (ValueError)."""

    run: str
    tag: str
    channel: int | None = None
    step: int | None = None
    probe: int = 0
    format: str | None = None
    colormap: str = "viridis"
    normalization: str = "channel"

    def __post_init__(self):
        if (self.channel is None) == (self.step is None):
            raise ValueError(
                "Pass channel= (a channel's evolution) or step= (the layer's grid at a step), "
                f"not both or neither. Received: channel={self.channel!r}, step={self.step!r}"
            )
        if self.format is None:
            object.__setattr__(self, "format", "png" if self.channel is None else "gif")
        check_options(self.format, self.colormap, self.normalization, grid=self.channel is None)


def render(reader, ctx, series, picture: Picture) -> bytes:
    """The picture's image file, read through `reader` from `series`, the
    picture's run and layer as `reader.series` opened it: a channel's frames
    labelled with their step and epoch (as `animation` renders them), or the
    grid titled with the run, layer, step and epoch (as `grid` does).

    Raises:
        tensorboard.errors.NotFoundError: an unknown step, channel or probe,
            or the probe image's tag.
    """
    run, tag = series.run, series.tag
    if tag == metadata.PROBE_TAG or series.info.layout == "probe":
        raise errors.NotFoundError(
            f"Tag {tag!r} of run {run!r} is the probe image, which has no channels to export; "
            "ask for a layer's tag."
        )
    series.check_probe(picture.probe)
    if picture.channel is None:
        return _layer_grid(reader, ctx, series, picture)
    return _channel_evolution(reader, ctx, series, picture)


def _channel_evolution(reader, ctx, series, look: Picture) -> bytes:
    channel = look.channel
    series.check_channel(channel)
    got = reader.stats_series(ctx, series).latest()
    kept = {id(d): i for i, d in enumerate(got.data)}
    frames = reader.channel_series(ctx, series, look.probe, channel)
    steps = [s for s in frames if id(s.datum) in kept]
    if not steps or not got.stats:
        raise errors.NotFoundError(f"Run {series.run!r}, tag {series.tag!r} has no readable step.")
    window = windows(got.array(), got.fields, look.normalization, look.probe)
    lo, hi = got.fields.index("min"), got.fields.index("max")
    return animation(
        [s.levels for s in steps],
        np.array([(s.stats[lo], s.stats[hi]) for s in steps], np.float64),
        np.array([window[kept[id(s.datum)], channel] for s in steps]),
        [frame_label(s.datum.step, s.header.epoch) for s in steps],
        colormap=look.colormap,
        format=look.format,
    )


def _layer_grid(reader, ctx, series, look: Picture) -> bytes:
    step = look.step
    matches = [d for d in series.data if d.step == step]
    # find() raises, listing the kept steps.
    datum = matches[-1] if matches else series.find(step)
    header = reader.header(ctx, series, datum)
    levels = reader.layer_levels(ctx, series, datum, look.probe)
    stats = reader.stats(ctx, series, datum)
    fields = series.fields(stats)
    if look.normalization.endswith("-fixed"):
        got = reader.stats_series(ctx, series).latest()
        at = got.steps.index(step)
        window = windows(got.array(), got.fields, look.normalization, look.probe)[at]
    else:
        window = windows(stats[None], fields, look.normalization, look.probe)[0]
    own = stats[look.probe][:, [fields.index("min"), fields.index("max")]]
    info = series.info
    title = f"{series.run} · {series.tag} · {frame_label(step, header.epoch)}"
    # An attention series' channels are its heads, each a query x key map.
    noun = "head" if getattr(info, "kind", None) == metadata.KIND_ATTENTION else None
    if info.channels < info.total_channels:
        title += f" · first {info.channels} of {info.total_channels} {noun or 'channel'}s"
    if info.source_height > info.height or info.source_width > info.width:
        title += f" · reduced from {info.source_height}×{info.source_width}"
    return grid(levels, own, window, title, colormap=look.colormap, noun=noun)
