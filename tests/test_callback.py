import inspect
import os
import re
import warnings

import keras
import numpy as np
import pytest
from matplotlib import cbook
from tensorboard.backend.event_processing import plugin_event_multiplexer

from tb_activations import ActivationLogger, encoding, log_activations, metadata
from tb_activations.options import OPTIONS, SessionOptions

from recorded import read_run, small_cnn, stripes

BATCH = 32


@pytest.fixture(scope="module")
def data():
    return stripes(n=96)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """A small CNN trained three epochs with the callback, and its log."""
    keras.utils.set_random_seed(1)
    x, y = data
    model = small_cnn()
    log_dir = tmp_path_factory.mktemp("trained")
    probe = x[:2]
    snapshots = {}

    class Snapshot(keras.callbacks.Callback):
        """Independent activations at each epoch end, from a separate model."""

        def on_train_begin(self, logs=None):
            self._take(0)

        def on_epoch_end(self, epoch, logs=None):
            self._take(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

        def _take(self, step):
            ref = keras.Model(self.model.input, self.model.get_layer("conv2").output)
            snapshots[step] = ref.predict_on_batch(probe)

    logger = ActivationLogger(log_dir, probe)
    board = keras.callbacks.TensorBoard(log_dir)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        # Validation data of its own keeps every sample in training: 3 batches an epoch.
        validation_data=(x[:BATCH], y[:BATCH]),
        callbacks=[Snapshot(), board, logger],
        verbose=0,
    )
    return model, log_dir, read_run(log_dir), snapshots, probe


def _scalar_steps(log_dir, run: str, tag: str) -> list[int]:
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(os.fspath(log_dir))
    mux.Reload()
    return [e.step for e in mux.Tensors(run, tag)]


def test_run_sits_beside_keras_tensorboard_runs(trained):
    _, log_dir, series, _, _ = trained
    assert sorted(os.listdir(log_dir)) == ["activations", "train", "validation"]
    # Keras plots validation against the optimizer's iterations: the frames
    # after each epoch sit at the same steps.
    per_epoch = 96 // BATCH
    evaluated = _scalar_steps(log_dir, "validation", "evaluation_loss_vs_iterations")
    assert evaluated == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert series["conv1"].step_numbers[1:] == evaluated
    assert _scalar_steps(log_dir, "train", "epoch_loss") == [0, 1, 2]


def test_tags_and_layer_infos(trained):
    _, _, series, _, _ = trained
    assert sorted(series) == sorted(["conv1", "conv2", "dense1", "logits", metadata.PROBE_TAG])
    conv2 = series["conv2"].info
    assert (conv2.layout, conv2.channels, conv2.probes, conv2.height, conv2.width) == (
        "image",
        16,
        2,
        11,
        11,
    )
    assert conv2.class_name == "Conv2D" and conv2.output_shape == (None, 11, 11, 16)
    dense = series["dense1"].info
    assert (dense.layout, dense.channels, dense.width, dense.height) == ("units", 1, 12, 1)
    by_position = sorted(
        (s.info.position, t) for t, s in series.items() if s.info.position is not None
    )
    assert [t for _, t in by_position] == ["conv1", "conv2", "dense1", "logits"]


def test_steps_are_iterations_starting_untrained(trained):
    _, _, series, _, _ = trained
    per_epoch = 96 // BATCH
    assert series["conv1"].step_numbers == [0, per_epoch, 2 * per_epoch, 3 * per_epoch]
    epochs = [s.header["epoch"] for s in series["conv1"].steps]
    assert epochs == [0.0, 1.0, 2.0, 3.0]
    assert [s.header["index"] for s in series["conv1"].steps] == [0, 1, 2, 3]
    # The probe as the model sees it is logged once.
    assert series[metadata.PROBE_TAG].step_numbers == [0]


def test_pngs_and_stats_match_independent_activations(trained):
    _, _, series, snapshots, _ = trained
    conv2 = series["conv2"]
    assert set(conv2.step_numbers) == set(snapshots)
    for step in conv2.steps:
        expected = snapshots[step.step]
        for p in range(2):
            for c in range(16):
                channel = expected[p, :, :, c]
                np.testing.assert_allclose(
                    step.stats[p, c, :4],
                    [channel.min(), channel.max(), channel.mean(), channel.std()],
                    rtol=1e-4,
                    atol=1e-5,
                )
                assert step.stats[p, c, 4] == pytest.approx(np.mean(channel == 0))
                lo, hi = channel.min(), channel.max()
                img = step.image(conv2.info, p, c).astype(np.float32)
                back = lo + img / 255 * (hi - lo)
                assert np.abs(back - channel).max() <= (hi - lo) / 255 * 0.51 + 1e-4


def test_features_change_over_training(trained):
    _, _, series, _, _ = trained
    first, last = series["conv1"].steps[0], series["conv1"].steps[-1]
    assert not np.allclose(first.stats[..., :6], last.stats[..., :6])


def test_repeated_fit_and_initial_epoch_keep_steps_increasing(tmp_path, data):
    x, y = data
    model = small_cnn()
    logger = ActivationLogger(tmp_path, x[:1], layers=["conv1"], verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[logger], verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=4, initial_epoch=2, callbacks=[logger], verbose=0)
    series = read_run(tmp_path)
    assert series["conv1"].step_numbers == [0, 3, 6, 9, 12]
    assert [s.header["epoch"] for s in series["conv1"].steps] == [0, 1, 2, 3, 4]
    assert [s.header["index"] for s in series["conv1"].steps] == [0, 1, 2, 3, 4]
    assert series[metadata.PROBE_TAG].step_numbers == [0]


def test_recompiled_model_does_not_step_backwards(tmp_path, data):
    x, y = data
    model = small_cnn()
    logger = ActivationLogger(tmp_path, x[:1], layers=["conv1"], verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[logger], verbose=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[logger], verbose=0)
    steps = read_run(tmp_path)["conv1"].step_numbers
    assert steps == sorted(set(steps)) and len(steps) == 4


@pytest.mark.parametrize(
    "kwargs, epochs, expected_steps, expected_epochs",
    [
        ({"freq": 2}, 5, [0, 6, 12, 15], [0, 2, 4, 5]),
        ({"batch_freq": 1}, 2, [0, 1, 2, 3, 6], [0, 1 / 3, 2 / 3, 1, 2]),
        ({"batch_freq": 1, "batch_epochs": 2}, 2, [0, 1, 2, 3, 4, 5, 6], None),
    ],
)
def test_frequencies(tmp_path, data, kwargs, epochs, expected_steps, expected_epochs):
    x, y = data
    model = small_cnn()
    logger = ActivationLogger(tmp_path, x[:1], layers=["conv1"], verbose=0, **kwargs)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=[logger], verbose=0)
    series = read_run(tmp_path)["conv1"]
    assert series.step_numbers == expected_steps
    if expected_epochs:
        got = [s.header["epoch"] for s in series.steps]
        np.testing.assert_allclose(got, expected_epochs)


def test_eager_only_model_with_html_layer_name(tmp_path):
    # TensorFlow refuses such names as graph name scopes, so this model
    # trains only eagerly; it must be logged all the same.
    name = "<img src=x onerror=alert(1)>"
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name=name)(inputs)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse", run_eagerly=True)
    xs = np.random.default_rng(0).normal(size=(8, 12, 12, 1)).astype(np.float32)
    logger = ActivationLogger(tmp_path, xs[:1], verbose=0)
    model.fit(xs, np.zeros((8, 2)), epochs=2, batch_size=4, callbacks=[logger], verbose=0)
    series = read_run(tmp_path)
    assert series[name].step_numbers == [0, 2, 4]
    assert series[name].info.layer == name


def test_eager_fallback_when_graph_tracing_fails(tmp_path):
    name = "conv<1>"
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name=name)(inputs))
    assert log_activations(model, np.ones((8, 8, 1)), tmp_path, verbose=0) == [name]
    assert read_run(tmp_path)[name].step_numbers == [0]


@pytest.mark.parametrize(
    "build, probe_shape, layer, layout, channels, size",
    [
        # Conv1D: each channel a 1 x T strip, the panel stacks them.
        (lambda i: keras.layers.Conv1D(5, 3, name="l")(i), (40, 2), "l", "sequence", 5, (1, 38)),
        # Dense: one 1 x units strip.
        (
            lambda i: keras.layers.Dense(7, name="l")(keras.layers.Flatten()(i)),
            (6, 6, 1),
            "l",
            "units",
            1,
            (1, 7),
        ),
        # 3-D convolution: averaged over depth.
        (lambda i: keras.layers.Conv3D(3, 3, name="l")(i), (5, 9, 9, 1), "l", "image", 3, (7, 7)),
        # A convolution of each frame: averaged over time.
        (
            lambda i: keras.layers.TimeDistributed(keras.layers.Conv2D(3, 3), name="l")(i),
            (4, 9, 9, 1),
            "l",
            "image",
            3,
            (7, 7),
        ),
        # channels_first (a pooling: TensorFlow runs no channels_first convolution on a CPU)
        (
            lambda i: keras.layers.AveragePooling2D(3, 1, data_format="channels_first", name="l")(
                i
            ),
            (2, 10, 10),
            "l",
            "image",
            2,
            (8, 8),
        ),
    ],
)
def test_output_ranks_and_layouts(tmp_path, build, probe_shape, layer, layout, channels, size):
    inputs = keras.Input(probe_shape)
    model = keras.Model(inputs, build(inputs))
    probe = np.random.default_rng(0).normal(size=probe_shape).astype(np.float32)
    log_activations(model, probe, tmp_path, layers=[layer], verbose=0)
    series = read_run(tmp_path)[layer]
    info = series.info
    assert (info.layout, info.channels, (info.height, info.width)) == (layout, channels, size)
    expected = keras.Model(inputs, model.get_layer(layer).output).predict_on_batch(probe[None])
    fmt = (
        "channels_first"
        if "channels_first" in str(model.get_layer(layer).get_config())
        else "channels_last"
    )
    np.testing.assert_allclose(
        series.steps[0].stats[..., : len(metadata.STATS_FIELDS)],
        encoding.compute_stats(encoding.to_nhwc(expected, fmt)),
        rtol=1e-4,
        atol=1e-5,
    )
    if layout == "image" and len(probe_shape) == 4:
        frames = isinstance(model.get_layer(layer), keras.layers.TimeDistributed)
        assert f"mean over {'time' if frames else 'depth'} (axis 1" in (info.reduction or "")


def test_nan_and_inf_are_logged_with_stats_saying_so(tmp_path):
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Lambda(lambda t: keras.ops.log(t), name="log")(inputs)
    model = keras.Model(inputs, x)
    probe = np.array([[0.0, -1.0, 1.0, 2.0]] * 4, np.float32)[..., None]
    log_activations(model, probe, tmp_path, layers=["log"], verbose=0)
    stats = read_run(tmp_path)["log"].steps[0].stats[0, 0]
    fields = dict(zip(metadata.STATS_FIELDS, stats))
    assert fields["nonfinite_fraction"] == pytest.approx(0.5)
    assert fields["min"] == pytest.approx(0.0) and fields["max"] == pytest.approx(np.log(2))


def test_training_goes_on_when_the_log_dir_cannot_be_written(tmp_path, data, caplog):
    x, y = data
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    model = small_cnn()
    logger = ActivationLogger(blocker, x[:1], layers=["conv1"], verbose=0)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[logger], verbose=0)
    assert len(history.history["loss"]) == 2
    assert "could not write activations" in caplog.text
    # Once the directory works, the kept steps are written, in order.
    os.remove(blocker)
    model.fit(x, y, batch_size=BATCH, epochs=3, initial_epoch=2, callbacks=[logger], verbose=0)
    assert read_run(blocker)["conv1"].step_numbers == [0, 3, 6, 9]


def test_caps_warn_once_and_bound_the_log(tmp_path):
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(20, 3, padding="same", name="wide")(inputs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_activations(
            model, np.ones((64, 64, 3)), tmp_path, max_channels=8, max_size=32, verbose=0
        )
    messages = [str(w.message) for w in caught if "ActivationLogger" in str(w.message)]
    assert len(messages) == 2
    assert any("20 channels; logging the first 8" in m for m in messages)
    assert any("downscaled by 2 to 32x32" in m for m in messages)
    info = read_run(tmp_path)["wide"].info
    assert (info.channels, info.total_channels, info.height, info.source_height) == (8, 20, 32, 64)


def test_seed_scenario_vgg16_and_a_photograph(tmp_path):
    """The classic snippet: block1_conv1..block5_conv1 of VGG16 on one photo."""
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    wanted = [f"block{i}_conv1" for i in range(1, 6)]
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    logged = log_activations(
        model,
        photo,
        tmp_path,
        layers=wanted,
        preprocess=keras.applications.vgg16.preprocess_input,
        verbose=0,
    )
    assert logged == wanted
    series = read_run(tmp_path)
    shapes = {t: (series[t].info.channels, series[t].info.height) for t in wanted}
    assert shapes == {
        "block1_conv1": (64, 224),
        "block2_conv1": (128, 112),
        "block3_conv1": (256, 56),
        "block4_conv1": (512, 28),
        "block5_conv1": (512, 14),
    }
    probe = series[metadata.PROBE_TAG]
    assert probe.info.layout == "probe" and probe.info.height == 224


def test_default_layers_say_once_what_they_picked(tmp_path, capsys):
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=3)
    log_activations(model, np.zeros((64, 64, 3)), tmp_path)
    out = capsys.readouterr().out
    assert out.count("ActivationLogger: logging 12 layers") == 1
    picked = re.search(r"logging 12 layers of 'resnet50': (.*) \(pass", out).group(1).split(", ")
    assert picked[0] == "conv1_conv" and picked[-1] == "predictions"
    assert not any("bn" in p for p in picked)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"freq": 0}, r"freq must be an integer >= 1. Received: freq=0"),
        ({"freq": 1.5}, r"Received: freq=1.5"),
        ({"batch_freq": -1}, r"Received: batch_freq=-1"),
        ({"max_channels": 0}, r"Received: max_channels=0"),
        ({"layers": 5}, r"Received: layers=5"),
        ({"preprocess": "vgg"}, r"preprocess must be callable. Received: preprocess='vgg'"),
        ({"probe": "/missing/cat.jpg"}, r"does not exist. Received: probe='/missing/cat.jpg'"),
        ({"probe": None}, r"probe=None"),
        ({"log_dir": ""}, r"Received: log_dir=''"),
        ({"chief": 0}, r"chief must be None, True or False. Received: chief=0"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    args = {"log_dir": "logs", "probe": np.zeros((28, 28, 1))} | kwargs
    with pytest.raises(ValueError, match=message):
        ActivationLogger(**args)


def test_log_activations_takes_the_callbacks_options_by_name(tmp_path):
    # The callback spells its options out; log_activations takes the same ones
    # as **options: the two lists must name the same options, with one default.
    callback = inspect.signature(ActivationLogger.__init__).parameters
    timing = {"self", "log_dir", "probe", "layers", "freq", "batch_freq", "batch_epochs"}
    assert {n: p.default for n, p in callback.items() if n not in timing} == OPTIONS
    assert set(SessionOptions.__annotations__) == set(OPTIONS)
    message = r"Unknown option max_chanels: the options are .*max_channels.*max_chanels=8"
    with pytest.raises(TypeError, match=message):
        log_activations(small_cnn(), np.zeros((28, 28, 1)), tmp_path, max_chanels=8)
    assert log_activations(small_cnn(), np.zeros((28, 28, 1)), tmp_path, verbose=0, max_layers=1)


def test_unknown_layer_fails_at_set_model():
    logger = ActivationLogger("logs", np.zeros((28, 28, 1)), layers=["conv_1"])
    with pytest.raises(ValueError, match=r"No layer named 'conv_1'.*conv1"):
        logger.set_model(small_cnn())


@pytest.mark.parametrize(
    "model, probe, message",
    [
        (lambda: small_cnn(), np.zeros((28, 28, 3)), "3 channels but the model takes 1"),
        (lambda: small_cnn(), np.zeros((28, 28, 1, 1, 1)), "does not fit"),
        (lambda: keras.Sequential([], name="empty"), np.zeros((2, 2)), "'empty' has no layers"),
    ],
)
def test_bad_model_or_probe_gives_clear_errors(tmp_path, model, probe, message):
    with pytest.raises(ValueError, match=message):
        log_activations(model(), probe, tmp_path, verbose=0)


def test_sequential_without_input_is_built_from_the_probe(tmp_path, data):
    x, y = data
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, name="c"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="d"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = ActivationLogger(tmp_path, x[:1], verbose=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[logger], verbose=0)
    assert read_run(tmp_path)["c"].step_numbers == [0, 3]


def test_several_probes_are_all_logged(tmp_path, data):
    x, _ = data
    log_activations(small_cnn(), x[:3], tmp_path, layers=["conv1"], verbose=0)
    series = read_run(tmp_path)
    info = series["conv1"].info
    assert (info.probes, info.channels, info.channels_per_image) == (3, 8, 8)
    # One PNG of 8 maps per probe, then the probe set's statistics and unit measures.
    assert len(series["conv1"].steps[0].blobs) == 2 + 3 + 2
    assert series["conv1"].steps[0].image(info, 2, 7).shape == (26, 26)
    assert series[metadata.PROBE_TAG].info.probes == 3


def test_repeated_fit_reuses_one_extraction_model(tmp_path, data):
    x, y = data
    model = small_cnn()
    logger = ActivationLogger(tmp_path, x[:1], layers=["conv1"], verbose=0)
    assert logger.session.layers == ()
    model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[logger], verbose=0)
    extractor = logger.session.extractor
    model.fit(x, y, batch_size=BATCH, epochs=3, initial_epoch=2, callbacks=[logger], verbose=0)
    assert logger.session.extractor is extractor
    assert logger.session.layers == ("conv1",) and logger.session.last_step == 9


def test_a_worker_trains_without_logging_unless_told_to(tmp_path, data, monkeypatch):
    x, y = data
    monkeypatch.setenv("RANK", "1")
    model = small_cnn()
    logger = ActivationLogger(tmp_path / "logs", x[:1], layers=["conv1"], verbose=0)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[logger], verbose=0)
    assert len(history.history["loss"]) == 2
    assert logger.session.process.source == "RANK=1" and not logger.session.process.chief
    # No forward pass: Keras makes the predict function at the first prediction.
    assert logger.session.extractor.predict_function is None
    assert not os.path.exists(tmp_path / "logs")
    assert log_activations(model, x[:1], tmp_path / "logs", verbose=0) == []
    assert not os.path.exists(tmp_path / "logs")
    logged = log_activations(model, x[:1], tmp_path / "logs", ["conv1"], verbose=0, chief=True)
    assert logged == ["conv1"] and read_run(tmp_path / "logs")["conv1"].step_numbers == [0]


def test_log_activations_pictures_the_first_probe_images(tmp_path, data):
    x, _ = data
    log_activations(small_cnn(), x[:5], tmp_path, layers=["conv1"], probe_images=2, verbose=0)
    series = read_run(tmp_path)
    info = series["conv1"].info
    assert (info.probes, info.samples) == (2, 5)
    assert len(series["conv1"].steps[0].blobs) == info.blob_count == 2 + 2 + 2
    assert series[metadata.PROBE_TAG].info.probes == 2
