"""The data format shared by the writer and the TensorBoard plugin.

This module is the only thing the writing side (`summary`, `callback`) and the
serving side (`plugin`) have in common. It must not import Keras or TensorFlow.

One time series per (run, layer). Its summary metadata names the plugin
`activations`, sets `DATA_CLASS_BLOB_SEQUENCE` and carries a JSON document
(`LayerInfo`) of everything that is static for the layer. Each step's value is
a rank-1 string tensor of blobs laid out as

    [0]                 step header: JSON, e.g. {"epoch": 3.0, "batch": null,
                        "index": 4, "prev_step": 30, "start_step": 0,
                        "cka_prev": 0.98, "cka_start": 0.71}; index counts
                        the steps the writer logged to this run, so a reader
                        can tell how many were dropped by sampling; the rest
                        are the layer's measures (docs/measures.md), null
                        for the probe
    [1]                 statistics: an .npy array, float32, shape
                        (probes, channels, len(info.stats_fields)): the
                        STATS_FIELDS, then for a layer (not the probe) the
                        measures' MEASURE_FIELDS
    [2 + p*images + i]  an 8-bit gray PNG of probe p's channels
                        i*k .. i*k + k - 1 (k = info.channels_per_image,
                        images = info.images_per_probe; the last image may
                        hold fewer), stacked top to bottom, each scaled from
                        that channel's own min..max (stats) to 0..255

so that images and statistics of a step can never be separated by sampling.
Stacking spares the writer a PNG per channel: the per-image cost (Python,
zlib's setup) was a quarter of its encoding time on VGG16's small maps.
Version 1 is the same with one channel per image.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from typing import Any

import numpy as np
from tensorboard.compat.proto import summary_pb2

from tb_activations.measures import MEASURE_FIELDS

PLUGIN_NAME = "activations"

# Bump when the layout of the content or of the blobs changes in a way an
# older reader would misread; readers refuse versions newer than they know.
FORMAT_VERSION = 3

# Tag of the time series holding the probe images as the model sees them.
# Keras never generates this name; the writer refuses a layer path equal to it.
# A model with several inputs logs its main input under this tag (its first
# image; else its first input named for tokens, `token_ids`; else its first)
# and each other one under `PROBE_TAG/<input name>` (format version 3).
PROBE_TAG = "__probe__"

# How a probe input is drawn (format version 3): an image, a row of tokens,
# or a strip of values.
PROBE_KINDS = ("image", "tokens", "values")

# The statistics of every map (format version 1). A reader may rely on them.
STATS_FIELDS = ("min", "max", "mean", "std", "zero_fraction", "nonfinite_fraction")

# A layer's statistics as written since the measures (docs/measures.md):
# MEASURE_FIELDS follow. Logs without them still open; the measures they
# enable are then unavailable.
LAYER_STATS_FIELDS = STATS_FIELDS + MEASURE_FIELDS

HEADER_INDEX = 0
STATS_INDEX = 1
FIRST_IMAGE_INDEX = 2

# The probe set's statistics (format version 3): per logged channel, over
# every sample of the set (not only the pictured probes), in the blob after
# the PNGs. These are what the measures are computed from.
SET_FIELDS = (
    "mean",
    "max",
    "zero_fraction",
    "nonfinite_fraction",
    "sq_norm",
    "sq_diff_prev",
    "sq_diff_start",
)

# Per unit over the probe set (format version 3), in the blob after the set
# statistics: a unit is a channel, or one unit of a Dense layer (whose units
# are a single logged channel). See docs/measures.md.
UNIT_FIELDS = ("on_rate", "abs_mean")

# Header keys of a layer's step over its probe set (format version 3): the
# layer measures of docs/measures.md, null where undefined; `nonfinite` is
# true when any value of the layer at that step is NaN or infinite.
SET_HEADER_KEYS = ("nonfinite", "rms", "effective_rank", "similarity", "saturation")

# The index series (added within format version 3): every layer event also
# carries, as a second value, the step's blobs that are not pictures (header,
# statistics, set statistics, unit measures) as a rank-1 string tensor with
# DATA_CLASS_TENSOR, under this plugin name and the layer's tag behind
# INDEX_TAG_PREFIX (both loaders key series by tag alone, whatever the
# plugin). One `read_tensors` then gives a reader every step's measures,
# where reading them as blobs takes a call per blob (a gRPC call each on
# the Rust data server). Older readers ignore the plugin name; logs without
# it read as before, from the blobs.
INDEX_PLUGIN_NAME = "activations_index"
INDEX_TAG_PREFIX = "__index__/"

# Activations whose saturation is measured, bounded as they are.
BOUNDED_ACTIVATIONS = ("tanh", "sigmoid")
# LayerInfo.kind of the series derived from a layer (format version 3).
KIND_ATTENTION = "attention"
KIND_TOKEN_GRID = "token_grid"
KIND_CLASS_TOKEN = "class_token"

NORMALIZATION = "per (probe, channel) min..max to 0..255; constant channels are 0"


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Static facts about one logged layer, stored as the plugin content."""

    layer: str
    class_name: str
    layout: str
    output_shape: tuple[int | None, ...]
    channels: int
    total_channels: int
    probes: int
    height: int
    width: int
    source_height: int
    source_width: int
    reduction: str | None = None
    data_format: str = "channels_last"
    # Where the layer sits in the model (depth-first order, nested models
    # included), so a reader can list layers as the model has them.
    position: int | None = None
    normalization: str = NORMALIZATION
    stats_fields: tuple[str, ...] = STATS_FIELDS
    # Channels stacked in one PNG (format version 2); version 1 logs have 1.
    channels_per_image: int = 1
    # The probe set (format version 3): `samples` in the set, of which the
    # first `probes` are pictured; `units` rows of the unit measures; the
    # fields of the set's two blobs (empty before version 3); the layer's
    # activation when it is a bounded one (`BOUNDED_ACTIVATIONS`).
    samples: int | None = None
    units: int | None = None
    set_fields: tuple[str, ...] = ()
    unit_fields: tuple[str, ...] = ()
    activation: str | None = None
    # Format version 3, all optional (absent in older logs). `kind` says
    # what a series derived from a layer holds: KIND_ATTENTION (a
    # MultiHeadAttention's probabilities: a channel per head, maps of
    # queries x keys), KIND_TOKEN_GRID (a sequence layer's patch tokens as
    # the input image's grid), KIND_CLASS_TOKEN (the tokens before that
    # grid); None for a layer's own output. `source` is the layer it derives
    # from, `axes` names a map's rows and columns, `prefix_tokens` counts the
    # tokens a token grid leaves out (the class token).
    kind: str | None = None
    source: str | None = None
    axes: tuple[str, ...] | None = None
    prefix_tokens: int | None = None
    # Format version 3, for a layer reached by observing its calls: which
    # call of the layer in one pass (1 for the first; the tag then ends in
    # `@call`), and which of the call's outputs (`0`, `1`, a dict key; None
    # for a call returning one tensor; the tag then ends in `:output`).
    call: int = 1
    output: str | None = None
    # Format version 3, for the probe: the model input it shows, how it is
    # drawn (PROBE_KINDS), and for `tokens` each sample's tokens (IDs, or
    # the strings given as `probe_tokens`).
    input_name: str | None = None
    probe_kind: str | None = None
    tokens: tuple[tuple[int | str, ...], ...] | None = None
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["output_shape"] = list(self.output_shape)
        d["stats_fields"] = list(self.stats_fields)
        d["set_fields"] = list(self.set_fields)
        d["unit_fields"] = list(self.unit_fields)
        if self.axes is not None:
            d["axes"] = list(self.axes)
        return d

    @property
    def set_size(self) -> int:
        """The samples of the probe set: `samples`, or `probes` before version 3."""
        return self.samples if self.samples is not None else self.probes

    @property
    def images_per_probe(self) -> int:
        return -(-self.channels // self.channels_per_image)

    @property
    def set_index(self) -> int:
        """The blob of the set statistics (after the PNGs); the unit
        measures follow it. Only when `set_fields` is not empty."""
        return FIRST_IMAGE_INDEX + self.probes * self.images_per_probe

    @property
    def blob_count(self) -> int:
        return self.set_index + (2 if self.set_fields else 0)

    def image_index(self, probe: int, image: int) -> int:
        """The blob of a probe's `image`-th PNG."""
        return FIRST_IMAGE_INDEX + probe * self.images_per_probe + image

    def channels_in(self, image: int) -> range:
        """The channels the `image`-th PNG of a probe holds, top to bottom."""
        k = self.channels_per_image
        return range(image * k, min((image + 1) * k, self.channels))

    def holding(self, probe: int, channel: int) -> tuple[int, range]:
        """The blob of the PNG that holds one (probe, channel), and the
        channels that PNG holds, top to bottom."""
        image = channel // self.channels_per_image
        return self.image_index(probe, image), self.channels_in(image)


def create_summary_metadata(info: LayerInfo) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(
        display_name=info.layer,
        summary_description=f"{info.class_name} {list(info.output_shape)}",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(info.to_json(), sort_keys=True).encode("utf-8"),
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def index_blobs(info: LayerInfo) -> tuple[int, ...]:
    """The blobs of a layer's step that its index value copies, in order."""
    if info.set_fields:
        return (HEADER_INDEX, STATS_INDEX, info.set_index, info.set_index + 1)
    return (HEADER_INDEX, STATS_INDEX)


def create_index_metadata(info: LayerInfo) -> summary_pb2.SummaryMetadata:
    """The index series' metadata: its content names the layer's tag and
    the blob each of its strings copies (`index_blobs`)."""
    content = {"version": FORMAT_VERSION, "tag": info.layer, "blobs": list(index_blobs(info))}
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=INDEX_PLUGIN_NAME, content=json.dumps(content).encode("utf-8")
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_index_metadata(content: bytes) -> tuple[str, tuple[int, ...]]:
    """The layer tag and blob indices of an index series' content; ValueError
    when it is not one this version can read."""
    try:
        d = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"Index content is not JSON: {e}") from None
    if not isinstance(d, dict) or type(d.get("version")) is not int:
        raise ValueError(f"Index content has no version. Received: {d!r}")
    tag, blobs = d.get("tag"), d.get("blobs")
    if d["version"] > FORMAT_VERSION or not isinstance(tag, str) or not isinstance(blobs, list):
        raise ValueError(f"Index content this version cannot read. Received: {d!r}")
    if not all(type(b) is int and b >= 0 for b in blobs):
        raise ValueError(f"Index content's blobs must be blob indices. Received: blobs={blobs!r}")
    return tag, tuple(blobs)


def parse_plugin_metadata(content: bytes) -> LayerInfo:
    """Reads the plugin content back; raises ValueError on anything else."""
    if not isinstance(content, bytes):
        raise TypeError(f"Content must be bytes. Received: content={content!r}")
    try:
        d = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"Activations content is not JSON: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("version"), int):
        raise ValueError(f"Activations content has no version. Received: {d!r}")
    if d["version"] > FORMAT_VERSION:
        raise ValueError(
            f"Activations format version {d['version']} is newer than this "
            f"reader's ({FORMAT_VERSION}); upgrade tb-activations."
        )
    per_image = d.get("channels_per_image", 1)
    if type(per_image) is not int or per_image < 1:
        raise ValueError(
            "Activations content's channels_per_image must be a positive integer. "
            f"Received: channels_per_image={per_image!r}"
        )
    fields = {f.name for f in dataclasses.fields(LayerInfo)}
    kwargs = {k: v for k, v in d.items() if k in fields}
    kwargs["output_shape"] = tuple(kwargs.get("output_shape", ()))
    kwargs["stats_fields"] = tuple(kwargs.get("stats_fields", STATS_FIELDS))
    for name in ("set_fields", "unit_fields"):
        value = kwargs.get(name, ())
        if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
            if name in kwargs:
                raise ValueError(
                    f"Activations content's {name} must be a list of names. "
                    f"Received: {name}={value!r}"
                )
        kwargs[name] = tuple(value)
    if kwargs.get("axes") is not None:
        kwargs["axes"] = tuple(kwargs["axes"])
    if kwargs.get("tokens") is not None:
        kwargs["tokens"] = tuple(tuple(row) for row in kwargs["tokens"])
    try:
        return LayerInfo(**kwargs)
    except TypeError as e:
        raise ValueError(f"Activations content is incomplete: {e}") from None


def encode_header(
    epoch: float | None,
    batch: int | None = None,
    index: int = 0,
    *,
    prev_step: int | None = None,
    start_step: int | None = None,
    cka_prev: float | None = None,
    cka_start: float | None = None,
    **set_measures: float | bool | None,
) -> bytes:
    """A step header. The keyword fields are a layer's measures references
    (docs/measures.md), then its probe set's `SET_HEADER_KEYS` (format
    version 3, where given); a value that is not a finite number is written
    as null, since JSON has no NaN."""

    def number(v):
        if isinstance(v, bool):
            return v
        return float(v) if v is not None and math.isfinite(v) else None

    unknown = sorted(set(set_measures) - set(SET_HEADER_KEYS))
    if unknown:
        raise TypeError(f"encode_header takes the keys {SET_HEADER_KEYS}. Received: {unknown}")
    return json.dumps(
        {
            "epoch": epoch,
            "batch": batch,
            "index": index,
            "prev_step": prev_step,
            "start_step": start_step,
            "cka_prev": number(cka_prev),
            "cka_start": number(cka_start),
            **{k: number(v) for k, v in set_measures.items()},
        }
    ).encode("utf-8")


def decode_header(blob: bytes) -> dict[str, Any]:
    return json.loads(blob.decode("utf-8"))


def encode_stats(stats: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(stats, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


# .npy headers seen, each with what it says: every step of a series repeats
# the same one, and numpy's parsing of it costs more than the rest of a load.
_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...]]] = {}


def load_npy(blob: bytes) -> np.ndarray:
    """`np.load` of one .npy blob (no pickles), parsing each distinct header once."""
    if blob[:6] == b"\x93NUMPY" and blob[6:7] in (b"\x01", b"\x02", b"\x03"):
        size = 2 if blob[6] == 1 else 4
        end = 8 + size + int.from_bytes(blob[8 : 8 + size], "little")
        known = _NPY_HEADERS.get(blob[:end])
        if known is not None:
            dtype, shape = known
            count = math.prod(shape)
            return np.frombuffer(blob, dtype, count, end).reshape(shape).copy()
    else:
        end = 0
    arr = np.load(io.BytesIO(blob), allow_pickle=False)
    # Only C-ordered plain arrays read back as a flat buffer.
    if end and arr.flags.c_contiguous and not arr.dtype.hasobject:
        if len(_NPY_HEADERS) >= 1024:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[blob[:end]] = (arr.dtype, arr.shape)
    return arr


def decode_stats(blob: bytes) -> np.ndarray:
    """Returns the (probes, channels, fields) float32 statistics array."""
    arr = load_npy(blob)
    if arr.ndim != 3 or arr.shape[2] < len(STATS_FIELDS):
        raise ValueError(f"Statistics blob has shape {arr.shape}, expected (P, C, F)")
    return arr


def decode_table(blob: bytes, fields: int) -> np.ndarray:
    """A (rows, fields) float32 table: the set statistics or unit measures."""
    arr = load_npy(blob)
    if arr.ndim != 2 or arr.shape[1] < fields or arr.dtype.kind != "f":
        raise ValueError(f"Table blob has shape {arr.shape}, expected (rows, {fields})")
    return arr[:, :fields]


def real_values(levels, lo, hi) -> np.ndarray:
    """A channel's PNG levels back in real units, float64: the inverse of
    the writer's scaling from the channel's `min..max` (statistics) to
    0..255, within (max - min) / 510 of the logged value."""
    return lo + np.asarray(levels, np.float64) / 255.0 * (hi - lo)
