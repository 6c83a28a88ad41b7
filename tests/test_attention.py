"""Attention scores (`tb_activations.attention`), against numpy and Keras.

Every logged value is checked against an independent computation from the
layer's weights (tests/attention_models.py: projections, scaled dot product,
masks, softmax in float64) and against the layer's own
`return_attention_scores=True`.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from attention_models import (  # noqa: E402
    DIM,
    GROUPED_HEADS,
    HEADS,
    KEY_DIM,
    LENGTH,
    SUBCLASSED_SCORES,
    TOKENS,
    VOCAB,
    cross_model,
    dot_product_reference,
    embedded,
    grouped_model,
    reference_scores,
    reverse_task,
    seq2seq_model,
    subclassed_references,
    subclassed_transformer,
    token_model,
    token_reference,
)

from tb_activations import (  # noqa: E402
    ActivationLogger,
    attention,
    capture,
    log_activations,
    metadata,
    read,
)
from tb_activations.session import LoggingSession  # noqa: E402

# Float32 Keras against float64 numpy.
ATOL = 2e-6

MASK_CASES = [
    pytest.param(False, False, id="plain"),
    pytest.param(True, False, id="padding"),
    pytest.param(False, True, id="causal"),
    pytest.param(True, True, id="padding-causal"),
]


def session_values(model, probe, layers, tmp_path):
    session = LoggingSession(tmp_path, probe, layers, verbose=0)
    session.bind(model)
    return {v.info.layer: v for v in session.forward()}


@pytest.mark.parametrize("padding, causal", MASK_CASES)
def test_logged_scores_are_the_numpy_reference(tmp_path, padding, causal):
    keras.utils.set_random_seed(1)
    model = token_model(padding=padding, causal=causal)
    values = session_values(model, TOKENS, ["mha"], tmp_path)
    assert sorted(values) == ["mha", "mha/attention_scores"]
    got = values["mha/attention_scores"].array
    want = token_reference(model, TOKENS, padding=padding, causal=causal)
    assert got.shape == (2, HEADS, LENGTH, LENGTH) == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL)


@pytest.mark.parametrize("padding, causal", MASK_CASES)
def test_scores_are_the_layers_own_return_attention_scores(padding, causal):
    keras.utils.set_random_seed(2)
    model = token_model(padding=padding, causal=causal)
    mha = model.get_layer("mha")
    x = model.get_layer("embed")(TOKENS)  # carries the padding mask, if any
    # First: the layer's call clears the query's Keras mask on the tensor.
    got = attention.attention_scores(mha, (x, x), {"use_causal_mask": causal})
    _, own = mha(x, x, use_causal_mask=causal, return_attention_scores=True)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(own), atol=1e-6)


def test_a_padded_key_gets_weight_zero_and_the_rest_sums_to_one(tmp_path):
    keras.utils.set_random_seed(3)
    model = token_model(padding=True, causal=False)
    got = session_values(model, TOKENS, ["mha"], tmp_path)["mha/attention_scores"].array
    pad = TOKENS == 0
    # Probe 0 ends in two padding tokens: no query puts weight on them ...
    assert np.all(got[0][:, :, pad[0]] == 0)
    # ... and every real query's weights over the real keys sum to 1.
    np.testing.assert_allclose(got[0][:, ~pad[0]].sum(-1), 1, atol=1e-6)
    np.testing.assert_allclose(got[1].sum(-1), 1, atol=1e-6)
    assert np.all(got[1] > 0)


def test_a_causal_model_puts_no_weight_on_future_tokens(tmp_path):
    keras.utils.set_random_seed(4)
    model = token_model(padding=False, causal=True)
    got = session_values(model, TOKENS, ["mha"], tmp_path)["mha/attention_scores"].array
    future = np.triu(np.ones((LENGTH, LENGTH), bool), k=1)
    assert np.all(got[:, :, future] == 0)
    assert np.all(got[:, :, ~future] > 0)
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-6)


def test_cross_attention_with_a_key_input_and_an_attention_mask(tmp_path):
    keras.utils.set_random_seed(5)
    model = cross_model()
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(2, 4, DIM)).astype("float32")
    context = rng.normal(size=(2, LENGTH, DIM)).astype("float32")
    allowed = rng.random((2, 4, LENGTH)) > 0.3
    allowed[:, :, 0] = True
    mha = model.get_layer("mha")
    key = keras.ops.convert_to_numpy(model.get_layer("key_proj")(context))
    want = reference_scores(mha, queries, context, key, attention_mask=allowed)
    got = attention.attention_scores(
        mha, (queries, context), {"key": key, "attention_mask": allowed}
    )
    assert got.shape == (2, 3, 4, LENGTH)
    np.testing.assert_allclose(got, want, atol=ATOL)
    assert np.all(got[~np.broadcast_to(allowed[:, None], got.shape)] == 0)
    # Through the Functional extractor, from the same pass: the key's Dense
    # output and the mask input are the extractor's outputs too.
    graph_call = attention.GraphCall.of("mha", mha)
    extractor = keras.Model(model.inputs, graph_call.tensors)
    outs = extractor.predict_on_batch([queries, context, allowed])
    outs = [keras.ops.convert_to_numpy(o) for o in outs]
    np.testing.assert_allclose(graph_call.scores(outs), want, atol=ATOL)


def test_a_nested_models_attention_is_logged_under_its_path(tmp_path):
    keras.utils.set_random_seed(6)
    inner = token_model(padding=True, causal=True, name="block")
    tokens = keras.Input((LENGTH,), dtype="int32")
    outer = keras.Model(tokens, keras.layers.Dense(2, name="head")(inner(tokens)))
    values = session_values(outer, TOKENS, ["block/mha", "head"], tmp_path)
    assert sorted(values) == ["block/mha", "block/mha/attention_scores", "head"]
    want = token_reference(inner, TOKENS, padding=True, causal=True)
    np.testing.assert_allclose(values["block/mha/attention_scores"].array, want, atol=ATOL)


def test_the_series_as_read_back_and_its_layer_info(tmp_path):
    keras.utils.set_random_seed(7)
    model = token_model(padding=True, causal=True)
    assert log_activations(model, TOKENS, tmp_path, layers=["mha"], verbose=0) == ["mha"]
    log = read(tmp_path)
    assert log.layers("activations") == ["mha", "mha/attention_scores"]
    info = log.info("activations", "mha/attention_scores")
    assert info.kind == metadata.KIND_ATTENTION
    assert info.source == "mha"
    assert info.axes == ("query", "key")
    assert info.version == metadata.FORMAT_VERSION == 3
    assert (info.layout, info.data_format) == ("image", "channels_first")
    assert (info.channels, info.height, info.width) == (HEADS, LENGTH, LENGTH)
    assert info.output_shape == (None, HEADS, LENGTH, LENGTH)
    assert info.position == log.info("activations", "mha").position
    assert log.info("activations", "mha").kind is None
    got = log.activations("activations", "mha/attention_scores", 0)
    want = token_reference(model, TOKENS, padding=True, causal=True)
    # 8-bit PNGs: within (max - min) / 510 of the value, per (probe, head).
    span = want.max(axis=(2, 3), keepdims=True) - want.min(axis=(2, 3), keepdims=True)
    assert np.all(np.abs(got - want) <= span / 510 + 1e-6)
    stats = log.stats("activations", "mha/attention_scores")
    np.testing.assert_allclose(stats["max"][0], want.max(axis=(2, 3)), atol=1e-6)
    np.testing.assert_allclose(stats["mean"][0], want.mean(axis=(2, 3)), atol=1e-6)


def test_logging_changes_nothing_and_the_model_still_trains(tmp_path):
    keras.utils.set_random_seed(8)
    x, y = reverse_task(64, LENGTH, 10)
    tokens = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(10, DIM, name="embed")(tokens)
    h = keras.layers.MultiHeadAttention(HEADS, 4, dropout=0.1, name="mha")(h, h)
    model = keras.Model(tokens, keras.layers.Dense(10, name="out")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    before = keras.ops.convert_to_numpy(model.predict_on_batch(x[:2]))
    weights = [w.copy() for w in model.get_weights()]
    config = model.get_config()
    names = [layer.name for layer in model.layers]
    log_activations(model, x[:2], tmp_path, layers=["mha"], run_name="snap", verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.predict_on_batch(x[:2])), before)
    for w, kept in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(w, kept)
    # The extractor's extra layers are not the model's: it saves and loads as before.
    assert model.get_config() == config
    assert [layer.name for layer in model.layers] == names
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(loaded.predict_on_batch(x[:2]), before, atol=1e-6)
    logger = ActivationLogger(tmp_path, x[:2], ["mha"], batch_freq=2, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[logger], verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    log = read(tmp_path)
    steps = log.steps("activations", "mha/attention_scores")
    assert (
        steps == log.steps("activations", "mha") == [0, 2, 4, 8]
    )  # batches of epoch 1, then epoch ends
    # The last step's scores are the trained layer's (dropout off).
    x2 = embedded(model, x[:2])
    want = reference_scores(model.get_layer("mha"), x2, x2)
    stats = log.stats("activations", "mha/attention_scores")
    np.testing.assert_allclose(stats["max"][-1], want.max(axis=(2, 3)), atol=1e-6)
    np.testing.assert_allclose(stats["std"][-1], want.std(axis=(2, 3)), atol=1e-6)
    after = {v.info.layer: v for v in logger.session.forward()}
    np.testing.assert_allclose(after["mha/attention_scores"].array, want, atol=ATOL)


# -- GroupQueryAttention ---------------------------------------------------------------

GROUPED_CASES = [
    # (id, padding, causal, sliding window)
    ("plain", False, False, None),
    ("padding", True, False, None),
    ("causal", False, True, None),
    ("causal, sliding window", False, True, 3),
    ("padding, sliding window", True, False, 2),
]


@pytest.mark.parametrize(
    "padding, causal, window", [c[1:] for c in GROUPED_CASES], ids=[c[0] for c in GROUPED_CASES]
)
@pytest.mark.parametrize("route", ["graph", "observed"])
def test_grouped_query_attention_scores_are_the_reference_and_the_layers_own(
    tmp_path, padding, causal, window, route
):
    keras.utils.set_random_seed(9)
    model = grouped_model(padding=padding, causal=causal, window=window)
    # By name through the Functional graph; by default a transformer's
    # layers are observed.
    values = session_values(model, TOKENS, ["gqa"] if route == "graph" else None, tmp_path)
    assert {"gqa", "gqa/attention_scores"} <= set(values)
    got = values["gqa/attention_scores"].array
    want = token_reference(model, TOKENS, padding=padding, causal=causal, layer="gqa")
    assert got.shape == (2, GROUPED_HEADS, LENGTH, LENGTH) == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL)
    gqa = model.get_layer("gqa")
    x = model.get_layer("embed")(TOKENS)
    _, own = gqa(x, x, use_causal_mask=causal, return_attention_scores=True)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(own), atol=1e-6)


def test_grouped_query_attention_scores_follow_training(tmp_path):
    keras.utils.set_random_seed(10)
    model = grouped_model(padding=False, causal=True)
    x, _ = reverse_task(32, LENGTH, VOCAB)
    y = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.compile("adam", "mse")
    logger = ActivationLogger(tmp_path, x[:2], verbose=0)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[logger], verbose=0)
    log = read(tmp_path)
    assert log.steps("activations", "gqa/attention_scores") == [0, 4, 8]
    first, last = (log.stats("activations", "gqa/attention_scores")["std"][i] for i in (0, -1))
    assert not np.array_equal(first, last)
    x2 = embedded(model, x[:2])
    want = reference_scores(model.get_layer("gqa"), x2, x2, causal=True)
    after = {v.info.layer: v for v in logger.session.forward()}
    np.testing.assert_allclose(after["gqa/attention_scores"].array, want, atol=ATOL)
    assert log.info("activations", "gqa/attention_scores").channels == GROUPED_HEADS


# -- Attention and AdditiveAttention: a recurrent seq2seq model's --------------------

DOT_PRODUCT_CASES = [
    # (id, layer, causal)
    ("Luong, scaled dot product", lambda: keras.layers.Attention(use_scale=True), False),
    ("Luong, dot product, causal", lambda: keras.layers.Attention(), True),
    (
        "Luong, concat score",
        lambda: keras.layers.Attention(use_scale=True, score_mode="concat"),
        False,
    ),
    ("Bahdanau, additive", lambda: keras.layers.AdditiveAttention(), False),
    ("Bahdanau, additive, causal", lambda: keras.layers.AdditiveAttention(), True),
]


@pytest.mark.parametrize(
    "make, causal", [c[1:] for c in DOT_PRODUCT_CASES], ids=[c[0] for c in DOT_PRODUCT_CASES]
)
def test_dot_product_attention_scores_are_the_reference_and_the_layers_own(make, causal):
    keras.utils.set_random_seed(11)
    layer = make()
    rng = np.random.default_rng(3)
    query = rng.normal(size=(2, 4, DIM)).astype("float32")
    value = rng.normal(size=(2, LENGTH, DIM)).astype("float32")
    mask = np.ones((2, LENGTH), bool)
    mask[0, 4:] = False
    layer([query, value])  # builds it
    # Weights away from their initial values, so that each one counts.
    for w in layer.weights:
        w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
    _, own = layer(
        [query, value], mask=[None, mask], use_causal_mask=causal, return_attention_scores=True
    )
    got = attention.attention_scores(
        layer, ([query, value],), {"mask": [None, mask], "use_causal_mask": causal}
    )
    assert got.shape == (2, 1, 4, LENGTH)
    np.testing.assert_allclose(got[:, 0], keras.ops.convert_to_numpy(own), atol=1e-6)
    want = dot_product_reference(layer, query, value, value_mask=mask, causal=causal)
    np.testing.assert_allclose(got, want, atol=ATOL)


@pytest.mark.parametrize("kind", ["dot", "concat", "additive"])
def test_a_seq2seq_models_attention_logs_its_scores_by_default(tmp_path, kind):
    # Not a transformer: its recurrent layers stay in the defaults, and the
    # attention's padded keys (the encoder's states of token 0) get weight 0.
    keras.utils.set_random_seed(12)
    model = seq2seq_model(kind)
    x, y = reverse_task(32, LENGTH, VOCAB)
    x[:, 4:] = 0
    probe = np.concatenate([x[:1], TOKENS[1:]])
    model.compile("adam", "sparse_categorical_crossentropy")
    logger = ActivationLogger(tmp_path, probe, verbose=0)
    model.fit(x, y[:, 0] % 3, batch_size=8, epochs=2, callbacks=[logger], verbose=0)
    log = read(tmp_path)
    assert log.layers("activations") == [
        "embed",
        "encoder",
        "queries",
        "att",
        "att/attention_scores",
        "out",
    ]
    assert log.steps("activations", "att/attention_scores") == [0, 4, 8]
    inner = keras.Model(
        model.inputs, [model.get_layer("queries").output, model.get_layer("encoder").output]
    )
    query, states = (keras.ops.convert_to_numpy(t) for t in inner(probe))
    want = dot_product_reference(model.get_layer("att"), query, states, value_mask=probe != 0)
    after = {v.info.layer: v for v in logger.session.forward()}
    got = after["att/attention_scores"].array
    np.testing.assert_allclose(got, want, atol=ATOL)
    assert np.all(got[0, :, :, 4:] == 0)
    assert log.info("activations", "att/attention_scores").channels == 1


def test_keras_hub_decoder_attention_from_its_observed_call():
    """keras-hub's CachedMultiHeadAttention, inside a TransformerDecoder (a
    custom layer): the arguments its call receives in a forward pass give the
    scores its own `return_attention_scores=True` gives, causal and padded."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(9)
    decoder = keras_hub.layers.TransformerDecoder(intermediate_dim=16, num_heads=2)
    x = np.random.default_rng(0).normal(size=(2, LENGTH, DIM)).astype("float32")
    padding = TOKENS != 0
    decoder(x, decoder_padding_mask=padding)  # builds
    mha = decoder._self_attention_layer
    assert type(mha).__name__ == "CachedMultiHeadAttention"
    seen = []
    own_call = mha.call

    def observe(*args, **kwargs):
        seen.append((args, kwargs))
        return own_call(*args, **kwargs)

    mha.call = observe  # an instance attribute, removed below
    try:
        decoder(x, decoder_padding_mask=padding)
    finally:
        del mha.call
    ((args, kwargs),) = seen
    got = attention.attention_scores(mha, args, kwargs)
    _, own = mha(*args, **{**kwargs, "return_attention_scores": True})
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(own), atol=1e-6)
    future = np.triu(np.ones((LENGTH, LENGTH), bool), k=1)
    assert np.all(got[:, :, future] == 0)
    assert np.all(got[0][:, :, ~padding[0]] == 0)
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-6)


def test_a_subclass_with_its_own_compute_attention_gives_its_own_scores():
    class Tempered(keras.layers.MultiHeadAttention):
        """Attention at a temperature of its own: its `_compute_attention` decides."""

        def _compute_attention(self, query, *args, **kwargs):
            return super()._compute_attention(query * 3.0, *args, **kwargs)

    keras.utils.set_random_seed(14)
    mha = Tempered(HEADS, KEY_DIM)
    x = np.random.default_rng(1).normal(size=(2, LENGTH, DIM)).astype("float32")
    allowed = np.broadcast_to((TOKENS != 0)[:, None, :], (2, LENGTH, LENGTH))
    _, own = mha(x, x, attention_mask=allowed, return_attention_scores=True)
    got = attention.attention_scores(mha, (x, x), {"attention_mask": allowed})
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(own), atol=1e-6)
    plain = reference_scores(mha, x, x, attention_mask=allowed)
    assert np.abs(got - plain).max() > 1e-2  # not Keras's own computation


@pytest.mark.parametrize(
    "layer, args, kwargs, message",
    [
        (lambda: keras.layers.Dense(2), (np.zeros((1, 2, 2)),), {}, "MultiHeadAttention"),
        (
            lambda: keras.layers.MultiHeadAttention(1, 2),
            (np.zeros((1, 2, 2)),),
            {},
            "needs 'value'",
        ),
        (
            lambda: keras.layers.MultiHeadAttention(1, 2),
            (np.zeros((1, 2, 2)), np.zeros((1, 2, 2))),
            {"value": np.zeros((1, 2, 2))},
            "given twice",
        ),
        (
            lambda: keras.layers.Attention(),
            (np.zeros((1, 2, 2)),),
            {},
            r"takes inputs \[query, value\] .* Received: inputs of type ndarray",
        ),
    ],
    ids=["not-attention", "no-value", "twice", "one-input"],
)
def test_bad_calls_are_refused_with_a_clear_error(layer, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention.attention_scores(layer(), args, kwargs)


def test_a_decoding_step_with_a_cache_is_refused():
    keras_hub = pytest.importorskip("keras_hub")
    mha = keras_hub.layers.CachedMultiHeadAttention(1, 2)
    x = np.zeros((1, 2, 2), "float32")
    mha(x, x)
    with pytest.raises(ValueError, match="cache"):
        attention.attention_scores(mha, (x, x), {"cache": np.zeros((1, 2, 2, 1, 2), "float32")})


# -- JAX and torch, each in its own venv (tests/backend_attention.py) ---------

BACKEND_SCRIPT = Path(__file__).resolve().parent / "backend_attention.py"
BACKEND_CASES = ("plain", "padding", "causal", "padding-causal")


@pytest.fixture(
    scope="module", params=[pytest.param(b, marks=pytest.mark.slow) for b in ("jax", "torch")]
)
def backend_run(request, tmp_path_factory):
    from test_backends import ROOT, RUN_TIMEOUT, venv_python

    backend = request.param
    python = venv_python(backend)
    if not (python.parent.parent / ".installed").exists():
        pytest.skip(f"{python.parent.parent.name} is not installed: make backends installs it")
    out = tmp_path_factory.mktemp(f"attention-{backend}")
    r = subprocess.run(
        [str(python), str(BACKEND_SCRIPT), str(out)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, f"backend_attention.py on {backend} failed:\n{r.stdout}\n{r.stderr}"
    facts = json.loads((out / "facts.json").read_text())
    with np.load(out / "arrays.npz") as z:
        arrays = dict(z)
    return backend, facts, arrays


@pytest.mark.parametrize("kind", ["dot", "additive"])
def test_backend_seq2seq_attention_scores_by_default(backend_run, kind):
    _, facts, arrays = backend_run
    assert "att/attention_scores" in facts[f"seq2seq/{kind}/series"]
    assert "encoder" in facts[f"seq2seq/{kind}/series"]
    logged = arrays[f"seq2seq/{kind}/logged"]
    assert logged.shape == (2, 1, LENGTH, LENGTH)
    np.testing.assert_allclose(logged[:, 0], arrays[f"seq2seq/{kind}/own"], atol=1e-6)
    assert np.all(logged[0, :, :, TOKENS[0] == 0] == 0)


@pytest.mark.parametrize("case", ["plain", "padding-causal-window"])
@pytest.mark.parametrize("route", ["graph", "observed"])
def test_backend_grouped_query_attention_scores(backend_run, case, route):
    _, _, arrays = backend_run
    logged, want = arrays[f"grouped/{case}/{route}"], arrays[f"grouped/{case}/reference"]
    assert logged.shape == (2, GROUPED_HEADS, LENGTH, LENGTH)
    np.testing.assert_allclose(logged, want, atol=ATOL)
    np.testing.assert_allclose(logged, arrays[f"grouped/{case}/own"], atol=1e-6)


@pytest.mark.parametrize("case", BACKEND_CASES)
def test_backend_scores_are_the_reference_and_the_layers_own(backend_run, case):
    backend, facts, arrays = backend_run
    assert facts["backend"] == backend and facts["tensorflow_loaded"] is False
    logged, want = arrays[f"{case}/logged"], arrays[f"{case}/reference"]
    assert logged.shape == (2, HEADS, LENGTH, LENGTH)
    np.testing.assert_allclose(logged, want, atol=ATOL)
    np.testing.assert_allclose(logged, arrays[f"{case}/own"], atol=1e-6)
    span = want.max(axis=(2, 3), keepdims=True) - want.min(axis=(2, 3), keepdims=True)
    assert np.all(np.abs(arrays[f"{case}/read"] - want) <= span / 510 + 1e-6)
    info = facts[f"{case}/info"]
    assert (info["kind"], info["axes"], info["source"]) == ("attention", ["query", "key"], "mha")
    padding, causal = "padding" in case, "causal" in case
    if padding:
        assert np.all(logged[0][:, :, TOKENS[0] == 0] == 0)
    if causal:
        assert np.all(logged[:, :, np.triu(np.ones((LENGTH, LENGTH), bool), k=1)] == 0)


def test_backend_logging_changes_nothing_and_the_model_trains(backend_run):
    _, facts, arrays = backend_run
    np.testing.assert_array_equal(arrays["fit/after"], arrays["fit/before"])
    assert facts["fit/loss"][-1] < facts["fit/loss"][0]
    # Every batch of the first epoch (4 of 16), then the later epochs' ends.
    assert facts["fit/steps"] == [0, 1, 2, 3, 4, 8, 12]
    assert arrays["fit/max"].shape == (7, 2, HEADS)
    after = arrays["fit/reference_after"]
    np.testing.assert_allclose(arrays["fit/logged_after"], after, atol=ATOL)
    # Training moved them: a logger stuck on the first weights would fail above.
    assert np.abs(after - arrays["fit/reference_before"]).max() > 1e-2


@pytest.mark.parametrize("case", ["padding", "causal"])
def test_backend_observed_calls_log_each_calls_scores(backend_run, case):
    """A subclassed transformer on JAX (inside the observer's jax.jit) and
    torch: every call's scores, masks and all, and the model unchanged."""
    backend, facts, arrays = backend_run
    assert facts[f"observed/{case}/observer"] is True
    assert set(SUBCLASSED_SCORES) <= set(facts[f"observed/{case}/series"])
    for tag in SUBCLASSED_SCORES:
        got = arrays[f"observed/{case}/{tag}/logged"]
        assert got.shape == (2, HEADS, LENGTH, LENGTH)
        np.testing.assert_allclose(got, arrays[f"observed/{case}/{tag}/reference"], atol=ATOL)
        assert_masked(got, TOKENS != 0, case == "causal")
        info = facts[f"observed/{case}/{tag}/info"]
        source = tag[: -len(attention.SUFFIX)]
        assert (info["kind"], info["axes"], info["source"]) == (
            "attention",
            ["query", "key"],
            source,
        )
    first = SUBCLASSED_SCORES[0]
    np.testing.assert_allclose(
        arrays[f"observed/{case}/{first}/logged"], arrays[f"observed/{case}/{first}/own"], atol=1e-6
    )
    np.testing.assert_array_equal(
        arrays[f"observed/{case}/after"], arrays[f"observed/{case}/before"]
    )


def test_backend_observed_scores_follow_training(backend_run):
    _, facts, arrays = backend_run
    assert facts["observed/fit/loss"][-1] < facts["observed/fit/loss"][0]
    for tag in SUBCLASSED_SCORES:
        assert facts["observed/fit/steps"][tag] == [0, 2, 4, 8]
        np.testing.assert_allclose(
            arrays[f"observed/fit/{tag}/logged"], arrays[f"observed/fit/{tag}/reference"], atol=ATOL
        )
        std = arrays[f"observed/fit/{tag}/std"]
        assert np.abs(std[-1] - std[0]).max() > 1e-3


def test_scores_that_cannot_be_computed_warn_once_and_the_steps_go_on(tmp_path):
    class WithCache(keras.layers.MultiHeadAttention):
        def call(self, query, value, key=None, cache=None):
            return super().call(query, value, key)

        def compute_output_spec(self, query, value, key=None, cache=None):
            return super().compute_output_spec(query, value, key)

    x = keras.Input((LENGTH, DIM))
    cache = keras.layers.Dense(DIM, name="cache")(x)
    model = keras.Model(x, WithCache(1, 2, name="odd")(x, x, cache=cache))
    probe = np.ones((1, LENGTH, DIM), "float32")
    session = LoggingSession(tmp_path, probe, ["odd"], verbose=0)
    with pytest.warns(UserWarning, match="attention scores of 'odd' are not logged.*cache"):
        session.bind(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once, when the extractor is built: steps are quiet
        assert session.log(0)
        assert session.log(1)
    session.close()
    log = read(tmp_path)
    assert log.layers("activations") == ["odd"]
    assert log.steps("activations", "odd") == [0, 1]


def test_backend_vit_tokens_on_the_patch_grid(backend_run):
    _, facts, arrays = backend_run
    assert facts["vit/series"] == [
        "mha",
        "mha/attention_scores",
        "mha/class_token",
        "tokens",
        "tokens/class_token",
    ]
    direct = arrays["vit/tokens_direct"]  # (2, 17, 16): class token, then 4 x 4 patches
    np.testing.assert_allclose(arrays["vit/tokens"], direct[:, 1:].reshape(2, 4, 4, 16), atol=1e-6)
    np.testing.assert_allclose(arrays["vit/tokens/class_token"], direct[:, 0], atol=1e-6)
    assert arrays["vit/mha/attention_scores"].shape == (2, 2, 17, 17)


# -- models reached by observing calls: the scores from the observer's own pass --

FUTURE = np.triu(np.ones((LENGTH, LENGTH), bool), k=1)


def assert_masked(scores: np.ndarray, keys: np.ndarray, causal: bool) -> None:
    """Padded keys (`keys` False) and, when causal, future tokens get weight 0;
    each row sums to 1 over the rest."""
    assert np.all(np.moveaxis(scores, -1, 1)[~keys] == 0)
    if causal:
        assert np.all(scores[:, :, FUTURE] == 0)
    np.testing.assert_allclose(scores.sum(-1), 1, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True], ids=["padding", "padding-causal"])
def test_a_subclassed_models_attention_calls_each_log_their_scores(tmp_path, causal):
    keras.utils.set_random_seed(10)
    model = subclassed_transformer(causal=causal)
    before = keras.ops.convert_to_numpy(model(TOKENS))
    session = LoggingSession(tmp_path, TOKENS, verbose=0)
    session.bind(model)
    assert isinstance(session.extractor, capture.Observer)
    assert {"block/mha", "block/mha@2"} <= set(session.layers)
    values = {v.info.layer: v for v in session.forward()}
    want = subclassed_references(model, TOKENS, causal=causal)
    for tag in SUBCLASSED_SCORES:
        got = values[tag].array
        assert got.shape == (2, HEADS, LENGTH, LENGTH)
        np.testing.assert_allclose(got, want[tag], atol=ATOL)
        assert_masked(got, TOKENS != 0, causal)
    info = values["block/mha@2/attention_scores"].info
    assert (info.kind, info.source, info.axes, info.call) == (
        metadata.KIND_ATTENTION,
        "block/mha@2",
        ("query", "key"),
        2,
    )
    assert (info.layout, info.data_format, info.channels) == ("image", "channels_first", HEADS)
    assert info.position == values["block/mha@2"].info.position
    # The layer's own return_attention_scores=True on its first call's input.
    x = model.embed(TOKENS)
    keys = keras.ops.expand_dims(keras.ops.not_equal(TOKENS, 0), 1)
    _, own = model.block.mha(
        x, x, attention_mask=keys, use_causal_mask=causal, return_attention_scores=True
    )
    np.testing.assert_allclose(
        values[SUBCLASSED_SCORES[0]].array, keras.ops.convert_to_numpy(own), atol=1e-6
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(TOKENS)), before)
    assert all("call" not in layer.__dict__ for _, layer in capture.reachable(model))


def test_a_subclassed_transformer_trains_and_its_scores_follow(tmp_path):
    keras.utils.set_random_seed(11)
    model = subclassed_transformer(causal=True)
    x, y = reverse_task(64, LENGTH, VOCAB)
    x[:, -1] = 0  # padding, as the probe has
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logger = ActivationLogger(tmp_path, TOKENS, ["block/mha"], batch_freq=2, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[logger], verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    log = read(tmp_path)
    assert log.layers("activations") == [
        "block/mha",
        "block/mha/attention_scores",
        "block/mha@2",
        "block/mha@2/attention_scores",
    ]
    for tag in SUBCLASSED_SCORES:
        assert log.steps("activations", tag) == [0, 2, 4, 8]
    want = subclassed_references(model, TOKENS, causal=True)
    after = {v.info.layer: v for v in logger.session.forward()}
    for tag in SUBCLASSED_SCORES:
        np.testing.assert_allclose(after[tag].array, want[tag], atol=ATOL)
        stats = log.stats("activations", tag)
        np.testing.assert_allclose(stats["max"][-1], want[tag].max(axis=(2, 3)), atol=1e-6)
        # 8-bit PNGs: within (max - min) / 510 of the value, per (probe, head).
        got = log.activations("activations", tag, 8)
        span = want[tag].max(axis=(2, 3), keepdims=True) - want[tag].min(axis=(2, 3), keepdims=True)
        assert np.all(np.abs(got - want[tag]) <= span / 510 + 1e-6)
        # Training moved them: a logger stuck on the first weights differs.
        assert np.abs(stats["std"][-1] - stats["std"][0]).max() > 1e-3


def test_the_scores_projections_are_not_recorded_as_the_models_calls(tmp_path):
    keras.utils.set_random_seed(13)
    model = subclassed_transformer(causal=False)
    logged = log_activations(model, TOKENS, tmp_path, "all", verbose=0)
    # The block runs twice, so its attention's projections do; computing the
    # scores runs them again, unobserved.
    projections = [n for n in logged if n.startswith("block/mha/")]
    assert projections, logged
    assert all(capture.call_of(n) <= 2 for n in projections), projections
    assert {"block/mha/query", "block/mha/query@2"} <= set(projections)
    assert set(SUBCLASSED_SCORES) <= set(read(tmp_path).layers("activations"))


def test_an_observed_call_with_a_cache_keeps_its_output_and_warns_once(tmp_path):
    class WithCache(keras.layers.MultiHeadAttention):
        def call(self, query, value, key=None, cache=None):
            return super().call(query, value, key)

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="cached")
            self.cache = keras.layers.Dense(DIM, name="cache")
            self.odd = WithCache(1, 2, name="odd")

        def call(self, x):
            return self.odd(x, x, cache=self.cache(x))

    probe = np.ones((1, LENGTH, DIM), "float32")
    session = LoggingSession(tmp_path, probe, ["odd"], verbose=0)
    with pytest.warns(UserWarning, match="attention scores of 'odd' are not logged.*cache"):
        session.bind(Net())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert session.log(0, strict=True)
        assert session.log(1, strict=True)
    session.close()
    log = read(tmp_path)
    assert log.layers("activations") == ["odd"]
    assert log.steps("activations", "odd") == [0, 1]


# keras-hub backbones, small and random (nothing downloaded).


def _calls(model, probe, path: str) -> list[tuple[tuple, dict]]:
    """The arguments of each call of the layer at `path` in an eager pass."""
    layer = dict(capture.reachable(model))[path]
    seen = []
    with capture.observing({path: layer}, lambda _, out, args, kwargs: seen.append((args, kwargs))):
        model(probe, training=False)
    return seen


@pytest.mark.parametrize("name", ["BertBackbone", "GPT2Backbone"])
def test_keras_hub_backbones_log_every_attention_layers_scores_by_default(tmp_path, name):
    from test_capture import TEXT_CONFIG, _hub, _text_probe

    hub = _hub()
    keras.utils.set_random_seed(12)
    model = getattr(hub.models, name)(**TEXT_CONFIG)
    causal = name == "GPT2Backbone"
    probe = _text_probe(with_segments=not causal)
    keys = probe["padding_mask"] == 1
    assert not keys.all()  # the second probe ends in padding
    before = keras.tree.flatten(model(probe))[0]
    session = LoggingSession(tmp_path, probe, verbose=0)
    session.bind(model)
    values = {v.info.layer: v for v in session.forward()}
    attention_paths = [p for p, layer in capture.reachable(model) if attention.is_attention(layer)]
    assert len(attention_paths) == TEXT_CONFIG["num_layers"]
    scores = sorted(t for t in values if t.endswith(attention.SUFFIX))
    assert scores == sorted(attention.scores_tag(p) for p in attention_paths)
    for path in attention_paths:
        got = values[attention.scores_tag(path)].array
        ((args, kwargs),) = _calls(model, probe, path)
        layer = dict(capture.reachable(model))[path]
        query = kwargs.get("query", args[0] if args else None)
        q = np.asarray(keras.ops.convert_to_numpy(query), np.float64)
        want = reference_scores(layer, q, q, key_mask=keys, causal=causal)
        assert got.shape == (2, TEXT_CONFIG["num_heads"], 8, 8)
        np.testing.assert_allclose(got, want, atol=1e-5)
        _, own = layer(*args, **{**kwargs, "return_attention_scores": True})
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(own), atol=1e-6)
        assert np.all(np.moveaxis(got, -1, 1)[~keys] == 0)
        if causal:
            assert np.all(got[:, :, np.triu(np.ones((8, 8), bool), k=1)] == 0)
        info = values[attention.scores_tag(path)].info
        assert (info.kind, info.source, info.class_name) == (
            metadata.KIND_ATTENTION,
            path,
            type(layer).__name__,
        )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.tree.flatten(model(probe))[0]),
        keras.ops.convert_to_numpy(before),
    )
