import re

import keras
import numpy as np
import pytest

from tb_activations import layers

from recorded import small_cnn


class _Pair(keras.layers.Layer):
    def call(self, x):
        return x, x


class _Sub(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.conv = keras.layers.Conv2D(2, 3)

    def call(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


@pytest.fixture(scope="module")
def transfer():
    """The transfer-learning case: a keras.applications model as a layer."""
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    return keras.Model(inputs, outputs, name="transfer")


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, ["conv1", "conv2", "dense1", "logits"]),
        ("all", ["conv1", "pool1", "conv2", "gap", "dense1", "logits"]),
        (["conv2", "conv1"], ["conv1", "conv2"]),
        ("dense1", ["dense1"]),
        (re.compile(r"^conv"), ["conv1", "conv2"]),
    ],
)
def test_select(cnn, spec, expected):
    assert layers.select(cnn, spec, max_layers=12) == expected


def text_model(kind: str):
    tokens = keras.Input((10,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 6, name="embed")(tokens)
    if kind == "video":
        # Frames of 4 x 5 x 3: a convolution applied to each, then an LSTM.
        frames = keras.Input((10, 4, 5, 3), name="frames")
        x = keras.layers.TimeDistributed(keras.layers.Conv2D(2, 3), name="frame_conv")(frames)
        x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="pool")(x)
        x = keras.layers.LSTM(3, name="lstm")(x)
        return keras.Model(frames, keras.layers.Dense(2, name="head")(x))
    if kind == "own cell":
        x = keras.layers.RNN(keras.layers.GRUCell(4), return_sequences=True, name="rnn")(x)
        x = keras.layers.RNN([keras.layers.LSTMCell(3), keras.layers.LSTMCell(2)], name="stack")(x)
        return keras.Model(tokens, keras.layers.Dense(2, name="head")(x))
    if kind == "recurrent":
        x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")(x)
        x = keras.layers.GRU(3, name="gru")(x)
    else:
        x = keras.layers.Conv1D(5, 3, name="conv")(x)
        x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(tokens, keras.layers.Dense(2, name="head")(x))


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("recurrent", ["embed", "bi", "gru", "head"]),
        ("convolution", ["embed", "conv", "head"]),
        # keras.layers.RNN of a cell, or of stacked cells.
        ("own cell", ["embed", "rnn", "stack", "head"]),
        # A wrapper applying a picked layer to each frame stands for it.
        ("video", ["frame_conv", "lstm", "head"]),
    ],
)
def test_default_of_a_sequence_model_takes_its_embeddings_and_recurrent_layers(kind, expected):
    assert layers.select(text_model(kind), None, max_layers=12) == expected


class _ScaledConv(keras.layers.Conv2D):
    """A user's convolution: Keras's with its own `call`."""

    def call(self, x):
        return super().call(x) * 0.5


class _Tied(keras.layers.Embedding):
    """An embedding subclass, as keras-hub's `ReversibleEmbedding` is."""


class Dense(keras.layers.Layer):
    """A user's own layer that is named like Keras's: picked by its name."""

    def call(self, x):
        return x


class _Plain(keras.layers.Layer):
    def call(self, x):
        return x


def squeeze_excite(data_format="channels_last"):
    """A convolution, its squeeze-and-excitation gate (two convolutions of the
    pooled map, 1 x 1 in space), the gated map, and a classifier."""
    shape = (8, 8, 3) if data_format == "channels_last" else (3, 8, 8)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", data_format=data_format, name="conv")(inputs)
    g = keras.layers.GlobalAveragePooling2D(data_format=data_format, keepdims=True)(x)
    g = keras.layers.Conv2D(2, 1, data_format=data_format, name="se_reduce")(g)
    g = keras.layers.Conv2D(4, 1, activation="sigmoid", data_format=data_format, name="se_expand")(
        g
    )
    x = keras.layers.Multiply()([x, g])
    x = keras.layers.Conv2D(4, 3, data_format=data_format, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_default_leaves_out_squeeze_excite_gates_but_a_name_logs_them(data_format):
    model = squeeze_excite(data_format)
    assert layers.select(model, None, max_layers=12) == ["conv", "conv2", "head"]
    assert layers.select(model, ["se_reduce"], max_layers=12) == ["se_reduce"]


def test_default_takes_subclasses_of_kerass_layers():
    tokens = keras.Input((6,), dtype="int32")
    x = _Tied(10, 4, name="tied")(tokens)
    x = keras.layers.Reshape((6, 4, 1))(x)
    x = _ScaledConv(2, 3, padding="same", name="scaled")(x)
    x = _Plain(name="plain")(x)
    x = Dense(name="own")(x)
    model = keras.Model(tokens, x)
    assert layers.select(model, None, max_layers=12) == ["tied", "scaled", "own"]


class _Residual(keras.layers.Layer):
    """A block of the user's own: a graph sees its output, not its Dense."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(4)

    def call(self, x):
        return x + self.inner(x)


def test_default_takes_the_output_of_a_block_that_holds_layers_it_would_pick():
    inputs = keras.Input((4,))
    x = _Residual(name="block1")(inputs)
    x = _Plain(name="plain")(x)
    x = _Residual(name="block2")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    assert layers.select(model, None, max_layers=12) == ["block1", "block2", "head"]


def test_select_layer_objects(cnn):
    assert layers.select(cnn, [cnn.get_layer("pool1")], 12) == ["pool1"]


def test_default_is_bounded_and_spread_over_depth(transfer):
    picked = layers.select(transfer, None, max_layers=4)
    assert picked == ["vgg16/block1_conv1", "vgg16/block3_conv1", "vgg16/block4_conv3", "head"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        (["vgg16/block1_conv1", "head"], ["vgg16/block1_conv1", "head"]),
        (["block3_conv1"], ["vgg16/block3_conv1"]),  # a unique bare name finds the nested layer
        (["vgg16"], ["vgg16"]),
    ],
)
def test_nested_layers_by_path(transfer, spec, expected):
    assert layers.select(transfer, spec, 12) == expected


def test_extractor_reaches_nested_layers_from_the_outer_input(transfer):
    paths = ["rescale", "vgg16/block1_conv1", "vgg16/block2_conv1", "head"]
    ext = layers.extractor(transfer, paths)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    got = ext.predict_on_batch(x)
    base = transfer.get_layer("vgg16")
    scaled = x / 255.0
    b1 = keras.Model(base.input, base.get_layer("block1_conv1").output).predict_on_batch(scaled)
    b2 = keras.Model(base.input, base.get_layer("block2_conv1").output).predict_on_batch(scaled)
    np.testing.assert_allclose(got[0], scaled, rtol=1e-6)
    np.testing.assert_allclose(got[1], b1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[2], b2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[3], transfer.predict_on_batch(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "spec, message",
    [
        (["conv3"], r"No layer named 'conv3'.*Closest available layers: conv2, conv1"),
        (["dense"], r"No layer named 'dense'.*dense1"),
        (re.compile("nothing"), "No showable layer .* matches 'nothing'"),
        ([], "layers is empty"),
        ([3], "layer name or a layer object"),
        ([keras.layers.Dense(2, name="stranger")], "'stranger' is not part of model"),
    ],
)
def test_bad_layer_specs(cnn, spec, message):
    with pytest.raises(ValueError, match=message):
        layers.select(cnn, spec, 12)


def test_ambiguous_bare_name_lists_paths():
    a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")], name="a")
    b = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="fc")], name="b")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, b(a(inputs)))
    with pytest.raises(ValueError, match="ambiguous.*a/fc, b/fc"):
        layers.select(model, ["fc"], 12)


def _model_with(layer_outputs):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, layer_outputs(inputs))


@pytest.mark.parametrize(
    "build, name, reason",
    [
        (lambda i: _Pair(name="pair")(i), "pair", "several outputs"),
        (
            lambda i: keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=(1, 2, 3)), name="total")(
                i
            ),
            "total",
            "rank 1",
        ),
        (lambda i: keras.layers.Conv2D(2, 3, name="c")(i), "input_layer", "input layer"),
    ],
)
def test_layers_that_cannot_be_shown_say_why(build, name, reason):
    inputs = keras.Input((8, 8, 1), name="input_layer")
    model = keras.Model(inputs, build(inputs))
    with pytest.raises(ValueError, match=f"'{name}' cannot be shown: .*{reason}"):
        layers.select(model, [name], 12)


def test_layers_none_skips_what_cannot_be_shown():
    inputs = keras.Input((8, 8, 1))
    a, _ = _Pair(name="pair")(keras.layers.Conv2D(2, 3, name="c")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(a))
    assert layers.select(model, None, 12) == ["c", "d"]
    assert "pair" not in layers.select(model, "all", 12)


def test_a_subclassed_model_has_no_graph_to_select_from():
    model = _Sub()
    model(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="observing their calls.*Received: model=_Sub"):
        layers.select(model, None, 12)


def test_subclassed_model_inside_a_functional_one_is_logged_whole():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, _Sub()(inputs))
    assert layers.select(model, None, 12) == []
    assert layers.select(model, "all", 12) == ["sub"]


def _first_chain(shape, *made):
    inputs = keras.Input(shape, name="in")
    x = inputs
    for make in made:
        x = make()(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "model, input_format, formats",
    [
        # A layer without a format inherits the closest earlier one's...
        (
            lambda: _first_chain(
                (3, 8, 8),
                lambda: keras.layers.Conv2D(4, 3, data_format="channels_first", name="c"),
                lambda: keras.layers.ReLU(name="r"),
            ),
            "channels_first",
            {"c": "channels_first", "r": "channels_first"},
        ),
        # ...and one before them all is laid out like the input.
        (
            lambda: _first_chain(
                (3, 8, 8),
                lambda: keras.layers.Rescaling(0.5, name="s"),
                lambda: keras.layers.MaxPooling2D(data_format="channels_first", name="p"),
                lambda: keras.layers.MaxPooling2D(data_format="channels_last", name="q"),
                lambda: keras.layers.ReLU(name="r"),
            ),
            "channels_first",
            {
                "s": "channels_first",
                "p": "channels_first",
                "q": "channels_last",
                "r": "channels_last",
            },
        ),
        # No layer says: Keras's default.
        (
            lambda: _first_chain((8,), lambda: keras.layers.Dense(2, name="d")),
            keras.config.image_data_format(),
            {"d": keras.config.image_data_format()},
        ),
    ],
)
def test_data_formats_of_the_input_and_every_layer(model, input_format, formats):
    got_input, got = layers.data_formats(model())
    assert got_input == input_format
    assert {path: got[path] for path in formats} == formats


def test_taps_carry_the_output_shape_and_format():
    inputs = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="c")(inputs)
    model = keras.Model(inputs, keras.layers.ReLU(name="r")(x))
    taps = layers.taps(model, ["c", "r"])
    assert [t.data_format for t in taps] == ["channels_first", "channels_first"]
    assert taps[1].output_shape == (None, 4, 6, 6)


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_the_extractor_takes_every_input_in_the_models_structure(as_dict):
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    added = keras.layers.Add(name="add")([a, b])
    out = keras.layers.Dense(2, name="d")(added)
    model = keras.Model({"a": a, "b": b} if as_dict else [a, b], out)
    ext = layers.extractor(model, ["add", "d"])
    x = np.arange(8, dtype="float32").reshape(2, 4)
    batch = {"a": x, "b": 2 * x} if as_dict else [x, 2 * x]
    got_add, got_d = ext.predict_on_batch(batch)
    np.testing.assert_allclose(got_add, 3 * x)
    np.testing.assert_allclose(got_d, model.predict_on_batch(batch), rtol=1e-6)
