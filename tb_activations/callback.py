"""The Keras side: `ActivationLogger` (a callback) and `log_activations`.

Both log through a `session.LoggingSession`, which does the work; the
callback's hooks only decide *when* a step is logged, and as which step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tb_activations import layers as layers_lib
from tb_activations import probe as probe_lib
from tb_activations.inputs import ProbeTokens
from tb_activations.options import (
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_LAYERS,
    DEFAULT_MAX_SIZE,
    DEFAULT_PROBE_IMAGES,
    RUN_NAME,
    SessionOptions,
    check_int,
    options_of,
)
from tb_activations.session import LoggingSession

if TYPE_CHECKING:
    from typing_extensions import Unpack


class ActivationLogger(keras.callbacks.Callback):
    """Logs the activations of chosen layers on a fixed probe, for TensorBoard.

    The activations go to a run of their own, `log_dir/activations`, beside
    the `train` and `validation` runs of Keras's `TensorBoard` callback on
    the same `log_dir`; TensorBoard shows them in its Activations tab.

    A step is the optimizer's iteration count (training batches seen) at the
    logged state; step 0 is the untrained model. Within one `fit`, that is
    the step of Keras's `TensorBoard` batch metrics (`update_freq="batch"` or
    an integer), so frames and loss curves line up. Keras restarts its batch
    counter at every `fit`; these steps keep increasing over repeated `fit`
    calls, `initial_epoch` and recompiling.

    Logging is once before training (the untrained state), every `freq`
    epochs, after the last epoch, and, with `batch_freq`, every `batch_freq`
    batches of the first `batch_epochs` epochs. The training thread only runs
    the forward pass of the probe; encoding and writing happen in a
    background thread. A failure to compute or write never stops training:
    it warns once, and unwritten steps are written when the directory works
    again. Every step is on disk when `fit` returns.

    In a distributed training, one copy is logged, by the chief process: the
    one `TF_CONFIG` names (the chief task, or worker 0 when the cluster has
    no chief), JAX's process 0 or torch's rank 0 (`RANK`, or
    `torch.distributed.get_rank()` once initialized). Every other process
    runs no forward pass of the probe and writes no file. Replicas within a
    process (`tf.distribute.MirroredStrategy`, `keras.distribution` on JAX)
    share one callback, so they log once too.

    Args:
        log_dir: the directory given to TensorBoard.
        probe: what the model takes, in the structure of its inputs. For
            one input: an image path, a `PIL.Image`, an array (HxWxC,
            1xHxWxC, or NxHxWxC), or a list of paths or images; images are
            resized to the model's input size when that is fixed. For
            several inputs: a list in input order or a dict keyed by input
            name. Integer inputs (token IDs, masks) stay integers. A model
            without symbolic inputs (subclassed) takes the probe as given,
            batch axis included. A batch of N samples is a probe set (for
            example `x_val[:256]`): the first `probe_images` get pictures,
            and all N feed the statistics and the measures
            (docs/measures.md).
        layers: `None` picks the convolution, Dense, embedding and
            recurrent layers, at most `max_layers` spread over the depth,
            and prints which ones; on a
            transformer, the embeddings, each block and each attention
            layer instead. `"all"` takes every layer whose output can be
            shown; or a list of names (paths such as `"vgg16/block1_conv1"`
            or `"transformer_layer_0/self_attention_layer"`, reaching inside
            nested models, custom layers and subclassed models), layer
            objects, or a compiled regular expression. A layer called more
            than once logs each call (`path`, `path@2`, ...), one with
            several outputs each (`path:0`, `path:1` or `path:key`).
            Defaults to `None`.
        freq: log every `freq` epochs. Defaults to `1`.
        batch_freq: also log every `batch_freq` batches during the first
            `batch_epochs` epochs, where features change fastest; `None`
            logs at epoch ends only. Defaults to `None`.
        batch_epochs: how many epochs `batch_freq` applies to. Defaults to
            `1`.
        preprocess: called once on the probe batch (float32, in the model's
            layout), e.g. `keras.applications.vgg16.preprocess_input`;
            `None` feeds the probe as it is. Defaults to `None`.
        max_layers: the most layers `layers=None` picks. Defaults to `12`.
        max_channels: channels logged per layer, the first ones; a warning
            says when a layer has more. Defaults to `512`.
        max_size: feature maps larger than `max_size` in height or width are
            box-downscaled to fit, with a warning; `None` keeps every size.
            Defaults to `256`.
        probe_images: how many samples of the probe, the first ones, are
            pictured (their maps stored as images); the others feed only
            the statistics and the measures. Defaults to `8`.
        run_name: the run's directory inside `log_dir`. Defaults to
            `"activations"`.
        verbose: `1` prints which layers `layers=None` picked, or that this
            process does not log; `0` is silent. Defaults to `1`.
        chief: whether this process logs. `None` logs only from the chief
            of a distributed training, and from a process that is not part
            of one. `True` logs from this process whatever its rank: to have
            a worker log beside the chief, give it `chief=True` and a
            `run_name` of its own, such as `f"activations_worker{rank}"`.
            `False` never logs. Defaults to `None`.
        probe_tokens: the strings of the probe's token IDs, shown with its
            integer input: a list of strings (one probe), a list of such
            lists (one per probe), or a function from an ID to its string
            (such as a keras-hub tokenizer's `id_to_token`); `None` shows
            the IDs. Defaults to `None`.

    Raises:
        ValueError: at construction, on an argument of the wrong type or
            range, a probe file that cannot be read, or (with `chief=None`)
            a `TF_CONFIG` or `RANK` variable that cannot be read; in `set_model`, on a
            layer the model does not have; when training begins, on a model
            that cannot be logged or a probe that does not fit its input.

    Example:

    ```python
    model.fit(
        x_train,
        y_train,
        epochs=10,
        callbacks=[
            keras.callbacks.TensorBoard("logs/run1"),
            ActivationLogger("logs/run1", probe=x_train[:1]),
        ],
    )
    ```

    Then `tensorboard --logdir logs` and open the Activations tab.
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
        probe_images: int = DEFAULT_PROBE_IMAGES,
        run_name: str = RUN_NAME,
        verbose: int = 1,
        chief: bool | None = None,
        probe_tokens: ProbeTokens = None,
    ):
        super().__init__()
        self._session = LoggingSession(log_dir, probe, layers, **options_of(locals()))
        check_int("freq", freq, 1)
        check_int("batch_freq", batch_freq, 1, allow_none=True)
        check_int("batch_epochs", batch_epochs, 0)
        self.log_dir = os.fspath(log_dir)
        self.freq = int(freq)
        self.batch_freq = batch_freq
        self.batch_epochs = batch_epochs
        # Over repeated fit(): added to the optimizer's iterations so that a
        # recompiled model, whose optimizer restarts at 0, keeps steps increasing.
        self._step_offset = 0

    @property
    def session(self) -> LoggingSession:
        """The `LoggingSession` that does the logging (read-only).

        Its `layers` are the logged layers' paths once training has begun,
        `extractor` and `batch` the extraction model and the probe as the
        model takes it, `process.chief` whether this process logs, and
        `flush()` waits until every logged step is on disk.
        """
        return self._session

    @property
    def run_dir(self) -> str:
        """The run directory the events go to: `log_dir/run_name`."""
        return self._session.run_dir

    # -- hooks: when to log ------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        # Unknown layer names fail here, before training, when the model has a graph.
        self._session.check_layers(model)

    def on_train_begin(self, logs=None):
        self._first_epoch = int(self._params().get("initial_epoch", 0))
        self._epoch = self._first_epoch
        self._epoch_logged = False
        self._session.bind(self.model)
        last = self._session.last_step
        iterations = self._iterations()
        if last is not None and iterations + self._step_offset < last:
            self._step_offset = last - iterations
        self._log(epoch=float(self._first_epoch))

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
        self._session.close()

    # -- helpers ------------------------------------------------------------

    def _params(self) -> dict:
        # Keras before 3.5 sets `params` only inside fit(); hooks may be driven without.
        return getattr(self, "params", None) or {}

    def _iterations(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return (self._session.last_step or 0) + 1
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _log(self, *, epoch: float | None, batch: int | None = None) -> None:
        if not self._session.process.chief:
            return
        self._session.log(self._iterations() + self._step_offset, epoch=epoch, batch=batch)


def log_activations(
    model,
    probe: probe_lib.Probe,
    log_dir: str | os.PathLike,
    layers: layers_lib.LayerSpec = None,
    step: int = 0,
    **options: Unpack[SessionOptions],
) -> list[str]:
    """Logs one snapshot of `model`'s activations on `probe`, without training.

    Everything is on disk when it returns. The arguments mean what they
    mean for `ActivationLogger`; the options after `step` are keyword-only,
    those of `ActivationLogger` but its timing (`freq`, `batch_freq`,
    `batch_epochs`), with the same defaults.

    Args:
        model: any Keras model: Functional, Sequential or subclassed.
        probe: what the model takes, in the structure of its inputs: an
            image path, a `PIL.Image`, an array, or a list of paths or
            images for one input; a list or a dict keyed by input name for
            several. A batch of N samples is a probe set: the first
            `probe_images` are pictured, all N are measured.
        log_dir: the directory given to TensorBoard.
        layers: `None`, `"all"`, a list of names or layer objects, or a
            compiled regular expression. Defaults to `None`.
        step: the step to log the snapshot as. Defaults to `0`.
        preprocess: called once on the probe batch. Defaults to `None`.
        max_layers: the most layers `layers=None` picks. Defaults to `12`.
        max_channels: channels logged per layer. Defaults to `512`.
        max_size: larger feature maps are box-downscaled to fit; `None`
            keeps every size. Defaults to `256`.
        probe_images: how many samples of the probe, the first ones, are
            pictured; all of them feed the statistics and the measures.
            Defaults to `8`.
        run_name: the run's directory inside `log_dir`. Defaults to
            `"activations"`.
        verbose: `1` prints which layers `layers=None` picked, or that this
            process does not log; `0` is silent. Defaults to `1`.
        chief: `None` logs only from the chief of a distributed training;
            `True` logs from this process whatever its rank; `False` never
            logs. Defaults to `None`.
        probe_tokens: the strings of the probe's token IDs. Defaults to
            `None`.

    Returns:
        The paths of the logged layers, in model order; an empty list in a
        process that does not log.

    Raises:
        ValueError: on an argument of the wrong type or range, a model that
            cannot be logged, an unknown layer, a probe that cannot be read
            or does not fit the model's input, or (with `chief=None`) a
            `TF_CONFIG` or `RANK` variable that cannot be read.
        TypeError: on an option `ActivationLogger` does not take.
        Exception: whatever the model raised computing the activations
            (unlike the callback, which warns and goes on).

    Example:

    ```python
    model = keras.applications.VGG16(weights="imagenet", include_top=False)
    log_activations(
        model,
        "cat.jpg",
        "logs/vgg16",
        layers=[f"block{i}_conv1" for i in range(1, 6)],
        preprocess=keras.applications.vgg16.preprocess_input,
    )
    ```
    """
    check_int("step", step, 0)
    session = LoggingSession(log_dir, probe, layers, **options)
    session.bind(model)
    if not session.process.chief:
        return []
    try:
        session.log(step, strict=True)
    finally:
        session.close()
    return list(session.layers)
