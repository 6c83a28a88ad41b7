"""Reading activation logs back with TensorBoard's own readers, and small
real Keras models to write them from. Shared by the test modules."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

from tb_activations import metadata


@dataclass
class Step:
    step: int
    header: dict
    stats: np.ndarray  # (probes, channels, fields)
    blobs: list[bytes]  # every blob, PNGs from metadata.FIRST_IMAGE_INDEX on

    def image(self, info: metadata.LayerInfo, probe: int, channel: int) -> np.ndarray:
        """One channel's levels, cut from the PNG that holds it."""
        index, held = info.holding(probe, channel)
        png = np.asarray(Image.open(io.BytesIO(self.blobs[index])))
        if info.channels_per_image == 1:
            return png  # also the probe's RGB image
        return png.reshape(len(held), -1, png.shape[1])[channel - held.start]


@dataclass
class Series:
    info: metadata.LayerInfo
    steps: list[Step]

    @property
    def step_numbers(self) -> list[int]:
        return [s.step for s in self.steps]


def read_run(
    logdir: str | os.PathLike, run: str = "activations", keep: int = 0
) -> dict[str, Series]:
    """Every activations series of one run, as TensorBoard serves it.

    `keep` is the per-series sampling (0 keeps every step).
    """
    logdir = os.fspath(logdir)
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": keep})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = context.RequestContext()
    listing = provider.list_blob_sequences(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME
    ).get(run, {})
    data = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=1_000_000
    ).get(run, {})
    out = {}
    for tag, ts in listing.items():
        info = metadata.parse_plugin_metadata(ts.plugin_content)
        steps = []
        for datum in data[tag]:
            blobs = [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in datum.values]
            steps.append(
                Step(
                    step=datum.step,
                    header=metadata.decode_header(blobs[metadata.HEADER_INDEX]),
                    stats=metadata.decode_stats(blobs[metadata.STATS_INDEX]),
                    blobs=blobs,
                )
            )
        out[tag] = Series(info, steps)
    return out


def layer_info(layer, channels, probes=1, h=6, w=5, layout="image", **kw) -> metadata.LayerInfo:
    """A LayerInfo for writing series by hand, image layout by default."""
    return metadata.LayerInfo(
        layer=layer,
        class_name=kw.pop("class_name", "Conv2D"),
        layout=layout,
        output_shape=kw.pop("output_shape", (None, h, w, channels)),
        channels=channels,
        total_channels=channels,
        probes=probes,
        height=h,
        width=w,
        source_height=h,
        source_width=w,
        **kw,
    )


def small_cnn(name: str = "small_cnn", input_shape=(28, 28, 1), classes: int = 3):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def stripes(n: int = 96, size: int = 28, seed: int = 0):
    """A small local image task: horizontal, vertical or diagonal stripes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    x = np.empty((n, size, size, 1), np.float32)
    y = rng.integers(0, 3, n)
    for i, label in enumerate(y):
        period = rng.integers(3, 7)
        phase = rng.uniform(0, 2 * np.pi)
        coord = (yy, xx, xx + yy)[label]
        x[i, :, :, 0] = np.sin(2 * np.pi * coord / period + phase) > 0
    x += rng.normal(0, 0.1, x.shape).astype(np.float32)
    return x, y.astype("int32")


# -- a run whose feature dynamics are known in advance ------------------------------

DEAD_FROM_START = (0, 1)  # conv2 channels whose bias keeps them below ReLU's zero
KILLED = (3, 7)  # conv2 channels whose bias is pushed down at the end of KILL_EPOCH
KILL_EPOCH = 2  # an epoch index: the state after it is the first one they are dead in
GROUND_TRUTH_LAYERS = ("conv1", "conv2", "dense1")
_BURIED = -1e4  # far below any activation the inputs can reach


@dataclass
class GroundTruth:
    """A training run with known dead, dying and frozen features, its log, and
    the full-precision activations of every logged state."""

    log_dir: str
    probe: np.ndarray
    steps: list[int]  # the optimizer iterations of the logged states, in order
    activations: dict[str, list[np.ndarray]]  # layer -> one (probes, ...) array per step
    kill_step: int  # the first logged step at which KILLED are dead
    epochs: int
    steps_per_epoch: int


def ground_truth_model(seed: int = 4):
    """conv1 is frozen (it sees only the fixed input, so it never changes);
    conv2 has channels dead from the start; the rest trains normally."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1", trainable=False)(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    conv2 = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")
    x = conv2(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="ground_truth")
    bias = conv2.bias.numpy()
    bias[list(DEAD_FROM_START)] = _BURIED
    conv2.bias.assign(bias)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_ground_truth(log_dir, *, epochs: int = 5, probes: int = 2, **logger_kw) -> GroundTruth:
    """Trains `ground_truth_model` with ActivationLogger and Keras's own
    TensorBoard callback into `log_dir`, recording beside them the exact
    activations of every state the logger logs."""
    import keras

    from tb_activations import ActivationLogger

    model = ground_truth_model()
    x, y = stripes(n=96)
    probe = x[:probes]
    extractor = keras.Model(
        model.inputs, [model.get_layer(name).output for name in GROUND_TRUTH_LAYERS]
    )
    steps: list[int] = []
    activations: dict[str, list[np.ndarray]] = {name: [] for name in GROUND_TRUTH_LAYERS}

    def record():
        outs = extractor.predict_on_batch(probe)
        for name, out in zip(GROUND_TRUTH_LAYERS, outs):
            activations[name].append(np.asarray(out, dtype=np.float32))
        steps.append(int(model.optimizer.iterations.numpy()))

    def kill(epoch):
        if epoch == KILL_EPOCH:
            conv2 = model.get_layer("conv2")
            bias = conv2.bias.numpy()
            bias[list(KILLED)] = _BURIED
            conv2.bias.assign(bias)

    callbacks = [
        # Kills before the loggers see the end of that epoch, so the state
        # after it is the first one logged with those channels dead.
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: kill(epoch)),
        keras.callbacks.TensorBoard(os.fspath(log_dir), update_freq="batch"),
        ActivationLogger(log_dir, probe, list(GROUND_TRUTH_LAYERS), verbose=0, **logger_kw),
        keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: record(), on_epoch_end=lambda epoch, logs: record()
        ),
    ]
    batch_size = 32
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.0,
        validation_data=(x[:32], y[:32]),
        callbacks=callbacks,
        verbose=0,
    )
    steps_per_epoch = len(x) // batch_size
    return GroundTruth(
        log_dir=os.fspath(log_dir),
        probe=probe,
        steps=steps,
        activations=activations,
        kill_step=(KILL_EPOCH + 1) * steps_per_epoch,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
    )


# -- the probe set's health measures, written out in float64 numpy -------------


def unit_matrix(a: np.ndarray) -> np.ndarray:
    """A layer's raw channels-last (N, ...) output as the unit matrix: rows
    are sample x position, columns units (a Dense layer's units are its
    columns, one position per sample)."""
    a = np.asarray(a, np.float64)
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1])


def pooled(a: np.ndarray) -> np.ndarray:
    """G: each sample's mean over positions of every unit, (N, units)."""
    a = np.asarray(a, np.float64)
    return a if a.ndim == 2 else a.reshape(a.shape[0], -1, a.shape[-1]).mean(axis=1)


def ref_health(a: np.ndarray, activation: str | None = None, tau: float = 0.025) -> dict:
    """docs/measures.md's probe-set measures of one layer at one step, from
    its raw (N, ...) float32 output, in float64; NaN for null. A layer with a
    non-finite value has every one of them null."""
    m = unit_matrix(a)
    u = m.shape[1]
    nan = float("nan")
    if not np.isfinite(m).all():
        return {
            "on_rate": np.full(u, nan),
            "dormant_score": np.full(u, nan),
            **dict.fromkeys(
                ("dormant_fraction", "effective_rank", "similarity", "rms", "saturation"), nan
            ),
        }
    on = (m > 0).mean(axis=0)
    absolute = np.abs(m).mean(axis=0)
    den = absolute.mean()
    score = absolute / den if den > 0 else np.full(u, nan)
    g = pooled(a)
    sigma = np.linalg.svd(g - g.mean(axis=0), compute_uv=False)
    sigma = sigma[sigma > sigma.max(initial=0) * max(g.shape) * np.finfo(float).eps]
    p = sigma / sigma.sum() if sigma.size else sigma
    rank = float(np.exp(-(p * np.log(p)).sum())) if sigma.size else nan
    keep = g[np.linalg.norm(g, axis=1) > 0]
    sims = [
        float(keep[i] @ keep[j] / np.linalg.norm(keep[i]) / np.linalg.norm(keep[j]))
        for i in range(len(keep))
        for j in range(i + 1, len(keep))
    ]
    saturation = nan
    if activation == "tanh":
        saturation = float((np.abs(m) > 0.99).mean())
    elif activation == "sigmoid":
        saturation = float(((m < 0.01) | (m > 0.99)).mean())
    return {
        "on_rate": on,
        "dormant_score": score,
        "dormant_fraction": float((score <= tau).mean()) if den > 0 else nan,
        "effective_rank": rank,
        "similarity": float(np.mean(sims)) if sims else nan,
        "rms": float(np.sqrt((m**2).mean())),
        "saturation": saturation,
    }


def written(info: metadata.LayerInfo) -> metadata.LayerInfo:
    """A layer's info as the writer logs it from `info` and a probe of
    `info.probes` samples (all pictured): with the measures' statistics and
    the probe set's fields (format version 3)."""
    import dataclasses

    if info.layout == "probe":
        return info
    return dataclasses.replace(
        info,
        stats_fields=metadata.LAYER_STATS_FIELDS,
        samples=info.probes,
        units=info.width if info.layout == "units" else info.channels,
        set_fields=metadata.SET_FIELDS,
        unit_fields=metadata.UNIT_FIELDS,
    )
