"""Reaching any layer by observing calls (tb_activations.capture), on TensorFlow
here and on JAX and torch in their own venvs (tests/backend_observe.py).

Every logged value is checked against the model's sublayers called directly
on their inputs (tests/observed.py).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tb_activations import ActivationLogger, capture, log_activations, metadata
from tb_activations import attention as attention_lib
from tb_activations.session import LoggingSession

import observed
from recorded import read_run, small_cnn
from test_backends import ROOT, run_in_venv

SCRIPT = ROOT / "tests" / "backend_observe.py"


def _no_shadows(model) -> bool:
    return all("call" not in layer.__dict__ for _, layer in capture.reachable(model))


def _check_against(series, expected, names, step=None):
    for name in names:
        s = series[name]
        got = s.steps[-1] if step is None else next(x for x in s.steps if x.step == step)
        err = observed.stats_mismatch(got.stats, s.info.stats_fields, expected[name])
        assert err < 1e-5, (name, err)


@pytest.fixture(scope="module")
def subclassed_run(tmp_path_factory):
    """A subclassed model logged once, fitted with the logger, and its own
    outputs around both."""
    keras.utils.set_random_seed(0)
    model = observed.subclassed()
    x, y = observed.subclassed_data()
    probe = x[:2]
    before = np.asarray(model(probe))
    log_dir = tmp_path_factory.mktemp("subclassed")
    logged = log_activations(model, probe, log_dir, observed.SUBCLASSED_LAYERS, verbose=0)
    after = np.asarray(model(probe))
    expected = observed.subclassed_expected(model, probe)
    weights = [np.array(w) for w in model.get_weights()]
    model.compile("adam", "mse")
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[
            ActivationLogger(log_dir, probe, observed.SUBCLASSED_LAYERS, run_name="fit", verbose=0)
        ],
    )
    return {
        "model": model,
        "probe": probe,
        "logged": logged,
        "before": before,
        "after": after,
        "expected": expected,
        "weights": weights,
        "history": history.history,
        "snapshot": read_run(log_dir),
        "fit": read_run(log_dir, "fit"),
    }


def test_every_call_and_output_of_the_chosen_layers_is_a_series(subclassed_run):
    assert subclassed_run["logged"] == observed.SUBCLASSED_SERIES
    series = subclassed_run["snapshot"]
    assert sorted(series) == sorted([metadata.PROBE_TAG, *observed.SUBCLASSED_SERIES])
    infos = {name: series[name].info for name in observed.SUBCLASSED_SERIES}
    assert (infos["shared"].call, infos["shared@2"].call) == (1, 2)
    assert [infos[f"lstm:{i}"].output for i in range(3)] == ["0", "1", "2"]
    assert infos["head"].output is None
    assert infos["block1/conv"].class_name == "Conv2D"
    assert infos["block1/conv"].layout == "image"
    assert infos["lstm:0"].layout == "sequence"
    assert infos["lstm:1"].layout == "units"
    # Model order: a block before the layers it holds.
    positions = [infos[n].position for n in observed.SUBCLASSED_SERIES]
    assert positions == sorted(positions)
    assert infos["block1"].position < infos["block1/conv"].position


def test_logged_values_are_the_sublayers_called_directly(subclassed_run):
    _check_against(
        subclassed_run["snapshot"], subclassed_run["expected"], observed.SUBCLASSED_SERIES
    )


def test_logging_changes_neither_outputs_nor_training(subclassed_run):
    np.testing.assert_array_equal(subclassed_run["before"], subclassed_run["after"])
    model = subclassed_run["model"]
    assert _no_shadows(model)
    # It trains afterwards: the weights moved, the loss is finite.
    moved = [
        not np.array_equal(a, b) for a, b in zip(subclassed_run["weights"], model.get_weights())
    ]
    assert any(moved)
    assert all(np.isfinite(subclassed_run["history"]["loss"]))


def test_the_logger_follows_training_on_a_subclassed_model(subclassed_run):
    series = subclassed_run["fit"]
    steps = series["head"].step_numbers
    assert steps == [0, 2, 4]
    for name in observed.SUBCLASSED_SERIES:
        assert series[name].step_numbers == steps, name
    # The last step is the trained model's.
    model, probe = subclassed_run["model"], subclassed_run["probe"]
    _check_against(series, observed.subclassed_expected(model, probe), observed.SUBCLASSED_SERIES)
    first, last = series["block1/conv"].steps[0].stats, series["block1/conv"].steps[-1].stats
    assert not np.array_equal(first, last)


def test_default_layers_of_a_subclassed_model_are_its_conv_dense_and_recurrent_ones(
    tmp_path, capsys
):
    model = observed.subclassed()
    x, _ = observed.subclassed_data(2)
    logged = log_activations(model, x, tmp_path)
    assert logged == observed.SUBCLASSED_DEFAULTS
    assert "logging 6 layers of 'net'" in capsys.readouterr().out


def test_functional_models_keep_their_graph_extractor(tmp_path):
    session = LoggingSession(tmp_path, np.zeros((1, 28, 28, 1), "float32"), verbose=0)
    session.bind(small_cnn())
    assert isinstance(session.extractor, keras.Model)
    session = LoggingSession(tmp_path, observed.subclassed_data(1)[0], verbose=0)
    session.bind(observed.subclassed())
    assert isinstance(session.extractor, capture.Observer)


class ChannelAttention(keras.layers.Layer):
    """A CNN's attention module (CBAM's channel gate), a layer of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = keras.layers.Dense(4, activation="sigmoid", name="dense")

    def call(self, x):
        return x * self.gate(keras.ops.mean(x, axis=(1, 2)))[:, None, None, :]


def test_a_cnn_with_an_attention_module_keeps_its_graph_and_convolutions(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = ChannelAttention(name="gate")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    assert capture.attends(model.get_layer("gate")) and not capture.is_transformer(model)
    session = LoggingSession(tmp_path, np.zeros((1, 8, 8, 1), "float32"), verbose=0)
    session.bind(model)
    assert isinstance(session.extractor, keras.Model)
    assert session.layers == ("conv1", "gate", "conv2", "head")


class _GatedCnn(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv1 = keras.layers.Conv2D(4, 3, padding="same", name="conv1")
        self.gate = ChannelAttention(name="gate")
        self.conv2 = keras.layers.Conv2D(4, 3, padding="same", name="conv2")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        x = self.conv2(self.gate(self.conv1(x)))
        return self.head(keras.ops.mean(x, axis=(1, 2)))


def test_a_subclassed_cnn_with_an_attention_module_logs_its_leaves(tmp_path):
    logged = log_activations(_GatedCnn(), np.zeros((1, 8, 8, 1), "float32"), tmp_path, verbose=0)
    assert logged == ["conv1", "gate/dense", "conv2", "head"]


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = observed.transformer()
    batch, _ = observed.transformer_data(2)
    before = np.asarray(model(batch))
    log_dir = tmp_path_factory.mktemp("transformer")
    logged = log_activations(
        model,
        batch,
        log_dir,
        observed.TRANSFORMER_LAYERS,
        probe_tokens=lambda i: f"w{i}",
        verbose=0,
    )
    return {
        "model": model,
        "batch": batch,
        "logged": logged,
        "before": before,
        "after": np.asarray(model(batch)),
        "series": read_run(log_dir),
    }


def test_layers_inside_a_custom_layer_of_a_functional_model(transformer_run):
    assert transformer_run["logged"] == observed.TRANSFORMER_LAYERS
    expected = observed.transformer_expected(transformer_run["model"], transformer_run["batch"])
    _check_against(transformer_run["series"], expected, observed.TRANSFORMER_LAYERS)
    np.testing.assert_array_equal(transformer_run["before"], transformer_run["after"])
    assert _no_shadows(transformer_run["model"])


def test_each_input_of_a_dict_probe_is_logged_in_a_form_that_suits_it(transformer_run):
    series = transformer_run["series"]
    batch = transformer_run["batch"]
    main = series[metadata.PROBE_TAG].info
    assert (main.input_name, main.probe_kind) == ("token_ids", "tokens")
    assert main.tokens == tuple(tuple(f"w{i}" for i in row) for row in batch["token_ids"])
    mask = series[f"{metadata.PROBE_TAG}/padding_mask"].info
    assert (mask.input_name, mask.probe_kind, mask.layout) == ("padding_mask", "tokens", "probe")
    assert mask.tokens == tuple(tuple(int(i) for i in row) for row in batch["padding_mask"])
    assert main.version == metadata.FORMAT_VERSION == 3


def test_default_layers_of_a_transformer(tmp_path, capsys):
    model = observed.transformer()
    batch, _ = observed.transformer_data(1)
    logged = log_activations(model, batch, tmp_path)
    assert logged == ["embed", "encoder", "encoder/mha"]
    assert "encoder/mha" in capsys.readouterr().out


def test_a_layer_not_called_on_the_probe_warns_and_the_rest_is_logged(tmp_path):
    class Branchy(keras.Model):
        def __init__(self):
            super().__init__(name="branchy")
            self.used = keras.layers.Dense(3, name="used")
            self.spare = keras.layers.Dense(3, name="spare")

        def call(self, x):
            return self.used(x)

    model = Branchy()
    model(np.zeros((1, 4), "float32"))
    with pytest.warns(UserWarning, match=r"not called .*: spare"):
        logged = log_activations(
            model, np.ones((1, 4), "float32"), tmp_path, ["used", "spare"], verbose=0
        )
    assert logged == ["used"]


def test_outputs_that_are_not_tensors_are_skipped_with_one_notice(tmp_path):
    class Tagged(keras.layers.Layer):
        def call(self, x):
            return {"value": x * 2.0, "label": "doubled"}

    class Wrapper(keras.Model):
        def __init__(self):
            super().__init__(name="wrapper")
            self.tagged = Tagged(name="tagged")

        def call(self, x):
            return self.tagged(x)["value"]

    model = Wrapper()
    with pytest.warns(UserWarning, match=r"not logged.*tagged:label") as caught:
        logged = log_activations(model, np.ones((1, 4), "float32"), tmp_path, ["tagged"], verbose=0)
    assert logged == ["tagged:value"]
    assert len([w for w in caught if "not logged" in str(w.message)]) == 1


@pytest.mark.parametrize(
    "layers, message",
    [
        (["nope"], r"No layer named 'nope' in model 'net'. Closest"),
        (["conv"], r"Layer name 'conv' is ambiguous .* block1/conv, block2/conv"),
        (["shared@3"], r"Layer 'shared' gave no output named shared@3"),
    ],
)
def test_bad_layers_of_a_subclassed_model(tmp_path, layers, message):
    model = observed.subclassed()
    x, _ = observed.subclassed_data(1)
    with pytest.raises(ValueError, match=message):
        log_activations(model, x, tmp_path, layers, verbose=0)


def test_one_series_of_a_layer_can_be_chosen_by_name(tmp_path):
    model = observed.subclassed()
    x, _ = observed.subclassed_data(1)
    assert log_activations(model, x, tmp_path, ["shared@2", "lstm:1"], verbose=0) == [
        "shared@2",
        "lstm:1",
    ]


def test_an_unknown_layer_of_a_custom_layer_fails_at_set_model(tmp_path):
    batch, _ = observed.transformer_data(1)
    logger = ActivationLogger(tmp_path, batch, ["encoder/nope"])
    with pytest.raises(ValueError, match="No layer named 'encoder/nope'"):
        logger.set_model(observed.transformer())
    # A layer inside the custom layer passes the check.
    ActivationLogger(tmp_path, batch, ["encoder/mha"]).set_model(observed.transformer())


# -- JAX and torch ---------------------------------------------------------------------


@pytest.fixture(
    scope="module", params=[pytest.param(b, marks=pytest.mark.slow) for b in ("jax", "torch")]
)
def backend_facts(request, tmp_path_factory):
    backend = request.param
    out = tmp_path_factory.mktemp(f"observe-{backend}")
    run_in_venv(backend, SCRIPT, out)
    return backend, json.loads((out / "facts.json").read_text())


def test_backend_subclassed_model_shared_layer_and_lstm_states(backend_facts):
    backend, facts = backend_facts
    assert facts["backend"] == backend
    run = facts["subclassed"]
    assert run["logged"] == observed.SUBCLASSED_SERIES
    assert run["outputs_unchanged"] and run["no_shadows"] and run["trained"]
    for name, err in run["mismatch"].items():
        assert err < 1e-4, (backend, name, err)
    assert run["fit_steps"] == [0, 2, 4]
    assert run["default_layers"] == observed.SUBCLASSED_DEFAULTS


def test_backend_dict_probe_and_layers_inside_a_custom_layer(backend_facts):
    backend, facts = backend_facts
    run = facts["transformer"]
    assert run["logged"] == observed.TRANSFORMER_LAYERS
    assert run["outputs_unchanged"] and run["no_shadows"]
    for name, err in run["mismatch"].items():
        assert err < 1e-4, (backend, name, err)
    assert run["probe_kinds"] == {"__probe__": "tokens", "__probe__/padding_mask": "tokens"}
    assert run["graph_mismatch"]["embed"] < 1e-5
    assert run["default_layers"] == ["embed", "encoder", "encoder/mha"]


def test_backend_logs_no_warning_besides_none_expected(backend_facts):
    _, facts = backend_facts
    assert facts["warnings"] == [], facts["warnings"]


# -- keras-hub backbones (random weights, small configs, nothing downloaded) -----------

SEQ = 8


def _hub():
    return pytest.importorskip("keras_hub", reason="keras-hub is a TensorFlow-venv test tool")


# Small text backbones: two blocks of two heads.
TEXT_CONFIG = dict(
    vocabulary_size=50,
    num_layers=2,
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=32,
    max_sequence_length=SEQ,
)


def _text_probe(with_segments: bool) -> dict:
    rng = np.random.default_rng(0)
    mask = np.ones((2, SEQ), "int32")
    mask[1, -3:] = 0
    probe = {"token_ids": rng.integers(1, 50, (2, SEQ)) * mask, "padding_mask": mask}
    if with_segments:
        probe["segment_ids"] = np.zeros((2, SEQ), "int32")
    return probe


def test_bert_logs_its_embeddings_blocks_and_attention_by_default(tmp_path):
    hub = _hub()
    model = hub.models.BertBackbone(**TEXT_CONFIG)
    probe = _text_probe(with_segments=True)
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == [
        "token_embedding",
        "position_embedding",
        "segment_embedding",
        "transformer_layer_0",
        "transformer_layer_0/self_attention_layer",
        "transformer_layer_1",
        "transformer_layer_1/self_attention_layer",
    ]
    series = read_run(tmp_path)
    # The last block's output is the backbone's own sequence output; the
    # first block, called directly on the embeddings, gives its series.
    own = model(probe)
    embeddings = keras.Model(model.input, model.get_layer("embeddings_layer_norm").output)(probe)
    first = model.get_layer("transformer_layer_0")(embeddings, padding_mask=probe["padding_mask"])
    expected = {
        "transformer_layer_1": np.asarray(own["sequence_output"]),
        "transformer_layer_0": np.asarray(first),
        "token_embedding": np.asarray(model.get_layer("token_embedding")(probe["token_ids"])),
    }
    _check_against(series, expected, list(expected))
    main = series[metadata.PROBE_TAG].info
    assert (main.input_name, main.probe_kind) == ("token_ids", "tokens")
    assert sorted(t for t in series if t.startswith(metadata.PROBE_TAG)) == [
        metadata.PROBE_TAG,
        f"{metadata.PROBE_TAG}/padding_mask",
        f"{metadata.PROBE_TAG}/segment_ids",
    ]
    assert _no_shadows(model)


def test_gpt2_vit_and_resnet_backbones_log_with_default_layers(tmp_path):
    hub = _hub()
    gpt2 = hub.models.GPT2Backbone(**TEXT_CONFIG)
    vit = hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    resnet = hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    image = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype("float32")
    cases = [
        (gpt2, _text_probe(with_segments=False), "transformer_layer_1/self_attention"),
        (vit, image, "vit_encoder/transformer_block_2/mha"),
        (resnet, image, "stack1_block0_2_conv"),
    ]
    for model, probe, expected in cases:
        before = np.asarray(keras.tree.flatten(model(probe))[0])
        logged = log_activations(model, probe, tmp_path, run_name=model.name, verbose=0)
        assert expected in logged, (model.name, logged)
        assert 1 <= len(logged) <= 12
        np.testing.assert_array_equal(before, np.asarray(keras.tree.flatten(model(probe))[0]))
        assert set(read_run(tmp_path, model.name)) >= set(logged)
    # The ViT's second block, called directly on the first block's output;
    # its 16 patch tokens are logged on the 4 x 4 patch grid (a token grid).
    embedded = keras.Model(vit.input, vit.get_layer("vit_patching_and_embedding").output)(image)
    first, second = vit.get_layer("vit_encoder").encoder_layers
    name = "vit_encoder/transformer_block_2"
    tokens = np.asarray(second(first(embedded)))
    series = read_run(tmp_path, vit.name)
    assert series[name].info.kind == metadata.KIND_TOKEN_GRID
    _check_against(series, {name: tokens[:, 1:].reshape(1, 4, 4, 16)}, [name])
    assert f"{name}/mha/attention_scores" in series


class AttentionBlock(keras.layers.Layer):
    """A transformer block named for attention: its norm, MLP and learned
    position embedding have weights."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.position = keras.layers.Embedding(6, 8, name="position")
        self.attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.mlp = keras.layers.Dense(8, name="mlp")

    def call(self, x):
        x = x + self.position(keras.ops.arange(x.shape[1]))
        x = self.norm(x + self.attention(x, x))
        return x + self.mlp(x)


class RotaryEmbedding(keras.layers.Layer):
    """Position tables without weights (DINOv3's `rope_embedding`): the same
    at every step, nothing to log."""

    def call(self, x):
        return x * keras.ops.cos(keras.ops.arange(x.shape[1], dtype=x.dtype))[:, None]


class SelfAttention(keras.layers.Layer):
    """A wrapper of Keras's attention adding only a dropout, as DINOv2's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
        self.dropout = keras.layers.Dropout(0.1, name="dropout")

    def call(self, x):
        return self.dropout(self.attention(x, x))


class WrappingBlock(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attn = SelfAttention(name="attn")
        self.mlp = keras.layers.Dense(8, name="mlp")

    def call(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


@pytest.mark.parametrize(
    "block, expected",
    [
        # A block named for attention is a block: its output, and the
        # attention inside with its scores, not the embedding inside.
        (AttentionBlock, ["block_0", "block_0/attention", "block_1", "block_1/attention"]),
        # A wrapper is passed over: the attention inside carries the scores
        # and the wrapper's output (logged twice before).
        (WrappingBlock, ["block_0", "block_0/attn/attention", "block_1", "block_1/attn/attention"]),
    ],
)
def test_attention_named_layers_holding_keras_attention_by_default(tmp_path, block, expected):
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="embedding")(inputs)
    x = RotaryEmbedding(name="rope")(x)
    x = block(name="block_1")(block(name="block_0")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    probe = np.arange(12).reshape(2, 6) % 20
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == ["embedding", *expected]
    series = read_run(tmp_path)
    assert [t for t in series if t.endswith(attention_lib.SUFFIX)] == [
        f"{p}{attention_lib.SUFFIX}" for p in expected if p.endswith("attention")
    ]
    own = keras.Model(model.input, model.get_layer("block_1").output)(probe)
    _check_against(series, {"block_1": np.asarray(own)}, ["block_1"])


@pytest.mark.parametrize(
    "family, attention, scores",
    [
        # Keras's attention inside keras-hub's wrapper: the one inside, with its scores.
        ("DINOV2Backbone", "attention/attention", True),
        # keras-hub's own attention (no scores); its rotary position
        # embedding, a layer of the model without weights, is not logged.
        ("DINOV3Backbone", "attention", False),
    ],
)
def test_dinov2_and_dinov3_log_their_blocks_and_attention(tmp_path, family, attention, scores):
    model = getattr(_hub().models, family)(
        patch_size=14,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(28, 28, 3),
        layer_scale_init_value=1.0,
    )
    image = np.random.default_rng(0).uniform(size=(1, 28, 28, 3)).astype("float32")
    logged = log_activations(model, image, tmp_path, verbose=0)
    blocks = ["encoder/layers_0", "encoder/layers_1"]
    assert logged == [
        "embeddings",
        "embeddings/patch_embeddings/projection",
        *[p for b in blocks for p in (b, f"{b}/{attention}")],
    ]
    series = read_run(tmp_path)
    assert [t for t in series if t.endswith(attention_lib.SUFFIX)] == (
        [f"{b}/{attention}{attention_lib.SUFFIX}" for b in blocks] if scores else []
    )


def test_an_hgnetv2_logs_each_stage_of_the_encoder_returning_them_all(tmp_path):
    # Its graph is two keras-hub layers: the stem, and an encoder returning
    # its input and every stage's output, which logged only its first
    # (`encoder:0`, the stem's output again).
    model = _hub().models.HGNetV2Backbone(
        depths=[1, 1],
        embedding_size=8,
        hidden_sizes=[16, 32],
        stem_channels=[3, 8, 8],
        hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[[8, 8, 16, 1, 1, 3], [16, 8, 32, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        image_shape=(32, 32, 3),
    )
    image = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype("float32")
    logged = log_activations(model, image, tmp_path, verbose=0)
    stages = ["encoder/encoder_stage_0", "encoder/encoder_stage_1"]
    assert logged == ["embedder", *stages]
    stem = model.get_layer("embedder")(image)
    own = model.get_layer("encoder")(stem)
    expected = {s: np.asarray(x) for s, x in zip(stages, own[1:], strict=True)}
    expected["embedder"] = np.asarray(stem)
    _check_against(read_run(tmp_path), expected, list(expected))
    assert _no_shadows(model)


DECODER_CONFIG = dict(vocabulary_size=50, num_layers=2, hidden_dim=16, intermediate_dim=32)


@pytest.mark.parametrize(
    "family, config, block, attention",
    [
        (
            "Llama3Backbone",
            dict(num_query_heads=2, num_key_value_heads=1),
            "transformer_layer",
            "self_attention",
        ),
        (
            "GemmaBackbone",
            dict(num_query_heads=2, num_key_value_heads=1, head_dim=8),
            "decoder_block",
            "attention",
        ),
        (
            "DebertaV3Backbone",
            dict(num_heads=2, max_sequence_length=SEQ),
            "disentangled_attention_encoder_layer",
            "self_attention_layer",
        ),
    ],
)
def test_decoders_with_their_own_attention_log_embeddings_blocks_and_attention(
    tmp_path, family, config, block, attention
):
    # Their attention layers are not Keras's MultiHeadAttention: they are
    # found by class name, without scores, and the rotary embeddings they
    # apply inside are not taken for the model's embeddings.
    model = getattr(_hub().models, family)(**DECODER_CONFIG, **config)
    probe = _text_probe(with_segments=False)
    logged = log_activations(model, probe, tmp_path, verbose=0)
    blocks = [f"{block}_{i}" for i in range(2)]
    assert logged[0] == "token_embedding"
    assert [p for p in logged if p.startswith(block)] == [
        p for b in blocks for p in (b, f"{b}/{attention}")
    ]
    assert not any("rotary" in p for p in logged)
    series = read_run(tmp_path)
    assert not any(t.endswith(attention_lib.SUFFIX) for t in series)
    # The last block, called directly on the first one's output.
    embedded = np.asarray(model.get_layer("token_embedding")(probe["token_ids"]))
    own = keras.Model(model.input, model.get_layer(blocks[0]).output)(probe)
    _check_against(series, {blocks[0]: np.asarray(own)}, [blocks[0]])
    _check_against(series, {"token_embedding": embedded}, ["token_embedding"])
    assert _no_shadows(model)


def test_an_fnet_logs_its_blocks_and_its_embedding_subclass_by_default(tmp_path):
    # No attention layer: the graph's defaults. Its blocks are keras-hub's
    # own layers holding Dense ones, its token embedding a subclass of
    # Keras's Embedding; both were missed when defaults went by class name.
    model = _hub().models.FNetBackbone(**DECODER_CONFIG, max_sequence_length=SEQ)
    probe = _text_probe(with_segments=True)
    probe.pop("padding_mask")
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == [
        "token_embedding",
        "segment_embedding",
        "embedding_projection",
        "f_net_layer_0",
        "f_net_layer_1",
        "pooled_dense",
    ]
    series = read_run(tmp_path)
    block = keras.Model(model.input, model.get_layer("f_net_layer_1").output)(probe)
    _check_against(series, {"f_net_layer_1": np.asarray(block)}, ["f_net_layer_1"])


def test_an_rwkv_logs_the_hidden_states_of_its_blocks_of_two_outputs_by_default(tmp_path):
    # No attention layer, blocks of keras-hub's own returning (hidden
    # states, first value): the graph cannot log them, observing does,
    # their first output standing for the layers inside as FNet's do.
    model = _hub().models.RWKV7Backbone(
        hidden_size=16,
        head_size=8,
        num_layers=2,
        vocabulary_size=50,
        intermediate_dim=32,
        gate_lora=8,
        mv_lora=8,
        aaa_lora=8,
        decay_lora=8,
    )
    probe = _text_probe(with_segments=False)
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == ["token_embedding", "rwkv_layer_0:0", "rwkv_layer_1:0", "head"]
    blocks = ["rwkv_layer_0", "rwkv_layer_1"]
    own = keras.Model(model.input, [model.get_layer(b).output[0] for b in blocks])(probe)
    expected = {f"{b}:0": np.asarray(x) for b, x in zip(blocks, own)}
    expected["head"] = np.asarray(model(probe))
    _check_against(read_run(tmp_path), expected, list(expected))
    assert _no_shadows(model)
    # Fewer layers than picks: the blocks are spread over the depth.
    logged = log_activations(model, probe, tmp_path, run_name="few", max_layers=3, verbose=0)
    assert logged == ["token_embedding", "rwkv_layer_1:0", "head"]


def test_xlnet_logs_its_blocks_not_its_attention_mask_layer(tmp_path):
    # XLNetAttentionMaskLayer's class name says Attention; it makes a mask.
    config = {k: v for k, v in TEXT_CONFIG.items() if k != "max_sequence_length"}
    model = _hub().models.XLNetBackbone(**config)
    logged = log_activations(model, _text_probe(with_segments=True), tmp_path, verbose=0)
    assert not [n for n in logged if n.startswith("encoder_block_attn_mask_layer")], logged
    assert {"xlnet_encoder_0:0", "xlnet_encoder_1:0"} <= set(logged), logged


def test_t5_blocks_log_their_hidden_states_by_default_and_every_output_when_asked(tmp_path):
    # Its blocks and attention layers return (hidden states, position
    # bias): the biases are no features, so the defaults leave them out.
    model = _hub().models.T5Backbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32
    )
    rng = np.random.default_rng(0)
    mask = np.ones((2, SEQ), "int32")
    probe = {
        "encoder_token_ids": rng.integers(1, 50, (2, SEQ)),
        "encoder_padding_mask": mask,
        "decoder_token_ids": rng.integers(1, 50, (2, SEQ)),
        "decoder_padding_mask": mask,
    }
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert "transformer_encoder_layer_0:0" in logged
    assert "transformer_decoder_layer_1/cross_attention:0" in logged
    assert not [name for name in logged if name.endswith(":1")], logged
    block = "transformer_encoder_layer_0"
    own = keras.Model(model.input, model.get_layer(block).output[0])(probe)
    _check_against(read_run(tmp_path), {f"{block}:0": np.asarray(own)}, [f"{block}:0"])
    asked = log_activations(model, probe, tmp_path, [block], run_name="asked", verbose=0)
    assert asked == [f"{block}:0", f"{block}:1"]
    biases = keras.Model(model.input, model.get_layer(block).output[1])(probe)
    _check_against(read_run(tmp_path, "asked"), {f"{block}:1": np.asarray(biases)}, [f"{block}:1"])


class _BlockWithAside(keras.layers.Layer):
    """A block of one's own returning its features and something beside them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")

    def call(self, x):
        y = self.conv(x)
        return y, keras.ops.mean(y, axis=-1, keepdims=True)


def test_a_functional_model_logs_the_first_output_of_its_own_block_by_default(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    features, aside = _BlockWithAside(name="block")(x)
    x = keras.layers.GlobalAveragePooling2D()(features + aside)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    probe = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("float32")
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == ["conv1", "block:0", "head"]
    own = keras.Model(inputs, model.get_layer("block").output[0])(probe)
    _check_against(read_run(tmp_path), {"block:0": np.asarray(own)}, ["block:0"])


class _Recurrent(keras.Model):
    """Recurrent layers in a subclassed model: each holds its cell (the
    `Bidirectional` two LSTMs), and the last returns its states too."""

    def __init__(self):
        super().__init__()
        self.bi = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")
        self.gru = keras.layers.GRU(3, return_sequences=True, name="gru")
        self.lstm = keras.layers.LSTM(5, return_sequences=True, return_state=True, name="lstm")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        _, h, _ = self.lstm(self.gru(self.bi(x)))
        return self.head(h)

    def own(self, x):
        """What each default pick gives on `x`, by calling the layers directly."""
        bi = self.bi(x)
        gru = self.gru(bi)
        seq = self.lstm(gru)[0]
        return {"bi": bi, "gru": gru, "lstm:0": seq, "head": self(x)}


def _functional_lstm_with_states():
    inputs = keras.Input((6, 3))
    seq, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True, name="lstm")(inputs)
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(seq), h, c])
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))

    def own(x):
        sub = keras.Model(inputs, [model.get_layer("lstm").output[0], model.output])
        seq, head = sub(x)
        return {"lstm:0": seq, "head": head}

    model.own = own
    return model


RECURRENT_CASES = [
    # (id, model, its defaults): the recurrent layer's output, not its
    # cell's or its inner layers', and of one returning states its first.
    ("subclassed", _Recurrent, ["bi", "gru", "lstm:0", "head"]),
    ("functional, an LSTM returning its states", _functional_lstm_with_states, ["lstm:0", "head"]),
]


@pytest.mark.parametrize(
    "make, defaults", [c[1:] for c in RECURRENT_CASES], ids=[c[0] for c in RECURRENT_CASES]
)
def test_recurrent_layers_are_default_picks_however_the_model_is_built(make, defaults, tmp_path):
    model = make()
    probe = np.random.default_rng(0).normal(size=(2, 6, 3)).astype("float32")
    logged = log_activations(model, probe, tmp_path, verbose=0)
    assert logged == defaults
    expected = {k: np.asarray(v) for k, v in model.own(probe).items()}
    _check_against(read_run(tmp_path), expected, defaults)
    assert _no_shadows(model)


class _SqueezeExcite(keras.Model):
    """A subclassed CNN with a squeeze-and-excitation gate (1 x 1 in space)."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
        self.reduce = keras.layers.Conv2D(2, 1, name="se_reduce")
        self.expand = keras.layers.Conv2D(4, 1, activation="sigmoid", name="se_expand")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        x = self.conv(x)
        gate = self.expand(self.reduce(keras.ops.mean(x, axis=(1, 2), keepdims=True)))
        return self.head(keras.ops.mean(x * gate, axis=(1, 2)))


def test_an_observed_models_defaults_leave_out_its_squeeze_excite_gates(tmp_path):
    model = _SqueezeExcite()
    probe = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    assert log_activations(model, probe, tmp_path, verbose=0) == ["conv", "head"]
    named = log_activations(model, probe, tmp_path, ["se_expand"], run_name="named", verbose=0)
    assert named == ["se_expand"]


def test_the_plugin_answers_every_route_on_the_new_series(tmp_path):
    from test_plugin import make_client

    model = observed.subclassed()
    x, _ = observed.subclassed_data(2)
    log_activations(model, x, tmp_path, observed.SUBCLASSED_LAYERS, run_name="sub", verbose=0)
    batch, _ = observed.transformer_data(2)
    log_activations(observed.transformer(), batch, tmp_path, run_name="text", verbose=0)
    client = make_client(tmp_path, 10)
    url = "/data/plugin/activations/"
    tags = client.get(url + "tags").get_json()
    assert set(tags) >= {"sub", "text"}
    answered = {}
    for run in ("sub", "text"):
        for route in ("overview", "curves", "probe"):
            answered[(run, route)] = client.get(url + route, query_string={"run": run}).status_code
        for tag, _ in read_run(tmp_path, run).items():
            where = {"run": run, "tag": tag}
            for route, extra in (
                ("steps", {}),
                ("layer", {"step": 0, "probe": 1}),
                ("channel", {"step": 0, "channel": 0, "probe": 1}),
                ("series", {"channel": 0}),
                ("stats", {}),
                ("timeline", {}),
                ("export", {"step": 0}),
            ):
                r = client.get(url + route, query_string={**where, **extra})
                answered[(run, tag, route)] = r.status_code
    assert all(code in (200, 404) for code in answered.values()), answered
    layers_ok = [k for k in answered if len(k) == 3 and not k[1].startswith(metadata.PROBE_TAG)]
    assert {answered[k] for k in layers_ok} == {200}, answered
    assert answered[("text", "probe")] == 200
    # The layer listing leaves the probe's inputs out, as it does the probe.
    overview = client.get(url + "overview", query_string={"run": "text"}).get_json()
    assert overview["layers"] == ["embed", "encoder", "encoder/mha", "encoder/mha/attention_scores"]


def test_all_takes_every_called_layer_but_an_rnns_cell(tmp_path):
    model = observed.subclassed()
    x, _ = observed.subclassed_data(1)
    logged = log_activations(model, x, tmp_path, "all", verbose=0)
    assert [n for n in logged if n.startswith("lstm")] == ["lstm:0", "lstm:1", "lstm:2"]
    assert {"block1", "block1/conv", "block1/norm", "shared@2", "head"} <= set(logged)


def test_observing_sees_each_call_with_its_arguments_and_always_restores():
    dense = keras.layers.Dense(3, name="d")
    x = np.ones((1, 3), "float32")
    dense(x)
    seen = []
    with capture.observing({"d": dense}, lambda *call: seen.append(call)):
        dense(dense(x))
    assert [(path, len(args), kwargs) for path, _, args, kwargs in seen] == [
        ("d", 1, {}),
        ("d", 1, {}),
    ]
    np.testing.assert_array_equal(np.asarray(seen[0][1]), np.asarray(dense(x)))
    assert "call" not in dense.__dict__
    with pytest.raises(RuntimeError, match="boom"):
        with capture.observing({"d": dense}, lambda *call: None):
            raise RuntimeError("boom")
    assert "call" not in dense.__dict__
    seen.clear()
    dense(x)
    assert seen == []


def test_the_logger_trains_a_model_with_dict_inputs_from_a_dict_probe(tmp_path):
    keras.utils.set_random_seed(2)
    model = observed.transformer()
    batch, y = observed.transformer_data(8)
    probe = {k: v[:2] for k, v in batch.items()}
    model.compile("adam", "mse")
    logger = ActivationLogger(tmp_path, probe, ["embed", "encoder/mha"], verbose=0)
    model.fit(batch, y, epochs=2, batch_size=4, verbose=0, callbacks=[logger])
    series = read_run(tmp_path)
    assert series["encoder/mha"].step_numbers == [0, 2, 4]
    expected = observed.transformer_expected(model, probe)
    _check_against(series, expected, ["embed", "encoder/mha"])
    assert series[metadata.PROBE_TAG].info.tokens == tuple(
        tuple(int(i) for i in row) for row in probe["token_ids"]
    )


# The lightest model of each keras.applications family, random weights.
APPLICATIONS = [
    "Xception",
    "VGG16",
    "VGG19",
    "ResNet50",
    "ResNet50V2",
    "InceptionV3",
    "InceptionResNetV2",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "DenseNet121",
    "NASNetMobile",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "ConvNeXtTiny",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_keep_the_graph_and_its_default_layers(tmp_path, name):
    from tb_activations import layers as layers_lib

    model = getattr(keras.applications, name)(weights=None, input_shape=(75, 75, 3))
    session = LoggingSession(tmp_path, np.zeros((1, 75, 75, 3), "float32"), verbose=0)
    session.bind(model)
    assert isinstance(session.extractor, keras.Model)
    assert list(session.layers) == layers_lib.select(model, None, 12)


def test_a_shared_layer_of_a_functional_model_logs_each_call(tmp_path):
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    first = shared(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(shared(first)))
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)
    logged = log_activations(model, x, tmp_path, ["shared", "head"], verbose=0)
    assert logged == ["shared", "shared@2", "head"]
    once = shared(x)
    expected = {"shared": np.asarray(once), "shared@2": np.asarray(shared(once))}
    _check_against(read_run(tmp_path), expected, list(expected))
