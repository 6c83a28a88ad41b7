"""Reading logged activations back through TensorBoard's data provider.

A `Reader` opens a series (one run and tag, see `metadata` for the format)
and reads its steps: headers, statistics, and the channel PNGs, as bytes or
as gray levels decoded by Pillow. It goes through the data provider only, so
it reads the same with the Python loader and with the Rust data server
(`--load_fast`), and it must import neither Keras nor TensorFlow.

Errors the routes answer 404 for are raised as
`tensorboard.errors.NotFoundError`: an unknown run or tag, a series in a
format this version cannot read, a step sampling does not keep, a probe or
channel out of range, a blob gone or unreadable. Reads over many steps leave
out a step whose blobs are gone or unreadable instead.

Blobs are read concurrently from the Rust data server (`READ_THREADS`),
one after another from the in-process loader. Recently read series, headers
and statistics are cached, keyed so that a series TensorBoard has reloaded
is read again.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tensorboard import errors
from tensorboard.backend.event_processing import data_provider as multiplexer_provider
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.data import provider

from tb_activations import curves, encoding, metadata, step_index
from tb_activations.series import (
    _LRU,
    READ_ALL,
    ChannelStep,
    Header,
    Listed,
    Scalars,
    Series,
    SetValues,
    StatsSeries,
    _Gone,
)

__all__ = [
    "ChannelStep",
    "Header",
    "Listed",
    "READ_THREADS",
    "Reader",
    "Scalars",
    "Series",
    "StatsSeries",
]

logger = logging.getLogger("tb_activations")

# Blobs are read concurrently from the Rust data server: each read is a gRPC
# call of tens of milliseconds, mostly waiting, and a layer's step has up to
# a PNG per channel (format version 1). The in-process loader's reads are
# pure Python under the GIL, so there they run one after another: threads
# only added switching (512 reads took 75-100 ms in threads, 39 ms in turn).
READ_THREADS = 16

# Decoded headers and statistics of recent steps; polling the panel asks for
# the same steps again and again.
_CACHE_BYTES = 32 * 1024 * 1024

# Blob references of recently read series, counted in references (about 190
# bytes each). Listing a series costs the providers time in proportion to
# steps x channels, and the panel reads the same series for every step and
# channel it shows: the bound holds a 200-step log of VGG16's five
# `blockN_conv1` layers written in format version 1, a PNG per channel
# (296,000 references, 55 MB), so that browsing it does not list its layers
# again and again; in version 2 the same log has about 24,000.
_SERIES_CACHE_REFS = 400_000

# Answers computed from many steps (a run's training map, a layer's
# timeline), by the versions of the series they come from, so that asking
# again does no work until a series changes.
_ANSWER_CACHE_BYTES = 64 * 1024 * 1024

# Keras's `TensorBoard` callback writes its scalars under this plugin name.
_SCALARS_PLUGIN = "scalars"

_T = TypeVar("_T")


def _number(v, kind):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return kind(v)


def _version(ts) -> tuple:
    """Changes whenever the kept steps of a series may have: every new step
    raises max_step or max_wall_time."""
    return (ts.max_step, ts.max_wall_time, ts.max_length, ts.plugin_content)


def _cache_key(kind: str, datum, set_index: int | None = None) -> tuple:
    """The key a step's decoded header, statistics or set values are cached under."""
    index = {"header": metadata.HEADER_INDEX, "stats": metadata.STATS_INDEX}.get(kind, set_index)
    return (kind, datum.values[index].blob_key, datum.wall_time)


def _model_order(series: Series) -> tuple:
    # Layers without a position (older logs) come last, by name.
    p = series.info.position
    known = isinstance(p, int) and not isinstance(p, bool)
    return (not known, p if known else 0, series.tag)


class _KeptBlobs:
    """Blobs read straight from the in-process loader's kept tensors.

    `MultiplexerDataProvider.read_blob` turns the step's whole tensor (every
    PNG of the layer) into an array to return one of its blobs; reading a
    layer's measures takes four blobs of each step, so that conversion was
    most of a first `overview`. This reads the one string it needs, from the
    same events. `read` answers None where it cannot (a key or tensor of
    another form), and the caller asks the provider.
    """

    def __init__(self, data_provider: MultiplexerDataProvider):
        self._mux = getattr(data_provider, "_multiplexer", None)
        self._decode = getattr(multiplexer_provider, "_decode_blob_key", None)

    def read(self, blob_key: str) -> bytes | None:
        if self._mux is None or self._decode is None:
            return None
        try:
            _, _, run, tag, step, index = self._decode(blob_key)
        except (ValueError, TypeError):
            return None
        if self._mux.SummaryMetadata(run, tag).data_class != summary_pb2.DATA_CLASS_BLOB_SEQUENCE:
            raise errors.NotFoundError(blob_key)
        # The provider's rule: the first event at that step.
        event = next((e for e in self._mux.Tensors(run, tag) if e.step == step), None)
        if event is None:
            raise errors.NotFoundError(f"{blob_key}: no such step {step!r}")
        tensor = event.tensor_proto
        if tensor.dtype != types_pb2.DT_STRING or not 0 <= index < len(tensor.string_val):
            return None
        return tensor.string_val[index]


class Reader:
    """Reads activation series through a TensorBoard data provider.

    Args:
        data_provider: the `TBContext.data_provider` to read through.
        sampling_hint: the steps TensorBoard keeps per series for this
            plugin (`TBContext.sampling_hints`): 0 keeps every step, None
            means this process does not know. Defaults to `None`.
    """

    def __init__(self, data_provider, sampling_hint: int | None = None):
        self._provider = data_provider
        self.sampling_limit: int | None = int(sampling_hint) if sampling_hint else None
        self._cache = _LRU(_CACHE_BYTES)
        self._series_cache = _LRU(_SERIES_CACHE_REFS)
        self._answers = _LRU(_ANSWER_CACHE_BYTES)
        self._kept_counts: dict[tuple[str, str, str], tuple[tuple, int]] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._warned_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._index_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._concurrent = not isinstance(data_provider, MultiplexerDataProvider)
        self._kept = _KeptBlobs(data_provider) if not self._concurrent else None

    # -- series --------------------------------------------------------------

    def tags(self, ctx, experiment: str) -> dict[str, dict[str, Listed]]:
        """Every readable series, by run and tag, with its kept-step count.

        A series is read only when it changed since it was last counted."""
        listing = self._list(ctx, experiment)
        counts = {}
        stale = []
        for run, tags in listing.items():
            for tag, (ts, info) in tags.items():
                known = self._kept_counts.get((experiment, run, tag))
                if known is None or known[0] != _version(ts):
                    stale.append((run, tag, ts, info))
                else:
                    counts[run, tag] = known[1]
        for series in self._read(ctx, experiment, stale):
            counts[series.run, series.tag] = len(series.data)
        return {
            run: {
                tag: Listed(info, counts[run, tag], ts.max_step, ts.max_wall_time)
                for tag, (ts, info) in tags.items()
            }
            for run, tags in listing.items()
        }

    def series(self, ctx, experiment: str, run: str, tag: str) -> Series:
        """Opens one series; NotFoundError if it is not logged or unreadable."""
        rtf = provider.RunTagFilter(runs=[run], tags=[tag])
        ts = self._listing(ctx, experiment, rtf).get(run, {}).get(tag)
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
        cached = self._series_cache.get((experiment, run, tag))
        if cached is not None and cached[0] == _version(ts):
            return cached[1]
        (series,) = self._read(ctx, experiment, [(run, tag, ts, info)])
        return series

    def versions(self, ctx, experiment: str, run: str) -> tuple[tuple[str, tuple], ...]:
        """(tag, version) of every readable layer series of a run, from the
        listing alone: what an answer made from the whole run is cached
        under, so that asking again reads no series. NotFoundError as
        `layers`."""
        listing = self._layer_listing(ctx, experiment, run)
        return tuple(sorted((tag, _version(ts)) for tag, (ts, _) in listing))

    def layers(self, ctx, experiment: str, run: str) -> list[Series]:
        """Every readable layer series of a run (not the probe), in the
        model's order; NotFoundError if the run logged no activations."""
        return self._layers(ctx, experiment, run, self._layer_listing(ctx, experiment, run))

    def listed_layers(
        self, ctx, experiment: str, run: str
    ) -> tuple[tuple[tuple[str, tuple], ...], Callable[[], list[Series]]]:
        """`versions` and a function giving `layers`, from one listing of
        the run: what an answer made from the whole run needs, without
        listing the run twice when the answer is not cached."""
        listing = self._layer_listing(ctx, experiment, run)
        versions = tuple(sorted((tag, _version(ts)) for tag, (ts, _) in listing))
        return versions, lambda: self._layers(ctx, experiment, run, listing)

    def _layers(self, ctx, experiment: str, run: str, listing) -> list[Series]:
        found, stale = [], []
        for tag, (ts, info) in listing:
            cached = self._series_cache.get((experiment, run, tag))
            if cached is not None and cached[0] == _version(ts):
                found.append(cached[1])
            else:
                stale.append((run, tag, ts, info))
        found += self._read(ctx, experiment, stale)
        return sorted(found, key=_model_order)

    def scalars(self, ctx, experiment: str, run: str) -> Scalars:
        """Every scalar series of `run` and of its sibling runs (the runs in
        the same parent directory, such as Keras's `train` and `validation`
        beside `activations`), each at every step the server keeps."""
        listing = self._provider.list_scalars(
            ctx, experiment_id=experiment, plugin_name=_SCALARS_PLUGIN
        )
        runs = [r for r in curves.sibling_runs(run, listing) if listing.get(r)]
        version = tuple(
            (r, tag, ts.max_step, ts.max_wall_time)
            for r in runs
            for tag, ts in sorted(listing[r].items())
        )
        key = ("scalars", experiment, run)
        cached = self._answers.get(key)
        if cached is not None and cached.version == version:
            return cached
        data = {}
        if runs:
            data = self._provider.read_scalars(
                ctx,
                experiment_id=experiment,
                plugin_name=_SCALARS_PLUGIN,
                downsample=READ_ALL,
                run_tag_filter=provider.RunTagFilter(runs=runs),
            )
        points = {
            r: {tag: [(d.step, d.value) for d in data[r][tag]] for tag in sorted(data.get(r, {}))}
            for r in runs
        }
        got = Scalars({r: p for r, p in points.items() if p}, version)
        self._answers.put(
            key, got, 64 + 32 * sum(len(v) for p in points.values() for v in p.values())
        )
        return got

    # -- answers -------------------------------------------------------------

    def memo(self, key, compute: Callable[[], tuple[_T, int]]) -> _T:
        """The answer cached under `key`, or `compute()`'s, which returns the
        answer and its size in bytes. `key` must hold the versions of every
        series the answer comes from."""
        got = self._answers.get(("answer", key))
        if got is None:
            got, size = compute()
            self._answers.put(("answer", key), got, size)
        return got

    # -- one step ------------------------------------------------------------

    def header(self, ctx, series: Series, datum) -> Header:
        with self._found(series):
            return self._header(ctx, datum)

    def stats(self, ctx, series: Series, datum) -> np.ndarray:
        """The step's `(probes, channels, fields)` statistics."""
        with self._found(series):
            return self._stats(ctx, series, datum)

    def png(self, ctx, series: Series, datum, probe: int, channel: int) -> bytes:
        """One channel's PNG: as logged, or cut from the PNG it shares with
        other channels."""
        index, held = series.info.holding(probe, channel)
        with self._found(series):
            png = self._blob(ctx, datum, index)
            if len(held) == 1:
                return png
            maps = self._levels(series, datum, png, len(held))
            return encoding.png_bytes(maps[channel - held.start])

    def layer_levels(self, ctx, series: Series, datum, probe: int) -> np.ndarray:
        """Every channel of one probe at one step, as `(channels, height,
        width)` gray levels; NotFoundError if the images are not all 8-bit
        gray of one size."""
        info = series.info
        images = range(info.images_per_probe)
        pngs = self._map(lambda i: self._blob(ctx, datum, info.image_index(probe, i)), images)
        with self._found(series):
            if any(png is None for png in pngs):
                raise _Gone(f"step {datum.step} is no longer available")
            parts = [
                self._levels(series, datum, png, len(info.channels_in(i)))
                for i, png in zip(images, pngs)
            ]
            shape = parts[0].shape[1:] if parts else (info.height, info.width)
            for i, part in zip(images, parts):
                if part.shape[1:] != shape:
                    # One buffer of equal maps is what the panel splits; a
                    # step mixing sizes is not something the writer makes.
                    c = info.channels_in(i).start
                    problem = f"channel {c} of shape {part.shape[1:]} where channel 0's is {shape}"
                    self._warn_once(
                        series.run, series.tag, f"channel images of different sizes: {problem}"
                    )
                    raise _Gone(f"step {datum.step} has {problem}")
        return np.concatenate(parts) if parts else np.zeros((0, *shape), np.uint8)

    # -- every kept step -----------------------------------------------------

    def headers(self, ctx, series: Series) -> list[tuple[provider.BlobSequenceDatum, Header]]:
        """The readable kept steps with their headers, oldest first."""
        index = self._index(ctx, series, ("header",))
        got = self._map(lambda d: self._header(ctx, d), series.data, index)
        return [(d, h) for d, h in zip(series.data, got) if h is not None]

    def stats_series(self, ctx, series: Series) -> StatsSeries:
        """The readable kept steps with their headers, statistics and probe-set values."""

        index = self._index(ctx, series, ("header", "stats", "set"))

        def read(datum):
            header, stats = self._header(ctx, datum), self._stats(ctx, series, datum)
            return header, stats, self._set_values(ctx, series, datum)

        data = series.data
        got = [(d, g) for d, g in zip(data, self._map(read, data, index)) if g is not None]
        return StatsSeries(
            series,
            [d for d, _ in got],
            [g[0] for _, g in got],
            [g[1] for _, g in got],
            [g[2] for _, g in got],
        )

    def channel_series(self, ctx, series: Series, probe: int, channel: int) -> list[ChannelStep]:
        """One (probe, channel) at every readable kept step, oldest first.
        Each step's levels have that step's image size."""
        index, held = series.info.holding(probe, channel)

        def read(datum):
            header = self._header(ctx, datum)
            stats = self._stats(ctx, series, datum)
            maps = self._levels(series, datum, self._blob(ctx, datum, index), len(held))
            return ChannelStep(datum, header, stats[probe, channel], maps[channel - held.start])

        return [step for step in self._map(read, series.data) if step is not None]

    # -- internals -----------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _found(series: Series):
        try:
            yield
        except _Gone as e:
            raise series._gone(e) from None

    def _warn_once(self, run: str, tag: str, problem: str) -> None:
        key = (run, tag, problem)
        with self._warned_lock:
            if key in self._warned or len(self._warned) > 10_000:
                return
            self._warned.add(key)
        logger.warning("tb_activations: run %r, tag %r: %s", run, tag, problem)

    def _listing(self, ctx, experiment: str, run_tag_filter=None):
        return self._provider.list_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=run_tag_filter,
        )

    def _layer_listing(self, ctx, experiment: str, run: str) -> list[tuple[str, tuple]]:
        """(tag, (time series, LayerInfo)) of a run's layers, the probe left out."""
        listing = self._list(ctx, experiment, provider.RunTagFilter(runs=[run]))
        if run not in listing:
            raise errors.NotFoundError(f"No readable activations logged for run {run!r}.")
        return [
            (tag, entry)
            for tag, entry in listing[run].items()
            if tag != metadata.PROBE_TAG and entry[1].layout != "probe"
        ]

    def _list(self, ctx, experiment: str, run_tag_filter=None) -> dict[str, dict[str, tuple]]:
        """{run: {tag: (time series, LayerInfo)}} of the readable series;
        runs with none left out."""
        out: dict[str, dict[str, tuple]] = {}
        for run, tags in self._listing(ctx, experiment, run_tag_filter).items():
            for tag, ts in tags.items():
                info = self._parse(run, tag, ts.plugin_content)
                if info is not None:
                    out.setdefault(run, {})[tag] = (ts, info)
        return out

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

    def _read(self, ctx, experiment: str, entries: list[tuple]) -> list[Series]:
        """Reads the (run, tag, time series, info) `entries` in one call and
        remembers them."""
        if not entries:
            return []
        data = self._provider.read_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=READ_ALL,
            run_tag_filter=provider.RunTagFilter(
                runs={e[0] for e in entries}, tags={e[1] for e in entries}
            ),
        )
        out = []
        for run, tag, ts, info in entries:
            kept = self._well_formed(run, tag, info, data.get(run, {}).get(tag, []))
            series = Series(run, tag, info, kept, _version(ts), experiment)
            self._remember(experiment, series, series.version)
            out.append(series)
        return out

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

    def _remember(self, experiment: str, series: Series, version: tuple) -> None:
        key = (experiment, series.run, series.tag)
        refs = sum(len(d.values) for d in series.data)
        self._series_cache.put(key, (version, series), refs + 1)
        if len(self._kept_counts) > 10_000:
            self._kept_counts.clear()
        self._kept_counts[key] = (version, len(series.data))

    def _blob(self, ctx, datum, index: int) -> bytes:
        key = datum.values[index].blob_key
        try:
            blob = self._kept.read(key) if self._kept else None
            return self._provider.read_blob(ctx, blob_key=key) if blob is None else blob
        except (errors.NotFoundError, KeyError) as e:
            # The Rust data server evicts a step that sampling drops after
            # it was listed; the Python loader forgets a run that vanished.
            raise _Gone(f"step {datum.step} is no longer available") from e

    def _indexed_blob(self, ctx, datum, index: int, indexed: dict[int, bytes] | None) -> bytes:
        """Blob `index` of a step: from its index value when given, else read."""
        blob = indexed.get(index) if indexed else None
        return self._blob(ctx, datum, index) if blob is None else blob

    def _index(self, ctx, series: Series, kinds: tuple[str, ...]) -> set[tuple]:
        """Puts the header, statistics and probe-set values of every kept
        step the series' index series holds (see `metadata`) in the cache,
        unless the `kinds` of every kept step are there already; returns
        the `step_index.at` of the steps whose values are cached.

        One `read_tensors` instead of a `read_blob` per blob: on the Rust
        data server each is a gRPC call. A step the index lacks (an older
        log, a step sampled differently) is read from its blobs. One caller
        at a time per series decodes every kind: `curves` and `overview`,
        asked together, read it once."""
        if series.info.layout == "probe" or not series.data:
            return set()
        set_index = series.info.set_index if series.info.set_fields else None
        with self._pool_lock:
            key = (series.experiment, series.run, series.tag)
            lock = self._index_locks.setdefault(key, threading.Lock())
        with lock:
            cached = {
                step_index.at(d)
                for d in series.data
                if all(
                    self._cache.get(_cache_key(k, d, set_index)) is not None
                    for k in kinds
                    if k != "set" or set_index is not None
                )
            }
            if len(cached) == len(series.data):
                return cached
            got = step_index.read(self._provider, ctx, series)
            if isinstance(got, str):
                self._warn_once(series.run, series.tag, f"index series ignored: {got}")
                return cached
            for d in series.data:
                blobs = got.get(step_index.at(d))
                if blobs is None:
                    continue
                try:
                    self._header(ctx, d, blobs)
                    self._stats(ctx, series, d, blobs)
                    self._set_values(ctx, series, d, blobs)
                except _Gone:
                    continue  # read again, and left out, by the caller
                cached.add(step_index.at(d))
            return cached

    def _map(self, fn: Callable[[Any], _T], items: Iterable, index=None) -> list[_T | None]:
        """`fn` over `items` in the reading threads; None where a blob is gone.
        In turn when an `index` (see `_index`) has every item's values
        cached: there is nothing to wait for.

        `fn` must not itself wait on the pool."""

        def call(item):
            try:
                return fn(item)
            except _Gone:
                return None

        items = list(items)
        indexed = index and all(step_index.at(d) in index for d in items)
        if len(items) < 2 or not self._concurrent or indexed:
            return [call(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="tb_activations")
        return list(self._pool.map(call, items))

    def _header(self, ctx, datum, indexed: dict[int, bytes] | None = None) -> Header:
        header = self._cache.get(_cache_key("header", datum))
        if header is None:
            blob = self._indexed_blob(ctx, datum, metadata.HEADER_INDEX, indexed)
            try:
                d = metadata.decode_header(blob)
            except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
                d = None
            d = d if isinstance(d, dict) else {}
            header = Header(
                epoch=_number(d.get("epoch"), float),
                batch=_number(d.get("batch"), int),
                index=_number(d.get("index"), int),
                values=d,
            )
            self._cache.put(_cache_key("header", datum), header, 128 + len(blob))
        return header

    def _stats(
        self, ctx, series: Series, datum, indexed: dict[int, bytes] | None = None
    ) -> np.ndarray:
        """The step's (probes, channels, fields) statistics, fields cut to
        the names the metadata gives."""
        key = _cache_key("stats", datum)
        stats = self._cache.get(key)
        if stats is None:
            blob = self._indexed_blob(ctx, datum, metadata.STATS_INDEX, indexed)
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

    def _set_values(
        self, ctx, series: Series, datum, indexed: dict[int, bytes] | None = None
    ) -> SetValues | None:
        """The step's probe-set values; None before format version 3, or
        (with a warning) when they are unreadable, so that the step keeps
        its other measures."""
        info = series.info
        if not info.set_fields:
            return None
        index = info.set_index
        key = _cache_key("set", datum, index)
        got = self._cache.get(key)
        if got is None:
            blobs = [self._indexed_blob(ctx, datum, i, indexed) for i in (index, index + 1)]
            try:
                got = SetValues(
                    metadata.decode_table(blobs[0], len(info.set_fields)).astype(np.float64),
                    metadata.decode_table(blobs[1], len(info.unit_fields)).astype(np.float64),
                )
            except (ValueError, OSError, EOFError) as e:
                self._warn_once(series.run, series.tag, f"unreadable probe-set values: {e}")
                return None
            if got.stats.shape[0] != info.channels:
                self._warn_once(
                    series.run,
                    series.tag,
                    f"probe-set statistics of {got.stats.shape[0]} rows for "
                    f"{info.channels} channels",
                )
                return None
            self._cache.put(key, got, got.stats.nbytes + got.units.nbytes + 128)
        return got

    def _levels(self, series: Series, datum, png: bytes, count: int) -> np.ndarray:
        """The `(count, height, width)` gray levels of a PNG of `count`
        stacked channels, 8-bit gray.

        Decoded here, by Pillow, so the panel receives levels it can colour
        directly instead of PNGs to decode and cut. The size is the PNG's
        own, which is the metadata's `height` x `width` for everything the
        writer makes: it downscales only `image` maps, and records the
        reduced size; `units` and `sequence` strips are never downscaled."""
        try:
            with Image.open(io.BytesIO(png)) as image:
                mode = image.mode
                levels = np.asarray(image)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            problem = f"an unreadable channel image ({e})"
        else:
            if mode != "L" or levels.ndim != 2:
                problem = f"a channel image of mode {mode}, not 8-bit gray"
            elif levels.shape[0] % count:
                problem = f"an image of {levels.shape[0]} rows for {count} stacked channels"
            else:
                return levels.reshape(count, -1, levels.shape[1])
        self._warn_once(series.run, series.tag, problem)
        raise _Gone(f"step {datum.step} has {problem}")
