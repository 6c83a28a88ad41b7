"""Route tests of the plugin on real event files, through TensorBoard's own
multiplexer, data provider and WSGI application."""

from __future__ import annotations

import base64
import io
import itertools
import json
import subprocess
import sys
import urllib.parse
from argparse import Namespace

import matplotlib
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from werkzeug.test import Client

from tb_activations import metadata, summary
from tb_activations import plugin as plugin_lib
from tb_activations.colormaps import COLORMAPS

import recorded

URL = "/data/plugin/activations/"
RUN = "activations"
HTML_RUN = "<svg onload=alert(2)>"
HTML_TAG = "<img src=x onerror=alert(1)>"
SLASH_TAG = "block 1/conv ü"
STEPS = 14
KEEP = 10
PROBES = 2
NAN_STEP = 5


def wall(step: int) -> float:
    return 1000.0 + step


def layer_info(layer, channels, probes=PROBES, **kw):
    return recorded.layer_info(layer, channels, probes, **kw)


CONV = layer_info("conv", 3)
DENSE = layer_info("dense", 1, h=1, w=7, layout="units", class_name="Dense", output_shape=(None, 7))
PROBE = layer_info(metadata.PROBE_TAG, 1, h=8, w=8, layout="probe", class_name="Probe")
HTML = layer_info(HTML_TAG, 2, probes=1)
SLASH = layer_info(SLASH_TAG, 2, probes=1, h=3, w=4)
TRUNCATED = layer_info("truncated", 3, probes=1)
BADSTATS = layer_info("badstats", 2, probes=1)
TEXTSTATS = layer_info("textstats", 2, probes=1)
BADSIZE = layer_info("badsize", 2, probes=1)
BADMODE = layer_info("badmode", 2, probes=1)


def conv_array(step: int) -> np.ndarray:
    x = np.random.default_rng(step).normal(size=(PROBES, 6, 5, 3)).astype(np.float32)
    x[:, 1, 1, 0] = 0.0
    if step == NAN_STEP:
        x[1, :, :, 2] = np.nan  # no finite value at all
        x[0, 0, 0, 1] = np.inf  # one value not finite
    return x


def dense_array(step: int) -> np.ndarray:
    return np.random.default_rng(100 + step).normal(size=(PROBES, 7)).astype(np.float32)


def small_array(step: int, info: metadata.LayerInfo) -> np.ndarray:
    shape = (info.probes, info.height, info.width, info.channels)
    return np.random.default_rng(200 + step).normal(size=shape).astype(np.float32)


PROBE_PIXELS = np.random.default_rng(7).uniform(0, 1, size=(PROBES, 8, 8, 3)).astype(np.float32)


# -- expectations, computed from the arrays with numpy alone ---------------


def expected_stats(x: np.ndarray) -> np.ndarray:
    """(P, H, W, C) to (P, C, 6): min, max, mean, std over finite values,
    zero fraction, non-finite fraction."""
    p_count, _, _, c_count = x.shape
    out = np.full((p_count, c_count, 6), np.nan)
    for p, c in itertools.product(range(p_count), range(c_count)):
        v = x[p, :, :, c].astype(np.float64).ravel()
        f = v[np.isfinite(v)]
        if f.size:
            out[p, c, :4] = f.min(), f.max(), f.mean(), f.std()
        out[p, c, 4] = np.mean(v == 0)
        out[p, c, 5] = 1 - f.size / v.size
    return out


def expected_image(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    plane = plane.astype(np.float64)
    if not hi > lo:
        return np.zeros(plane.shape, np.uint8)
    q = np.floor((plane - lo) / (hi - lo) * 255 + 0.5)
    q[~np.isfinite(q)] = 0
    return np.clip(q, 0, 255).astype(np.uint8)


def decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)))


def as_array(nested) -> np.ndarray:
    """JSON numbers with null back to floats with NaN."""
    return np.array(json.loads(json.dumps(nested).replace("null", "NaN")), dtype=np.float64)


def assert_image(png: bytes, x: np.ndarray, p: int, c: int) -> None:
    assert_levels(decode_png(png), x, p, c)


def assert_levels(levels: np.ndarray, x: np.ndarray, p: int, c: int) -> None:
    """Gray levels are channel c of probe p quantized from its own min..max."""
    stats = expected_stats(x)
    np.testing.assert_allclose(
        levels, expected_image(x[p, :, :, c], *stats[p, c, :2]), atol=1, rtol=0
    )


def levels_of(pixels: str, count: int, height: int, width: int) -> np.ndarray:
    """A `pixels` field back to (count, height, width) uint8, checking its length."""
    assert isinstance(pixels, str)
    raw = base64.b64decode(pixels, validate=True)
    assert len(raw) == count * height * width
    return np.frombuffer(raw, np.uint8).reshape(count, height, width)


def layer_levels(body) -> np.ndarray:
    return levels_of(body["pixels"], body["channels"], body["height"], body["width"])


def channel_png(client, **params) -> np.ndarray:
    """What the `channel` route serves, decoded by Pillow."""
    r = get(client, "channel", **params)
    assert r.status_code == 200 and r.mimetype == "image/png"
    return decode_png(r.data)


# -- logs ------------------------------------------------------------------


def write_bad_series(run_dir) -> None:
    """Series a reader must survive: a newer format, garbage metadata,
    metadata with a string for a count, steps with too few blobs, statistics
    that are not an array."""
    writer = EventFileWriter(str(run_dir))
    png = Image.new("L", (5, 6))
    buf = io.BytesIO()
    png.save(buf, format="PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    small = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (5, 6)).save(buf, format="PNG")
    rgb = buf.getvalue()
    header = metadata.encode_header(0.0)
    stats = metadata.encode_stats(np.zeros((1, 3, 6)))
    two_stats = metadata.encode_stats(np.zeros((1, 2, 6)))
    for step in range(2):
        future = summary.make_event(CONV, step, wall(step), [header, stats, png, png, png])
        content = json.loads(future.summary.value[0].metadata.plugin_data.content)
        content["version"] = metadata.FORMAT_VERSION + 1
        future.summary.value[0].tag = "future"
        future.summary.value[0].metadata.plugin_data.content = json.dumps(content).encode()
        garbage = summary.make_event(CONV, step, wall(step), [header, stats, png, png, png])
        garbage.summary.value[0].tag = "garbage"
        garbage.summary.value[0].metadata.plugin_data.content = b"\xff not json"
        truncated = summary.make_event(TRUNCATED, step, wall(step), [header, stats, png])
        badstats = summary.make_event(BADSTATS, step, wall(step), [header, b"not npy", png, png])
        wrongtypes = summary.make_event(CONV, step, wall(step), [header, stats, png, png, png])
        content = json.loads(wrongtypes.summary.value[0].metadata.plugin_data.content)
        content["channels"] = "3"
        wrongtypes.summary.value[0].tag = "wrongtypes"
        wrongtypes.summary.value[0].metadata.plugin_data.content = json.dumps(content).encode()
        text = io.BytesIO()
        np.save(text, np.full((1, 2, 6), "x"), allow_pickle=False)
        textstats = summary.make_event(
            TEXTSTATS, step, wall(step), [header, text.getvalue(), png, png]
        )
        # Channel 1's image is not the size of channel 0's, nor the metadata's.
        badsize = summary.make_event(BADSIZE, step, wall(step), [header, two_stats, png, small])
        badmode = summary.make_event(BADMODE, step, wall(step), [header, two_stats, png, rgb])
        for event in (
            future,
            garbage,
            truncated,
            badstats,
            wrongtypes,
            textstats,
            badsize,
            badmode,
        ):
            writer.add_event(event)
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin_logs")
    writer = summary.ActivationWriter(root / RUN)
    for step in range(STEPS):
        values = [
            summary.LayerValue(CONV, conv_array(step)),
            summary.LayerValue(DENSE, dense_array(step)),
        ]
        if step == 0:
            values.append(summary.LayerValue(PROBE, PROBE_PIXELS))
        writer.submit(step, values, epoch=float(step), wall_time=wall(step))
    writer.close()

    writer = summary.ActivationWriter(root / HTML_RUN)
    for step in (0, 10, 20):
        values = [
            summary.LayerValue(HTML, small_array(step, HTML)),
            summary.LayerValue(SLASH, small_array(step, SLASH)),
        ]
        writer.submit(step, values, epoch=step / 10, batch=3, wall_time=wall(step))
    writer.close()

    write_bad_series(root / "broken")
    return root


def make_server(logdir, keep: int):
    """The plugin served as in production, with `keep` steps per series;
    returns the test client and the multiplexer (to reload)."""
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": keep})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(
        logdir=str(logdir), data_provider=provider, sampling_hints={"activations": keep}
    )
    plugin = plugin_lib.ActivationsLoader().load(context)
    return Client(application.TensorBoardWSGI([plugin])), mux


def make_client(logdir, keep: int) -> Client:
    return make_server(logdir, keep)[0]


@pytest.fixture(scope="module")
def client(logdir):
    """TensorBoard's default sampling: 10 steps of each series."""
    return make_client(logdir, KEEP)


@pytest.fixture(scope="module")
def full(logdir):
    """Sampling that keeps every step."""
    return make_client(logdir, 500)


def get(client, route, **params):
    return client.get(URL + route, query_string=params)


def get_json(client, route, **params):
    r = get(client, route, **params)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    return r.get_json()


# -- plugin and loader ---------------------------------------------------------


def test_loader_raises_the_default_sampling_and_the_user_wins():
    flags = Namespace(samples_per_plugin={})
    plugin_lib.ActivationsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"activations": plugin_lib.DEFAULT_MAX_STEPS}
    flags = Namespace(samples_per_plugin={"activations": 5, "images": 3})
    plugin_lib.ActivationsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"activations": 5, "images": 3}


def test_plugin_metadata(logdir):
    context = base_plugin.TBContext(logdir=str(logdir))
    plugin = plugin_lib.ActivationsLoader().load(context)
    assert plugin.plugin_name == "activations"
    assert plugin.data_plugin_names() == ("activations",)
    assert plugin.is_active() is False
    fm = plugin.frontend_metadata()
    assert (fm.es_module_path, fm.tab_name) == ("/static/index.js", "Activations")


def test_loading_the_plugin_imports_neither_keras_nor_tensorflow():
    code = (
        "import sys, tb_activations.plugin\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- tags -------------------------------------------------------------------


def tag_entry(info, steps_kept, max_step, keep):
    return {
        **info.to_json(),
        "steps_kept": steps_kept,
        "max_step": max_step,
        "max_wall_time": wall(max_step),
        "sampling_limit": keep,
    }


@pytest.mark.parametrize("keep", [KEEP, 500])
def test_tags(logdir, client, full, keep):
    body = get_json(client if keep == KEEP else full, "tags")
    kept = min(keep, STEPS)
    assert body == {
        RUN: {
            "conv": tag_entry(CONV, kept, STEPS - 1, keep),
            "dense": tag_entry(DENSE, kept, STEPS - 1, keep),
            metadata.PROBE_TAG: tag_entry(PROBE, 1, 0, keep),
        },
        HTML_RUN: {
            HTML_TAG: tag_entry(HTML, 3, 20, keep),
            SLASH_TAG: tag_entry(SLASH, 3, 20, keep),
        },
        # A newer format and broken metadata are skipped; steps with the
        # wrong number of blobs are not counted.
        "broken": {
            "truncated": tag_entry(TRUNCATED, 0, 1, keep),
            "badstats": tag_entry(BADSTATS, 2, 1, keep),
            "textstats": tag_entry(TEXTSTATS, 2, 1, keep),
            "badsize": tag_entry(BADSIZE, 2, 1, keep),
            "badmode": tag_entry(BADMODE, 2, 1, keep),
        },
    }


def test_html_names_come_back_verbatim_as_json_strings(client):
    r = get(client, "steps", run=HTML_RUN, tag=HTML_TAG)
    assert r.mimetype == "application/json"
    body = json.loads(r.get_data(as_text=True))
    assert (body["run"], body["tag"]) == (HTML_RUN, HTML_TAG)
    assert HTML_TAG in get_json(client, "tags")[HTML_RUN]


# -- steps -------------------------------------------------------------------


def test_steps_all_kept(full):
    assert get_json(full, "steps", run=RUN, tag="conv") == {
        "run": RUN,
        "tag": "conv",
        "steps": [
            {"step": s, "wall_time": wall(s), "epoch": float(s), "batch": None}
            for s in range(STEPS)
        ],
        "steps_kept": STEPS,
        "steps_logged": STEPS,
        "sampling_limit": 500,
    }


def test_steps_say_showing_n_of_m(client):
    body = get_json(client, "steps", run=RUN, tag="conv")
    kept = [s["step"] for s in body["steps"]]
    assert len(kept) == KEEP and kept == sorted(set(kept)) and kept[-1] == STEPS - 1
    assert set(kept) <= set(range(STEPS))
    assert body == {
        "run": RUN,
        "tag": "conv",
        "steps": [
            {"step": s, "wall_time": wall(s), "epoch": float(s), "batch": None} for s in kept
        ],
        "steps_kept": KEEP,
        "steps_logged": STEPS,
        "sampling_limit": KEEP,
    }


def test_steps_with_batch_and_slashed_unicode_tag(client):
    assert get_json(client, "steps", run=HTML_RUN, tag=SLASH_TAG) == {
        "run": HTML_RUN,
        "tag": SLASH_TAG,
        "steps": [
            {"step": s, "wall_time": wall(s), "epoch": s / 10, "batch": 3} for s in (0, 10, 20)
        ],
        "steps_kept": 3,
        "steps_logged": 3,
        "sampling_limit": KEEP,
    }


def test_steps_of_a_series_with_unreadable_statistics_are_listed(client):
    body = get_json(client, "steps", run="broken", tag="badstats")
    assert [s["step"] for s in body["steps"]] == [0, 1]


def test_new_steps_appear_after_a_reload(tmp_path):
    writer = summary.ActivationWriter(tmp_path / RUN)
    for step in range(3):
        writer.submit(step, [summary.LayerValue(CONV, conv_array(step))], wall_time=wall(step))
    writer.flush()
    client, mux = make_server(tmp_path, KEEP)
    assert get_json(client, "tags")[RUN]["conv"]["steps_kept"] == 3
    assert len(get_json(client, "steps", run=RUN, tag="conv")["steps"]) == 3
    for step in range(3, 12):
        writer.submit(step, [summary.LayerValue(CONV, conv_array(step))], wall_time=wall(step))
    writer.close()
    mux.Reload()
    conv = get_json(client, "tags")[RUN]["conv"]
    assert (conv["steps_kept"], conv["max_step"]) == (KEEP, 11)
    body = get_json(client, "steps", run=RUN, tag="conv")
    assert (body["steps_kept"], body["steps_logged"], body["steps"][-1]["step"]) == (KEEP, 12, 11)
    layer = get_json(client, "layer", run=RUN, tag="conv", step=11)
    assert_levels(layer_levels(layer)[0], conv_array(11), 0, 0)


# -- layer -------------------------------------------------------------------


@pytest.mark.parametrize("probe", [0, 1])
@pytest.mark.parametrize("step", [0, NAN_STEP, STEPS - 1])
def test_layer(full, step, probe):
    x = conv_array(step)
    body = get_json(full, "layer", run=RUN, tag="conv", step=step, probe=probe)
    levels = levels_of(body.pop("pixels"), 3, 6, 5)
    stats = body.pop("stats")
    assert body == {
        "run": RUN,
        "tag": "conv",
        "step": step,
        "wall_time": wall(step),
        "epoch": float(step),
        "probe": probe,
        "layout": "image",
        "height": 6,
        "width": 5,
        "channels": 3,
        "stats_fields": list(metadata.STATS_FIELDS),
    }
    np.testing.assert_allclose(
        as_array(stats), expected_stats(x)[probe], rtol=1e-5, atol=1e-6, equal_nan=True
    )
    for c in range(3):
        assert_levels(levels[c], x, probe, c)
        # Channel-major: channel c's bytes are exactly its PNG's, decoded by Pillow.
        png = channel_png(full, run=RUN, tag="conv", step=step, channel=c, probe=probe)
        np.testing.assert_array_equal(levels[c], png)


def test_layer_nonfinite_statistics_are_null(full):
    r = get(full, "layer", run=RUN, tag="conv", step=NAN_STEP, probe=1)
    text = r.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text
    assert r.get_json()["stats"][2] == [None, None, None, None, 0.0, 1.0]


def test_layer_default_probe_is_0(full):
    assert get_json(full, "layer", run=RUN, tag="conv", step=3) == get_json(
        full, "layer", run=RUN, tag="conv", step=3, probe=0
    )


def test_layer_of_units(full):
    x = dense_array(4)
    body = get_json(full, "layer", run=RUN, tag="dense", step=4, probe=1)
    assert (body["layout"], body["height"], body["width"], body["channels"]) == ("units", 1, 7, 1)
    nhwc = x[:, None, :, None]
    levels = layer_levels(body)
    assert levels.shape == (1, 1, 7)
    assert_levels(levels[0], nhwc, 1, 0)
    png = channel_png(full, run=RUN, tag="dense", step=4, channel=0, probe=1)
    np.testing.assert_array_equal(levels[0], png)


def test_layer_of_a_non_square_map_is_row_major(full):
    body = get_json(full, "layer", run=HTML_RUN, tag=SLASH_TAG, step=10)
    assert (body["height"], body["width"], body["channels"]) == (3, 4, 2)
    levels = layer_levels(body)
    x = small_array(10, SLASH)
    for c in range(2):
        assert_levels(levels[c], x, 0, c)
        png = channel_png(full, run=HTML_RUN, tag=SLASH_TAG, step=10, channel=c)
        np.testing.assert_array_equal(levels[c], png)


def test_units_strip_longer_than_max_size_is_sent_whole(tmp_path):
    # Strips are never downscaled by the writer: each pixel stays one unit.
    writer = summary.ActivationWriter(tmp_path / RUN, max_size=4)
    writer.submit(0, [summary.LayerValue(DENSE, dense_array(0))], wall_time=wall(0))
    writer.close()
    client = make_client(tmp_path, KEEP)
    assert get_json(client, "tags")[RUN]["dense"]["width"] == 7
    body = get_json(client, "layer", run=RUN, tag="dense", step=0, probe=1)
    assert (body["height"], body["width"], body["channels"]) == (1, 7, 1)
    png = channel_png(client, run=RUN, tag="dense", step=0, channel=0, probe=1)
    np.testing.assert_array_equal(layer_levels(body)[0], png)
    (step,) = get_json(client, "series", run=RUN, tag="dense", channel=0, probe=1)["steps"]
    assert (step["height"], step["width"]) == (1, 7)
    np.testing.assert_array_equal(levels_of(step["pixels"], 1, 1, 7)[0], png)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("badsize", "step 0 has channel 1 of shape (4, 4) where channel 0's is (6, 5)."),
        ("badmode", "step 0 has a channel image of mode RGB, not 8-bit gray."),
    ],
)
def test_layer_with_images_it_cannot_send_as_one_buffer_is_a_clear_error(client, tag, message):
    r = get(client, "layer", run="broken", tag=tag, step=0)
    assert (r.status_code, r.mimetype) == (404, "text/plain")
    text = r.get_data(as_text=True)
    assert message in text
    assert "Traceback" not in text


# -- channel -------------------------------------------------------------------


@pytest.mark.parametrize(("probe", "channel"), [(0, 0), (0, 2), (1, 1)])
def test_channel(full, probe, channel):
    r = get(full, "channel", run=RUN, tag="conv", step=7, channel=channel, probe=probe)
    assert r.status_code == 200
    assert r.mimetype == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert_image(r.data, conv_array(7), probe, channel)
    layer = get_json(full, "layer", run=RUN, tag="conv", step=7, probe=probe)
    np.testing.assert_array_equal(layer_levels(layer)[channel], decode_png(r.data))


# -- series and stats --------------------------------------------------------------


@pytest.mark.parametrize(("probe", "channel"), [(0, 1), (1, 2)])
def test_series(full, probe, channel):
    body = get_json(full, "series", run=RUN, tag="conv", channel=channel, probe=probe)
    steps = body.pop("steps")
    assert body == {"run": RUN, "tag": "conv", "channel": channel, "probe": probe}
    assert [s["step"] for s in steps] == list(range(STEPS))
    for s in steps:
        assert set(s) == {"step", "wall_time", "epoch", "stats", "height", "width", "pixels"}
        assert (s["height"], s["width"]) == (6, 5)
        x = conv_array(s["step"])
        assert (s["wall_time"], s["epoch"]) == (wall(s["step"]), float(s["step"]))
        np.testing.assert_allclose(
            as_array(s["stats"]),
            expected_stats(x)[probe, channel],
            rtol=1e-5,
            atol=1e-6,
            equal_nan=True,
        )
        levels = levels_of(s["pixels"], 1, 6, 5)[0]
        assert_levels(levels, x, probe, channel)
        png = channel_png(full, run=RUN, tag="conv", step=s["step"], channel=channel, probe=probe)
        np.testing.assert_array_equal(levels, png)


def test_series_follows_sampling(client):
    steps = get_json(client, "steps", run=RUN, tag="conv")["steps"]
    series = get_json(client, "series", run=RUN, tag="conv", channel=0)["steps"]
    assert [s["step"] for s in series] == [s["step"] for s in steps]


def test_stats(full):
    body = get_json(full, "stats", run=RUN, tag="conv")
    steps = body.pop("steps")
    assert body == {"run": RUN, "tag": "conv", "fields": list(metadata.STATS_FIELDS)}
    assert [(s["step"], s["wall_time"], s["epoch"]) for s in steps] == [
        (s, wall(s), float(s)) for s in range(STEPS)
    ]
    for s in steps:
        np.testing.assert_allclose(
            as_array(s["stats"]),
            expected_stats(conv_array(s["step"])),
            rtol=1e-5,
            atol=1e-6,
            equal_nan=True,
        )


@pytest.mark.parametrize("tag", ["badstats", "textstats"])
def test_stats_skip_unreadable_steps(client, tag):
    assert get_json(client, "stats", run="broken", tag=tag)["steps"] == []
    assert get_json(client, "series", run="broken", tag=tag, channel=1)["steps"] == []


def test_series_gives_each_image_its_own_size_and_skips_images_not_gray(client):
    # The size sent is the image's own, whatever the metadata says: a
    # damaged or foreign series must not break the strip.
    steps = get_json(client, "series", run="broken", tag="badsize", channel=1)["steps"]
    assert [(s["step"], s["height"], s["width"]) for s in steps] == [(0, 4, 4), (1, 4, 4)]
    assert all(levels_of(s["pixels"], 1, 4, 4).max() == 0 for s in steps)
    assert get_json(client, "series", run="broken", tag="badmode", channel=1)["steps"] == []
    good = get_json(client, "series", run="broken", tag="badmode", channel=0)["steps"]
    assert [(s["step"], s["height"], s["width"]) for s in good] == [(0, 6, 5), (1, 6, 5)]


# -- probe and colormaps -------------------------------------------------------------


@pytest.mark.parametrize("probe", [0, 1])
def test_probe(client, probe):
    r = get(client, "probe", run=RUN, probe=probe)
    assert r.status_code == 200
    assert r.mimetype == "image/png"
    x = PROBE_PIXELS[probe].astype(np.float64)
    expected = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_allclose(decode_png(r.data), expected, atol=1, rtol=0)


def test_probe_default_is_0(client):
    assert get(client, "probe", run=RUN).data == get(client, "probe", run=RUN, probe=0).data


def test_colormaps(client):
    body = get_json(client, "colormaps")
    assert list(body) == list(COLORMAPS)
    for name, lut in body.items():
        assert np.array(lut).shape == (256, 3)
        rgb = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        np.testing.assert_array_equal(lut, np.round(rgb * 255).astype(int))
    assert body["gray"][0] == [0, 0, 0] and body["gray"][255] == [255, 255, 255]


# -- static files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [(".js", "text/javascript"), (".css", "text/css")],
)
def test_static_files_are_served_with_their_type(name, content_type, client):
    files = [f for f in plugin_lib.frontend_dir().iterdir() if f.name.endswith(name)]
    if name == ".css" and not files:
        pytest.skip("the panel has no stylesheet")
    for f in files:
        r = client.get(URL + "static/" + f.name)
        assert r.status_code == 200, f.name
        assert r.mimetype == content_type
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.data == f.read_bytes()


def test_index_js_is_served(client):
    r = client.get(URL + "static/index.js")
    assert r.status_code == 200
    assert r.mimetype == "text/javascript"
    assert b"export" in r.data


def test_routes_under_a_path_prefix(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": KEEP})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), data_provider=provider)
    plugin = plugin_lib.ActivationsLoader().load(context)
    client = Client(application.TensorBoardWSGI([plugin], path_prefix="/tb"))
    r = client.get("/tb" + URL + "static/index.js")
    assert (r.status_code, r.mimetype) == (200, "text/javascript")
    r = client.get("/tb" + URL + "steps", query_string={"run": RUN, "tag": "conv"})
    assert r.status_code == 200
    # Without TensorBoard's flags the plugin does not know the sampling limit.
    assert r.get_json()["sampling_limit"] is None


@pytest.mark.parametrize(
    "path",
    [
        "static/../plugin.py",
        "static/..%2Fplugin.py",
        "static/..%2f..%2fpyproject.toml",
        "static/%2e%2e/%2e%2e/pyproject.toml",
        "static/..",
        "static/.",
        "static/",
        "static//etc/passwd",
        "static/%2Fetc%2Fpasswd",
        "static/..\\..\\pyproject.toml",
        "static/index.js/",
        "static/index.js%00.css",
        "static/nonexistent.js",
        "static/INDEX.JS",
        "static/index",
        "static/__init__.py",
        "static/../../tb_activations/plugin.py",
    ],
)
def test_static_refuses_anything_but_a_listed_file(client, path):
    r = client.get(URL + path)
    assert r.status_code == 404
    assert r.mimetype == "text/plain"
    assert b"import" not in r.data and b"root:" not in r.data


# -- errors -----------------------------------------------------------------------

LAYER = {"run": RUN, "tag": "conv"}

BAD_REQUESTS = [
    # (route, query string, parameter named in the message, value quoted)
    ("steps", "", "run", None),
    ("steps", "run=activations", "tag", None),
    ("steps", "run=&tag=conv", "run", None),
    ("steps", "run=activations&tag=", "tag", None),
    ("steps", "run=activations&run=x&tag=conv", "run", "'x'"),
    ("stats", "tag=conv", "run", None),
    ("layer", "run=activations&tag=conv", "step", None),
    ("layer", "run=activations&tag=conv&step=abc", "step", "'abc'"),
    ("layer", "run=activations&tag=conv&step=-1", "step", "'-1'"),
    ("layer", "run=activations&tag=conv&step=1.5", "step", "'1.5'"),
    ("layer", "run=activations&tag=conv&step=1e3", "step", "'1e3'"),
    ("layer", "run=activations&tag=conv&step=", "step", "''"),
    ("layer", "run=activations&tag=conv&step=%201", "step", "' 1'"),
    ("layer", "run=activations&tag=conv&step=%2B1", "step", "'+1'"),
    ("layer", "run=activations&tag=conv&step=0x1", "step", "'0x1'"),
    ("layer", "run=activations&tag=conv&step=1_0", "step", "'1_0'"),
    ("layer", "run=activations&tag=conv&step=%EF%BC%91", "step", "'\uff11'"),
    ("layer", "run=activations&tag=conv&step=" + "9" * 21, "step", "9" * 21),
    ("layer", "run=activations&tag=conv&step=1&step=2", "step", "'2'"),
    ("layer", "run=activations&tag=conv&step=1&probe=-1", "probe", "'-1'"),
    ("layer", "run=activations&tag=conv&step=1&probe=", "probe", "''"),
    ("channel", "run=activations&tag=conv&step=1", "channel", None),
    ("channel", "run=activations&tag=conv&step=1&channel=c", "channel", "'c'"),
    ("channel", "run=activations&tag=conv&channel=0", "step", None),
    ("series", "run=activations&tag=conv", "channel", None),
    ("series", "run=activations&tag=conv&channel=nan", "channel", "'nan'"),
    ("series", "run=activations&tag=conv&channel=inf", "channel", "'inf'"),
    ("series", "run=activations&tag=conv&channel=0&probe=1.0", "probe", "'1.0'"),
    ("probe", "", "run", None),
    ("probe", "run=activations&probe=x", "probe", "'x'"),
]


@pytest.mark.parametrize(("route", "query", "param", "quoted"), BAD_REQUESTS)
def test_bad_request(client, route, query, param, quoted):
    r = client.get(URL + route + "?" + query)
    assert r.status_code == 400
    assert r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert f"'{param}'" in text
    if quoted:
        assert quoted in text
    assert "Traceback" not in text


NOT_FOUND = [
    ("steps", {"run": "nope", "tag": "conv"}, "'nope'"),
    ("steps", {"run": RUN, "tag": "nope"}, "'nope'"),
    ("stats", {"run": RUN, "tag": "nope"}, "'nope'"),
    ("layer", {**LAYER, "step": STEPS}, f"Step {STEPS}"),
    ("layer", {**LAYER, "step": "9" * 20}, "9" * 20),
    ("layer", {**LAYER, "step": 1, "probe": PROBES}, f"Probe {PROBES}"),
    ("channel", {**LAYER, "step": 1, "channel": 3}, "Channel 3"),
    ("channel", {**LAYER, "step": 1, "channel": 0, "probe": 5}, "Probe 5"),
    ("series", {**LAYER, "channel": 3}, "Channel 3"),
    ("series", {**LAYER, "channel": 0, "probe": 2}, "Probe 2"),
    ("probe", {"run": "nope"}, "'nope'"),
    ("probe", {"run": HTML_RUN}, "no probe"),
    ("probe", {"run": RUN, "probe": PROBES}, f"Probe {PROBES}"),
    ("steps", {"run": "broken", "tag": "future"}, "format"),
    ("layer", {"run": "broken", "tag": "garbage", "step": 0}, "format"),
    ("steps", {"run": "broken", "tag": "wrongtypes"}, "format"),
    ("layer", {"run": "broken", "tag": "truncated", "step": 0}, "Step 0"),
    ("layer", {"run": "broken", "tag": "badstats", "step": 0}, "statistics"),
    ("layer", {"run": "broken", "tag": "textstats", "step": 1}, "statistics"),
    ("layer", {"run": "broken", "tag": "badsize", "step": 1}, "of shape (4, 4)"),
    ("layer", {"run": "broken", "tag": "badmode", "step": 1}, "mode RGB"),
    ("nope", {}, "Not found"),
]


@pytest.mark.parametrize(("route", "params", "message"), NOT_FOUND)
def test_not_found(client, route, params, message):
    r = get(client, route, **params)
    assert r.status_code == 404
    assert r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert message in text
    assert "Traceback" not in text


def test_step_dropped_by_sampling_is_not_found(client):
    kept = {s["step"] for s in get_json(client, "steps", run=RUN, tag="conv")["steps"]}
    dropped = min(set(range(STEPS)) - kept)
    r = get(client, "layer", run=RUN, tag="conv", step=dropped)
    assert r.status_code == 404
    assert f"Step {dropped}" in r.get_data(as_text=True)


ODD_VALUES = ["", "x", "-1", "1.5", "0", "1", "99999999999999999999", "9" * 300, "%ff", "%00"]
ROUTES = ["tags", "steps", "layer", "channel", "series", "stats", "probe", "colormaps"]


@pytest.mark.parametrize("route", ROUTES)
def test_no_input_makes_a_server_error(client, route):
    names = ["run", "tag", "step", "channel", "probe"]
    runs = [RUN, HTML_RUN, "broken", "nope", ""]
    queries = []
    for value in ODD_VALUES:
        for name in names[2:]:
            queries.append(f"run={RUN}&tag=conv&step=1&channel=0&{name}={value}")
            queries.append(f"run={RUN}&tag=conv&step=1&channel=0&{name}={value}&{name}=0")
        queries.append(f"run={value}&tag={value}&step=0&channel=0")
    for run, tag in itertools.product(runs, ["conv", HTML_TAG, "badstats", "truncated"]):
        q = urllib.parse.urlencode({"run": run, "tag": tag, "step": 0, "channel": 0})
        queries.append(q)
    for q in queries:
        r = client.get(URL + route + "?" + q)
        assert r.status_code in (200, 400, 404), (q, r.status_code)
        assert b"Traceback" not in r.data


# -- a log written by ActivationLogger while training a real model ---------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CNN trained three epochs (three batches each) with the
    callback; its log served with production sampling, and the model."""
    import keras

    from tb_activations import ActivationLogger, log_activations

    from recorded import small_cnn, stripes

    keras.utils.set_random_seed(2)
    x, y = stripes(n=96)
    model = small_cnn()
    log_dir = tmp_path_factory.mktemp("trained_plugin")
    probe = x[:2]
    logger = ActivationLogger(log_dir, probe, verbose=0)
    model.fit(x, y, batch_size=32, epochs=3, callbacks=[logger], verbose=0)
    log_activations(model, probe, log_dir, layers=["conv1"], step=100, run_name="snapshot")
    conv2 = keras.Model(model.input, model.get_layer("conv2").output).predict_on_batch(probe)
    return make_client(log_dir, KEEP), np.asarray(conv2), probe


def test_trained_log_tags(trained):
    client, _, _ = trained
    tags = get_json(client, "tags")
    assert set(tags) == {"activations", "snapshot"}
    assert set(tags["activations"]) == {"conv1", "conv2", "dense1", "logits", metadata.PROBE_TAG}
    assert set(tags["snapshot"]) == {"conv1", metadata.PROBE_TAG}
    conv2 = tags["activations"]["conv2"]
    assert (conv2["layout"], conv2["channels"], conv2["probes"]) == ("image", 16, 2)
    assert (conv2["height"], conv2["width"]) == (11, 11)
    assert (conv2["steps_kept"], conv2["max_step"], conv2["sampling_limit"]) == (4, 9, KEEP)
    assert tags["activations"]["dense1"]["layout"] == "units"


def test_trained_log_steps_are_iterations_with_epochs(trained):
    client, _, _ = trained
    body = get_json(client, "steps", run="activations", tag="conv1")
    assert [(s["step"], s["epoch"]) for s in body["steps"]] == [
        (0, 0.0),
        (3, 1.0),
        (6, 2.0),
        (9, 3.0),
    ]
    assert (body["steps_kept"], body["steps_logged"]) == (4, 4)
    snapshot = get_json(client, "steps", run="snapshot", tag="conv1")
    assert [(s["step"], s["epoch"]) for s in snapshot["steps"]] == [(100, None)]


@pytest.mark.parametrize("probe", [0, 1])
def test_trained_log_last_step_matches_the_trained_model(trained, probe):
    client, conv2, _ = trained
    body = get_json(client, "layer", run="activations", tag="conv2", step=9, probe=probe)
    expected = expected_stats(conv2)[probe]
    np.testing.assert_allclose(as_array(body["stats"]), expected, rtol=1e-4, atol=1e-5)
    levels = layer_levels(body)
    for c in (0, 7, 15):
        assert_levels(levels[c], conv2, probe, c)
    series = get_json(client, "series", run="activations", tag="conv2", channel=7, probe=probe)
    assert [s["step"] for s in series["steps"]] == [0, 3, 6, 9]
    last = levels_of(series["steps"][-1]["pixels"], 1, 11, 11)[0]
    np.testing.assert_array_equal(last, levels[7])


def test_trained_log_probe_image(trained):
    client, _, probe = trained
    r = get(client, "probe", run="activations", probe=1)
    assert r.status_code == 200 and r.mimetype == "image/png"
    x = probe[1, :, :, 0].astype(np.float64)
    expected = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5)
    np.testing.assert_allclose(decode_png(r.data), expected, atol=1, rtol=0)
