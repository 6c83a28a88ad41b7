"""Probes that follow the model's inputs (tb_activations.inputs)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from matplotlib import cbook

from tb_activations import inputs, log_activations, metadata

from recorded import read_run


def two_tokens(as_dict: bool):
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    mask = keras.Input((6,), dtype="int32", name="mask")
    x = keras.layers.Embedding(10, 4, name="embed")(tokens)
    x = x * keras.ops.cast(mask, "float32")[..., None]
    out = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    return keras.Model({"tokens": tokens, "mask": mask} if as_dict else [tokens, mask], out)


def image_and_table():
    image = keras.Input((16, 16, 3), name="image")
    table = keras.Input((5,), name="table")
    x = keras.layers.Conv2D(4, 3, name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="join")([x, keras.layers.Dense(4, name="tab")(table)])
    return keras.Model([image, table], keras.layers.Dense(2, name="head")(x), name="mixed")


IDS = np.arange(6).reshape(1, 6)
EXPECTED = r"takes 2 inputs: tokens \(None, 6\) int32, mask \(None, 6\) int32"
# Keras orders a dict's inputs by key.
EXPECTED_DICT = r"takes 2 inputs: mask \(None, 6\) int32, tokens \(None, 6\) int32"


@pytest.mark.parametrize(
    "as_dict, probe, message",
    [
        (True, IDS, EXPECTED_DICT + r"; .*Received: probe=one array of shape \(1, 6\)"),
        (False, IDS, EXPECTED + r"; .*Received: probe=one array of shape \(1, 6\)"),
        (True, {"tokens": IDS}, r"Received: probe=a dict with keys \['tokens'\]"),
        (False, [IDS, IDS, IDS], r"Received: probe=a list of 3 arrays of shapes"),
        (True, {"tokens": IDS, "mask": IDS + 0.5}, r"input 'mask'.*fractions"),
        (True, {"tokens": IDS, "mask": np.ones((2, 6))}, r"same number of samples"),
        (True, {"tokens": IDS, "mask": np.ones((1, 7))}, r"input 'mask'.*does not fit"),
    ],
    ids=[
        "array for dict",
        "array for list",
        "missing key",
        "3 for 2",
        "fractions",
        "sizes",
        "shape",
    ],
)
def test_a_probe_that_does_not_match_names_every_input(as_dict, probe, message):
    with pytest.raises(ValueError, match=message):
        inputs.load(probe, two_tokens(as_dict))


@pytest.mark.parametrize("as_dict", [False, True], ids=["list model", "dict model"])
@pytest.mark.parametrize("as_list", [False, True], ids=["dict probe", "list probe"])
def test_integer_inputs_stay_integers_in_the_models_structure(as_dict, as_list):
    model = two_tokens(as_dict)
    # A list follows model.inputs, which Keras orders by key for a dict.
    in_order = [np.ones(6), IDS[0]] if as_dict else [IDS[0], np.ones(6)]
    probe = in_order if as_list else {"tokens": IDS[0], "mask": np.ones(6)}
    batch = inputs.load(probe, model)
    if as_dict:
        assert sorted(batch) == ["mask", "tokens"]
        parts = [batch["tokens"], batch["mask"]]
    else:
        parts = batch
    assert [p.dtype for p in parts] == [np.int32, np.int32]
    np.testing.assert_array_equal(parts[0], IDS)
    np.testing.assert_allclose(model.predict_on_batch(batch), model(batch))


def test_one_input_given_as_a_dict_or_an_array():
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    model = keras.Model(tokens, keras.layers.Embedding(10, 2)(tokens))
    for probe in (IDS, {"tokens": IDS}):
        batch = inputs.load(probe, model)
        assert batch.dtype == np.int32 and batch.shape == (1, 6)
    with pytest.raises(ValueError, match=r"takes one input: tokens \(None, 6\) int32"):
        inputs.load({"ids": IDS}, model)


def test_one_input_in_a_dict_model_is_given_as_that_dict(tmp_path):
    # keras-hub's image backbones are built on {"images": input}.
    image = keras.Input((8, 8, 3), name="images")
    out = keras.layers.Conv2D(2, 3, name="conv")(image)
    model = keras.Model({"images": image}, out)
    probe = np.arange(8 * 8 * 3, dtype=np.float32).reshape(1, 8, 8, 3) / 192
    for given in (probe, {"images": probe}):
        batch = inputs.load(given, model)
        assert list(batch) == ["images"]
        np.testing.assert_array_equal(batch["images"], probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_activations(model, probe, tmp_path, ["conv"], verbose=0)
    series = read_run(tmp_path)
    assert series[metadata.PROBE_TAG].info.input_name == "images"
    stats = series["conv"].steps[0].stats[0]  # (channels, fields) of the one probe
    want = np.asarray(model.predict_on_batch({"images": probe}))[0]
    np.testing.assert_allclose(stats[:, 1], want.max(axis=(0, 1)), rtol=1e-6)


def test_preprocess_gets_the_whole_structure_once():
    seen = []

    def preprocess(batch):
        seen.append(sorted(batch))
        return {**batch, "mask": batch["mask"] * 0}

    batch = inputs.load({"tokens": IDS, "mask": IDS}, two_tokens(True), preprocess=preprocess)
    assert seen == [["mask", "tokens"]]
    assert not batch["mask"].any()


def test_each_input_is_logged_in_a_form_that_suits_it(tmp_path):
    model = image_and_table()
    table = np.linspace(-1, 1, 5, dtype="float32")
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    logged = log_activations(model, [photo, table], tmp_path, ["conv", "tab"], verbose=0)
    assert logged == ["conv", "tab"]
    series = read_run(tmp_path)
    image = series[metadata.PROBE_TAG]
    assert (image.info.input_name, image.info.probe_kind) == ("image", "image")
    assert image.info.output_shape == (None, 16, 16, 3)
    assert image.steps[0].image(image.info, 0, 0).shape == (16, 16, 3)
    values = series[f"{metadata.PROBE_TAG}/table"]
    assert (values.info.probe_kind, values.info.layout, values.info.tokens) == (
        "values",
        "probe",
        None,
    )
    stats = values.steps[0].stats[0, 0]
    assert stats[:2].tolist() == [-1.0, 1.0]


@pytest.mark.parametrize(
    "probe_tokens, expected",
    [
        (None, (tuple(range(6)),)),
        (["a", "b", "c", "d", "e", "f"], (("a", "b", "c", "d", "e", "f"),)),
        ([["a", "b", "c", "d", "e", "f"]], (("a", "b", "c", "d", "e", "f"),)),
        (lambda i: f"<{i}>", (tuple(f"<{i}>" for i in range(6)),)),
    ],
    ids=["ids", "one row", "rows", "function"],
)
def test_tokens_are_ids_or_the_strings_given(probe_tokens, expected):
    assert inputs.tokens_for(IDS, probe_tokens) == expected


def test_tokens_that_do_not_fit_the_ids_are_refused():
    with pytest.raises(ValueError, match=r"one string per token ID: 1 rows of 6"):
        inputs.tokens_for(IDS, ["a", "b"])


@pytest.mark.parametrize(
    "probe_tokens", ["abc", [1, 2], [["a"], [2]], 3], ids=["str", "ints", "mixed", "int"]
)
def test_bad_probe_tokens_fail_at_construction(tmp_path, probe_tokens):
    from tb_activations import ActivationLogger

    with pytest.raises(ValueError, match="probe_tokens must be"):
        ActivationLogger(tmp_path, IDS, probe_tokens=probe_tokens)


def test_an_image_model_taking_uint8_pixels_gets_rounded_uint8_pixels():
    image = keras.Input((16, 16, 3), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1 / 255)(image)
    model = keras.Model(image, keras.layers.Conv2D(2, 3, name="conv")(x))
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    batch = inputs.load(photo, model)
    assert batch.dtype == np.uint8 and batch.shape == (1, 16, 16, 3)
    assert 0 < batch.max() <= 255
