"""Token sequences that are the probe image's patch grid (`tb_activations.tokens`)."""

from __future__ import annotations

import numpy as np
import pytest

from tb_activations import metadata, tokens

keras = pytest.importorskip("keras")

from attention_models import sublayer_outputs, tiny_vit  # noqa: E402

from tb_activations import log_activations, read  # noqa: E402
from tb_activations.session import LoggingSession  # noqa: E402


@pytest.mark.parametrize(
    "height, width, count, grid",
    [
        (224, 224, 196, tokens.Grid(14, 14, 0, 16)),
        (224, 224, 197, tokens.Grid(14, 14, 1, 16)),
        (32, 64, 8, tokens.Grid(2, 4, 0, 16)),
        (32, 64, 33, tokens.Grid(4, 8, 1, 8)),
        (28, 28, 49, tokens.Grid(7, 7, 0, 4)),
        (224, 224, 195, None),  # no whole square patch
        (30, 32, 20, None),  # 30 / 6 is not 32 / 6
        (None, 224, 197, None),  # an image of any size
        (32, 32, 1, None),
    ],
)
def test_patch_grid(height, width, count, grid):
    assert tokens.patch_grid(height, width, count) == grid


def test_a_vits_tokens_are_drawn_on_the_patch_grid(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_vit()
    probe = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    session = LoggingSession(tmp_path, probe, ["patches", "tokens", "mha", "mlp"], verbose=0)
    session.bind(model)
    values = {v.info.layer: v for v in session.forward()}
    assert sorted(values) == sorted(
        [
            "patches",
            "tokens",
            "tokens/class_token",
            "mha",
            "mha/class_token",
            "mha/attention_scores",
            "mlp",
            "mlp/class_token",
        ]
    )
    patches, toks, mlp = sublayer_outputs(model, ["patches", "tokens", "mlp"], probe)
    # No class token: all 16 tokens are the 4 x 4 grid, row by row.
    v = values["patches"]
    np.testing.assert_array_equal(v.array, patches.reshape(2, 4, 4, 16))
    assert (v.info.layout, v.info.height, v.info.width, v.info.channels) == ("image", 4, 4, 16)
    assert (v.info.kind, v.info.prefix_tokens, v.info.source) == ("token_grid", 0, "patches")
    assert v.info.output_shape == (None, 16, 16)
    assert v.info.axes == tokens.AXES
    # With one: the first token apart, as one strip of its channels.
    for path, want in (("tokens", toks), ("mlp", mlp)):
        grid, first = values[path], values[f"{path}/class_token"]
        np.testing.assert_allclose(grid.array, want[:, 1:].reshape(2, 4, 4, 16), atol=1e-6)
        assert grid.info.prefix_tokens == 1
        np.testing.assert_allclose(first.array, want[:, 0], atol=1e-6)
        assert (first.info.layout, first.info.kind, first.info.source) == (
            "units",
            metadata.KIND_CLASS_TOKEN,
            path,
        )
    # Attention scores stay queries x keys, over every token.
    assert values["mha/attention_scores"].array.shape == (2, 2, 17, 17)


def test_the_grid_as_read_back(tmp_path):
    keras.utils.set_random_seed(1)
    model = tiny_vit()
    probe = np.random.default_rng(1).random((1, 32, 32, 3)).astype("float32")
    log_activations(model, probe, tmp_path, layers=["tokens"], verbose=0)
    log = read(tmp_path)
    assert log.layers("activations") == ["tokens", "tokens/class_token"]
    (toks,) = sublayer_outputs(model, ["tokens"], probe)
    want = toks[:, 1:].reshape(1, 4, 4, 16)
    got = log.activations("activations", "tokens", 0)
    span = want.max(axis=(1, 2)) - want.min(axis=(1, 2))
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= span[:, None, None, :] / 510 + 1e-6)
    first = log.activations("activations", "tokens/class_token", 0)
    np.testing.assert_allclose(first, toks[:, 0], atol=(np.ptp(toks[:, 0]) / 510 + 1e-6))


def test_a_sequence_model_without_an_image_input_is_left_alone(tmp_path):
    inputs = keras.Input((16, 4))
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(inputs))
    session = LoggingSession(tmp_path, np.ones((1, 16, 4), "float32"), ["dense"], verbose=0)
    session.bind(model)
    (value,) = session.forward()
    assert (value.info.layout, value.info.kind) == ("sequence", None)


def test_keras_hub_vit_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(2)
    vit = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )
    probe = np.random.default_rng(2).random((2, 32, 32, 3)).astype("float32")
    session = LoggingSession("unused", probe, ["vit_encoder"], verbose=0)
    session.bind(vit)
    values = {v.info.layer: v for v in session.forward()}
    (out,) = sublayer_outputs(vit, ["vit_encoder"], probe)
    np.testing.assert_allclose(
        values["vit_encoder"].array, out[:, 1:].reshape(2, 4, 4, 16), atol=1e-5
    )
    np.testing.assert_allclose(values["vit_encoder/class_token"].array, out[:, 0], atol=1e-5)
