"""Small attention models and an independent numpy reference for their scores.

Shared by tests/test_attention.py (TensorFlow) and tests/backend_attention.py
(run in the JAX and torch venvs): only Keras and numpy here.
"""

from __future__ import annotations

import numpy as np

VOCAB = 12
LENGTH = 6
DIM = 8
HEADS = 2
KEY_DIM = 4
# Token 0 is padding: Embedding(mask_zero=True) masks it.
TOKENS = np.array([[3, 5, 7, 2, 0, 0], [1, 4, 6, 8, 9, 11]], dtype="int32")


def _self_attention_model(attention, *, padding: bool, causal: bool, name: str):
    """Tokens -> Embedding (mask_zero when `padding`) -> `attention` of the
    embeddings over themselves -> Dense."""
    import keras

    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    # Embeddings of unit scale: attention far from uniform, and moving in training.
    x = keras.layers.Embedding(
        VOCAB,
        DIM,
        mask_zero=padding,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
        name="embed",
    )(tokens)
    y = attention(x, x, use_causal_mask=causal)
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    out = keras.layers.Dense(3, name="out")(y)
    return keras.Model(tokens, out, name=name)


def token_model(*, padding: bool, causal: bool, name: str = "tokens_attention"):
    """Tokens -> Embedding (mask_zero when `padding`) -> self-attention -> Dense."""
    import keras

    mha = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha")
    return _self_attention_model(mha, padding=padding, causal=causal, name=name)


GROUPED_HEADS = 4  # query heads, two to each key and value head


def grouped_model(*, padding: bool, causal: bool, window: int | None = None):
    """`token_model` with a GroupQueryAttention (4 query heads sharing 2 key
    and value heads, a sliding window when given) in place of the MHA."""
    import keras

    gqa = keras.layers.GroupQueryAttention(
        head_dim=KEY_DIM,
        num_query_heads=GROUPED_HEADS,
        num_key_value_heads=2,
        sliding_window=window,
        name="gqa",
    )
    return _self_attention_model(gqa, padding=padding, causal=causal, name="grouped_attention")


def seq2seq_model(kind: str):
    """Tokens (0 pads) -> Embedding(mask_zero) -> LSTM -> queries (Dense) ->
    `kind` ("dot", "concat" or "additive") attention of the queries over the
    LSTM's states, whose padding mask it takes from them -> Dense."""
    import keras

    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embed")(tokens)
    states = keras.layers.LSTM(DIM, return_sequences=True, name="encoder")(x)
    queries = keras.layers.Dense(DIM, name="queries")(states)
    if kind == "additive":
        att = keras.layers.AdditiveAttention(name="att")
    else:
        att = keras.layers.Attention(use_scale=True, score_mode=kind, name="att")
    context = att([queries, states])
    x = keras.layers.GlobalAveragePooling1D(name="pool")(context)
    return keras.Model(tokens, keras.layers.Dense(3, name="out")(x), name=f"seq2seq_{kind}")


def dot_product_reference(layer, query, value, *, value_mask=None, causal=False):
    """An `Attention`'s or `AdditiveAttention`'s probabilities in float64
    numpy, from its score weights, as `(batch, 1, queries, keys)`: Luong's
    scaled dot product, its "concat" score, or Bahdanau's additive score;
    softmax over the allowed keys (the value's mask, causal)."""
    import keras

    q = np.asarray(query, np.float64)
    k = np.asarray(value, np.float64)

    def weight(v):
        return 1.0 if v is None else np.asarray(keras.ops.convert_to_numpy(v), np.float64)

    if isinstance(layer, keras.layers.AdditiveAttention):
        scale = weight(layer.scale) if layer.use_scale else 1.0
        logits = (scale * np.tanh(q[:, :, None, :] + k[:, None, :, :])).sum(-1)
    elif layer.score_mode == "dot":
        logits = np.einsum("bqd,bkd->bqk", q, k) * weight(layer.scale)
    else:
        inner = np.tanh(weight(layer.scale) * (q[:, :, None, :] + k[:, None, :, :]))
        logits = weight(layer.concat_score_weight) * inner.sum(-1)
    n, t, s = logits.shape
    allowed = np.ones((n, t, s), bool)
    if value_mask is not None:
        allowed &= np.asarray(value_mask, bool)[:, None, :]
    if causal:
        allowed &= np.tril(np.ones((t, s), bool))[None]
    return _allowed_softmax(logits[:, None], allowed[:, None])


def cross_model(name: str = "cross_attention"):
    """Cross-attention of 4 queries over 6 keys (a separate key input), with an
    explicit `attention_mask` input, no biases and a value_dim of its own."""
    import keras

    queries = keras.Input((4, DIM), name="queries")
    context = keras.Input((LENGTH, DIM), name="context")
    allowed = keras.Input((4, LENGTH), dtype="bool", name="allowed")
    mha = keras.layers.MultiHeadAttention(3, 5, value_dim=2, use_bias=False, name="mha")
    key = keras.layers.Dense(DIM, name="key_proj")(context)
    y = mha(queries, context, key=key, attention_mask=allowed)
    return keras.Model([queries, context, allowed], y, name=name)


def tiny_vit(size=32, patch=8, dim=16):
    """Patches by a strided convolution, a class token in front, self-attention."""
    import keras

    class ClassToken(keras.layers.Layer):
        def build(self, input_shape):
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), name="token")

        def call(self, x):
            first = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([first, x], axis=1)

    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="embed")(image)
    x = keras.layers.Reshape(((size // patch) ** 2, dim), name="patches")(x)
    x = ClassToken(name="tokens")(x)
    x = keras.layers.MultiHeadAttention(2, 8, name="mha")(x, x)
    x = keras.layers.Dense(dim, name="mlp")(x)
    return keras.Model(image, x, name="tiny_vit")


def sublayer_outputs(model, names, probe):
    """The outputs of layers `names`, called directly on the probe."""
    import keras

    outs = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])(probe)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def weights(dense) -> tuple[np.ndarray, np.ndarray | None]:
    import keras

    kernel = np.asarray(keras.ops.convert_to_numpy(dense.kernel), np.float64)
    bias = getattr(dense, "bias", None)
    return kernel, None if bias is None else np.asarray(
        keras.ops.convert_to_numpy(bias), np.float64
    )


def reference_scores(
    layer,
    query: np.ndarray,
    value: np.ndarray,
    key: np.ndarray | None = None,
    *,
    query_mask: np.ndarray | None = None,
    key_mask: np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    causal: bool = False,
) -> np.ndarray:
    """softmax(Q K^T / sqrt(key_dim)) over the allowed keys, in float64 numpy,
    from the layer's projection weights; rows with no allowed key are 0 and
    masked queries' rows too, as Keras's masked Softmax gives them. For a
    GroupQueryAttention, each key head serves its group of query heads, and
    a key more than `sliding_window - 1` positions away is not allowed."""
    key = value if key is None else key

    def project(dense, x):
        kernel, bias = weights(dense)
        out = np.einsum("btd,dnh->btnh", np.asarray(x, np.float64), kernel)
        return out if bias is None else out + bias

    grouped = hasattr(layer, "num_key_value_heads")
    if grouped:
        q, k = project(layer._query_dense, query), project(layer._key_dense, key)
        k = np.repeat(k, layer.num_query_heads // layer.num_key_value_heads, axis=2)
        depth = layer.head_dim
    else:
        q, k = project(layer.query_dense, query), project(layer.key_dense, key)
        depth = layer.key_dim
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(depth)
    n, _, t, s = logits.shape
    allowed = np.ones((n, t, s), bool)
    if query_mask is not None:
        allowed &= np.asarray(query_mask, bool)[:, :, None]
    if key_mask is not None:
        allowed &= np.asarray(key_mask, bool)[:, None, :]
    if attention_mask is not None:
        allowed &= np.asarray(attention_mask, bool)
    if causal:
        allowed &= np.tril(np.ones((t, s), bool))[None]
    if grouped and layer.sliding_window is not None:
        apart = np.abs(np.arange(t)[:, None] - np.arange(s)[None, :])
        allowed &= (apart < layer.sliding_window)[None]
    return _allowed_softmax(logits, allowed[:, None])


def _allowed_softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of the allowed entries, 0 elsewhere; a row
    with none allowed is all 0, as Keras's masked Softmax gives it."""
    logits = np.where(allowed, logits, -np.inf)
    top = np.max(logits, axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(logits - np.where(np.isfinite(top), top, 0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def embedded(model, tokens: np.ndarray) -> np.ndarray:
    """The embedding layer called directly on the tokens."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model.get_layer("embed")(tokens)), np.float64)


def token_reference(
    model, tokens: np.ndarray, *, padding: bool, causal: bool, layer: str = "mha"
) -> np.ndarray:
    x = embedded(model, tokens)
    mask = tokens != 0 if padding else None
    return reference_scores(
        model.get_layer(layer), x, x, query_mask=mask, key_mask=mask, causal=causal
    )


def reverse_task(n: int, length: int, vocab: int, seed: int = 0):
    """Token sequences and their reversals (the demo's task, small)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(n, length)).astype("int32")
    return x, x[:, ::-1].copy()


# A subclassed transformer: one custom block, holding the attention, called
# twice (`block/mha` and `block/mha@2`), a padding mask from token 0 passed as
# `attention_mask`, and `use_causal_mask` when causal.
SUBCLASSED_SCORES = ["block/mha/attention_scores", "block/mha@2/attention_scores"]


def subclassed_transformer(*, causal: bool):
    import keras

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mha = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha")
            self.norm = keras.layers.LayerNormalization(name="norm")
            self.ffn = keras.layers.Dense(DIM, activation="relu", name="ffn")

        def call(self, x, padding):
            keys = keras.ops.expand_dims(padding, 1)  # (N, 1, keys)
            y = self.mha(x, x, attention_mask=keys, use_causal_mask=causal)
            y = self.norm(x + y)
            return y + self.ffn(y)

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="causal_net" if causal else "net")
            self.embed = keras.layers.Embedding(
                VOCAB,
                DIM,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
                name="embed",
            )
            self.block = Block(name="block")
            self.head = keras.layers.Dense(VOCAB, name="head")

        def call(self, tokens):
            padding = keras.ops.not_equal(tokens, 0)
            x = self.embed(tokens)
            return self.head(self.block(self.block(x, padding), padding))

    return Net()


def subclassed_references(model, tokens: np.ndarray, *, causal: bool) -> dict[str, np.ndarray]:
    """Each call's scores in numpy, from the block's attention weights on that
    call's input: the embeddings, then the block called directly on them."""
    import keras

    first = np.asarray(keras.ops.convert_to_numpy(model.embed(tokens)), np.float64)
    padding = keras.ops.not_equal(tokens, 0)
    second = model.block(first.astype("float32"), padding)
    second = np.asarray(keras.ops.convert_to_numpy(second), np.float64)
    allowed = np.broadcast_to((tokens != 0)[:, None, :], (len(tokens), LENGTH, LENGTH))
    mha = model.block.mha
    return {
        tag: reference_scores(mha, x, x, attention_mask=allowed, causal=causal)
        for tag, x in zip(SUBCLASSED_SCORES, (first, second))
    }
