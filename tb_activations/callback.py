"""The Keras side: `ActivationLogger` (a callback) and `log_activations`.

Keras is at this edge only: the extraction model runs the probe, and
everything after `.numpy()` (normalization, PNG, events) is numpy and Pillow
in `encoding` and `summary`, off the training thread.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from tb_activations import encoding, metadata
from tb_activations import layers as layers_lib
from tb_activations import probe as probe_lib
from tb_activations.summary import ActivationWriter, LayerValue

logger = logging.getLogger("tb_activations")

RUN_NAME = "activations"
DEFAULT_MAX_LAYERS = 12
DEFAULT_MAX_CHANNELS = 512
DEFAULT_MAX_SIZE = 256


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


def _check_layers(layers) -> None:
    if layers is None or isinstance(layers, (str, re.Pattern)):
        return
    if isinstance(layers, Sequence) and not isinstance(layers, (bytes, bytearray)):
        return
    raise ValueError(
        "layers must be None, 'all', a regular expression, or a list of layer names or "
        f"layer objects. Received: layers={layers!r}"
    )


def _check_probe(probe) -> None:
    """Fails at construction for a probe file that cannot be read."""
    if isinstance(probe, (str, os.PathLike)):
        probe_lib.open_image(probe)
    elif probe is None:
        raise ValueError(
            "A probe is required: an image path, a PIL.Image or an array. Received: probe=None"
        )


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
    ):
        self.model = model
        self.max_channels = max_channels
        self.max_size = max_size
        if not model.layers:
            raise ValueError(
                f"Model {model.name!r} has no layers to log. Received: model={model!r}"
            )
        _ensure_built(model, probe)
        self.paths = layers_lib.select(model, layers, max_layers)
        if not self.paths:
            raise ValueError(
                f"Model {model.name!r} has no layer whose output can be shown (convolution, "
                f"pooling, Dense, ...). Received: layers={layers!r}"
            )
        if metadata.PROBE_TAG in self.paths:
            raise ValueError(
                f"A layer may not be named {metadata.PROBE_TAG!r}: that tag holds the probe."
            )
        self.taps = layers_lib.taps(model, self.paths)
        self.positions = {path: i for i, (path, _) in enumerate(layers_lib.walk(model))}
        # The probe is laid out like the first layer that declares a format.
        self.input_format = next(
            (
                layer.data_format
                for _, layer in layers_lib.walk(model)
                if getattr(layer, "data_format", None) in ("channels_first", "channels_last")
            ),
            keras.config.image_data_format(),
        )
        shape = tuple(model.inputs[0].shape)
        self.batch = probe_lib.load(probe, shape, self.input_format, preprocess)
        self.extractor = layers_lib.extractor(model, self.paths)
        # Respect a user's choice of eager execution; it may be there for a reason.
        self.extractor.run_eagerly = bool(getattr(model, "run_eagerly", False))
        self.infos: list[metadata.LayerInfo] | None = None
        if verbose and layers is None:
            print(
                f"ActivationLogger: logging {len(self.paths)} layers of {model.name!r}: "
                f"{', '.join(self.paths)} (pass layers=[...] to choose)"
            )

    def forward(self) -> list[np.ndarray]:
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
        arrays = [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]
        if self.infos is None:
            self.infos = [self._describe(t, a) for t, a in zip(self.taps, arrays)]
        return arrays

    def values(self, arrays: Sequence[np.ndarray]) -> list[LayerValue]:
        return [
            LayerValue(info, a, data_format=t.data_format)
            for info, t, a in zip(self.infos, self.taps, arrays)
        ]

    def probe_value(self) -> LayerValue:
        b = self.batch
        if b.ndim >= 4 and self.input_format == "channels_first":
            b = np.moveaxis(b, 1, -1)
        _, h, w, _ = encoding.probe_nhwc(b[:1]).shape
        info = metadata.LayerInfo(
            layer=metadata.PROBE_TAG,
            class_name="Probe",
            layout="probe",
            output_shape=(None, *b.shape[1:]),
            channels=1,
            total_channels=int(b.shape[-1]) if b.ndim > 2 else 1,
            probes=int(b.shape[0]),
            height=int(h),
            width=int(w),
            source_height=int(h),
            source_width=int(w),
            data_format=self.input_format,
            normalization="per probe min..max over all its pixels and channels to 0..255",
        )
        return LayerValue(info, b)

    def _describe(self, tap: layers_lib.Tap, arr: np.ndarray) -> metadata.LayerInfo:
        layout = encoding.layout_of(arr.ndim)
        nhwc_shape = encoding.to_nhwc(arr[:1], tap.data_format).shape
        _, h, w, c = nhwc_shape
        kept = min(c, self.max_channels)
        if kept < c:
            warnings.warn(
                f"ActivationLogger: layer {tap.path!r} has {c} channels; logging the first "
                f"{kept} (max_channels={self.max_channels}).",
                stacklevel=2,
            )
        factor = encoding.downscale_factor(h, w, self.max_size) if layout == "image" else 1
        if factor > 1:
            warnings.warn(
                f"ActivationLogger: layer {tap.path!r} is {h}x{w}; logging it downscaled by "
                f"{factor} to {math.ceil(h / factor)}x{math.ceil(w / factor)} "
                f"(max_size={self.max_size}).",
                stacklevel=2,
            )
        return metadata.LayerInfo(
            layer=tap.path,
            class_name=type(tap.layer).__name__,
            layout=layout,
            output_shape=tap.output_shape or (None, *arr.shape[1:]),
            channels=kept,
            total_channels=c,
            probes=int(arr.shape[0]),
            height=math.ceil(h / factor),
            width=math.ceil(w / factor),
            source_height=h,
            source_width=w,
            reduction=encoding.rank5_reduction(tap.data_format) if arr.ndim == 5 else None,
            data_format=tap.data_format,
            position=self.positions[tap.path],
        )


def _ensure_built(model, probe) -> None:
    """A Sequential model without an Input has no graph before its first batch.

    Building it from the probe's shape lets the untrained state be logged.
    """
    if getattr(model, "built", True) and layers_lib._has_graph(model):
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


class ActivationLogger(keras.callbacks.Callback):
    """Logs the activations of chosen layers on a fixed probe, for TensorBoard.

    Args:
        log_dir: the directory given to TensorBoard. The activations go to a
            run of their own, `log_dir/activations`, beside the `train` and
            `validation` runs of Keras's `TensorBoard` callback.
        probe: an image path, a `PIL.Image`, an array (HxWxC, 1xHxWxC,
            NxHxWxC: N probes are all logged), or a list of paths or images.
            Resized to the model's input size when that is fixed.
        layers: None picks the convolution and Dense layers, at most
            `max_layers` spread over the depth; "all" takes every layer whose
            output can be shown; or a list of names (paths such as
            "vgg16/block1_conv1" for nested models), layer objects, or a
            compiled regular expression.
        freq: log every `freq` epochs (and once before training starts, and
            after the last epoch).
        batch_freq: also log every `batch_freq` batches during the first
            `batch_epochs` epochs, where features change fastest.
        preprocess: called once on the probe batch (float32, the model's
            layout), e.g. `keras.applications.vgg16.preprocess_input`.
        max_channels: channels logged per layer (the first ones).
        max_size: larger feature maps are box-downscaled to fit.

    Steps are the optimizer's iteration count (training batches seen), the
    step Keras's `TensorBoard(update_freq=...)` uses for its batch metrics.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        probe: probe_lib.Probe,
        layers: layers_lib.LayerSpec = None,
        *,
        freq: int = 1,
        batch_freq: int | None = None,
        batch_epochs: int = 1,
        preprocess: Callable[[np.ndarray], Any] | None = None,
        max_layers: int = DEFAULT_MAX_LAYERS,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_size: int | None = DEFAULT_MAX_SIZE,
        run_name: str = RUN_NAME,
        verbose: int = 1,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"log_dir must be a directory path. Received: log_dir={log_dir!r}")
        _check_probe(probe)
        _check_layers(layers)
        _check_int("freq", freq, 1)
        _check_int("batch_freq", batch_freq, 1, allow_none=True)
        _check_int("batch_epochs", batch_epochs, 0)
        _check_int("max_layers", max_layers, 1)
        _check_int("max_channels", max_channels, 1)
        _check_int("max_size", max_size, 1, allow_none=True)
        if preprocess is not None and not callable(preprocess):
            raise ValueError(f"preprocess must be callable. Received: preprocess={preprocess!r}")
        if not isinstance(run_name, str) or not run_name or run_name in (".", ".."):
            raise ValueError(f"run_name must be a directory name. Received: run_name={run_name!r}")
        self.log_dir = os.fspath(log_dir)
        self.run_dir = os.path.join(self.log_dir, run_name)
        self.probe = probe
        self.layers = layers
        self.freq = int(freq)
        self.batch_freq = batch_freq
        self.batch_epochs = batch_epochs
        self.preprocess = preprocess
        self.max_layers = max_layers
        self.max_channels = max_channels
        self.max_size = max_size
        self.verbose = verbose
        self._recorder: _Recorder | None = None
        self._recorder_model = None
        self._writer: ActivationWriter | None = None
        # Survive repeated fit(): steps keep increasing and the probe is logged once.
        self._last_step: int | None = None
        self._step_offset = 0
        self._frames = 0
        self._probe_logged = False
        self._warned_failure = False
        # Steps whose write failed, carried to the next fit's writer.
        self._unwritten: list = []

    # -- hooks: they only delegate -------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        # Unknown layer names fail here, before training, when the model has a graph.
        if layers_lib._has_graph(model) and self.layers is not None:
            layers_lib.select(model, self.layers, self.max_layers)

    def on_train_begin(self, logs=None):
        self._epoch = 0
        self._epoch_logged = False
        self._steps_per_epoch = None
        self._prepare()
        self._log(epoch=float(self._epoch_base()))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_logged = False

    def on_train_batch_end(self, batch, logs=None):
        if self.batch_freq is None or self._epoch >= self._first_epoch + self.batch_epochs:
            return
        if (batch + 1) % self.batch_freq == 0:
            steps = self._params().get("steps")
            fraction = (batch + 1) / steps if steps else None
            if fraction is not None and fraction >= 1:
                return  # the epoch-end event logs this state
            self._log(epoch=self._epoch + fraction if fraction is not None else None, batch=batch)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.freq == 0:
            self._log(epoch=float(epoch + 1))
            self._epoch_logged = True

    def on_train_end(self, logs=None):
        if not self._epoch_logged:
            self._log(epoch=float(self._epoch + 1))
        self._close_writer()

    # -- helpers ------------------------------------------------------------

    def _epoch_base(self) -> int:
        return int(self._params().get("initial_epoch", 0))

    def _params(self) -> dict:
        # Keras before 3.5 sets `params` only inside fit(); log_activations runs without.
        return getattr(self, "params", None) or {}

    def _prepare(self) -> None:
        self._first_epoch = self._epoch_base()
        self._epoch = self._first_epoch
        if self._recorder is None or self._recorder_model is not self.model:
            self._recorder = _Recorder(
                self.model,
                self.probe,
                self.layers,
                preprocess=self.preprocess,
                max_layers=self.max_layers,
                max_channels=self.max_channels,
                max_size=self.max_size,
                verbose=self.verbose,
            )
            self._recorder_model = self.model
        iterations = self._iterations()
        if self._last_step is not None and iterations + self._step_offset < self._last_step:
            # A recompiled model restarts its optimizer at 0; keep steps increasing.
            self._step_offset = self._last_step - iterations

    def _iterations(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return (self._last_step or 0) + 1
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _log(self, *, epoch: float | None, batch: int | None = None, strict: bool = False):
        step = self._iterations() + self._step_offset
        if self._last_step is not None and step <= self._last_step:
            return  # this state is already logged (a repeated fit() starts where the last ended)
        try:
            arrays = self._recorder.forward()
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
            return
        values = self._recorder.values(arrays)
        if not self._probe_logged:
            values.append(self._recorder.probe_value())
            self._probe_logged = True
        if self._writer is None:
            self._writer = ActivationWriter(
                self.run_dir, max_size=self.max_size, pending=self._unwritten
            )
            self._unwritten = []
        self._writer.submit(step, values, epoch=epoch, batch=batch, index=self._frames)
        self._frames += 1
        self._last_step = step

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._unwritten = self._writer.close()
            self._writer = None


def log_activations(
    model,
    probe: probe_lib.Probe,
    log_dir: str | os.PathLike,
    layers: layers_lib.LayerSpec = None,
    step: int = 0,
    *,
    preprocess: Callable[[np.ndarray], Any] | None = None,
    max_layers: int = DEFAULT_MAX_LAYERS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    max_size: int | None = DEFAULT_MAX_SIZE,
    run_name: str = RUN_NAME,
    verbose: int = 1,
) -> list[str]:
    """Logs one snapshot of `model`'s activations on `probe`, without training.

    Returns the paths of the logged layers. Everything is on disk on return.
    """
    _check_int("step", step, 0)
    cb = ActivationLogger(
        log_dir,
        probe,
        layers,
        preprocess=preprocess,
        max_layers=max_layers,
        max_channels=max_channels,
        max_size=max_size,
        run_name=run_name,
        verbose=verbose,
    )
    cb.set_model(model)
    cb._prepare()
    cb._step_offset = int(step) - cb._iterations()
    try:
        cb._log(epoch=None, strict=True)
    finally:
        cb._close_writer()
    return list(cb._recorder.paths)
