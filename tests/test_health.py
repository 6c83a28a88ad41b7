"""The probe set's health measures (tb_activations/health.py), against
docs/measures.md's definitions written out in float64 numpy
(`recorded.ref_health`) on full-precision activations recorded in the same
run.

The training is built so that the truth is known: `conv` has a channel dead
from the start and one alive but tiny (dormant, not dead); `tanh` is driven
into saturation at the end of epoch SATURATE_EPOCH; `blowup` becomes
non-finite at the end of epoch BLOWUP_EPOCH (and the NaN loss then spreads
to every trained layer at the next update).
"""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from tb_activations import health, metadata

import recorded
from support import fetch, running_tensorboard, wait_until

RUN = "activations"
LAYERS = ("conv", "tanh", "blowup")
ACTIVATIONS = {"conv": None, "tanh": "tanh", "blowup": None}
DEAD, DORMANT = 0, 1
SATURATE_EPOCH, BLOWUP_EPOCH = 1, 2
EPOCHS, SAMPLES, PICTURED = 4, 24, 3
TOLERANCE = 0.02


def health_model():
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv", trainable=False)
    x = conv(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, activation="tanh", name="tanh")(x)
    x = keras.layers.Dense(4, name="blowup")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs)
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    bias[DEAD] = -1e4  # below anything the inputs reach: dead from the start
    kernel[..., DORMANT] *= 1e-4  # alive, tiny: dormant
    bias[DORMANT] = 1e-4
    conv.kernel.assign(kernel)
    conv.bias.assign(bias)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def health_data():
    """The inputs and labels every health training runs on; the probe is x[:SAMPLES]."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 6, 6, 2)).astype(np.float32)
    return x, rng.integers(0, 3, 48)


def fit_health(model, x, y, log_dir, *after):
    """Trains `health_model` for EPOCHS, breaking `tanh` and `blowup` on schedule, with
    an ActivationLogger on LAYERS; `after` are callbacks called after the logger."""
    import keras

    from tb_activations import ActivationLogger

    def break_things(epoch):
        if epoch == SATURATE_EPOCH:
            layer = model.get_layer("tanh")
            layer.kernel.assign(layer.kernel.numpy() * 300.0)
        if epoch == BLOWUP_EPOCH:
            layer = model.get_layer("blowup")
            kernel = layer.kernel.numpy()
            kernel[0, 0] = np.inf
            layer.kernel.assign(kernel)

    model.fit(
        x,
        y,
        batch_size=16,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[
            # Before the logger sees the end of the epoch, so that the state
            # after it is the first logged with the change.
            keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: break_things(e)),
            ActivationLogger(log_dir, x[:SAMPLES], list(LAYERS), probe_images=PICTURED, verbose=0),
            *after,
        ],
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import keras

    log_dir = tmp_path_factory.mktemp("health")
    model = health_model()
    x, y = health_data()
    probe = x[:SAMPLES]
    extractor = keras.Model(model.inputs, [model.get_layer(n).output for n in LAYERS])
    steps: list[int] = []
    recorded_maps: dict[str, list[np.ndarray]] = {n: [] for n in LAYERS}

    def record():
        for name, out in zip(LAYERS, extractor.predict_on_batch(probe)):
            recorded_maps[name].append(np.asarray(out, np.float32))
        steps.append(int(model.optimizer.iterations.numpy()))

    fit_health(
        model,
        x,
        y,
        log_dir,
        keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: record(), on_epoch_end=lambda e, logs: record()
        ),
    )
    truth = {
        name: [recorded.ref_health(a, ACTIVATIONS[name]) for a in maps]
        for name, maps in recorded_maps.items()
    }
    return log_dir, steps, recorded_maps, truth


def first_nonfinite(maps, steps):
    for a, step in zip(maps, steps):
        if not np.isfinite(a).all():
            return step
    return None


def close(got, expected, measure):
    """Within the tolerance of the definition: relative for effective rank,
    rms and the dormant score (a ratio), absolute for shares and similarity;
    null exactly where the definition is."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=measure)
    relative = measure in ("effective_rank", "rms", "dormant_score")
    np.testing.assert_allclose(
        got,
        expected,
        rtol=TOLERANCE if relative else 0,
        atol=1e-6 if relative else TOLERANCE,
        equal_nan=True,
        err_msg=measure,
    )


# -- the construction itself ---------------------------------------------------------


def test_the_training_breaks_what_it_says_at_the_known_steps(trained):
    _, steps, maps, truth = trained
    steps_per_epoch = 3
    conv = [recorded.unit_matrix(a) for a in maps["conv"]]
    assert all((m[:, DEAD] == 0).all() for m in conv)
    assert all((m[:, DORMANT] != 0).any() for m in conv)
    scores = np.array([t["dormant_score"] for t in truth["conv"]])
    assert (scores[:, DORMANT] <= health.DEFAULT_TAU).all() and (scores[:, DORMANT] > 0).all()
    saturation = [t["saturation"] for t in truth["tanh"]]
    after = steps.index((SATURATE_EPOCH + 1) * steps_per_epoch)
    assert max(saturation[:after]) < 0.5 < 0.9 < saturation[after]
    assert first_nonfinite(maps["blowup"], steps) == (BLOWUP_EPOCH + 1) * steps_per_epoch
    assert first_nonfinite(maps["conv"], steps) is None


# -- the writer and the reader ----------------------------------------------------


def test_the_first_probe_images_are_pictured_and_the_whole_set_is_measured(trained):
    log_dir, steps, maps, _ = trained
    series = recorded.read_run(log_dir)
    info = series["conv"].info
    assert (info.probes, info.samples, info.units) == (PICTURED, SAMPLES, 4)
    assert series["tanh"].info.activation == "tanh"
    assert series["blowup"].info.activation is None
    assert series[metadata.PROBE_TAG].info.probes == PICTURED
    for step, a in zip(series["conv"].steps, maps["conv"]):
        assert step.stats.shape[0] == PICTURED
        assert len(step.blobs) == info.blob_count
        table = metadata.decode_table(step.blobs[info.set_index], len(info.set_fields))
        m = recorded.unit_matrix(a)
        zero = dict(zip(info.set_fields, table.T))["zero_fraction"]
        np.testing.assert_allclose(zero, (m == 0).mean(axis=0), atol=1e-6)


def test_read_overview_matches_numpy_on_the_full_precision_activations(trained):
    from tb_activations import read

    log_dir, steps, maps, truth = trained
    overview = read(log_dir).overview(RUN)
    assert overview.steps == steps and overview.layers == list(LAYERS)
    for i, layer in enumerate(LAYERS):
        for measure in health.LAYER_MEASURES:
            expected = [t[measure] for t in truth[layer]]
            close(overview.values[measure][i], expected, f"{layer} {measure}")
        assert overview.effective_rank_max[layer] == min(SAMPLES - 1, maps[layer][0].shape[-1])
    expected = {n: first_nonfinite(maps[n], steps) for n in LAYERS}
    assert overview.first_nonfinite == {n: s for n, s in expected.items() if s is not None}
    assert "tanh" in overview.first_nonfinite  # the NaN loss spreads at the next update
    broke = overview.first_nonfinite["blowup"]
    why = overview.unavailable["rms"]["blowup"]
    assert why.startswith(f"non-finite values (NaN or infinity) in the layer at steps {broke}")
    assert "conv" not in overview.unavailable.get("rms", {})


@pytest.mark.parametrize("tau", [0.0, 0.025, 0.5])
def test_dormant_fraction_takes_another_tau_from_the_same_scores(trained, tau):
    from tb_activations import read

    log_dir, _, maps, _ = trained
    overview = read(log_dir).overview(RUN, tau=tau)
    expected = [recorded.ref_health(a, tau=tau)["dormant_fraction"] for a in maps["conv"]]
    close(overview.values["dormant_fraction"][0], expected, "dormant_fraction")


@pytest.mark.parametrize("tau", [-0.1, "0.1", True, float("nan")])
def test_a_bad_tau_is_refused(trained, tau):
    from tb_activations import read

    with pytest.raises(ValueError, match=r"tau must be a number >= 0. Received: tau="):
        read(trained[0]).overview(RUN, tau=tau)


@pytest.mark.parametrize("layer", LAYERS)
def test_read_timeline_has_each_units_on_rate_and_dormant_score(trained, layer):
    from tb_activations import read

    log_dir, steps, maps, truth = trained
    timeline = read(log_dir).timeline(RUN, layer)
    assert timeline.units == maps[layer][0].shape[-1]
    for measure in health.UNIT_MEASURES:
        expected = np.array([t[measure] for t in truth[layer]]).T
        close(timeline.values[measure], expected, f"{layer} {measure}")
    if layer == "conv":
        assert DEAD in timeline.never_active and DORMANT not in timeline.never_active
        assert timeline.unavailable == {}
    else:
        assert timeline.unavailable["on_rate"].startswith("non-finite values")


# -- both of TensorBoard's loaders --------------------------------------------------


def b64_rows(text: str, rows: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").astype(np.float64).reshape(rows, -1)


@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
def test_both_loaders_serve_the_measures(trained, load_fast):
    from tb_activations import read

    log_dir, steps, _, _ = trained
    want = read(log_dir).overview(RUN)
    with running_tensorboard(log_dir, load_fast=load_fast) as base:
        api = base + "data/plugin/activations/"

        def overview():
            r = fetch(api + f"overview?run={RUN}")
            return r.json() if r.status == 200 and r.json()["steps"] == steps else None

        body = wait_until(overview, 60, "the overview of every step")
        assert body["first_nonfinite"] == want.first_nonfinite
        for measure in health.LAYER_MEASURES:
            got = np.array(body["rows"][measure], dtype=np.float64)
            np.testing.assert_allclose(got, want.values[measure], rtol=1e-6, equal_nan=True)
        timeline = fetch(api + f"timeline?run={RUN}&tag=conv").json()
        score = b64_rows(timeline["rows"]["dormant_score"], timeline["units"])
        expected = read(log_dir).timeline(RUN, "conv").values["dormant_score"]
        np.testing.assert_allclose(score, expected, rtol=1e-6, equal_nan=True)


# -- the command line --------------------------------------------------------------


def report(log_dir, *args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "tb_activations.cli", "report", os.fspath(log_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_fails_on_a_non_finite_layer_naming_it_and_its_first_step(trained):
    log_dir, steps, maps, _ = trained
    r = report(log_dir)
    assert r.returncode == 0, r.stderr
    r = report(log_dir, "--fail-nonfinite")
    assert r.returncode == 1, r.stderr
    assert "FAILED: a NaN or an infinity in:" in r.stdout
    broke = first_nonfinite(maps["blowup"], steps)
    assert f"{RUN}  blowup: first at step {broke}" in r.stdout
    assert f"{RUN}  conv:" not in r.stdout


@pytest.mark.parametrize(("limit", "code"), [(0.4, 1), (0.5, 0)])
def test_report_fails_above_a_dormant_fraction_naming_the_layers(trained, limit, code):
    log_dir, _, _, truth = trained
    # conv: the dead and the tiny channel of 4 are dormant at every step; the
    # other layers are non-finite at the last step, so have no fraction.
    assert truth["conv"][-1]["dormant_fraction"] == 0.5
    r = report(log_dir, "--fail-dormant-above", str(limit), "--tau", "0.025")
    assert r.returncode == code, r.stdout + r.stderr
    if code:
        assert f"FAILED: dormant fraction at the last step above {limit:g} in:" in r.stdout
        assert f"{RUN}  conv: 50.0%" in r.stdout
    else:
        assert f"OK: no layer with dormant fraction at the last step above {limit:g}." in r.stdout


# -- the writer's computation, case by case -------------------------------------------


def _case(shape, seed=0, scale=1.0, fn=None):
    a = np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)
    return fn(a) if fn else a


def _with_nan(a):
    a[0, 0] = np.nan
    return a


def _with_dead(a):
    a = np.maximum(a, 0)
    a[..., 0] = 0
    return a


def _half_relu(a):
    a[:32] = np.maximum(a[:32], 0)
    return a


CASES = [
    # (raw channels-last output, activation)
    pytest.param(_case((2, 3, 3, 2)), None, id="fewer rows than a folded row"),
    pytest.param(_case((64, 9, 7, 5), fn=_with_dead), None, id="image with a dead channel"),
    pytest.param(
        _case((64, 9, 7, 5), fn=_half_relu), None, id="non-negative samples, then signed ones"
    ),
    pytest.param(_case((300, 40), seed=1), None, id="units: a Dense layer"),
    pytest.param(_case((5, 11, 3), seed=2), None, id="sequence"),
    pytest.param(np.tanh(_case((32, 4, 4, 3), scale=4.0)), "tanh", id="tanh"),
    pytest.param(1 / (1 + np.exp(-_case((32, 6), scale=6.0))), "sigmoid", id="sigmoid"),
    pytest.param(np.zeros((4, 2, 2, 3), np.float32), None, id="all zero"),
    pytest.param(_case((1, 5, 5, 4)), None, id="one sample"),
    pytest.param(_case((6, 3, 3, 2), fn=_with_nan), None, id="a NaN"),
    pytest.param(np.full((3, 2, 2, 2), 1e30, np.float32), None, id="squares beyond float32"),
]


def _layout(a):
    from tb_activations import encoding

    return encoding.layout_of(a.ndim), encoding.to_nhwc(a)


@pytest.mark.parametrize(("raw", "activation"), CASES)
def test_measure_matches_the_definitions(raw, activation):
    layout, nhwc = _layout(raw)
    set_base, units, header = health.measure(nhwc, layout, activation)
    ref = recorded.ref_health(raw, activation)
    m = recorded.unit_matrix(raw)
    fields = dict(zip(metadata.UNIT_FIELDS, units.T))
    assert header["nonfinite"] is (not np.isfinite(m).all())
    close(fields["on_rate"], ref["on_rate"], "on_rate")
    # The score is the reader's: each unit's mean |a| over the layer's mean.
    with np.errstate(invalid="ignore", divide="ignore"):
        score = fields["abs_mean"] / fields["abs_mean"].mean()
    score = np.where(fields["abs_mean"].mean() > 0, score, np.nan)
    close(score, ref["dormant_score"], "dormant_score")
    for key in ("effective_rank", "similarity", "rms", "saturation"):
        got = header[key] if header[key] is not None else np.nan
        close([got], [ref[key]], key)
    finite = np.where(np.isfinite(m), m, np.nan)
    if layout != "units":
        with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            np.testing.assert_allclose(set_base[:, 0], np.nanmean(finite, axis=0), rtol=1e-5)
            np.testing.assert_allclose(set_base[:, 1], np.nanmax(finite, axis=0), rtol=1e-6)
        np.testing.assert_allclose(set_base[:, 2], (m == 0).mean(axis=0), atol=1e-7)
        np.testing.assert_allclose(set_base[:, 3], (~np.isfinite(m)).mean(axis=0), atol=1e-7)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("Dense(4, activation='tanh')", "tanh"),
        ("Conv2D(2, 3, activation='sigmoid')", "sigmoid"),
        ("Activation('tanh')", "tanh"),
        ("Dense(4, activation='relu')", None),
        ("Dense(4)", None),
        ("SimpleRNN(3)", None),  # applied inside the cell
        ("TimeDistributed(keras.layers.Conv2D(2, 3, activation='tanh'))", "tanh"),
        ("TimeDistributed(keras.layers.Dense(2))", None),
        ("Bidirectional(keras.layers.LSTM(3))", None),
        ("Flatten()", None),
    ],
)
def test_bounded_activation(layer, expected):
    import keras  # noqa: F401 - for eval

    assert health.bounded_activation(eval(f"keras.layers.{layer}")) == expected


@pytest.mark.parametrize("values", [8, 50, 200], ids=lambda v: f"{v} values a block")
@pytest.mark.parametrize(("raw", "activation"), CASES[:7])
def test_measure_matches_the_definitions_in_small_blocks(raw, activation, values, monkeypatch):
    # Blocks of whole samples, rows of one sample, and one row: each value
    # counted once, each sample's sums kept apart (the pooled features).
    monkeypatch.setattr(health, "_CHUNK_VALUES", values)
    test_measure_matches_the_definitions(raw, activation)
