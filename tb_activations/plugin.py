"""The TensorBoard side: the backend of the "Activations" tab.

TensorBoard finds `ActivationsLoader` through the `tensorboard_plugins` entry
point. The plugin reads the series the writer made (see `metadata` for the
format) through a `reader.Reader` over TensorBoard's data provider, so it
works the same with the Python loader and with the Rust data server
(`--load_fast`). It must import neither Keras nor TensorFlow: TensorBoard
loads every plugin at start.

Each HTTP route (documented in docs/http-api.md) is a thin `*_route` handler
that parses the query (`params`) and responds, over a pure `*_impl` function
of the reader and the parameters that returns the body. Bad parameters
answer 400 and unknown runs, tags, steps, channels or probes answer 404, both
as plain text; `application`'s error handler turns `tensorboard.errors` into
those.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import zlib
from typing import NamedTuple

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # a platform without its wheel: zlib instead
    _isal_zlib = None

from tb_activations import curves, export, health, measures, metadata, params
from tb_activations.colormaps import COLORMAPS, colormap_luts
from tb_activations.reader import Reader, Series, StatsSeries
from tb_activations.static import static_body, static_impl

logger = logging.getLogger("tb_activations")

PLUGIN_NAME = metadata.PLUGIN_NAME

# Steps kept per (run, layer) unless the user passes
# --samples_per_plugin=activations=N. TensorBoard's own default for a blob
# series is 10, which hides most of a training run; every kept step stays in
# the server's memory, so the default is still bounded.
DEFAULT_MAX_STEPS = 500
LATEST = "latest"
"""The `step` of `layer` that names the latest kept step."""

_STATIC_ROUTE = "/static/"
_STATIC_PREFIX = f"/data/plugin/{PLUGIN_NAME}{_STATIC_ROUTE}"


class ActivationsLoader(base_plugin.TBLoader):
    """Raises the number of kept steps, then builds the plugin."""

    def fix_flags(self, flags):
        # The last point at which sampling can change: TensorBoard builds its
        # loaders from `samples_per_plugin` after every `fix_flags`.
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            # The index series keeps as many steps: the same ones (`reader`).
            kept = samples.setdefault(PLUGIN_NAME, DEFAULT_MAX_STEPS)
            samples.setdefault(metadata.INDEX_PLUGIN_NAME, kept)

    def load(self, context):
        return ActivationsPlugin(context)


# -- response bodies ---------------------------------------------------------


class Base64(str):
    """Base64 text, which `dumps` splices into the JSON unscanned."""

    __slots__ = ()


def _encode_levels(levels: np.ndarray) -> Base64:
    """Gray levels as JSON can carry them: the raw bytes, base64."""
    raw = np.ascontiguousarray(levels, dtype=np.uint8).data
    return Base64(base64.b64encode(raw).decode("ascii"))


def dumps(body: dict) -> bytes:
    """`body` as UTF-8 JSON, its top-level `Base64` values spliced in: for
    a layer of 64 maps of 224 x 224 (4.3 MB), 11 ms less than `json.dumps`."""
    spliced = [k for k, v in body.items() if isinstance(v, Base64)]
    if not spliced:
        return json.dumps(body, allow_nan=False).encode("utf-8")
    rest = {k: v for k, v in body.items() if k not in spliced}
    parts = [json.dumps(rest, allow_nan=False)[:-1].encode("utf-8")]
    for i, k in enumerate(spliced):
        comma = ", " if rest or i else ""
        parts += [f'{comma}{json.dumps(k)}: "'.encode(), body[k].encode("ascii"), b'"']
    parts.append(b"}")
    return b"".join(parts)


def _finite_or_none(a: np.ndarray) -> list:
    """Nested lists of floats, with None for NaN and infinities (JSON has
    neither)."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()
    out = a.astype(object)
    out[~finite] = None
    return out.tolist()


def tags_impl(reader: Reader, ctx, experiment: str) -> dict:
    result: dict[str, dict] = {}
    for run, tags in reader.tags(ctx, experiment).items():
        for tag, listed in tags.items():
            entry = listed.info.to_json()
            entry.update(
                steps_kept=listed.steps_kept,
                max_step=listed.max_step,
                max_wall_time=listed.max_wall_time,
                sampling_limit=reader.sampling_limit,
            )
            result.setdefault(run, {})[tag] = entry
    return result


def steps_impl(reader: Reader, ctx, experiment: str, run: str, tag: str) -> dict:
    series = reader.series(ctx, experiment, run, tag)
    steps = []
    logged = 0
    for datum, header in reader.headers(ctx, series):
        steps.append(
            {
                "step": datum.step,
                "wall_time": datum.wall_time,
                "epoch": header.epoch,
                "batch": header.batch,
            }
        )
        if header.index is not None:
            logged = max(logged, header.index + 1)
    return {
        "run": run,
        "tag": tag,
        "steps": steps,
        "steps_kept": len(steps),
        "steps_logged": max(len(steps), logged),
        "sampling_limit": reader.sampling_limit,
    }


def layer_impl(
    reader: Reader, ctx, experiment: str, run: str, tag: str, step: int | None, probe: int
) -> dict:
    """One probe's every channel at `step`, or at the latest kept step when
    `step` is None."""
    series = reader.series(ctx, experiment, run, tag)
    datum = series.find(step) if step is not None else series.latest()
    series.check_probe(probe)
    header = reader.header(ctx, series, datum)
    stats = reader.stats(ctx, series, datum)
    levels = reader.layer_levels(ctx, series, datum, probe)
    return {
        "run": run,
        "tag": tag,
        "step": datum.step,
        "wall_time": datum.wall_time,
        "epoch": header.epoch,
        "probe": probe,
        "layout": series.info.layout,
        "height": levels.shape[1],
        "width": levels.shape[2],
        "channels": series.info.channels,
        "stats_fields": series.fields(stats),
        "stats": _finite_or_none(stats[probe]),
        "pixels": _encode_levels(levels),
    }


def channel_impl(
    reader: Reader, ctx, experiment: str, run: str, tag: str, step: int, channel: int, probe: int
) -> bytes:
    series = reader.series(ctx, experiment, run, tag)
    datum = series.find(step)
    series.check_probe(probe)
    series.check_channel(channel)
    return reader.png(ctx, series, datum, probe, channel)


def series_impl(
    reader: Reader, ctx, experiment: str, run: str, tag: str, channel: int, probe: int
) -> dict:
    series = reader.series(ctx, experiment, run, tag)
    series.check_probe(probe)
    series.check_channel(channel)
    steps = [
        {
            "step": s.datum.step,
            "wall_time": s.datum.wall_time,
            "epoch": s.header.epoch,
            "stats": _finite_or_none(s.stats),
            "height": s.levels.shape[0],
            "width": s.levels.shape[1],
            "pixels": _encode_levels(s.levels),
        }
        for s in reader.channel_series(ctx, series, probe, channel)
    ]
    return {"run": run, "tag": tag, "channel": channel, "probe": probe, "steps": steps}


def stats_impl(reader: Reader, ctx, experiment: str, run: str, tag: str) -> dict:
    got = reader.stats_series(ctx, reader.series(ctx, experiment, run, tag))
    steps = [
        {
            "step": datum.step,
            "wall_time": datum.wall_time,
            "epoch": header.epoch,
            "stats": _finite_or_none(stats),
        }
        for datum, header, stats in zip(got.data, got.headers, got.stats)
    ]
    return {"run": run, "tag": tag, "fields": got.fields, "steps": steps}


def probe_impl(
    reader: Reader, ctx, experiment: str, run: str, probe: int, input_name: str | None = None
) -> bytes:
    """The probe's PNG: of the model's main input, or of the input named `input_name`."""
    series = reader.series(ctx, experiment, run, metadata.PROBE_TAG)
    if input_name is not None and input_name != series.info.input_name:
        series = reader.series(ctx, experiment, run, f"{metadata.PROBE_TAG}/{input_name}")
    if not series.data:
        raise errors.NotFoundError(f"Run {run!r} has no readable probe image.")
    series.check_probe(probe)
    return reader.png(ctx, series, series.data[-1], probe, 0)


# -- measures over training (docs/measures.md) ---------------------------------

LAYER_MEASURES = (
    "change_prev",
    "change_start",
    "drift_prev",
    "drift_start",
    "dead_fraction",
    "mean",
    *health.LAYER_MEASURES,
)
CHANNEL_MEASURES = ("change_prev", "change_start", "dead", "mean", "max", "zero_fraction")
# One row per unit: a channel, or one unit of a Dense layer (docs/measures.md).
UNIT_MEASURES = health.UNIT_MEASURES
ENCODING = "base64 little-endian float32, row-major (channels, steps); NaN = null"


def gzipped(text: bytes) -> bytes:
    """`text` as a gzip stream (its header's time 0), by ISA-L (`isal`) at
    level 1 where it imports: for a layer of 64 maps of 224 x 224 (4.3 MB),
    11 ms for 1.87 MB against 35 ms for 1.92 MB by `zlib_gzipped`."""
    if _isal_zlib is None:
        return zlib_gzipped(text)
    packer = _isal_zlib.compressobj(1, _isal_zlib.DEFLATED, 31)
    return packer.compress(text) + packer.flush()


def zlib_gzipped(text: bytes) -> bytes:
    """`gzipped` without ISA-L: zlib's level 1, run-length matches only."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31, 9, zlib.Z_RLE)
    return packer.compress(text) + packer.flush()


class Answer(dict):
    """A computed JSON body, kept in the reader's cache with its text
    serialized and gzipped once: a repeated request sends the same bytes
    without numpy, serialization or compression work (a timeline of 512
    channels over 200 steps is 3 MiB of text, which TensorBoard would
    otherwise gzip again on every request). Never mutate one."""

    __slots__ = ("gzipped", "nbytes")

    def __init__(self, body: dict):
        super().__init__(body)
        text = json.dumps(body, allow_nan=False).encode("utf-8")
        self.gzipped = gzipped(text)
        # The body's strings and the gzipped copy, for the reader's cache bound.
        self.nbytes = len(text) + len(self.gzipped) + 256

    @classmethod
    def sized(cls, body: dict) -> tuple[Answer, int]:
        answer = cls(body)
        return answer, answer.nbytes


def _float32_b64(rows: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(rows, dtype="<f4").tobytes()).decode("ascii")


class _Kept(NamedTuple):
    logged: measures.Logged  # what the change, drift, dead and mean come from
    units: list  # each step's (units, fields) unit measures, or None
    unit_fields: list[str]
    nonfinite: np.ndarray  # (steps,) bool, from the statistics
    info: metadata.LayerInfo


def _kept(got: StatsSeries) -> _Kept:
    """A series' readable steps, one per step number (the last logged of a
    repeated one) in increasing order, with their statistics as one array
    (the probe set's, from format version 3, as one "probe"), header dicts
    and field names."""
    got = got.latest()
    info = got.series.info
    headers = [h.values for h in got.headers]
    if got.sets and all(v is not None for v in got.sets):
        stats = np.array([v.stats[None] for v in got.sets]).reshape(
            len(got.sets), 1, info.channels, len(info.set_fields)
        )
        fields = list(info.set_fields)
        units = [v.units for v in got.sets]
    else:
        stats = got.array()
        fields = list(info.stats_fields[: stats.shape[-1]])
        units = [None] * len(got.steps)
    column = fields.index("nonfinite_fraction") if "nonfinite_fraction" in fields else None
    with np.errstate(invalid="ignore"):
        nonfinite = (
            (stats[..., column] > 0).any(axis=(1, 2))
            if column is not None and stats.size
            else np.zeros(len(got.steps), bool)
        )
    logged = measures.Logged(got.steps, stats, headers, fields)
    return _Kept(logged, units, list(info.unit_fields), nonfinite, info)


def _rows(fn, logged: measures.Logged):
    """`fn`'s rows, or the reason the series' statistics cannot give any."""
    if not logged.steps:
        return None, "no readable step"
    try:
        return fn(logged), None
    except ValueError as e:
        # Statistics a foreign or damaged log gives: never a server error.
        return None, f"unusable statistics: {e}"


def _null_where_nan(a: np.ndarray) -> list:
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), a, None).tolist()


def overview_impl(
    reader: Reader, ctx, experiment: str, run: str, tau: float = health.DEFAULT_TAU
) -> Answer:
    versions, layers = reader.listed_layers(ctx, experiment, run)
    key = ("overview", experiment, run, versions, tau)
    return reader.memo(key, lambda: Answer.sized(_overview(reader, ctx, run, layers(), tau)))


def _health_rows(kept: _Kept, tau: float):
    steps, _, headers, _ = kept.logged
    args = (steps, headers, kept.units, kept.unit_fields, kept.nonfinite)
    return health.layer_rows(*args, kept.info.activation, tau)


def _overview(reader: Reader, ctx, run: str, layers: list[Series], tau: float) -> dict:
    read = [_kept(reader.stats_series(ctx, series)) for series in layers]
    steps = sorted({s for kept in read for s in kept.logged.steps})
    where = {s: i for i, s in enumerate(steps)}
    rows = {m: np.full((len(layers), len(steps)), np.nan) for m in LAYER_MEASURES}
    unavailable: dict[str, dict[str, str]] = {}
    first_nonfinite, rank_max = {}, {}
    for i, (series, kept) in enumerate(zip(layers, read)):
        logged = kept.logged
        got, problem = _rows(measures.layer_rows, logged)
        columns = [where[s] for s in logged.steps]
        values, reasons = {}, {}
        if got is not None:
            values, reasons = dict(got.values), dict(got.reasons)
            values_h, reasons_h = _health_rows(kept, tau)
            values.update(values_h)
            reasons.update(reasons_h)
        for m in LAYER_MEASURES:
            why = problem or reasons.get(m)
            if why:
                unavailable.setdefault(m, {})[series.tag] = why
            if got is not None:
                rows[m][i, columns] = values[m]
        broke = health.first_nonfinite(logged.steps, logged.headers, kept.nonfinite)
        if broke is not None:
            first_nonfinite[series.tag] = broke
        units = series.info.units if series.info.units is not None else series.info.channels
        rank_max[series.tag] = max(0, min(series.info.set_size - 1, units))
    return {
        "run": run,
        "layers": [s.tag for s in layers],
        "steps": steps,
        "measures": list(LAYER_MEASURES),
        "rows": {m: _null_where_nan(rows[m]) for m in LAYER_MEASURES},
        "unavailable": unavailable,
        "first_nonfinite": first_nonfinite,
        "effective_rank_max": rank_max,
        "samples": {s.tag: s.info.set_size for s in layers},
        "tau": tau,
    }


def timeline_impl(reader: Reader, ctx, experiment: str, run: str, tag: str) -> Answer:
    series = reader.series(ctx, experiment, run, tag)
    if tag == metadata.PROBE_TAG or series.info.layout == "probe":
        raise errors.NotFoundError(
            f"Tag {tag!r} of run {run!r} is the probe image, which has no timeline; "
            "ask for a layer's tag."
        )
    key = ("timeline", experiment, run, tag, series.version)
    return reader.memo(key, lambda: Answer.sized(_timeline(reader, ctx, series)))


def _timeline(reader: Reader, ctx, series: Series) -> dict:
    kept = _kept(reader.stats_series(ctx, series))
    logged = kept.logged
    steps, stats, headers, fields = logged
    channels = series.info.channels
    rows = {m: np.full((channels, len(steps)), np.nan) for m in CHANNEL_MEASURES}
    got, problem = _rows(measures.channel_rows, logged)
    unavailable = {}
    events: list[dict] = []
    never: list[int] = []
    if got is not None:
        dead = got.values["dead"]
        rows["change_prev"] = got.values["change_prev"]
        rows["change_start"] = got.values["change_start"]
        rows["dead"] = dead.astype(np.float64)
        rows.update(measures.statistic_rows(stats, fields))
        events = measures.events(steps, dead)
        never = measures.never_active(dead)
        unavailable = dict(got.reasons)
    elif steps:
        unavailable = {m: problem for m in CHANNEL_MEASURES}
    unit_rows, reasons = health.unit_rows(
        steps, headers, kept.units, kept.unit_fields, kept.nonfinite
    )
    unavailable.update(reasons if steps else {})
    per_unit = series.info.layout == "units"
    for m in UNIT_MEASURES:
        rows[m] = unit_rows[m]
        if unit_rows[m].shape[0] != channels:
            # A Dense layer's one channel: its on-rate over all its units;
            # its units' scores are in `unit_rows`. Older logs: none.
            rows[m] = np.full((channels, len(steps)), np.nan)
            if per_unit and m == "on_rate" and unit_rows[m].shape[0]:
                rows[m][:] = unit_rows[m].mean(axis=0)
    return {
        "run": series.run,
        "tag": series.tag,
        "steps": steps,
        "channels": channels,
        "encoding": ENCODING,
        "rows": {m: _float32_b64(rows[m]) for m in (*CHANNEL_MEASURES, *UNIT_MEASURES)},
        "units": int(unit_rows["on_rate"].shape[0]),
        "unit_rows": ({m: _float32_b64(unit_rows[m]) for m in UNIT_MEASURES} if per_unit else {}),
        "events": events,
        "never_active": never,
        "unavailable": unavailable,
    }


def curves_impl(reader: Reader, ctx, experiment: str, run: str) -> Answer:
    scalars = reader.scalars(ctx, experiment, run)
    versions, read_layers = reader.listed_layers(ctx, experiment, run)
    key = ("curves", experiment, run, versions, scalars.version)

    def compute():
        layers = read_layers()
        logged = sorted(
            (datum.step, header.epoch)
            for series in layers
            for datum, header in reader.headers(ctx, series)
        )
        anchors = curves.epoch_anchors(logged)
        series = [
            curves.map_series(r, tag, points, anchors)
            for r, tags in scalars.points.items()
            for tag, points in tags.items()
        ]
        steps = sorted({step for step, _ in logged})
        return Answer.sized({"run": run, "steps": steps, "series": series})

    return reader.memo(key, compute)


# -- export: pictures to keep (tb_activations/export.py) ------------------------


@dataclasses.dataclass(frozen=True)
class Export:
    """An encoded picture and how to send it."""

    data: bytes
    media_type: str
    file_name: str


def export_impl(reader: Reader, ctx, experiment: str, picture: export.Picture) -> Export:
    """The picture (export.Picture), cached under the series' version."""
    series = reader.series(ctx, experiment, picture.run, picture.tag)

    def compute():
        data = export.render(reader, ctx, series, picture)
        return data, len(data) + 256

    data = reader.memo(("export", experiment, series.version, picture), compute)
    p = picture
    name = export.file_name(
        p.run, p.tag, p.format, channel=p.channel, step=p.step, probe=p.probe, info=series.info
    )
    return Export(data, export.MEDIA_TYPES[p.format], name)


def _option(request, key: str, choices, default: str) -> str:
    """A parameter that is one of `choices`; `default` when absent."""
    value = params.name(request, key) if key in request.args else default
    if value not in choices:
        raise errors.InvalidArgumentError(
            f"Parameter {key!r} must be one of {', '.join(choices)}. "
            f"Received: {key}={params.show(value)}"
        )
    return value


def export_params(request, run: str, tag: str) -> export.Picture:
    """The export route's picture: `channel` (an evolution) or `step` (a
    grid), never both, with a format that fits it."""
    has = [key for key in ("channel", "step") if key in request.args]
    if len(has) != 1:
        got = " and ".join(f"{k}={params.show(request.args[k])}" for k in has) or "neither"
        raise errors.InvalidArgumentError(
            "Parameters 'channel' and 'step': expected exactly one of them, channel= for "
            "a channel's evolution (gif or apng) or step= for the layer's grid (png). "
            f"Received: {got}"
        )
    evolution = has[0] == "channel"
    formats = export.ANIMATION_FORMATS if evolution else export.GRID_FORMATS
    number = params.uint(request, has[0])
    return export.Picture(
        run,
        tag,
        channel=number if evolution else None,
        step=None if evolution else number,
        probe=params.uint(request, "probe", default=0),
        format=_option(request, "format", formats, formats[0]),
        colormap=_option(request, "cmap", COLORMAPS, "viridis"),
        normalization=_option(request, "norm", export.NORMALIZATIONS, "channel"),
    )


# -- the plugin --------------------------------------------------------------


def _json(request, body):
    # Sent gzipped; TensorBoard unzips it on the way out for a client that
    # does not accept gzip.
    if isinstance(body, Answer):
        zipped = body.gzipped
    else:
        try:
            # Serialized here: TensorBoard's own path walks every number in
            # Python first, which dominates for the statistics of many steps.
            text = dumps(body)
        except ValueError:  # a non-finite number this module did not expect
            return http_util.Respond(request, body, "application/json")
        zipped = gzipped(text)
    return http_util.Respond(request, zipped, "application/json", content_encoding="gzip")


def _png(request, data: bytes):
    return http_util.Respond(request, data, "image/png")


class ActivationsPlugin(base_plugin.TBPlugin):
    """Serves the logged activations and the panel that shows them."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        hint = (context.sampling_hints or {}).get(PLUGIN_NAME)
        self._reader = Reader(context.data_provider, hint)

    def get_plugin_apps(self):
        return {
            "/tags": self._tags_route,
            "/steps": self._steps_route,
            "/layer": self._layer_route,
            "/channel": self._channel_route,
            "/series": self._series_route,
            "/stats": self._stats_route,
            "/probe": self._probe_route,
            "/overview": self._overview_route,
            "/timeline": self._timeline_route,
            "/curves": self._curves_route,
            "/colormaps": self._colormaps_route,
            "/export": self._export_route,
            _STATIC_ROUTE + "*": self._static_route,
        }

    def is_active(self):
        return False  # TensorBoard's `list_plugins` of the data provider suffices

    def data_plugin_names(self):
        return (PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path=_STATIC_ROUTE + "index.js", tab_name="Activations"
        )

    def _where(self, request, *run_tag: str) -> tuple:
        """The reader and the request's context and experiment, then the
        `run` and `tag` parameters named in `run_tag`: every route's opening."""
        environ = request.environ
        names = tuple(params.name(request, key) for key in run_tag)
        ctx = plugin_util.context(environ)
        return (self._reader, ctx, plugin_util.experiment_id(environ), *names)

    @wrappers.Request.application
    def _tags_route(self, request):
        return _json(request, tags_impl(*self._where(request)))

    @wrappers.Request.application
    def _steps_route(self, request):
        return _json(request, steps_impl(*self._where(request, "run", "tag")))

    @wrappers.Request.application
    def _layer_route(self, request):
        where = self._where(request, "run", "tag")
        step = params.uint_or(request, "step", LATEST)
        return _json(request, layer_impl(*where, step, params.uint(request, "probe", default=0)))

    @wrappers.Request.application
    def _channel_route(self, request):
        where = self._where(request, "run", "tag")
        return _png(request, channel_impl(*where, *params.uints(request, "step", "channel")))

    @wrappers.Request.application
    def _series_route(self, request):
        where = self._where(request, "run", "tag")
        return _json(request, series_impl(*where, *params.uints(request, "channel")))

    @wrappers.Request.application
    def _stats_route(self, request):
        return _json(request, stats_impl(*self._where(request, "run", "tag")))

    @wrappers.Request.application
    def _probe_route(self, request):
        name = params.name(request, "input") if "input" in request.args else None
        where = self._where(request, "run")
        return _png(request, probe_impl(*where, *params.uints(request), input_name=name))

    @wrappers.Request.application
    def _overview_route(self, request):
        tau = params.decimal(request, "tau", health.DEFAULT_TAU)
        return _json(request, overview_impl(*self._where(request, "run"), tau=tau))

    @wrappers.Request.application
    def _timeline_route(self, request):
        return _json(request, timeline_impl(*self._where(request, "run", "tag")))

    @wrappers.Request.application
    def _curves_route(self, request):
        return _json(request, curves_impl(*self._where(request, "run")))

    @wrappers.Request.application
    def _colormaps_route(self, request):
        return _json(request, colormap_luts())

    @wrappers.Request.application
    def _export_route(self, request):
        reader, ctx, experiment, run, tag = self._where(request, "run", "tag")
        got = export_impl(reader, ctx, experiment, export_params(request, run, tag))
        response = http_util.Respond(request, got.data, got.media_type)
        response.headers["Content-Disposition"] = f'attachment; filename="{got.file_name}"'
        return response

    @wrappers.Request.application
    def _static_route(self, request):
        path = request.path
        name = path[len(_STATIC_PREFIX) :] if path.startswith(_STATIC_PREFIX) else ""
        body, content_type = static_impl(name)
        zipped, etag = static_body(body)
        if request.headers.get("If-None-Match") == etag:
            return http_util.Respond(request, b"", content_type, code=304, headers=[("ETag", etag)])
        return http_util.Respond(
            request, zipped, content_type, content_encoding="gzip", headers=[("ETag", etag)]
        )
