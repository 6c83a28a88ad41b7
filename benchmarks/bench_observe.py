"""What a logging event blocks on models reached only by observing calls, on any backend.

    .venv/bin/python benchmarks/bench_observe.py [--quick]
    KERAS_BACKEND=jax .venv-jax/bin/python benchmarks/bench_observe.py [--quick]
    KERAS_BACKEND=torch .venv-torch/bin/python benchmarks/bench_observe.py [--quick]

Two models whose layers only observing calls reaches (`tb_activations.capture`):
- a subclassed CNN (four convolution blocks, a 224x224 photo), default layers;
- a BERT-base-sized transformer at 128 tokens, default layers (embeddings,
  each block, each attention): keras-hub's `BertBackbone` where keras-hub is
  installed (the TensorFlow venv), else the same shape built from Keras
  layers (`MultiHeadAttention` and Dense layers inside a custom block).

Per logging event, interleaved so that both sides share the machine's load:
the model's own compiled forward pass on the probe (`predict_on_batch`), and
what a logging event blocks the training loop for (`LoggingSession.forward`,
the observed pass and the copy to numpy; encoding and writing happen in the
writer's thread). Target: at most 1.5x. The transformer's default layers
include each picked attention layer's scores (`path/attention_scores`).

Then back to back: steps logged in a row, then flushed, against the
strongest simple script that logs the same tensors (`CNNTaps` or
`BertTaps`, then `TFImages` or `NumpyImages`), alternated round by round. There is no
Functional graph to cut at those layers, so the script calls the model's
own layers in sequence on the probe, in a Keras model of its own run by
`predict_on_batch` (traced as the observer's pass is: `tf.function`,
`jax.jit`; eager on torch): a subclassed CNN's blocks sublayer by
sublayer; a transformer's graph up to the chosen blocks, and each chosen
attention layer called again on its block's input with
`return_attention_scores=True`. Each tensor goes to TensorBoard as
grayscale images, each min-max normalized: `tf.summary.image` in a
`tf.function` on TensorFlow (a PNG per channel or head, encoded in
parallel by the graph); on JAX and torch, numpy, Pillow and TensorBoard's
own `EventFileWriter`, a tensor's images tiled in one PNG (what torch's
`SummaryWriter.add_images` does), and the same with the records' checksum
in C. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import tempfile
import time

import common  # first: sets TensorFlow's log level before it loads
from common import median, ms, p90, table

import keras
import numpy as np

from tb_activations.session import LoggingSession

TARGET = 1.5  # x the model's own predict_on_batch
TOKENS = 128


class ConvBlock(keras.layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", name="conv")
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.pool = keras.layers.MaxPooling2D(name="pool")

    def call(self, x, training=False):
        return self.pool(keras.ops.relu(self.norm(self.conv(x), training=training)))


class SubclassedCNN(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed_cnn")
        self.blocks = [ConvBlock(32 * 2**i, name=f"block{i + 1}") for i in range(4)]
        self.head = keras.layers.Dense(10, name="head")

    def call(self, x, training=False):
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(keras.ops.mean(x, axis=(1, 2)))


class Encoder(keras.layers.Layer):
    """A BERT encoder block, as keras-hub's TransformerEncoder lays it out."""

    def __init__(self, width, heads, **kwargs):
        super().__init__(**kwargs)
        self.self_attention_layer = keras.layers.MultiHeadAttention(
            heads, width // heads, name="self_attention_layer"
        )
        self.self_attention_layer_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.intermediate = keras.layers.Dense(4 * width, activation="gelu", name="intermediate")
        self.output_dense = keras.layers.Dense(width, name="output_dense")
        self.feedforward_layer_norm = keras.layers.LayerNormalization(name="feedforward_norm")

    def call(self, x, mask):
        pad = keras.ops.cast(mask[:, None, :], "bool")
        x = self.self_attention_layer_norm(x + self.self_attention_layer(x, x, attention_mask=pad))
        return self.feedforward_layer_norm(x + self.output_dense(self.intermediate(x)))


def bert_base(blocks: int, width: int, heads: int):
    try:
        import keras_hub
    except ImportError:
        keras_hub = None
    if keras_hub is not None and keras.backend.backend() == "tensorflow":
        model = keras_hub.models.BertBackbone(
            vocabulary_size=30522,
            num_layers=blocks,
            num_heads=heads,
            hidden_dim=width,
            intermediate_dim=4 * width,
            max_sequence_length=512,
        )
        return model, "keras-hub BertBackbone"
    tokens = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    mask = keras.Input((TOKENS,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(30522, width, name="token_embedding")(tokens)
    for i in range(blocks):
        x = Encoder(width, heads, name=f"transformer_layer_{i}")(x, mask)
    model = keras.Model({"token_ids": tokens, "padding_mask": mask}, x, name="bert_like")
    return model, "Keras layers, BERT's shape"


def capture_call(tag: str) -> str:
    """`path/attention_scores` -> the attention layer's call, `path`."""
    return tag.removesuffix("/attention_scores")


def text_probe(model):
    rng = np.random.default_rng(0)
    probe = {
        "token_ids": rng.integers(1, 30522, (1, TOKENS)).astype("int32"),
        "padding_mask": np.ones((1, TOKENS), "int32"),
    }
    if "segment_ids" in {t.name for t in model.inputs}:
        probe["segment_ids"] = np.zeros((1, TOKENS), "int32")
    return probe


def measure(session, model, rounds: int) -> tuple[list[float], list[float]]:
    batch = session.batch
    for _ in range(2):
        model.predict_on_batch(batch)
        session.forward()
    own, event = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        model.predict_on_batch(batch)
        own.append(time.perf_counter() - t)
        t = time.perf_counter()
        session.forward()
        event.append(time.perf_counter() - t)
    return own, event


# -- the strongest simple script that logs the same tensors ------------------


class CNNTaps(keras.Model):
    """The user's per-layer loop over the subclassed CNN: each block's
    sublayers in sequence, keeping the convolutions' outputs and the head's
    (the default layers)."""

    def __init__(self, cnn):
        super().__init__(name="cnn_taps")
        self.cnn = cnn

    def call(self, x):
        outs = []
        for block in self.cnn.blocks:
            c = block.conv(x)
            outs.append(c)
            x = block.pool(keras.ops.relu(block.norm(c, training=False)))
        outs.append(self.cnn.head(keras.ops.mean(x, axis=(1, 2))))
        return outs


def _attention_of(block):
    # keras-hub's TransformerEncoder keeps it private; the hand-built block does not.
    return getattr(block, "_self_attention_layer", None) or block.self_attention_layer


class BertTaps(keras.Model):
    """The user's script for a Functional transformer: its graph cut at the
    chosen layers and at the chosen blocks' inputs, and each chosen attention
    layer called again on its block's input, asking for its scores."""

    def __init__(self, bert, layers):
        super().__init__(name="bert_taps")
        self.names = list(layers)
        self.graph_names = [n for n in layers if "/" not in n]
        self.attention_names = [n for n in layers if "/" in n]
        blocks = [bert.get_layer(n.split("/")[0]) for n in self.attention_names]
        ins = [b.input[0] if isinstance(b.input, list) else b.input for b in blocks]
        outs = [bert.get_layer(n).output for n in self.graph_names]
        self.sub = keras.Model(bert.input, outs + ins)
        self.blocks = blocks

    def call(self, inputs):
        outs = self.sub(inputs)
        n = len(self.graph_names)
        pad = keras.ops.cast(inputs["padding_mask"][:, None, :], "bool")
        by_name = dict(zip(self.graph_names, outs[:n]))
        scores = []
        for name, block, x in zip(self.attention_names, self.blocks, outs[n:]):
            out, s = _attention_of(block)(
                x, x, attention_mask=pad, return_attention_scores=True, training=False
            )
            by_name[name] = out
            scores.append(s)
        return [by_name[name] for name in self.names] + scores


def as_images(a, scores: bool):
    """A tensor as grayscale images `(images, H, W)`: a feature map's
    channels, an attention map's heads, a sequence's (tokens x features)
    matrix per sample, a vector batch as one image."""
    if a.ndim == 4 and scores:
        return a.reshape(-1, a.shape[2], a.shape[3])
    if a.ndim == 4:
        return np.moveaxis(a, 3, 0).reshape(-1, a.shape[1], a.shape[2])
    if a.ndim == 3:
        return a
    return a[None]


def tiled(images):
    """`(n, H, W)` images as one grid, about square, as torch's `make_grid` lays them."""
    n, h, w = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    padded = np.zeros((rows * cols, h, w), images.dtype)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


class NumpyImages:
    """numpy, Pillow and TensorBoard's `EventFileWriter`: each image min-max
    normalized, a tensor's images tiled in one grid PNG, as torch's
    `SummaryWriter.add_images` writes them.

    Without TensorFlow, `EventFileWriter` checksums each record in pure
    Python (at about 7 MB/s). `c_crc=True` writes the same records with
    google-crc32c's C checksum instead (the record writer tb-activations
    uses there, `summary.EventFile`): the strongest form of the script.
    """

    def __init__(self, log_dir, names, scores, c_crc: bool = False):
        if c_crc:
            from tb_activations.summary import EventFile

            self.writer = EventFile(log_dir)
        else:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.writer = EventFileWriter(log_dir)
        self.tags = list(names) + [f"{s}/attention_scores" for s in scores]
        self.scores = [False] * len(names) + [True] * len(scores)

    def log(self, arrays, step: int) -> None:
        from PIL import Image
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = []
        for tag, a, scores in zip(self.tags, arrays, self.scores):
            x = as_images(np.asarray(a, np.float32), scores)
            lo = x.min(axis=(1, 2), keepdims=True)
            span = x.max(axis=(1, 2), keepdims=True) - lo
            u8 = (np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0) * 255).astype(
                np.uint8
            )
            grid = tiled(u8)
            buf = io.BytesIO()
            Image.fromarray(grid).save(buf, format="PNG")
            image = Summary.Image(
                height=grid.shape[0],
                width=grid.shape[1],
                colorspace=1,
                encoded_image_string=buf.getvalue(),
            )
            values.append(Summary.Value(tag=tag, image=image))
        self.writer.add_event(
            Event(wall_time=time.time(), step=step, summary=Summary(value=values))
        )

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TFImages:
    """`tf.summary.image` per tensor in a `tf.function`, the images of a
    tensor as its batch, each min-max normalized in TensorFlow."""

    def __init__(self, log_dir, names, scores):
        import tensorflow as tf

        self.tf = tf
        self.writer = tf.summary.create_file_writer(log_dir)
        self.tags = list(names) + [f"{s}/attention_scores" for s in scores]
        self.scores = [False] * len(names) + [True] * len(scores)
        self.summaries = tf.function(self._summaries)

    def _summaries(self, arrays, step):
        tf = self.tf
        for tag, a, scores in zip(self.tags, arrays, self.scores):
            if a.shape.rank == 4 and scores:
                x = tf.reshape(a, [-1, a.shape[2], a.shape[3]])
            elif a.shape.rank == 4:
                x = tf.reshape(tf.transpose(a, [3, 0, 1, 2]), [-1, a.shape[1], a.shape[2]])
            elif a.shape.rank == 3:
                x = a
            else:
                x = a[None]
            x = x[..., None]
            lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
            hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
            norm = tf.math.divide_no_nan(x - lo, hi - lo)
            tf.summary.image(tag, norm, step=step, max_outputs=x.shape[0])

    def log(self, arrays, step: int) -> None:
        tf = self.tf
        with self.writer.as_default():
            self.summaries([tf.constant(a) for a in arrays], tf.constant(step, tf.int64))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def perturbed(model):
    """A step of training, roughly: the first variable small enough to scale
    cheaply (under a million values) moves a little before each logged step,
    so that the logged maps change as in training (an unchanged map costs the
    measures less)."""
    var = next(v for v in model.trainable_variables if int(np.prod(v.shape)) < 1_000_000)

    def step():
        var.assign(var * 1.001)

    return var.path, step


def back_to_back(session, taps, scripts, perturb, rounds: int, k: int):
    """k steps of ours, then of each script, in a row then flushed, per step;
    alternated round by round. Returns ours and each script's, per round."""
    batch = session.batch
    step = 0
    for _ in range(2):  # warm-up: traces, the probe's first event
        step += 1
        session.log(step)
        for images in scripts:
            images.log(taps.predict_on_batch(batch), step)
    session.flush()
    for images in scripts:
        images.flush()
    ours, theirs = [], [[] for _ in scripts]
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(k):
            step += 1
            perturb()
            session.log(step)
        session.flush()
        ours.append((time.perf_counter() - t) / k)
        for images, times in zip(scripts, theirs):
            t = time.perf_counter()
            for i in range(k):
                perturb()
                images.log(taps.predict_on_batch(batch), step + i + 1)
            images.flush()
            times.append((time.perf_counter() - t) / k)
        step += k
    return ours, theirs


def same_tensors(session, taps) -> float:
    """The largest difference between what the script and the logger compute."""
    ours = session.extractor()
    theirs = taps.predict_on_batch(session.batch)
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ours, theirs))


def loads() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, few rounds")
    parser.add_argument("--k", type=int, default=3, help="steps in a row, back to back")
    parser.add_argument("--rounds", type=int, help="back-to-back rounds (default 5)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    b2b_rounds = args.rounds or (2 if args.quick else 5)
    keras.utils.set_random_seed(0)
    cnn = SubclassedCNN()
    size = 64 if args.quick else common.SIZE
    pixels = common.probe_pixels(size) / 255.0
    cnn(pixels)
    bert, made = bert_base(*((2, 128, 2) if args.quick else (12, 768, 12)))
    started = loads()
    rows, b2b = [], []
    if keras.backend.backend() == "tensorflow":
        forms = {"`tf.summary.image` in a `tf.function`": TFImages}
    else:
        forms = {
            "numpy + Pillow + `EventFileWriter`": NumpyImages,
            "the same, C checksum": functools.partial(NumpyImages, c_crc=True),
        }
    for name, model, probe in (
        (f"subclassed CNN, {size}x{size}", cnn, pixels),
        (f"BERT-base-sized ({made}), {TOKENS} tokens", bert, text_probe(bert)),
    ):
        with tempfile.TemporaryDirectory() as log_dir:
            # Every channel, as the script logs them: a 768-wide token's
            # features are its channels (512 by default). What a logging
            # event blocks does not depend on it.
            session = LoggingSession(
                os.path.join(log_dir, "ours"), probe, verbose=0, max_channels=1024
            )
            session.bind(model)
            scores = [capture_call(n) for n in session._bound().attention.names]
            own, event = measure(session, model, rounds)
            ratio = median(event) / median(own)
            rows.append(
                (
                    name,
                    f"{len(session.layers)} + {len(scores)} attention scores",
                    ms(median(own)),
                    f"{ms(median(event))} (p90 {ms(p90(event))})",
                    f"{ratio:.2f}x",
                    "met" if ratio <= TARGET else "missed",
                )
            )
            taps = CNNTaps(model) if model is cnn else BertTaps(model, session.layers)
            diff = same_tensors(session, taps)
            scripts = [
                form(os.path.join(log_dir, f"script{i}"), session.layers, scores)
                for i, form in enumerate(forms.values())
            ]
            var, perturb = perturbed(model)
            ours, theirs = back_to_back(session, taps, scripts, perturb, b2b_rounds, args.k)
            session.close()
            for images in scripts:
                images.close()
            for form, times in zip(forms, theirs):
                per_round = [o / t for o, t in zip(ours, times)]
                b2b.append(
                    (
                        name,
                        f"{ms(median(ours))} (p90 {ms(p90(ours))})",
                        form,
                        f"{ms(median(times))} (p90 {ms(p90(times))})",
                        f"{median(ours) / median(times):.2f}x "
                        f"(rounds {min(per_round):.2f}-{max(per_round):.2f})",
                        f"{diff:.1e}",
                        f"`{var}`",
                    )
                )
    print(f"## Observed models on {keras.backend.backend()}\n")
    print(
        common.machine_info(
            [
                f"backend {keras.backend.backend()}, {rounds} rounds; back to back "
                f"{b2b_rounds} rounds of {args.k} steps",
                f"load average (1, 5, 15 min): {started} at the start, {loads()} at the end",
            ]
        )
    )
    print()
    header = ("model", "layers", "predict_on_batch", "logging event blocks", "ratio", "<= 1.5x")
    print(table(header, rows))
    print(f"\n### Back to back, {args.k} steps in a row then flushed, per step\n")
    header = (
        "model",
        "tb-activations",
        "the script writes with",
        "the script",
        "ratio",
        "largest difference of the tensors",
        "moved before each step",
    )
    print(table(header, b2b))


if __name__ == "__main__":
    main()
