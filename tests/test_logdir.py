"""The reading API on real training logs: every value read back is within
(max - min) / 510 of what the model produced, in the layer's own shape."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import tb_activations
from tb_activations import ActivationLogger, encoding, log_activations, measures, metadata, summary

import recorded

LAYERS = ("conv", "pool_cf", "seq", "vol", "units")
PROBES = 3
EPOCHS = 2


def layouts_model():
    """One model with every layout: an image (channels_last and _first), a
    sequence, a depth-averaged volume and Dense units, all feeding the
    output so that every branch trains."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 2))
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)  # (10, 10, 4)
    first = keras.layers.Permute((3, 1, 2))(conv)
    pool = keras.layers.AveragePooling2D(2, data_format="channels_first", name="pool_cf")(first)
    seq = keras.layers.Conv1D(3, 3, name="seq")(keras.layers.Reshape((100, 4))(conv))
    vol = keras.layers.Conv3D(2, 3, name="vol")(keras.layers.Reshape((10, 10, 4, 1))(conv))
    dense = keras.layers.Dense(6, activation="relu", name="units")(keras.layers.Flatten()(conv))
    flat = [keras.layers.Flatten()(t) for t in (pool, seq, vol)]
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Concatenate()([*flat, dense]))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """A real training run of `layouts_model`, with the sub-models' outputs
    on the probe recorded at every state the logger logs."""
    root = tmp_path_factory.mktemp("layouts")
    model = layouts_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 12, 2)).astype(np.float32)
    y = rng.integers(0, 2, 64).astype("int32")
    probe = x[:PROBES]
    extractor = keras.Model(model.inputs, [model.get_layer(n).output for n in LAYERS])
    truth: dict[int, dict[str, np.ndarray]] = {}

    def record():
        step = int(model.optimizer.iterations.numpy())
        outs = extractor.predict_on_batch(probe)
        truth[step] = {n: np.asarray(o, np.float32) for n, o in zip(LAYERS, outs)}

    model.fit(
        x,
        y,
        batch_size=16,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[
            ActivationLogger(root / "run", probe, list(LAYERS), verbose=0),
            keras.callbacks.LambdaCallback(
                on_train_begin=lambda logs: record(), on_epoch_end=lambda e, logs: record()
            ),
        ],
    )
    return root, truth


def assert_round_trip(got: np.ndarray, expected: np.ndarray, channel_axis: int) -> None:
    """Within (max - min) / 510 per (probe, channel), max and min over that
    channel's values in that probe."""
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    axes = tuple(a for a in range(1, expected.ndim) if a != channel_axis % expected.ndim)
    span = expected.max(axis=axes, keepdims=True) - expected.min(axis=axes, keepdims=True)
    bound = span / 510 + 1e-6 * (np.abs(expected).max() + 1)
    assert (np.abs(got - expected) <= bound).all(), np.abs(got - expected).max()


# layer -> how its Keras output becomes what is logged, and its channel axis
EXPECTED = {
    "conv": (lambda a: a, -1),
    "pool_cf": (lambda a: a, 1),
    "seq": (lambda a: a, -1),
    "vol": (lambda a: a.mean(axis=1), -1),  # depth averaged, depth axis gone
    "units": (lambda a: a, None),  # all units one channel
}


@pytest.mark.parametrize("layer", LAYERS)
def test_every_value_of_every_layout_round_trips(layouts, layer):
    root, truth = layouts
    reader = tb_activations.read(root)
    assert reader.steps("run/activations", layer) == sorted(truth)
    to_logged, channel_axis = EXPECTED[layer]
    for step, outputs in truth.items():
        got = reader.activations("run/activations", layer, step)
        expected = to_logged(outputs[layer])
        if channel_axis is None:  # the units of a probe form one channel
            assert_round_trip(got[..., None], expected[..., None], -1)
        else:
            assert_round_trip(got, expected, channel_axis)
    assert got.shape[0] == PROBES


def test_runs_and_layers_in_model_order(layouts, ground_truth):
    root, _ = layouts
    assert tb_activations.read(root).runs() == ["run/activations"]
    assert tb_activations.read(root).layers("run/activations") == list(LAYERS)
    reader = tb_activations.read(ground_truth.log_dir)
    assert reader.runs() == ["activations"]  # Keras's train/validation runs have no layers
    assert reader.layers("activations") == list(recorded.GROUND_TRUTH_LAYERS)


def test_caps_are_the_only_change(tmp_path):
    inputs = keras.Input((20, 20, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same", name="c")(inputs))
    probe = np.random.default_rng(3).normal(size=(2, 20, 20, 1)).astype(np.float32)
    log_activations(model, probe, tmp_path, ["c"], max_channels=3, max_size=10, verbose=0)
    got = tb_activations.read(tmp_path).activations("activations", "c", 0)
    assert got.shape == (2, 10, 10, 3)  # 20 x 20 box-downscaled by 2, first 3 channels
    full = model.predict_on_batch(probe)[..., :3]
    boxes = full.reshape(2, 10, 2, 10, 2, 3).mean(axis=(2, 4))
    # The box mean of levels each within half a level, rounded: one level.
    span = full.max(axis=(1, 2), keepdims=True) - full.min(axis=(1, 2), keepdims=True)
    assert (np.abs(got - boxes) <= span / 255 + 1e-5).all()


def test_stats_overview_and_timeline_match_the_measures(ground_truth):
    reader = tb_activations.read(ground_truth.log_dir)
    stats = reader.stats("activations", "conv2")
    assert stats.steps == ground_truth.steps
    assert stats.fields == list(metadata.LAYER_STATS_FIELDS)
    assert stats.values.shape == (len(ground_truth.steps), 2, 16, len(stats.fields))
    assert stats.epochs == [float(e) for e in range(ground_truth.epochs + 1)]
    for i, a in enumerate(ground_truth.activations["conv2"]):
        np.testing.assert_allclose(stats["mean"][i], a.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
        dead = (a == 0).all(axis=(0, 1, 2))
        timeline = reader.timeline("activations", "conv2")
        np.testing.assert_array_equal(timeline.values["dead"][:, i] == 1.0, dead)
    assert set(recorded.DEAD_FROM_START) <= set(timeline.never_active)
    died = {e["channel"] for e in timeline.events if e["kind"] == "died"}
    assert set(recorded.KILLED) <= died
    overview = reader.overview("activations")
    assert overview.layers == list(recorded.GROUND_TRUTH_LAYERS)
    assert overview.values["change_start"].shape == (3, len(ground_truth.steps))
    # conv1 is frozen: it never changes; its change since start is 0.
    np.testing.assert_allclose(overview.values["change_start"][0], 0.0, atol=1e-6)
    first, last = ground_truth.activations["conv2"][0], ground_truth.activations["conv2"][-1]
    expected = np.linalg.norm(last - first) / max(np.linalg.norm(last), np.linalg.norm(first))
    assert overview.values["change_start"][1, -1] == pytest.approx(expected, rel=1e-3)
    # One logger, every step kept: every measure of every layer has its references.
    assert overview.unavailable == {}
    assert timeline.unavailable == {}


def write_v1_log(run_dir, info: metadata.LayerInfo, arrays: list[np.ndarray]) -> None:
    """A log as written before the measures: the six statistics of format 1
    and a header of epoch, batch and index."""
    fields = metadata.STATS_FIELDS
    writer = EventFileWriter(str(run_dir))
    for step, x in enumerate(arrays):
        stats, pngs = encoding.encode_layer(x)
        header = json.dumps({"epoch": float(step), "batch": None, "index": step}).encode()
        blobs = [header, metadata.encode_stats(stats[..., : len(fields)]), *pngs]
        event = summary.make_event(
            dataclasses.replace(info, stats_fields=fields), step * 4, 100.0 + step, blobs
        )
        writer.add_event(event)
    writer.close()


def test_older_logs_read_and_say_why_measures_are_missing(tmp_path):
    rng = np.random.default_rng(5)
    arrays = [np.maximum(rng.normal(size=(2, 6, 5, 3)), 0).astype(np.float32) for _ in range(3)]
    write_v1_log(tmp_path / "old", recorded.layer_info("conv", 3, probes=2), arrays)
    reader = tb_activations.read(tmp_path)
    assert reader.steps("old", "conv") == [0, 4, 8]
    for i, x in enumerate(arrays):
        assert_round_trip(reader.activations("old", "conv", 4 * i), x, -1)
    assert reader.stats("old", "conv").fields == list(metadata.STATS_FIELDS)
    timeline = reader.timeline("old", "conv")
    assert timeline.unavailable["change_start"] == measures.NO_MEASURES
    assert np.isnan(timeline.values["change_start"]).all()
    np.testing.assert_allclose(
        timeline.values["mean"], np.stack([x.mean(axis=(0, 1, 2)) for x in arrays], 1), rtol=1e-5
    )
    overview = reader.overview("old")
    assert overview.unavailable["drift_prev"] == {"conv": measures.NO_MEASURES}
    assert not np.isnan(overview.values["dead_fraction"]).any()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.layers("nope"), "No activations logged for run 'nope'.*Runs: 'activations'"),
        (lambda r: r.steps("activations", "conv9"), "no logged layer 'conv9'.*'conv1', 'conv2'"),
        (lambda r: r.activations("activations", "conv1", 1), "no step 1.*Steps: 0, 3, 6"),
        (lambda r: r.stats("activations", "conv1")["median"], "No statistic 'median'"),
        (
            lambda r: r.export("activations", "conv2", channel=99),
            "Channel 99 is out of range.*16 logged",
        ),
        (lambda r: r.timeline("activations", "__probe__"), "no logged layer '__probe__'"),
    ],
)
def test_unknown_names_are_key_errors_listing_what_exists(ground_truth, call, message):
    with pytest.raises(KeyError, match=message):
        call(tb_activations.read(ground_truth.log_dir))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "Pass channel= .* or step="),
        ({"channel": 0, "step": 0}, "not both"),
        ({"channel": 0, "format": "png"}, "Unknown format 'png'; expected one of gif, apng"),
        ({"step": 0, "colormap": "jet"}, "Unknown colormap 'jet'.*viridis"),
        ({"channel": 0, "normalization": "global"}, "Unknown normalization 'global'"),
    ],
)
def test_bad_export_options_are_value_errors(ground_truth, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tb_activations.read(ground_truth.log_dir).export("activations", "conv2", **kwargs)


def test_missing_directory():
    with pytest.raises(FileNotFoundError, match="No log directory '/nonexistent/logs'"):
        tb_activations.read("/nonexistent/logs")


def test_reload_sees_new_steps(tmp_path):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(inputs))
    probe = np.ones((8, 8, 1), np.float32)
    log_activations(model, probe, tmp_path, ["c"], step=0, verbose=0)
    reader = tb_activations.read(tmp_path)
    log_activations(model, probe, tmp_path, ["c"], step=5, verbose=0)
    assert reader.steps("activations", "c") == [0]
    assert reader.reload().steps("activations", "c") == [0, 5]
