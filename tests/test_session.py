import io
import json
import os
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

from tb_activations import metadata
from tb_activations.session import LoggingSession

from recorded import read_run, small_cnn, stripes


@pytest.fixture(scope="module")
def probe():
    x, _ = stripes(n=2)
    return x


class _Switch(keras.layers.Layer):
    """Passes its input through, or raises while `failing` is set."""

    failing = False

    def call(self, x):
        if self.failing:
            raise RuntimeError("switched off")
        return x


def _event_files(run_dir) -> list[str]:
    return sorted(f for f in os.listdir(run_dir) if f.startswith("events.out.tfevents"))


@pytest.mark.parametrize(
    "calls, returned, written",
    [
        # A step not above the last one logged is already logged.
        ([0, 3, 3, 2, 6], [True, True, False, False, True], [0, 3, 6]),
        # close() ends an event file, not the run: steps and index go on.
        ([0, "close", 3, "close", 6], [True, True, True], [0, 3, 6]),
        ([5, "close", 5, 4, 7], [True, False, False, True], [5, 7]),
    ],
)
def test_steps_increase_and_the_index_counts_them_across_files(
    tmp_path, probe, calls, returned, written
):
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], verbose=0)
    session.bind(small_cnn())
    got = []
    for call in calls:
        if call == "close":
            session.close()
        else:
            got.append(session.log(call))
    session.close()
    assert got == returned
    assert session.last_step == written[-1]
    series = read_run(tmp_path)
    assert series["conv1"].step_numbers == written
    assert [s.header["index"] for s in series["conv1"].steps] == list(range(len(written)))
    # The probe is logged once, with the first step.
    assert series[metadata.PROBE_TAG].step_numbers == written[:1]
    assert len(_event_files(session.run_dir)) == calls.count("close") + 1


def test_epoch_and_batch_are_stored_with_the_step(tmp_path, probe):
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], run_name="snapshots", verbose=0)
    session.bind(small_cnn())
    session.log(0, epoch=0.0)
    session.log(4, epoch=1.5, batch=1)
    session.close()
    assert session.run_dir == os.path.join(tmp_path, "snapshots")
    steps = read_run(tmp_path, run="snapshots")["conv1"].steps
    assert [(s.header["epoch"], s.header["batch"]) for s in steps] == [(0.0, None), (1.5, 1)]


def test_bound_model_layers_batch_and_forward(tmp_path, probe):
    model = small_cnn()
    preprocess = lambda x: x * 2  # noqa: E731
    session = LoggingSession(tmp_path, probe, ["conv2", "conv1"], preprocess=preprocess)
    assert (session.model, session.layers, session.last_step) == (None, (), None)
    session.bind(model)
    assert session.model is model and session.layers == ("conv1", "conv2")
    np.testing.assert_array_equal(session.batch, probe * 2)
    values = session.forward()
    expected = keras.Model(model.input, model.get_layer("conv2").output).predict_on_batch(probe * 2)
    assert [v.info.layer for v in values] == ["conv1", "conv2"]
    np.testing.assert_allclose(values[1].array, expected, rtol=1e-5, atol=1e-6)
    assert session.extractor.predict_on_batch(session.batch)[1].shape == expected.shape
    # Nothing is written until a step is logged.
    assert not os.path.exists(session.run_dir)


def test_binding_the_same_model_keeps_its_extraction_model(tmp_path, probe):
    model = small_cnn()
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], verbose=0)
    session.bind(model)
    extractor = session.extractor
    session.bind(model)
    assert session.extractor is extractor


def test_another_model_goes_on_in_the_same_run(tmp_path, probe):
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], verbose=0)
    session.bind(small_cnn("first"))
    session.log(0)
    session.bind(small_cnn("second"))
    assert session.last_step == 0 and session.log(0) is False
    session.log(3)
    session.close()
    series = read_run(tmp_path)
    assert series["conv1"].step_numbers == [0, 3]
    assert [s.header["index"] for s in series["conv1"].steps] == [0, 1]
    assert series[metadata.PROBE_TAG].step_numbers == [0]


def _references(series) -> list[tuple]:
    return [(s.header.get("prev_step"), s.header.get("start_step")) for s in series.steps]


def test_measures_compare_steps_across_files_and_restart_with_another_model(tmp_path, probe):
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], verbose=0)
    first = small_cnn("first")
    session.bind(first)
    session.log(0)
    session.close()  # as at the end of a fit
    layer = first.get_layer("conv1")
    layer.kernel.assign(layer.kernel * 2)
    session.log(3)
    session.close()
    session.bind(small_cnn("second"))
    session.log(6)
    session.log(9)
    session.close()
    conv1 = read_run(tmp_path)["conv1"]
    assert _references(conv1) == [(None, 0), (0, 0), (None, 6), (6, 6)]
    sq_diff_prev = metadata.LAYER_STATS_FIELDS.index("sq_diff_prev")
    # Doubling the kernel of a ReLU convolution with no bias moves it by exactly its norm.
    sq_norm = metadata.LAYER_STATS_FIELDS.index("sq_norm")
    at_3 = conv1.steps[1].stats
    np.testing.assert_allclose(at_3[..., sq_diff_prev], at_3[..., sq_norm] / 4, rtol=1e-4)
    assert np.isnan(conv1.steps[2].stats[..., sq_diff_prev]).all()


@pytest.mark.parametrize(
    "use", [lambda s: s.log(0), lambda s: s.forward(), lambda s: s.extractor, lambda s: s.batch]
)
def test_before_bind_a_session_says_what_is_missing(tmp_path, probe, use):
    session = LoggingSession(tmp_path, probe, verbose=0)
    with pytest.raises(RuntimeError, match=r"call bind\(model\) first"):
        use(session)


def test_a_failing_forward_raises_when_strict_else_warns_once_and_goes_on(tmp_path):
    inputs = keras.Input((6, 6, 1))
    switch = _Switch(name="switch")
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(switch(inputs)))
    session = LoggingSession(tmp_path, np.ones((6, 6, 1)), ["c"], verbose=0)
    session.bind(model)
    switch.failing = True
    with pytest.raises(RuntimeError, match="switched off"):
        session.log(1, strict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert session.log(2) is False
        assert session.log(3) is False
    messages = [str(w.message) for w in caught if "could not compute" in str(w.message)]
    assert len(messages) == 1
    assert messages[0].startswith("ActivationLogger: could not compute activations at step 2 ")
    assert "switched off" in messages[0] and messages[0].endswith("later steps are tried again.")
    switch.failing = False
    assert session.log(4) is True
    session.close()
    assert read_run(tmp_path)["c"].step_numbers == [4]


def test_events_a_failed_write_kept_are_written_by_the_next_file(tmp_path, probe, caplog):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    session = LoggingSession(blocker, probe[:1], ["conv1"], verbose=0)
    session.bind(small_cnn())
    assert session.log(0) and session.log(3)
    session.close()
    assert "could not write activations" in caplog.text
    os.remove(blocker)
    session.log(6)
    session.close()
    assert read_run(blocker)["conv1"].step_numbers == [0, 3, 6]


def test_check_layers_fails_before_binding(tmp_path, probe):
    session = LoggingSession(tmp_path, probe, ["conv_1"], verbose=0)
    with pytest.raises(ValueError, match=r"No layer named 'conv_1'.*conv1"):
        session.check_layers(small_cnn())
    assert session.model is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"log_dir": 3}, r"log_dir must be a directory path. Received: log_dir=3"),
        ({"run_name": ".."}, r"run_name must be a directory name. Received: run_name='..'"),
        ({"run_name": ""}, r"Received: run_name=''"),
        ({"max_layers": 0}, r"max_layers must be an integer >= 1. Received: max_layers=0"),
        ({"max_size": 0}, r"integer >= 1 or None. Received: max_size=0"),
        ({"max_channels": True}, r"Received: max_channels=True"),
        ({"layers": b"conv1"}, r"Received: layers=b'conv1'"),
        ({"preprocess": 1}, r"preprocess must be callable. Received: preprocess=1"),
        ({"probe": None}, r"A probe is required.*Received: probe=None"),
        ({"chief": 1}, r"chief must be None, True or False. Received: chief=1"),
        ({"chief": "chief"}, r"Received: chief='chief'"),
        ({"probe_images": 0}, r"probe_images must be an integer >= 1. Received: probe_images=0"),
        ({"probe_images": 2.0}, r"Received: probe_images=2.0"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    args = {"log_dir": "logs", "probe": np.zeros((28, 28, 1))} | kwargs
    with pytest.raises(ValueError, match=message):
        LoggingSession(**args)


def _channel_axis(info: metadata.LayerInfo) -> int:
    return 1 if info.data_format == "channels_first" else -1


def test_channels_first_metadata_reads_one_way_for_the_probe_and_the_layers(tmp_path):
    # A channels_first model run on a CPU: TensorFlow pools channels_first
    # there, but runs no channels_first convolution.
    inputs = keras.Input((3, 12, 10))
    x = keras.layers.Rescaling(0.5, name="scale")(inputs)
    x = keras.layers.AveragePooling2D(2, data_format="channels_first", name="pool")(x)
    model = keras.Model(inputs, x)
    image = np.random.default_rng(0).uniform(0, 255, (12, 10, 3)).astype(np.float32)
    session = LoggingSession(tmp_path, image, "all", verbose=0)
    session.bind(model)
    assert session.batch.shape == (1, 3, 12, 10)
    session.log(0)
    session.close()
    series = read_run(tmp_path)
    expected = {
        metadata.PROBE_TAG: ((None, 3, 12, 10), 3, (12, 10)),
        "scale": ((None, 3, 12, 10), 3, (12, 10)),
        "pool": ((None, 3, 6, 5), 3, (6, 5)),
    }
    for tag, (shape, channels, size) in expected.items():
        info = series[tag].info
        assert info.data_format == "channels_first", tag
        # One rule for every tag: the channel axis of `output_shape` is the
        # one `data_format` names, and the rest is height and width.
        assert info.output_shape == shape, tag
        assert info.output_shape[_channel_axis(info)] == info.total_channels == channels, tag
        assert (info.source_height, info.source_width) == size, tag
    # The probe's image is stored channels-last, as any image: height x width x RGB.
    probe = series[metadata.PROBE_TAG]
    png = np.asarray(Image.open(io.BytesIO(probe.steps[0].blobs[metadata.FIRST_IMAGE_INDEX])))
    assert png.shape == (12, 10, 3)
    scaled = (image - image.min()) / (image.max() - image.min()) * 255
    assert np.abs(png.astype(np.float32) - scaled).max() <= 0.51


_WORKER_1 = json.dumps(
    {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
)


@pytest.mark.parametrize(
    "env, chief, logs",
    [
        ({"RANK": "1"}, None, False),
        ({"TF_CONFIG": _WORKER_1}, None, False),
        ({}, False, False),
        # An explicit choice wins over what the launcher said.
        ({"RANK": "1"}, True, True),
        ({"RANK": "0"}, None, True),
        ({}, None, True),
    ],
)
def test_only_the_chief_runs_the_probe_and_writes(tmp_path, probe, monkeypatch, env, chief, logs):
    for name in ("RANK", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = LoggingSession(tmp_path / "logs", probe[:1], ["conv1"], verbose=0, chief=chief)
    session.bind(small_cnn())
    assert session.process.chief is logs
    assert [session.log(0), session.log(3)] == [logs, logs]
    session.flush()
    session.close()
    # Keras makes a model's predict function at its first prediction.
    assert (session.extractor.predict_function is not None) is logs
    assert os.path.exists(tmp_path / "logs") is logs
    if logs:
        assert read_run(tmp_path / "logs")["conv1"].step_numbers == [0, 3]


def test_a_process_that_does_not_log_says_why_once(tmp_path, probe, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    session = LoggingSession(tmp_path, probe[:1], verbose=1)
    session.bind(small_cnn())
    session.bind(small_cnn("another"))
    out = capsys.readouterr().out
    assert out.count("ActivationLogger:") == 1
    assert "not logging from this process (RANK=1); the chief logs." in out
    assert "chief=True and a run_name of its own" in out
    # The layers are picked all the same, so every process fails alike on a bad one.
    assert session.layers == ("conv1", "conv2", "dense1", "logits")


def test_the_role_is_kept_from_the_first_bind(tmp_path, probe, monkeypatch):
    session = LoggingSession(tmp_path, probe[:1], ["conv1"], verbose=0)
    session.bind(small_cnn())
    monkeypatch.setenv("RANK", "1")
    assert session.process.chief and session.log(0)
    session.close()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RANK", "first", r"RANK must be .*integer >= 0.* Received: RANK='first'"),
        ("TF_CONFIG", "{task: chief}", r"it is not JSON.* Received: TF_CONFIG='\{task: chief\}'"),
    ],
)
def test_unreadable_launcher_variables_fail_at_construction_unless_chief_is_given(
    monkeypatch, name, value, message
):
    monkeypatch.setenv(name, value)
    args = {"log_dir": "logs", "probe": np.zeros((28, 28, 1))}
    with pytest.raises(ValueError, match=message):
        LoggingSession(**args)
    for chief in (True, False):
        assert LoggingSession(**args, chief=chief).process.chief is chief


@pytest.mark.parametrize(
    ("samples", "probe_images", "pictured"),
    [(1, 8, 1), (8, 8, 8), (12, 8, 8), (12, 3, 3), (5, 1, 1)],
)
def test_the_first_probe_images_samples_are_pictured_and_all_are_measured(
    tmp_path, samples, probe_images, pictured
):
    x, _ = stripes(n=samples)
    session = LoggingSession(tmp_path, x, ["conv1", "dense1"], probe_images=probe_images, verbose=0)
    session.bind(small_cnn())
    session.log(0)
    session.close()
    run = read_run(tmp_path)
    for tag, series in run.items():
        info = series.info
        assert (info.probes, info.samples) == (pictured, samples), tag
        step = series.steps[0]
        assert step.stats.shape[0] == pictured
        assert len(step.blobs) == info.blob_count
    probe = run[metadata.PROBE_TAG].steps[0]
    for p in range(pictured):  # the first samples, in order
        image = np.asarray(Image.open(io.BytesIO(probe.blobs[metadata.FIRST_IMAGE_INDEX + p])))
        expected = x[p, ..., 0]
        span = expected.max() - expected.min()
        np.testing.assert_allclose(image / 255.0, (expected - expected.min()) / span, atol=0.01)


@pytest.mark.parametrize(
    "batch",
    [
        np.arange(10).reshape(5, 2),
        {"image": np.zeros((5, 3, 3)), "meta": np.arange(5)},
        [np.zeros((5, 2)), (np.ones((5, 1)),)],
    ],
    ids=["array", "dict", "nested list"],
)
def test_first_samples_of_a_batch_of_any_structure(batch):
    from tb_activations.session import first_samples

    got = first_samples(batch, 2)
    for leaf, whole in zip(keras.tree.flatten(got), keras.tree.flatten(batch)):
        np.testing.assert_array_equal(leaf, whole[:2])
    assert keras.tree.assert_same_structure(got, batch) is None
