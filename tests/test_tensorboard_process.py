"""The plugin in a real `tensorboard` process, found through its entry point,
on both data loaders: the Python one and the Rust data server."""

from __future__ import annotations

import base64
import collections
import io
import threading
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from tb_activations import metadata, summary

import recorded
from support import fetch, running_tensorboard, wait_until

pytestmark = pytest.mark.slow

RUN = "activations"
HTML_RUN = "<svg onload=alert(2)>"
HTML_TAG = "<img src=x onerror=alert(1)>"
STEPS = 14
LOAD_TIMEOUT = 60.0
# Evictions the eviction test waits to see (new oldest kept steps), and how
# long it may wait for them: the bound of a hung server, not a pace.
EVICTIONS = 3
EVICTION_TIMEOUT = 180.0


def info(layer: str, channels: int) -> metadata.LayerInfo:
    return metadata.LayerInfo(
        layer=layer,
        class_name="Conv2D",
        layout="image",
        output_shape=(None, 6, 5, channels),
        channels=channels,
        total_channels=channels,
        probes=1,
        height=6,
        width=5,
        source_height=6,
        source_width=5,
    )


CONV = info("conv", 4)
HTML = info(HTML_TAG, 2)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tensorboard_logs")
    rng = np.random.default_rng(0)
    writer = summary.ActivationWriter(root / RUN)
    for step in range(STEPS):
        x = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
        writer.submit(step * 10, [summary.LayerValue(CONV, x)], epoch=float(step))
    writer.close()
    writer = summary.ActivationWriter(root / HTML_RUN)
    writer.submit(0, [summary.LayerValue(HTML, rng.normal(size=(1, 6, 5, 2)))], epoch=0.0)
    writer.close()
    return root


def plugin_url(base: str, route: str, **params) -> str:
    return f"{base}data/plugin/activations/{route}?{urllib.parse.urlencode(params)}"


def loaded_steps(base: str, expected: int) -> dict:
    """The `steps` answer once the server has loaded the whole run."""
    last = {}

    def done():
        r = fetch(plugin_url(base, "steps", run=RUN, tag="conv"))
        last["status"], last["body"] = r.status, r.text
        if r.status == 200 and r.json()["steps_kept"] >= expected:
            steps = r.json()["steps"]
            return r.json() if steps and steps[-1]["step"] == (STEPS - 1) * 10 else None
        return None

    try:
        return wait_until(done, LOAD_TIMEOUT, "the run to load")
    except TimeoutError as e:
        raise AssertionError(f"{e}; last answer: {last}") from None


@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
def test_plugin_serves_every_step_by_default(logdir, load_fast):
    with running_tensorboard(logdir, load_fast=load_fast) as base:
        listing = fetch(base + "data/plugins_listing").json()
        assert listing["activations"]["tab_name"] == "Activations"
        assert listing["activations"]["loading_mechanism"] == {
            "type": "IFRAME",
            "module_path": "/data/plugin/activations/static/index.js",
        }

        r = fetch(base + "data/plugin/activations/static/index.js")
        assert r.status == 200
        assert r.content_type.split(";")[0] == "text/javascript"
        assert r.headers["x-content-type-options"] == "nosniff"

        body = loaded_steps(base, STEPS)
        assert [s["step"] for s in body["steps"]] == [s * 10 for s in range(STEPS)]
        assert [s["epoch"] for s in body["steps"]] == [float(s) for s in range(STEPS)]
        assert (body["steps_kept"], body["steps_logged"]) == (STEPS, STEPS)
        assert body["sampling_limit"] == 500

        tags = fetch(plugin_url(base, "tags")).json()
        assert set(tags) == {RUN, HTML_RUN}
        assert set(tags[RUN]) == {"conv"} and set(tags[HTML_RUN]) == {HTML_TAG}
        conv = tags[RUN]["conv"]
        # As the writer logs it: with the measures' statistics.
        written = recorded.written(CONV).to_json()
        assert {k: conv[k] for k in written} == written
        assert (conv["steps_kept"], conv["max_step"]) == (STEPS, (STEPS - 1) * 10)

        layer = fetch(plugin_url(base, "layer", run=RUN, tag="conv", step=50)).json()
        assert layer["channels"] == 4 and layer["epoch"] == 5.0
        h, w = layer["height"], layer["width"]
        levels = np.frombuffer(base64.b64decode(layer["pixels"]), np.uint8)
        assert levels.size == 4 * h * w
        png = fetch(plugin_url(base, "channel", run=RUN, tag="conv", step=50, channel=3))
        assert png.status == 200 and png.content_type == "image/png"
        decoded = np.asarray(Image.open(io.BytesIO(png.body)))
        np.testing.assert_array_equal(levels.reshape(4, h, w)[3], decoded)

        latest = fetch(plugin_url(base, "layer", run=RUN, tag="conv", step="latest")).json()
        last = (STEPS - 1) * 10
        assert latest == fetch(plugin_url(base, "layer", run=RUN, tag="conv", step=last)).json()

        html = fetch(plugin_url(base, "steps", run=HTML_RUN, tag=HTML_TAG)).json()
        assert (html["run"], html["tag"]) == (HTML_RUN, HTML_TAG)

        for route, params, status in [
            ("layer", {"run": RUN, "tag": "conv", "step": 55}, 404),
            ("layer", {"run": RUN, "tag": "conv", "step": "x"}, 400),
            ("probe", {"run": RUN}, 404),
            ("static/../plugin.py", {}, 404),
        ]:
            r = fetch(plugin_url(base, route, **params))
            assert r.status == status, (route, params, r.text)
            assert r.content_type.startswith("text/plain")
            assert "Traceback" not in r.text


@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
@pytest.mark.parametrize(("keep", "kept", "limit"), [(5, 5, 5), (0, STEPS, None)])
def test_user_sampling_wins(logdir, load_fast, keep, kept, limit):
    with running_tensorboard(
        logdir, f"--samples_per_plugin=activations={keep}", load_fast=load_fast
    ) as base:
        body = loaded_steps(base, kept)
        assert (body["steps_kept"], body["steps_logged"], body["sampling_limit"]) == (
            kept,
            STEPS,
            limit,
        )
        assert body["steps"][-1]["step"] == (STEPS - 1) * 10
        tags = fetch(plugin_url(base, "tags")).json()
        assert tags[RUN]["conv"]["steps_kept"] == kept


@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
def test_steps_evicted_while_training_never_fail_the_server(tmp_path, load_fast):
    """A run written while the panel reads it, with only 2 steps kept: the
    steps a client just listed are soon dropped. Answers are 200 or 404."""
    layers = [info("a", 16), info("b", 16)]
    writer = summary.ActivationWriter(tmp_path / RUN)
    writer.submit(0, [summary.LayerValue(i, np.zeros((1, 6, 5, 16))) for i in layers])
    writer.flush()
    stop = threading.Event()

    def train():
        rng = np.random.default_rng(0)
        step = 1
        while not stop.is_set():
            x = rng.normal(size=(1, 6, 5, 16)).astype(np.float32)
            writer.submit(step, [summary.LayerValue(i, x) for i in layers], epoch=float(step))
            writer.flush()
            step += 1
            time.sleep(0.02)

    statuses = collections.Counter()
    listed_before = collections.deque(maxlen=200)
    oldest_listed = set()
    with running_tensorboard(
        tmp_path,
        "--samples_per_plugin=activations=2",
        "--reload_interval=1",
        load_fast=load_fast,
    ) as base:
        wait_until(
            lambda: fetch(plugin_url(base, "steps", run=RUN, tag="a")).status == 200,
            LOAD_TIMEOUT,
            "the run to load",
        )
        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + EVICTION_TIMEOUT
            # Until the server has dropped steps several times over, and
            # answered both for steps it keeps and for steps it dropped.
            while len(oldest_listed) <= EVICTIONS or statuses[404] == 0 or statuses[200] <= 10:
                assert time.monotonic() < deadline, (
                    f"in {EVICTION_TIMEOUT:.0f} s the server listed the oldest kept steps "
                    f"{sorted(oldest_listed)}; answers {dict(statuses)}"
                )
                listed = fetch(plugin_url(base, "steps", run=RUN, tag="a"))
                statuses[listed.status] += 1
                if listed.status != 200:
                    continue
                step = listed.json()["steps"][0]["step"]
                oldest_listed.add(step)
                listed_before.append(step)
                for route, params in [
                    ("layer", {"step": step}),
                    ("layer", {"step": listed_before[0]}),
                    ("channel", {"step": listed_before[0], "channel": 0}),
                    ("channel", {"step": step, "channel": 15}),
                    ("series", {"channel": 3}),
                    ("stats", {}),
                    ("tags", {}),
                ]:
                    r = fetch(plugin_url(base, route, run=RUN, tag="a", **params))
                    statuses[r.status] += 1
                    assert r.status in (200, 404), (route, params, r.status, r.text[:500])
        finally:
            stop.set()
            thread.join(10)
            writer.close()
    # Steps listed a while ago were dropped: those answers were 404.
    assert statuses[200] > 10 and statuses[404] > 0, statuses


# -- measures over training: the same answers from both loaders ---------------------


@pytest.fixture(scope="module")
def trained_logdir(ground_truth):
    """A real training run: activations beside Keras's train/ and validation/."""
    return ground_truth


def measures_answers(base: str, truth) -> dict:
    """overview, timeline and curves once the server has loaded every step
    and every validation value."""
    last = {}

    def loaded():
        got = {
            "overview": fetch(plugin_url(base, "overview", run=RUN)),
            "timeline": fetch(plugin_url(base, "timeline", run=RUN, tag="conv2")),
            "curves": fetch(plugin_url(base, "curves", run=RUN)),
        }
        last.update({k: (r.status, r.text[:300]) for k, r in got.items()})
        if any(r.status != 200 for r in got.values()):
            return None
        bodies = {k: r.json() for k, r in got.items()}
        series = {(s["run"], s["tag"]): s for s in bodies["curves"]["series"]}
        validation = series.get(("validation", "evaluation_loss_vs_iterations"))
        done = (
            bodies["overview"]["steps"] == truth.steps
            and bodies["timeline"]["steps"] == truth.steps
            and validation is not None
            and len(validation["points"]) == truth.epochs
            and len(series[("train", "batch_loss")]["points"])
            == truth.epochs * truth.steps_per_epoch
        )
        return bodies if done else None

    try:
        return wait_until(loaded, LOAD_TIMEOUT, "the run and its scalars to load")
    except TimeoutError as e:
        raise AssertionError(f"{e}; last answers: {last}") from None


def test_both_loaders_give_the_same_measures(trained_logdir):
    truth = trained_logdir
    answers = {}
    for load_fast in (False, True):
        with running_tensorboard(truth.log_dir, load_fast=load_fast) as base:
            answers[load_fast] = measures_answers(base, truth)
            for route, params in [
                ("overview", {"run": "nope"}),
                ("timeline", {"run": RUN, "tag": metadata.PROBE_TAG}),
                ("curves", {"run": "nope"}),
                ("timeline", {"run": RUN}),
            ]:
                r = fetch(plugin_url(base, route, **params))
                assert r.status == (400 if route == "timeline" and "tag" not in params else 404)
                assert r.content_type.startswith("text/plain")
    python, rust = answers[False], answers[True]
    assert python["overview"]["layers"] == ["conv1", "conv2", "dense1"]
    assert python["timeline"]["events"]  # the killed channels die
    assert python == rust
