"""Reading a log directory back in Python: `tb_activations.read(logdir)`.

For notebooks, scripts and the command line: no TensorBoard server is
involved. The directory is loaded by TensorBoard's own `EventMultiplexer`
keeping every step, served through its `MultiplexerDataProvider`, and read
by the plugin's `reader.Reader`; the training map and the channel timeline
are the plugin's own answers (`plugin.overview_impl`, `timeline_impl`), as
numpy arrays. It does not import Keras itself (TensorBoard's file layer
imports TensorFlow when it is installed).
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from tensorboard import context, errors
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

from tb_activations import export, health, metadata, plugin
from tb_activations.reader import Reader

__all__ = ["LogReader", "NotFound", "Overview", "Stats", "Timeline", "read"]

_EXPERIMENT = ""


class NotFound(KeyError):
    """A run, layer, step, channel or probe the log does not have. The
    message names it and lists what there is."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Stats:
    """A layer's statistics at every kept step.

    `values` is float32 `(steps, probes, channels, fields)`, the fields
    named by `fields` (`min`, `max`, `mean`, `std`, `zero_fraction`,
    `nonfinite_fraction`, then the measures' sums where logged; see
    docs/format.md). `stats["mean"]` is one field, `(steps, probes,
    channels)`. `epochs[i]` is the epochs completed at `steps[i]` (None when
    not known)."""

    run: str
    layer: str
    steps: list[int]
    epochs: list[float | None]
    fields: list[str]
    values: np.ndarray

    def __getitem__(self, field: str) -> np.ndarray:
        if field not in self.fields:
            raise NotFound(f"No statistic {field!r}; the statistics are {self.fields}.")
        return self.values[..., self.fields.index(field)]


@dataclass(frozen=True)
class Overview:
    """The training map of a run: `values[measure]` is float64 `(layers,
    steps)`, NaN where null (docs/measures.md); `unavailable[measure][layer]`
    says why a layer has none beyond the definition's own nulls.
    `first_nonfinite[layer]` is the first step at which the layer had a NaN
    or an infinity (layers that never did are absent);
    `effective_rank_max[layer]` is min(N - 1, units), the most
    `effective_rank` can be; `samples[layer]` is N, the probe set's size;
    `tau` the threshold of `dormant_fraction`."""

    run: str
    layers: list[str]
    steps: list[int]
    values: dict[str, np.ndarray]
    unavailable: dict[str, dict[str, str]]
    first_nonfinite: dict[str, int] = field(default_factory=dict)
    effective_rank_max: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    tau: float = health.DEFAULT_TAU


@dataclass(frozen=True)
class Timeline:
    """A layer's channel timeline: `values[measure]` is float64 `(channels,
    steps)`, NaN where null (`dead` is 1.0 or 0.0), except `on_rate` and
    `dormant_score`, which are `(units, steps)`: a unit is a channel, or one
    of the `units` of a Dense layer; `events` are deaths and revivals (`{"channel",
    "kind", "step"}`), `never_active` the channels dead at every kept step,
    `unavailable[measure]` why a measure is null."""

    run: str
    layer: str
    steps: list[int]
    channels: int
    values: dict[str, np.ndarray]
    events: list[dict]
    never_active: list[int]
    unavailable: dict[str, str]
    units: int = 0


def read(logdir: str | os.PathLike) -> LogReader:
    """Opens a log directory (the one given to TensorBoard) to read its
    activations back.

    Example:

    ```python
    reader = tb_activations.read("logs")
    run = reader.runs()[0]                      # e.g. "run1/activations"
    layer = reader.layers(run)[0]
    x = reader.activations(run, layer, reader.steps(run, layer)[-1])
    ```

    Raises:
        FileNotFoundError: `logdir` is not a directory.
    """
    return LogReader(logdir)


def _listing(names, limit: int = 30) -> str:
    names = list(names)
    shown = ", ".join(repr(n) if isinstance(n, str) else str(n) for n in names[:limit])
    return (shown + (", ..." if len(names) > limit else "")) or "none"


class LogReader:
    """The activations of a log directory, read with TensorBoard's readers.

    Every step of every series is kept (no sampling). `reload()` picks up
    steps written since. Unknown runs, layers, steps, channels or probes
    raise `NotFound` (a KeyError) listing what exists; bad options raise
    ValueError.

    Args:
        logdir: the directory given to TensorBoard.
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        # A local directory must exist: TensorBoard would read it as empty.
        if "://" not in self.logdir and not os.path.isdir(self.logdir):
            raise FileNotFoundError(f"No log directory {self.logdir!r}.")
        # "tensors": 0 keeps every step of every series.
        self._mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
        self._mux.AddRunsFromDirectory(self.logdir)
        self._mux.Reload()
        self._provider = data_provider.MultiplexerDataProvider(self._mux, self.logdir)
        self._reader = Reader(self._provider)
        self._ctx = context.RequestContext()
        # Each run's series, listed once: a listing reads every blob key of
        # the run, and the log changes only at `reload()`.
        self._run_series: dict[str, list] = {}

    def __repr__(self) -> str:
        return f"LogReader({self.logdir!r})"

    def reload(self) -> LogReader:
        """Reads the steps (and runs) written since opening; returns self."""
        self._mux.AddRunsFromDirectory(self.logdir)
        self._mux.Reload()
        self._run_series.clear()
        return self

    # -- what there is -------------------------------------------------------

    def runs(self) -> list[str]:
        """The runs with logged layers, sorted (e.g. `"run1/activations"`)."""
        tags = self._reader.tags(self._ctx, _EXPERIMENT)
        return sorted(
            run
            for run, series in tags.items()
            if any(t != metadata.PROBE_TAG and s.info.layout != "probe" for t, s in series.items())
        )

    def layers(self, run: str) -> list[str]:
        """The logged layers (paths) of `run`, in the model's order."""
        return [s.tag for s in self._layers(run)]

    def steps(self, run: str, layer: str) -> list[int]:
        """The logged steps of a layer, increasing (a step logged twice
        once)."""
        return sorted(set(self._series(run, layer).steps))

    def info(self, run: str, layer: str) -> metadata.LayerInfo:
        """A layer's static facts as logged (shape, layout, channels, ...)."""
        return self._series(run, layer).info

    # -- values --------------------------------------------------------------

    def activations(self, run: str, layer: str, step: int) -> np.ndarray:
        """The layer's output for the pictured probes at `step`, in real units.

        float32, shaped like the layer's output as Keras reports it for the
        pictured probes (`model(probe[:probe_images])`; a probe set's other
        samples are in the measures only): `(N, H, W, C)` for a channels_last
        image layer, `(N, C, H, W)` for channels_first, `(N, T, C)` for a
        sequence (`(N, C, T)` channels_first), `(N, U)` for units (Dense).
        The logged data changes it in these ways only:

        - the channel cap: only the first `info(...).channels` channels;
        - the size cap: a map the writer box-downscaled (`max_size`) comes
          back at its reduced size (`info(...).height`, `width`);
        - a rank-5 output comes back averaged over depth, without that axis:
          `(N, H, W, C)` (`(N, C, H, W)` channels_first);
        - values are 8-bit: each is within (max - min) / 510 of the logged
          value, max and min being its (probe, channel)'s at that step;
          a NaN or infinity comes back as that channel's min, and a channel
          with no finite value as NaN.
        """
        series = self._series(run, layer)
        datum = self._datum(series, step)
        info = series.info
        with self._found():
            stats = self._reader.stats(self._ctx, series, datum)
            levels = np.stack(
                [self._reader.layer_levels(self._ctx, series, datum, p) for p in range(info.probes)]
            )  # (N, C, h, w)
        fields = series.fields(stats)
        lo = stats[:, :, fields.index("min")].astype(np.float64)[:, :, None, None]
        hi = stats[:, :, fields.index("max")].astype(np.float64)[:, :, None, None]
        values = metadata.real_values(levels, lo, hi).astype(np.float32)
        return _keras_layout(values, info)

    def stats(self, run: str, layer: str) -> Stats:
        """The layer's statistics at every kept step (see `Stats`)."""
        series = self._series(run, layer)
        with self._found():
            got = self._reader.stats_series(self._ctx, series).latest()
        values = got.array()
        return Stats(
            run,
            layer,
            got.steps,
            [h.epoch for h in got.headers],
            list(got.fields)[: values.shape[-1]],
            values,
        )

    def overview(self, run: str, *, tau: float = health.DEFAULT_TAU) -> Overview:
        """The run's training map: per layer and step, `change_prev`,
        `change_start`, `drift_prev`, `drift_start`, `dead_fraction`, `mean`,
        `dormant_fraction` (units whose dormant score is at most `tau`),
        `effective_rank`, `similarity`, `rms`, `saturation`, and each
        layer's first non-finite step (docs/measures.md).

        Raises:
            ValueError: `tau` is not a number >= 0.
        """
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
            raise ValueError(f"tau must be a number >= 0. Received: tau={tau!r}")
        self._layers(run)
        with self._found():
            body = plugin.overview_impl(self._reader, self._ctx, _EXPERIMENT, run, float(tau))
        shape = (len(body["layers"]), len(body["steps"]))
        return Overview(
            run,
            list(body["layers"]),
            list(body["steps"]),
            {m: np.array(v, np.float64).reshape(shape) for m, v in body["rows"].items()},
            {m: dict(v) for m, v in body["unavailable"].items()},
            dict(body["first_nonfinite"]),
            dict(body["effective_rank_max"]),
            dict(body["samples"]),
            body["tau"],
        )

    def timeline(self, run: str, layer: str) -> Timeline:
        """A layer's channel timeline: per channel and step, `change_prev`,
        `change_start`, `dead`, `mean`, `max`, `zero_fraction`, and per unit
        `on_rate` and `dormant_score` (docs/measures.md), with deaths,
        revivals and never-active channels."""
        self._series(run, layer)
        with self._found():
            body = plugin.timeline_impl(self._reader, self._ctx, _EXPERIMENT, run, layer)
        steps = len(body["steps"])

        def rows(v):
            values = np.frombuffer(base64.b64decode(v), "<f4").astype(np.float64)
            return values.reshape(-1, steps)

        values = {m: rows(v) for m, v in body["rows"].items()}
        # A Dense layer's units are its units here: one row each.
        values.update({m: rows(v) for m, v in body["unit_rows"].items()})
        return Timeline(
            run,
            layer,
            list(body["steps"]),
            body["channels"],
            values,
            [dict(e) for e in body["events"]],
            list(body["never_active"]),
            dict(body["unavailable"]),
            body["units"],
        )

    def export(
        self,
        run: str,
        layer: str,
        *,
        channel: int | None = None,
        step: int | None = None,
        probe: int = 0,
        format: str | None = None,
        colormap: str = "viridis",
        normalization: str = "channel",
    ) -> bytes:
        """A picture of the layer, as bytes of an image file.

        With `channel`: that channel's evolution over every kept step, an
        animated `format="gif"` (the default) or `"apng"`, each frame
        labelled with its step and epoch. With `step`: the layer's channel
        grid at that step, a `"png"`. `colormap` is one of
        `colormaps.COLORMAPS`; `normalization` is the panel's: `"channel"`
        (each channel its own min..max at its step, as logged), `"layer"`
        (the layer's at that step), `"channel-fixed"` or `"layer-fixed"`
        (over every kept step). In a notebook,
        `IPython.display.Image(reader.export(...))` shows it.

        Raises:
            ValueError: both or neither of `channel` and `step`, or an
                unknown format, colormap or normalization.
            NotFound: an unknown run, layer, step, channel or probe.
        """
        picture = export.Picture(run, layer, channel, step, probe, format, colormap, normalization)
        series = self._series(run, layer)
        if step is not None:
            self._datum(series, step)  # NotFound listing the steps
        with self._found():
            return export.render(self._reader, self._ctx, series, picture)

    # -- internals -----------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _found() -> Iterator[None]:
        try:
            yield
        except errors.NotFoundError as e:
            raise NotFound(str(e).removeprefix("Not found: ")) from None

    def _layers(self, run: str):
        if isinstance(run, str) and run in self._run_series:
            return self._run_series[run]
        if not isinstance(run, str) or run not in self.runs():
            raise NotFound(
                f"No activations logged for run {run!r} in {self.logdir!r}. "
                f"Runs: {_listing(self.runs())}"
            )
        with self._found():
            layers = self._reader.layers(self._ctx, _EXPERIMENT, run)
        self._run_series[run] = layers
        return layers

    def _series(self, run: str, layer: str):
        layers = self._layers(run)
        for series in layers:
            if series.tag == layer:
                return series
        raise NotFound(
            f"Run {run!r} has no logged layer {layer!r}. Layers: {_listing(s.tag for s in layers)}"
        )

    def _datum(self, series, step: int):
        matches = [d for d in series.data if d.step == step]
        if not matches:
            raise NotFound(
                f"Layer {series.tag!r} of run {series.run!r} has no step {step!r}. "
                f"Steps: {_listing(sorted(set(series.steps)))}"
            )
        return matches[-1]  # the last logged, as the measures take it


def _keras_layout(values: np.ndarray, info: metadata.LayerInfo) -> np.ndarray:
    """(N, C, h, w) values to the layer's own layout (see `activations`)."""
    first = info.data_format == "channels_first"
    if info.layout == "units":  # one channel, a 1 x U strip
        return np.ascontiguousarray(values[:, 0, 0, :])
    if info.layout == "sequence":  # C strips of 1 x T
        seq = values[:, :, 0, :]
        return np.ascontiguousarray(seq if first else seq.transpose(0, 2, 1))
    return np.ascontiguousarray(values if first else values.transpose(0, 2, 3, 1))
