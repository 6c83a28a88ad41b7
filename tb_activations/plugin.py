"""The TensorBoard side: the backend of the "Activations" tab.

TensorBoard finds `ActivationsLoader` through the `tensorboard_plugins` entry
point. The plugin reads the series the writer made (see `metadata` for the
format) through TensorBoard's data provider only, so it works the same with
the Python loader and with the Rust data server (`--load_fast`). It must
import neither Keras nor TensorFlow: TensorBoard loads every plugin at start.

The HTTP routes are documented in docs/http-api.md. Bad parameters answer 400
and unknown runs, tags, steps, channels or probes answer 404, both as plain
text; `application`'s error handler turns `tensorboard.errors` into those.
"""

from __future__ import annotations

import base64
import collections
import functools
import importlib.resources
import io
import json
import logging
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_activations import metadata

logger = logging.getLogger("tb_activations")

PLUGIN_NAME = metadata.PLUGIN_NAME

# Steps kept per (run, layer) unless the user passes
# --samples_per_plugin=activations=N. TensorBoard's own default for a blob
# series is 10, which hides most of a training run; every kept step stays in
# the server's memory, so the default is still bounded.
DEFAULT_MAX_STEPS = 500

# Reads ask for every kept step. Passing 0 returns nothing (TensorBoard
# #5550), and both providers return the whole series for any larger bound.
_READ_ALL = 1 << 30

COLORMAPS = ("viridis", "gray", "magma", "inferno", "plasma", "coolwarm")

STATIC_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_STATIC_ROUTE = "/static/"
_STATIC_PREFIX = f"/data/plugin/{PLUGIN_NAME}{_STATIC_ROUTE}"

# ASCII digits only: int() would also take " 1", "1_0" and other scripts'
# digits. Twenty digits cover every step a summary can carry (int64).
_UINT = re.compile(r"[0-9]{1,20}")

# Blobs are read concurrently: with the Rust data server each read is a gRPC
# call of tens of milliseconds, mostly waiting, and a layer has a PNG per
# channel.
READ_THREADS = 16

# Decoded headers and statistics of recent steps; polling the panel asks for
# the same steps again and again.
_CACHE_BYTES = 32 * 1024 * 1024

# Blob references of recently read series, counted in references. Listing a
# series costs the providers time in proportion to steps x channels, and the
# panel reads the same series for every step and channel it shows.
_SERIES_CACHE_REFS = 200_000


@functools.cache
def frontend_dir():
    """The directory of the panel's files (a `Traversable`).

    An installed wheel has it as the package `tb_activations.frontend`; a
    source checkout or an editable install has the top-level `frontend/`.
    """
    try:
        d = importlib.resources.files("tb_activations.frontend")
        if d.is_dir():
            return d
    except (ImportError, TypeError, ValueError, AttributeError, OSError):
        pass
    import tb_activations

    return Path(tb_activations.__file__).resolve().parent.parent / "frontend"


class ActivationsLoader(base_plugin.TBLoader):
    """Raises the number of kept steps, then builds the plugin."""

    def fix_flags(self, flags):
        # The last point at which sampling can change: TensorBoard builds its
        # loaders from `samples_per_plugin` after every `fix_flags`.
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, DEFAULT_MAX_STEPS)

    def load(self, context):
        return ActivationsPlugin(context)


class _LRU:
    """A thread-safe LRU cache bounded by the total cost (bytes, say) of its
    values."""

    def __init__(self, max_cost: int):
        self._max_cost = max_cost
        self._cost = 0
        self._items: collections.OrderedDict[Any, tuple[Any, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._cost -= old[1]
            self._items[key] = (value, size)
            self._cost += size
            while self._cost > self._max_cost and len(self._items) > 1:
                self._cost -= self._items.popitem(last=False)[1][1]


@dataclass
class _Series:
    run: str
    tag: str
    info: metadata.LayerInfo
    data: list[provider.BlobSequenceDatum]  # well-formed kept steps, by step


@dataclass
class _Header:
    epoch: float | None
    batch: int | None
    index: int | None


class _Gone(Exception):
    """A blob of a listed step could not be read (evicted or corrupt)."""


def _encode_levels(levels: np.ndarray) -> str:
    """Gray levels as JSON can carry them: the raw bytes, base64."""
    return base64.b64encode(np.ascontiguousarray(levels, dtype=np.uint8).tobytes()).decode("ascii")


def _show(value: str, limit: int = 200) -> str:
    """A received value, quoted for an error message, cut if long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


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


def _number(v, kind):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return kind(v)


@functools.cache
def colormap_luts() -> dict[str, list[list[int]]]:
    """8-bit lookup tables, 256 entries each, from matplotlib's colormaps."""
    import matplotlib

    luts = {}
    for name in COLORMAPS:
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
        luts[name] = np.round(rgba[:, :3] * 255).astype(int).tolist()
    return luts


class ActivationsPlugin(base_plugin.TBPlugin):
    """Serves the logged activations and the panel that shows them."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._provider = context.data_provider
        limit = (context.sampling_hints or {}).get(PLUGIN_NAME)
        # 0 keeps every step; None means this process does not know the limit
        # (an app built without TensorBoard's flags).
        self._sampling_limit = int(limit) if limit else None
        self._cache = _LRU(_CACHE_BYTES)
        self._series_cache = _LRU(_SERIES_CACHE_REFS)
        self._kept_counts: dict[tuple[str, str, str], tuple[tuple, int]] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._warned_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def get_plugin_apps(self):
        return {
            "/tags": self._serve_tags,
            "/steps": self._serve_steps,
            "/layer": self._serve_layer,
            "/channel": self._serve_channel,
            "/series": self._serve_series,
            "/stats": self._serve_stats,
            "/probe": self._serve_probe,
            "/colormaps": self._serve_colormaps,
            _STATIC_ROUTE + "*": self._serve_static,
        }

    def is_active(self):
        return False  # TensorBoard's `list_plugins` of the data provider suffices

    def data_plugin_names(self):
        return (PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path=_STATIC_ROUTE + "index.js", tab_name="Activations"
        )

    # -- parameters --------------------------------------------------------

    @staticmethod
    def _one(request, name: str, expected: str, default: str | None = None) -> str:
        values = request.args.getlist(name)
        if not values:
            if default is not None:
                return default
            raise errors.InvalidArgumentError(f"Missing parameter {name!r}: expected {expected}.")
        if len(values) > 1:
            raise errors.InvalidArgumentError(
                f"Parameter {name!r} was given {len(values)} times; expected it once, "
                f"as {expected}. Received: {', '.join(_show(v) for v in values)}"
            )
        return values[0]

    def _name_arg(self, request, name: str) -> str:
        value = self._one(request, name, f"a {name} name")
        if not value:
            raise errors.InvalidArgumentError(
                f"Parameter {name!r} is empty; expected a {name} name."
            )
        return value

    def _uint_arg(self, request, name: str, default: int | None = None) -> int:
        expected = "a non-negative integer"
        value = self._one(request, name, expected, None if default is None else str(default))
        if not _UINT.fullmatch(value):
            raise errors.InvalidArgumentError(
                f"Parameter {name!r} must be {expected} (at most 20 digits). "
                f"Received: {name}={_show(value)}"
            )
        return int(value)

    # -- reading -----------------------------------------------------------

    def _warn_once(self, run: str, tag: str, problem: str) -> None:
        key = (run, tag, problem)
        with self._warned_lock:
            if key in self._warned or len(self._warned) > 10_000:
                return
            self._warned.add(key)
        logger.warning("tb_activations: run %r, tag %r: %s", run, tag, problem)

    def _parse(self, run: str, tag: str, content: bytes) -> metadata.LayerInfo | None:
        try:
            info = metadata.parse_plugin_metadata(content)
        except (ValueError, TypeError) as e:
            self._warn_once(run, tag, f"skipped: {e}")
            return None
        # Parsing checks the version and the field names, not their types;
        # the blob arithmetic below needs these to be counts.
        for name in ("probes", "channels", "height", "width"):
            value = getattr(info, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self._warn_once(run, tag, f"skipped: {name} is not a count: {value!r}")
                return None
        if not all(isinstance(f, str) for f in info.stats_fields):
            self._warn_once(run, tag, f"skipped: bad stats_fields {info.stats_fields!r}")
            return None
        return info

    def _well_formed(self, run, tag, info, data) -> list[provider.BlobSequenceDatum]:
        """Drops steps whose blob count does not match the layer's metadata
        (a truncated event, or a run directory reused for another model)."""
        good = [d for d in data if len(d.values) == info.blob_count]
        if len(good) < len(data):
            self._warn_once(
                run,
                tag,
                f"ignoring {len(data) - len(good)} steps without the "
                f"{info.blob_count} blobs the layer's metadata implies",
            )
        return good

    @staticmethod
    def _version(ts) -> tuple:
        """Changes whenever the kept steps of a series may have: every new
        step raises max_step or max_wall_time."""
        return (ts.max_step, ts.max_wall_time, ts.max_length, ts.plugin_content)

    def _remember(self, experiment: str, series: _Series, version: tuple) -> None:
        key = (experiment, series.run, series.tag)
        refs = sum(len(d.values) for d in series.data)
        self._series_cache.put(key, (version, series), refs + 1)
        if len(self._kept_counts) > 10_000:
            self._kept_counts.clear()
        self._kept_counts[key] = (version, len(series.data))

    def _series(self, ctx, experiment: str, run: str, tag: str) -> _Series:
        rtf = provider.RunTagFilter(runs=[run], tags=[tag])
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=PLUGIN_NAME, run_tag_filter=rtf
        )
        ts = listing.get(run, {}).get(tag)
        if ts is None:
            if tag == metadata.PROBE_TAG:
                raise errors.NotFoundError(f"Run {run!r} has no probe image logged.")
            raise errors.NotFoundError(f"No activations logged for run {run!r}, tag {tag!r}.")
        info = self._parse(run, tag, ts.plugin_content)
        if info is None:
            raise errors.NotFoundError(
                f"The activations of run {run!r}, tag {tag!r} are in a format this "
                "version of tb-activations cannot read."
            )
        version = self._version(ts)
        cached = self._series_cache.get((experiment, run, tag))
        if cached is not None and cached[0] == version:
            return cached[1]
        data = self._provider.read_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=PLUGIN_NAME,
            downsample=_READ_ALL,
            run_tag_filter=rtf,
        )
        kept = data.get(run, {}).get(tag, [])
        series = _Series(run, tag, info, self._well_formed(run, tag, info, kept))
        self._remember(experiment, series, version)
        return series

    def _blob(self, ctx, datum, index: int) -> bytes:
        try:
            return self._provider.read_blob(ctx, blob_key=datum.values[index].blob_key)
        except (errors.NotFoundError, KeyError) as e:
            # The Rust data server evicts a step that sampling drops after
            # it was listed; the Python loader forgets a run that vanished.
            raise _Gone(f"step {datum.step} is no longer available") from e

    def _map(self, fn, items) -> list:
        """`fn` over `items` in the reading threads; None where a blob is gone.

        `fn` must not itself wait on the pool."""

        def call(item):
            try:
                return fn(item)
            except _Gone:
                return None

        items = list(items)
        if len(items) < 2:
            return [call(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="tb_activations")
        return list(self._pool.map(call, items))

    def _header(self, ctx, datum) -> _Header:
        key = ("header", datum.values[metadata.HEADER_INDEX].blob_key, datum.wall_time)
        header = self._cache.get(key)
        if header is None:
            blob = self._blob(ctx, datum, metadata.HEADER_INDEX)
            try:
                d = metadata.decode_header(blob)
            except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
                d = None
            d = d if isinstance(d, dict) else {}
            header = _Header(
                epoch=_number(d.get("epoch"), float),
                batch=_number(d.get("batch"), int),
                index=_number(d.get("index"), int),
            )
            self._cache.put(key, header, 128)
        return header

    def _stats(self, ctx, series: _Series, datum) -> np.ndarray:
        """The step's (probes, channels, fields) statistics, fields cut to
        the names the metadata gives."""
        key = ("stats", datum.values[metadata.STATS_INDEX].blob_key, datum.wall_time)
        stats = self._cache.get(key)
        if stats is None:
            blob = self._blob(ctx, datum, metadata.STATS_INDEX)
            info = series.info
            try:
                stats = metadata.decode_stats(blob)
            except (ValueError, OSError, EOFError) as e:
                self._warn_once(series.run, series.tag, f"unreadable statistics: {e}")
                raise _Gone(f"step {datum.step} has unreadable statistics") from None
            if stats.dtype.kind not in "fiu":
                self._warn_once(series.run, series.tag, f"statistics of dtype {stats.dtype}")
                raise _Gone(f"step {datum.step} has unreadable statistics")
            if stats.shape[:2] != (info.probes, info.channels):
                self._warn_once(
                    series.run,
                    series.tag,
                    f"statistics of shape {stats.shape} do not match "
                    f"{info.probes} probes x {info.channels} channels",
                )
                raise _Gone(f"step {datum.step} has statistics of the wrong shape")
            stats = stats[:, :, : len(info.stats_fields)]
            self._cache.put(key, stats, stats.nbytes + 128)
        return stats

    def _levels(self, series: _Series, datum, png: bytes) -> np.ndarray:
        """The (height, width) gray levels of one channel's 8-bit gray PNG.

        Decoded here, by Pillow, so the panel receives levels it can colour
        directly instead of hundreds of small PNGs to decode. The size is the
        PNG's own: the writer reduces a units or sequence strip longer than
        its `max_size` while the metadata keeps the strip's full length."""
        try:
            with Image.open(io.BytesIO(png)) as image:
                mode = image.mode
                levels = np.asarray(image)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            problem = f"an unreadable channel image ({e})"
        else:
            if mode == "L" and levels.ndim == 2:
                return levels
            problem = f"a channel image of mode {mode}, not 8-bit gray"
        self._warn_once(series.run, series.tag, problem)
        raise _Gone(f"step {datum.step} has {problem}")

    def _fields(self, series: _Series, stats: np.ndarray) -> list[str]:
        return list(series.info.stats_fields[: stats.shape[2]])

    @staticmethod
    def _find(series: _Series, step: int):
        for datum in series.data:
            if datum.step == step:
                return datum
        kept = [d.step for d in series.data]
        shown = ", ".join(map(str, kept[:20])) + (", ..." if len(kept) > 20 else "")
        raise errors.NotFoundError(
            f"Step {step} of run {series.run!r}, tag {series.tag!r} is not kept. "
            f"Kept steps: [{shown}]"
        )

    @staticmethod
    def _check_probe(series: _Series, probe: int) -> None:
        if probe >= series.info.probes:
            raise errors.NotFoundError(
                f"Probe {probe} is out of range: run {series.run!r}, tag {series.tag!r} "
                f"has {series.info.probes} probe(s), numbered from 0."
            )

    @staticmethod
    def _check_channel(series: _Series, channel: int) -> None:
        if channel >= series.info.channels:
            raise errors.NotFoundError(
                f"Channel {channel} is out of range: run {series.run!r}, tag "
                f"{series.tag!r} has {series.info.channels} logged channel(s), numbered from 0."
            )

    # -- routes ------------------------------------------------------------

    def _json(self, request, body):
        try:
            # Serialized here: TensorBoard's own path walks every number in
            # Python first, which dominates for the statistics of many steps.
            text = json.dumps(body, allow_nan=False)
        except ValueError:  # a non-finite number this module did not expect
            return http_util.Respond(request, body, "application/json")
        return http_util.Respond(request, text, "application/json")

    @wrappers.Request.application
    def _serve_tags(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=PLUGIN_NAME
        )
        infos = {}
        counts = {}
        stale = []
        for run, tags in listing.items():
            for tag, ts in tags.items():
                info = self._parse(run, tag, ts.plugin_content)
                if info is None:
                    continue
                infos[run, tag] = info
                known = self._kept_counts.get((experiment, run, tag))
                if known is None or known[0] != self._version(ts):
                    stale.append((run, tag))
                else:
                    counts[run, tag] = known[1]
        if stale:
            # One read of the series that changed since they were last counted.
            data = self._provider.read_blob_sequences(
                ctx,
                experiment_id=experiment,
                plugin_name=PLUGIN_NAME,
                downsample=_READ_ALL,
                run_tag_filter=provider.RunTagFilter(
                    runs={r for r, _ in stale}, tags={t for _, t in stale}
                ),
            )
            for run, tag in stale:
                info = infos[run, tag]
                kept = self._well_formed(run, tag, info, data.get(run, {}).get(tag, []))
                series = _Series(run, tag, info, kept)
                self._remember(experiment, series, self._version(listing[run][tag]))
                counts[run, tag] = len(kept)
        result: dict[str, dict[str, Any]] = {}
        for (run, tag), info in infos.items():
            ts = listing[run][tag]
            entry = info.to_json()
            entry.update(
                steps_kept=counts[run, tag],
                max_step=ts.max_step,
                max_wall_time=ts.max_wall_time,
                sampling_limit=self._sampling_limit,
            )
            result.setdefault(run, {})[tag] = entry
        return self._json(request, result)

    @wrappers.Request.application
    def _serve_steps(self, request):
        run = self._name_arg(request, "run")
        tag = self._name_arg(request, "tag")
        ctx = plugin_util.context(request.environ)
        series = self._series(ctx, plugin_util.experiment_id(request.environ), run, tag)
        steps = []
        logged = 0
        headers = self._map(lambda d: self._header(ctx, d), series.data)
        for datum, header in zip(series.data, headers):
            if header is None:
                continue
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
        return self._json(
            request,
            {
                "run": run,
                "tag": tag,
                "steps": steps,
                "steps_kept": len(steps),
                "steps_logged": max(len(steps), logged),
                "sampling_limit": self._sampling_limit,
            },
        )

    @wrappers.Request.application
    def _serve_layer(self, request):
        run = self._name_arg(request, "run")
        tag = self._name_arg(request, "tag")
        step = self._uint_arg(request, "step")
        probe = self._uint_arg(request, "probe", default=0)
        ctx = plugin_util.context(request.environ)
        series = self._series(ctx, plugin_util.experiment_id(request.environ), run, tag)
        datum = self._find(series, step)
        self._check_probe(series, probe)
        info = series.info
        try:
            header = self._header(ctx, datum)
            stats = self._stats(ctx, series, datum)
        except _Gone as e:
            raise errors.NotFoundError(f"Run {run!r}, tag {tag!r}: {e}.") from None
        pngs = self._map(
            lambda c: self._blob(ctx, datum, info.image_index(probe, c)), range(info.channels)
        )
        if any(png is None for png in pngs):
            raise errors.NotFoundError(
                f"Run {run!r}, tag {tag!r}: step {datum.step} is no longer available."
            )
        try:
            maps = [self._levels(series, datum, png) for png in pngs]
        except _Gone as e:
            raise errors.NotFoundError(f"Run {run!r}, tag {tag!r}: {e}.") from None
        shape = maps[0].shape if maps else (info.height, info.width)
        for c, m in enumerate(maps):
            if m.shape != shape:
                # One buffer of equal maps is what the panel splits; a step
                # mixing sizes is not something the writer makes.
                problem = f"channel {c} of shape {m.shape} where channel 0's is {shape}"
                self._warn_once(run, tag, f"channel images of different sizes: {problem}")
                raise errors.NotFoundError(
                    f"Run {run!r}, tag {tag!r}: step {datum.step} has {problem}."
                )
        levels = np.stack(maps) if maps else np.zeros((0, *shape), np.uint8)
        return self._json(
            request,
            {
                "run": run,
                "tag": tag,
                "step": datum.step,
                "wall_time": datum.wall_time,
                "epoch": header.epoch,
                "probe": probe,
                "layout": info.layout,
                "height": shape[0],
                "width": shape[1],
                "channels": info.channels,
                "stats_fields": self._fields(series, stats),
                "stats": _finite_or_none(stats[probe]),
                "pixels": _encode_levels(levels),
            },
        )

    @wrappers.Request.application
    def _serve_channel(self, request):
        run = self._name_arg(request, "run")
        tag = self._name_arg(request, "tag")
        step = self._uint_arg(request, "step")
        channel = self._uint_arg(request, "channel")
        probe = self._uint_arg(request, "probe", default=0)
        ctx = plugin_util.context(request.environ)
        series = self._series(ctx, plugin_util.experiment_id(request.environ), run, tag)
        datum = self._find(series, step)
        self._check_probe(series, probe)
        self._check_channel(series, channel)
        try:
            png = self._blob(ctx, datum, series.info.image_index(probe, channel))
        except _Gone as e:
            raise errors.NotFoundError(f"Run {run!r}, tag {tag!r}: {e}.") from None
        return http_util.Respond(request, png, "image/png")

    @wrappers.Request.application
    def _serve_series(self, request):
        run = self._name_arg(request, "run")
        tag = self._name_arg(request, "tag")
        channel = self._uint_arg(request, "channel")
        probe = self._uint_arg(request, "probe", default=0)
        ctx = plugin_util.context(request.environ)
        series = self._series(ctx, plugin_util.experiment_id(request.environ), run, tag)
        self._check_probe(series, probe)
        self._check_channel(series, channel)
        index = series.info.image_index(probe, channel)

        def read(datum):
            return (
                self._header(ctx, datum),
                self._stats(ctx, series, datum),
                self._levels(series, datum, self._blob(ctx, datum, index)),
            )

        steps = []
        for datum, got in zip(series.data, self._map(read, series.data)):
            if got is None:
                continue
            header, stats, levels = got
            steps.append(
                {
                    "step": datum.step,
                    "wall_time": datum.wall_time,
                    "epoch": header.epoch,
                    "stats": _finite_or_none(stats[probe, channel]),
                    "height": levels.shape[0],
                    "width": levels.shape[1],
                    "pixels": _encode_levels(levels),
                }
            )
        return self._json(
            request,
            {"run": run, "tag": tag, "channel": channel, "probe": probe, "steps": steps},
        )

    @wrappers.Request.application
    def _serve_stats(self, request):
        run = self._name_arg(request, "run")
        tag = self._name_arg(request, "tag")
        ctx = plugin_util.context(request.environ)
        series = self._series(ctx, plugin_util.experiment_id(request.environ), run, tag)
        fields = list(series.info.stats_fields)

        def read(datum):
            return self._header(ctx, datum), self._stats(ctx, series, datum)

        steps = []
        for datum, got in zip(series.data, self._map(read, series.data)):
            if got is None:
                continue
            header, stats = got
            fields = self._fields(series, stats)
            steps.append(
                {
                    "step": datum.step,
                    "wall_time": datum.wall_time,
                    "epoch": header.epoch,
                    "stats": _finite_or_none(stats),
                }
            )
        return self._json(request, {"run": run, "tag": tag, "fields": fields, "steps": steps})

    @wrappers.Request.application
    def _serve_probe(self, request):
        run = self._name_arg(request, "run")
        probe = self._uint_arg(request, "probe", default=0)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        series = self._series(ctx, experiment, run, metadata.PROBE_TAG)
        if not series.data:
            raise errors.NotFoundError(f"Run {run!r} has no readable probe image.")
        self._check_probe(series, probe)
        try:
            png = self._blob(ctx, series.data[-1], series.info.image_index(probe, 0))
        except _Gone as e:
            raise errors.NotFoundError(f"Probe image of run {run!r}: {e}.") from None
        return http_util.Respond(request, png, "image/png")

    @wrappers.Request.application
    def _serve_colormaps(self, request):
        return self._json(request, colormap_luts())

    @wrappers.Request.application
    def _serve_static(self, request):
        path = request.path
        name = path[len(_STATIC_PREFIX) :] if path.startswith(_STATIC_PREFIX) else ""
        # Only a plain name of a file listed in the directory, so neither
        # "..", nor a decoded "%2F", nor an absolute path can leave it.
        suffix = Path(name).suffix if name and "/" not in name and "\\" not in name else ""
        content_type = STATIC_CONTENT_TYPES.get(suffix)
        files = {}
        if content_type:
            try:
                files = {f.name: f for f in frontend_dir().iterdir()}
            except OSError:
                logger.warning("tb_activations: the panel's files are missing: %s", frontend_dir())
        f = files.get(name)
        if f is None or not f.is_file():
            raise errors.NotFoundError(f"No static file {_show(name)} in the Activations plugin.")
        return http_util.Respond(request, f.read_bytes(), content_type)
