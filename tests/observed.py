"""Models whose layers only observing calls reaches, and each logged tensor
computed independently, by calling the model's sublayers directly on their
inputs. Shared by tests/test_capture.py (TensorFlow, in process) and
tests/backend_observe.py (JAX and torch, in their venvs).
"""

from __future__ import annotations

import numpy as np

TOKENS = 6
VOCABULARY = 20


def subclassed():
    """A subclassed model: custom blocks, a shared layer called twice, an
    LSTM returning its states, and an inline op (not a layer)."""
    import keras

    class Block(keras.layers.Layer):
        def __init__(self, filters, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(filters, 3, padding="same", name="conv")
            self.norm = keras.layers.BatchNormalization(name="norm")

        def call(self, x, training=False):
            return keras.ops.relu(self.norm(self.conv(x), training=training))

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.block1 = Block(4, name="block1")
            self.block2 = Block(5, name="block2")
            self.shared = keras.layers.Dense(5, activation="tanh", name="shared")
            self.lstm = keras.layers.LSTM(3, return_sequences=True, return_state=True, name="lstm")
            self.head = keras.layers.Dense(2, name="head")

        def call(self, x, training=False):
            x = self.block2(self.block1(x, training=training), training=training)
            x = keras.ops.reshape(x, (-1, 16, 5 * 4))[..., :5]
            x = self.shared(self.shared(x))
            _, h, _ = self.lstm(x)
            return self.head(h)

    return Net()


# In model order: a layer before the layers it holds.
SUBCLASSED_LAYERS = ["block1", "block1/conv", "block2/conv", "shared", "lstm", "head"]
# `layers=None` without a graph: the convolutions inside the blocks, and the
# first output of the LSTM returning its states.
SUBCLASSED_DEFAULTS = ["block1/conv", "block2/conv", "shared", "shared@2", "lstm:0", "head"]
SUBCLASSED_SERIES = [
    "block1",
    "block1/conv",
    "block2/conv",
    "shared",
    "shared@2",
    "lstm:0",
    "lstm:1",
    "lstm:2",
    "head",
]


def subclassed_expected(model, x) -> dict[str, np.ndarray]:
    import keras

    ops = keras.ops
    b1 = model.block1(x, training=False)
    b2 = model.block2(b1, training=False)
    flat = ops.reshape(b2, (-1, 16, 5 * 4))[..., :5]
    s1 = model.shared(flat)
    s2 = model.shared(s1)
    seq, h, c = model.lstm(s2)
    out = {
        "block1/conv": model.block1.conv(x),
        "block1": b1,
        "block2/conv": model.block2.conv(b1),
        "shared": s1,
        "shared@2": s2,
        "lstm:0": seq,
        "lstm:1": h,
        "lstm:2": c,
        "head": model.head(h),
    }
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in out.items()}


def subclassed_data(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.normal(size=(n, 2)).astype(
        "float32"
    )


def transformer():
    """A Functional model with dict inputs (token IDs and a padding mask), an
    embedding and a custom encoder layer holding attention, a feed-forward
    Dense layer and a norm."""
    import keras

    class Encoder(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mha = keras.layers.MultiHeadAttention(2, 4, name="mha")
            self.norm = keras.layers.LayerNormalization(name="norm")
            self.ffn = keras.layers.Dense(8, activation="relu", name="ffn")

        def call(self, x, mask):
            pad = keras.ops.cast(mask[:, None, :], "bool")
            y = self.norm(x + self.mha(x, x, attention_mask=pad))
            return y + self.ffn(y)

    tokens = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    mask = keras.Input((TOKENS,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(VOCABULARY, 8, name="embed")(tokens)
    x = Encoder(name="encoder")(x, mask)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    out = keras.layers.Dense(2, name="head")(x)
    return keras.Model({"token_ids": tokens, "padding_mask": mask}, out, name="tiny_transformer")


TRANSFORMER_LAYERS = ["embed", "encoder", "encoder/mha", "encoder/ffn"]


def transformer_expected(model, batch) -> dict[str, np.ndarray]:
    import keras

    ops = keras.ops
    tokens = ops.convert_to_tensor(batch["token_ids"])
    mask = ops.convert_to_tensor(batch["padding_mask"])
    encoder = model.get_layer("encoder")
    emb = model.get_layer("embed")(tokens)
    pad = ops.cast(mask[:, None, :], "bool")
    att = encoder.mha(emb, emb, attention_mask=pad)
    y = encoder.norm(emb + att)
    out = {
        "embed": emb,
        "encoder": encoder(emb, mask),
        "encoder/mha": att,
        "encoder/ffn": encoder.ffn(y),
    }
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in out.items()}


def transformer_data(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, (n, TOKENS)).astype("int32")
    mask = np.ones((n, TOKENS), "int32")
    mask[:, -2:] = 0  # the last two tokens are padding
    tokens[:, -2:] = 0
    return {"token_ids": tokens, "padding_mask": mask}, rng.normal(size=(n, 2)).astype("float32")


def channels_of(a: np.ndarray) -> np.ndarray:
    """(probes, positions, channels), float64, of a channels-last output, as
    the format defines channels: a rank-2 output is one channel."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    return a.reshape(a.shape[0], -1, a.shape[-1]).astype(np.float64)


def stats_mismatch(stats: np.ndarray, fields, expected: np.ndarray) -> float:
    """The largest difference between logged statistics and numpy's, relative
    to the tensor's scale."""
    a = channels_of(expected)
    want = {
        "min": a.min(axis=1),
        "max": a.max(axis=1),
        "mean": a.mean(axis=1),
        "std": a.std(axis=1),
    }
    scale = max(float(np.abs(a).max()), 1e-6)
    worst = 0.0
    for name, value in want.items():
        got = stats[..., list(fields).index(name)]
        if got.shape != value.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - value).max()) / scale)
    return worst
