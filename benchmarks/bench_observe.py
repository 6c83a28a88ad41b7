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
writer's thread). Target: at most 1.5x. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import tempfile

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


def text_probe(model):
    rng = np.random.default_rng(0)
    probe = {
        "token_ids": rng.integers(1, 30522, (1, TOKENS)).astype("int32"),
        "padding_mask": np.ones((1, TOKENS), "int32"),
    }
    if "segment_ids" in {t.name for t in model.inputs}:
        probe["segment_ids"] = np.zeros((1, TOKENS), "int32")
    return probe


def measure(model, probe, rounds: int) -> tuple[list[float], list[float], int]:
    import time

    with tempfile.TemporaryDirectory() as log_dir:
        session = LoggingSession(log_dir, probe, verbose=0)
        session.bind(model)
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
        return own, event, len(session.layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, few rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    keras.utils.set_random_seed(0)
    cnn = SubclassedCNN()
    size = 64 if args.quick else common.SIZE
    pixels = common.probe_pixels(size) / 255.0
    cnn(pixels)
    bert, made = bert_base(*((2, 128, 2) if args.quick else (12, 768, 12)))
    rows = []
    for name, model, probe in (
        (f"subclassed CNN, {size}x{size}", cnn, pixels),
        (f"BERT-base-sized ({made}), {TOKENS} tokens", bert, text_probe(bert)),
    ):
        own, event, layers = measure(model, probe, rounds)
        ratio = median(event) / median(own)
        rows.append(
            (
                name,
                layers,
                ms(median(own)),
                f"{ms(median(event))} (p90 {ms(p90(event))})",
                f"{ratio:.2f}x",
                "met" if ratio <= TARGET else "missed",
            )
        )
    print(f"## Observed models on {keras.backend.backend()}\n")
    print(common.machine_info([f"backend {keras.backend.backend()}, {rounds} rounds"]))
    print()
    header = ("model", "layers", "predict_on_batch", "logging event blocks", "ratio", "<= 1.5x")
    print(table(header, rows))


if __name__ == "__main__":
    main()
