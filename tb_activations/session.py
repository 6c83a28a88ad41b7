"""One run's activation log, with one owner for the model side and the writer.

`LoggingSession` is what `ActivationLogger` and `log_activations` share. It
keeps what must outlive one `fit`: the layers it logs and the extraction
model that computes them, whether the probe is logged yet, the last step
logged and how many steps the run holds, the events a failed write left
behind, the measures tracker that compares each step with the previous one
and the first, and whether this process logs at all (in a distributed
training, only the chief does). Whoever holds a session only decides *when*
to `log`.

Keras is at this edge only: the extraction model runs the probe, and
everything after `.numpy()` (normalization, PNG, events) is numpy and Pillow
in `encoding` and `summary`, off the training thread.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from typing import TYPE_CHECKING

import keras
import numpy as np

from tb_activations import (
    attention,
    capture,
    distributed,
    encoding,
    health,
    measures,
    metadata,
    tokens,
)
from tb_activations import inputs as inputs_lib
from tb_activations import layers as layers_lib
from tb_activations import probe as probe_lib
from tb_activations.options import (
    DEFAULT_PROBE_IMAGES,
    OPTIONS,
    SessionOptions,
    check_int,
    check_probe,
    check_probe_tokens,
)
from tb_activations.summary import ActivationWriter, LayerValue

if TYPE_CHECKING:
    from typing_extensions import Unpack


class _Recorder:
    """The extraction model, the prepared probe, and the layer descriptions.

    Built once per model (not per epoch); `forward` is the only part that
    runs on the training thread at each logging event.
    """

    def __init__(
        self,
        model,
        probe,
        layers,
        *,
        preprocess,
        max_layers: int,
        max_channels: int,
        max_size: int | None,
        verbose: int,
        probe_images: int = DEFAULT_PROBE_IMAGES,
        probe_tokens: inputs_lib.ProbeTokens = None,
    ):
        self.model = model
        self.probe_images = probe_images
        self.max_channels = max_channels
        self.max_size = max_size
        if not model.layers:
            raise ValueError(
                f"Model {model.name!r} has no layers to log. Received: model={model!r}"
            )
        _ensure_built(model, probe)
        self.input_format, _ = layers_lib.data_formats(model)
        self.batch = inputs_lib.load(probe, model, self.input_format, preprocess)
        self.probe_tokens = probe_tokens
        paths = _graph_paths(model, layers, max_layers)
        self.observer: capture.Observer | None = None
        if paths is not None:
            # A Functional model's own graph computes its layers fastest.
            self.paths = paths
            self.taps = layers_lib.taps(model, self.paths)
            self.positions = {path: i for i, (path, _) in enumerate(layers_lib.walk(model))}
            # Each chosen MultiHeadAttention's scores, computed in the extractor's own pass.
            self.attention = attention.GraphScores(self.taps)
            self.extractor = layers_lib.extractor(model, self.paths, self.attention.requests)
            # Respect a user's choice of eager execution; it may be there for a reason.
            self.extractor.run_eagerly = bool(getattr(model, "run_eagerly", False))
        else:
            found = capture.survey(model, self.batch)  # builds an unbuilt model first
            entries = capture.reachable(model)
            choice = capture.choose(model, found, layers, max_layers, entries)
            _, formats = layers_lib.data_formats(model, entries)
            order = {path: i for i, (path, _) in enumerate(entries)}
            self.taps = [
                layers_lib.Tap(
                    o.name, o.layer, (None, *o.shape[1:]), formats[o.path], o.call, o.key
                )
                for o in choice.outputs
            ]
            self.paths = [t.path for t in self.taps]
            self.positions = {o.name: order[o.path] for o in choice.outputs}
            # Each chosen attention call's scores, computed in the observer's own pass.
            layer_of = {c: choice.layers[capture.base_path(c)] for c in choice.scores}
            self.positions.update({c: order[capture.base_path(c)] for c in choice.scores})
            self.attention = attention.ObservedScores(
                [layers_lib.Tap(c, layer_of[c], (), "", capture.call_of(c)) for c in layer_of]
            )
            self.observer = capture.Observer(
                model,
                choice.layers,
                self.paths,
                self.batch,
                run_eagerly=bool(getattr(model, "run_eagerly", False)),
                scores=choice.scores,
            )
            self.extractor = self.observer
        if not self.paths:
            raise ValueError(
                f"Model {model.name!r} has no layer whose output can be shown (convolution, "
                f"pooling, Dense, ...). Received: layers={layers!r}"
            )
        reserved = [p for p in self.paths if p.split("/")[0] == metadata.PROBE_TAG]
        if reserved:
            raise ValueError(
                f"A layer may not be named {metadata.PROBE_TAG!r}: that tag holds the probe. "
                f"Received: layers={reserved}"
            )
        # Sequences whose tokens are the probe image's patches (a ViT's) are
        # drawn on the grid. Only a transformer's tokens are patches: an RNN
        # reading an image's rows has as many steps, and is a sequence.
        image = _image_shape(self.batch) if capture.has_attention(model) else ()
        self.grids = tokens.TokenGrids(self.taps, image, self.input_format)
        self.infos: list[metadata.LayerInfo] | None = None
        if verbose and layers is None:
            print(
                f"ActivationLogger: logging {len(self.paths)} layers of {model.name!r}: "
                f"{', '.join(self.paths)} (pass layers=[...] to choose)"
            )

    def _run(self) -> list[np.ndarray]:
        if self.observer is not None:
            return self.observer()
        try:
            outs = self.extractor.predict_on_batch(self.batch)
        except Exception:
            if self.extractor.run_eagerly:
                raise
            # Some models only run eagerly (layer names TensorFlow refuses as
            # graph name scopes, Python side effects); fall back once, for good.
            self.extractor.run_eagerly = True
            self.extractor.predict_function = None
            outs = self.extractor.predict_on_batch(self.batch)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        # `predict_on_batch` gives numpy arrays already: converting them
        # again would copy every activation (30 MB for a 256-sample probe
        # set of the demo CNN) while training waits.
        return _one_copy(
            [
                o if isinstance(o, np.ndarray) else np.asarray(keras.ops.convert_to_numpy(o))
                for o in outs
            ],
            inputs_lib.size(self.batch),
        )

    def forward(self) -> list[LayerValue]:
        arrays = self._run()
        arrays, scores = arrays[: len(self.taps)], arrays[len(self.taps) :]
        if self.infos is None:
            self.infos = [self._describe(t, a) for t, a in zip(self.taps, arrays)]
        values = [
            LayerValue(info, a, data_format=t.data_format)
            for info, t, a in zip(self.infos, self.taps, arrays)
        ] + self.attention.values(scores, self._describe)
        return self.grids.apply(values, self._describe)

    def probe_values(self) -> list[LayerValue]:
        """Each input of the pictured probes as the model takes it, for the
        writer (`inputs.probe_series`); `samples` counts the whole set."""
        series = inputs_lib.probe_series(
            first_samples(self.batch, self.probe_images),
            self.model,
            self.input_format,
            self.probe_tokens,
        )
        samples = inputs_lib.size(self.batch)
        return [
            LayerValue(dataclasses.replace(info, samples=samples), images)
            for info, images in series
        ]

    @staticmethod
    def _reduction(tap: layers_lib.Tap) -> str:
        frames = isinstance(tap.layer, keras.layers.TimeDistributed)
        return encoding.rank5_reduction(tap.data_format, "time" if frames else "depth")

    def _describe(
        self, tap: layers_lib.Tap, arr: np.ndarray, name: str | None = None
    ) -> metadata.LayerInfo:
        """`arr`'s LayerInfo as the output of `tap`, tagged `name` (the
        tap's path by default); a warning for each cap it exceeds."""
        name = tap.path if name is None else name
        layout = encoding.layout_of(arr.ndim)
        nhwc_shape = encoding.to_nhwc(arr[:1], tap.data_format).shape
        _, h, w, c = nhwc_shape
        kept = min(c, self.max_channels)
        if kept < c:
            warnings.warn(
                f"ActivationLogger: layer {name!r} has {c} channels; logging the first "
                f"{kept} (max_channels={self.max_channels}).",
                stacklevel=2,
            )
        factor = encoding.downscale_factor(h, w, self.max_size) if layout == "image" else 1
        if factor > 1:
            warnings.warn(
                f"ActivationLogger: layer {name!r} is {h}x{w}; logging it downscaled by "
                f"{factor} to {math.ceil(h / factor)}x{math.ceil(w / factor)} "
                f"(max_size={self.max_size}).",
                stacklevel=2,
            )
        height, width = math.ceil(h / factor), math.ceil(w / factor)
        return metadata.LayerInfo(
            layer=name,
            class_name=type(tap.layer).__name__,
            layout=layout,
            output_shape=tap.output_shape or (None, *arr.shape[1:]),
            channels=kept,
            total_channels=c,
            probes=min(int(arr.shape[0]), self.probe_images),
            samples=int(arr.shape[0]),
            activation=health.bounded_activation(tap.layer),
            height=height,
            width=width,
            channels_per_image=encoding.channels_per_image(height, width, kept),
            source_height=h,
            source_width=w,
            reduction=self._reduction(tap) if arr.ndim == 5 else None,
            data_format=tap.data_format,
            position=self.positions[tap.path],
            call=tap.call,
            output=tap.key,
        )


def _image_shape(batch) -> tuple[int, ...]:
    """The shape of a probe that is one image input (rank 4), else ().

    Beside other inputs, a sequence's length may fit the image's grid by
    chance (tokens of a text input), so only a lone image has patch tokens.
    """
    leaves = keras.tree.flatten(batch)
    return tuple(leaves[0].shape) if len(leaves) == 1 and leaves[0].ndim == 4 else ()


def first_samples(batch, k: int):
    """The first `k` samples of a probe batch of any structure the model
    takes (an array, or a dict or list of arrays): the pictured probes."""
    return keras.tree.map_structure(lambda a: a[:k], batch)


def _one_copy(arrays: list[np.ndarray], probes: int) -> list[np.ndarray]:
    """The outputs for the probe batch once, however many replicas computed them.

    Inside a `tf.distribute` strategy's scope (`fit` called in it, as
    tutorials do), Keras's `predict_on_batch` runs the whole batch on every
    replica and concatenates the replicas' outputs. The replicas hold the
    same weights, so the first copy is the answer.
    """
    rows = {a.shape[0] if a.ndim else probes for a in arrays}
    if len(rows) == 1:
        (n,) = rows
        if n > probes and n % probes == 0:
            return [a[:probes] for a in arrays]
    return arrays


def _graph_paths(model, layers, max_layers: int) -> list[str] | None:
    """The layers to log through the model's own graph, or None to observe calls.

    A Functional or Sequential model's graph reaches its layers and those of
    nested models at the speed of its forward pass. Observing calls reaches
    the rest: a model without a graph, layers inside custom layers (a
    transformer's attention), a layer called more than once or with several
    outputs; a transformer's default layers, or defaults that take a layer
    of several outputs; and a seq2seq model's `Attention`, whose scores need
    the masks its call receives.
    """
    if not layers_lib.has_graph(model):
        return None
    if layers is None and capture.is_transformer(model):
        return None
    walked = list(layers_lib.walk(model))
    if layers is None and any(
        capture.graph_may_miss(layer) and layers_lib.picked_by_default(layer) for _, layer in walked
    ):
        # A default pick of several outputs or calls (an RWKV's block, an
        # LSTM returning its states) logs, when observed, each call's first
        # output.
        return None
    try:
        paths = layers_lib.select(model, layers, max_layers)
    except ValueError:
        return None
    by_path = dict(walked)
    # A dot-product attention's scores come from its observed call: the
    # `mask` list its `call` receives holds its inputs' Keras masks.
    if any(
        attention.is_attention(by_path[p]) and not attention.has_heads(by_path[p]) for p in paths
    ):
        return None
    # A graph gives a shared layer's first call only.
    if any(layers_lib.graph_calls(model, p) > 1 for p in paths):
        return None
    return paths or None


def _ensure_built(model, probe) -> None:
    """A Sequential model without an Input has no graph before its first batch.

    Building it from the probe's shape lets the untrained state be logged.
    """
    if getattr(model, "built", True) and layers_lib.has_graph(model):
        return
    if not isinstance(model, keras.Sequential):
        return
    arr = np.asarray(probe) if not isinstance(probe, (str, os.PathLike)) else None
    if arr is None or arr.dtype == object or arr.ndim < 2:
        raise ValueError(
            f"Sequential model {model.name!r} has no input shape yet. Give it a "
            "keras.Input(shape=...) first, or pass the probe as an array with a batch "
            f"axis (for example x_train[:1]). Received: probe={type(probe).__name__}"
        )
    model.build((None, *arr.shape[1:]))


class LoggingSession:
    """Logs a model's activations on a probe to one TensorBoard run, step by step.

    A session outlives `fit` calls: the probe is logged once, steps only
    increase, each step's `index` counts the steps of the run, the events a
    failed write could not store are written by the next writer, and the
    measures compare each step with the previous and the first one logged.

    In a distributed training only the chief process logs (see
    `tb_activations.distributed`); in any other, `log` runs no forward pass
    and writes nothing, not even a directory.

    Args:
        log_dir: the directory given to TensorBoard.
        probe: what `ActivationLogger` takes as `probe`.
        layers: what `ActivationLogger` takes as `layers`. Defaults to `None`.
        preprocess: called once on the probe batch. Defaults to `None`.
        max_layers: the most layers `layers=None` picks. Defaults to `12`.
        max_channels: channels logged per layer. Defaults to `512`.
        max_size: larger feature maps are downscaled to fit. Defaults to `256`.
        probe_images: how many samples of the probe, the first ones, get
            pictures; all of them feed the statistics and measures.
            Defaults to `8`.
        run_name: the run's directory in `log_dir`. Defaults to `"activations"`.
        verbose: 1 prints which layers `layers=None` picked, or that this
            process does not log. Defaults to `1`.
        chief: `None` logs only from the chief of a distributed training (a
            lone process is its own chief); `True` logs from this process
            whatever its rank; `False` never logs. Defaults to `None`.
        probe_tokens: what `ActivationLogger` takes as `probe_tokens`.
            Defaults to `None`.

    Raises:
        ValueError: on an argument of the wrong type or range, a probe
            file that cannot be read, or (with `chief=None`) a `TF_CONFIG`
            or `RANK` variable that cannot be read.
        TypeError: on an option not listed above.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        probe: probe_lib.Probe,
        layers: layers_lib.LayerSpec = None,
        **options: Unpack[SessionOptions],
    ):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            received = ", ".join(f"{name}={options[name]!r}" for name in unknown)
            raise TypeError(
                f"Unknown option {', '.join(unknown)}: the options are "
                f"{', '.join(OPTIONS)}. Received: {received}"
            )
        options = {**OPTIONS, **options}
        preprocess = options["preprocess"]
        max_layers = options["max_layers"]
        max_channels = options["max_channels"]
        max_size = options["max_size"]
        probe_images = options["probe_images"]
        run_name = options["run_name"]
        verbose = options["verbose"]
        chief = options["chief"]
        probe_tokens = options["probe_tokens"]
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"log_dir must be a directory path. Received: log_dir={log_dir!r}")
        check_probe(probe)
        layers_lib.check_spec(layers)
        check_int("max_layers", max_layers, 1)
        check_int("max_channels", max_channels, 1)
        check_int("max_size", max_size, 1, allow_none=True)
        check_int("probe_images", probe_images, 1)
        if preprocess is not None and not callable(preprocess):
            raise ValueError(f"preprocess must be callable. Received: preprocess={preprocess!r}")
        if not isinstance(run_name, str) or not run_name or run_name in (".", ".."):
            raise ValueError(f"run_name must be a directory name. Received: run_name={run_name!r}")
        check_probe_tokens(probe_tokens)
        if chief is not None and not isinstance(chief, bool):
            raise ValueError(f"chief must be None, True or False. Received: chief={chief!r}")
        if chief is None:
            # A launcher's variables that cannot be read fail now, not when training begins.
            distributed.this_process()
        self.run_dir = os.path.join(os.fspath(log_dir), run_name)
        self._probe = probe
        self._layer_spec = layers
        self._preprocess = preprocess
        self._max_layers = max_layers
        self._max_channels = max_channels
        self._max_size = max_size
        self._probe_images = int(probe_images)
        self._verbose = verbose
        self._chief = chief
        self._probe_tokens = probe_tokens
        # Decided at the first bind: a training script may initialize
        # torch.distributed or jax.distributed after building its callbacks.
        self._process: distributed.Process | None = None
        self._recorder: _Recorder | None = None
        self._writer: ActivationWriter | None = None
        # One tracker for the session: the measures compare steps across fits.
        self._tracker = measures.Tracker()
        self._last_step: int | None = None
        self._index = 0
        self._probe_logged = False
        self._warned_failure = False
        # Events whose write failed, handed to the next writer of this run.
        self._pending: list = []

    # -- the model ---------------------------------------------------------

    def check_layers(self, model) -> None:
        """Fails now, before training, on a layer `model` does not have.

        A layer the model's graph cannot show but observing its calls may (a
        layer inside a custom layer, called twice, or with several outputs)
        is checked when the model is bound and runs on the probe.

        Raises:
            ValueError: on a layer name or object that `model` does not hold,
                or a layer whose output cannot be shown.
        """
        spec = self._layer_spec
        if spec is None or isinstance(spec, re.Pattern) or spec == "all":
            return
        items = [spec] if isinstance(spec, (str, keras.layers.Layer)) else list(spec)
        if not layers_lib.has_graph(model):
            for item in items:
                capture.resolve(model, item)
            return
        walked = dict(layers_lib.walk(model))
        for item in items:
            try:
                layers_lib.select(model, [item], self._max_layers)
            except ValueError as graph_error:
                path, _ = capture.resolve(model, item)
                if path in walked and not capture.graph_may_miss(walked[path]):
                    raise graph_error from None

    def bind(self, model) -> None:
        """Logs `model` from now on: picks its layers and builds its extraction model.

        Binding the model already bound does nothing, so that repeated `fit`
        calls reuse one extraction model. Another model starts its measures
        afresh; the run's steps, index and kept events go on. A process that
        does not log binds all the same (no forward pass), so that a model or
        probe that cannot be logged fails in every process alike.

        Raises:
            ValueError: on a model that cannot be logged (no layers, several
                inputs, a subclassed model), an unknown layer, or a probe that
                does not fit the model's input.
        """
        if self._recorder is not None and self._recorder.model is model:
            return
        first = self._process is None
        if first:
            self._process = self.process
        recorder = _Recorder(
            model,
            self._probe,
            self._layer_spec,
            preprocess=self._preprocess,
            max_layers=self._max_layers,
            max_channels=self._max_channels,
            max_size=self._max_size,
            probe_images=self._probe_images,
            verbose=self._verbose if self._process.chief else 0,
            probe_tokens=self._probe_tokens,
        )
        if first and self._verbose and not self._process.chief:
            print(
                f"ActivationLogger: not logging from this process ({self._process.source}); "
                "the chief logs. Pass chief=True and a run_name of its own to log here too."
            )
        self.close()
        self._recorder = recorder
        self._tracker.reset()

    @property
    def process(self) -> distributed.Process:
        """Whether this process logs (`process.chief`), and what said so.

        Found from the launcher's conventions, or from `chief` when given;
        kept from the first `bind` on.
        """
        if self._process is not None:
            return self._process
        if self._chief is not None:
            return distributed.Process(self._chief, f"chief={self._chief}")
        return distributed.this_process()

    @property
    def model(self):
        """The bound model, or None before `bind`."""
        return self._recorder.model if self._recorder else None

    @property
    def layers(self) -> tuple[str, ...]:
        """The logged layers' paths, in model order; empty before `bind`."""
        return tuple(self._recorder.paths) if self._recorder else ()

    @property
    def extractor(self):
        """What computes the logged layers' outputs from the probe: a Keras
        model from the model's inputs to them (a Functional or Sequential
        model's graph), or a `capture.Observer` (layers reached by observing
        their calls)."""
        return self._bound().extractor

    @property
    def batch(self):
        """The probe batch as the model takes it, preprocessed: an array, or
        a list or dict for several inputs (float32; integer inputs keep
        their dtype)."""
        return self._bound().batch

    def forward(self) -> list[LayerValue]:
        """The logged layers' activations on the probe now, one value per layer.

        The work `log` does on the calling thread; everything else happens
        in the writer's thread.
        """
        return self._bound().forward()

    # -- the run -----------------------------------------------------------

    @property
    def last_step(self) -> int | None:
        """The last step logged, or None before the first."""
        return self._last_step

    def log(
        self,
        step: int,
        *,
        epoch: float | None = None,
        batch: int | None = None,
        strict: bool = False,
    ) -> bool:
        """Logs the bound model's activations as `step`; the probe too, the first time.

        Returns as soon as the writer's queue takes the step; `flush` or
        `close` wait for it to be on disk.

        Args:
            step: the step to log as. A step not above `last_step` is already
                logged and is skipped, and so is every step in a process that
                does not log (`process.chief` is False).
            epoch: the epoch to store with the step (fractional within an
                epoch). Defaults to `None`.
            batch: the batch index within the epoch. Defaults to `None`.
            strict: True raises when the activations cannot be computed;
                False warns once and skips the step, so that training goes
                on. Defaults to `False`.

        Returns:
            True if the step was logged, False if it was skipped.

        Raises:
            RuntimeError: before `bind`.
            Exception: with `strict=True`, whatever computing the
                activations raised.
        """
        recorder = self._bound()
        step = int(step)
        if not self._process.chief:
            return False
        if self._last_step is not None and step <= self._last_step:
            return False
        try:
            values = recorder.forward()
        except Exception as e:
            if strict:
                raise
            # Logging must never end a training run.
            if not self._warned_failure:
                warnings.warn(
                    f"ActivationLogger: could not compute activations at step {step} ({e!r}); "
                    "training goes on and later steps are tried again.",
                    stacklevel=2,
                )
                self._warned_failure = True
            return False
        if not self._probe_logged:
            values.extend(recorder.probe_values())
            self._probe_logged = True
        self._open_writer().submit(step, values, epoch=epoch, batch=batch, index=self._index)
        self._index += 1
        self._last_step = step
        return True

    def flush(self) -> None:
        """Blocks until every logged step is written, or kept for a retry."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Writes what it can and closes the event file.

        The session stays usable: the next `log` opens a new file and first
        writes the events this one could not.
        """
        if self._writer is not None:
            self._pending = self._writer.close()
            self._writer = None

    # -- helpers -------------------------------------------------------------

    def _bound(self) -> _Recorder:
        if self._recorder is None:
            raise RuntimeError("No model to log yet: call bind(model) first.")
        return self._recorder

    def _open_writer(self) -> ActivationWriter:
        if self._writer is None:
            self._writer = ActivationWriter(
                self.run_dir,
                max_size=self._max_size,
                pending=self._pending,
                tracker=self._tracker,
            )
            self._pending = []
        return self._writer
