"""Route tests of the plugin on real event files, through TensorBoard's own
multiplexer, data provider and WSGI application."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import itertools
import json
import re
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
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util
from werkzeug.test import Client

from tb_activations import encoding, export, health, measures, metadata, static, summary
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


V1 = len(metadata.STATS_FIELDS)  # the statistics every format-1 log has


def v1(stats: np.ndarray) -> np.ndarray:
    """The format-1 statistics of a layer's: the measures' sums of squares
    after them are checked by the measures' own tests."""
    return stats[..., :V1]


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


def write_with_probe(run_dir, arrays: dict, epochs: dict[int, float]) -> None:
    """Layers through the writer at the steps of `epochs` (step -> epochs
    completed), `arrays` giving each layer's array at a step; the probe
    image at the first step."""
    writer = summary.ActivationWriter(run_dir)
    for i, (step, epoch) in enumerate(epochs.items()):
        values = [summary.LayerValue(info, array(step)) for info, array in arrays.items()]
        if i == 0:
            values.append(summary.LayerValue(PROBE, PROBE_PIXELS))
        writer.submit(step, values, epoch=epoch, wall_time=wall(step))
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin_logs")
    arrays = {CONV: conv_array, DENSE: dense_array}
    write_with_probe(root / RUN, arrays, {step: float(step) for step in range(STEPS)})

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


@pytest.mark.parametrize(
    "given, kept",
    [
        ({}, {"activations": 500, "activations_index": 500}),
        # The index series keeps as many steps as the blobs: the same ones.
        ({"activations": 5, "images": 3}, {"activations": 5, "activations_index": 5, "images": 3}),
        ({"activations": 0}, {"activations": 0, "activations_index": 0}),
        # The user's own value for the index wins too.
        ({"activations_index": 7}, {"activations": 500, "activations_index": 7}),
        ({"activations": 5, "activations_index": 2}, {"activations": 5, "activations_index": 2}),
    ],
)
def test_loader_raises_the_default_sampling_and_the_user_wins(given, kept):
    assert plugin_lib.DEFAULT_MAX_STEPS == 500
    assert metadata.INDEX_PLUGIN_NAME == "activations_index"
    flags = Namespace(samples_per_plugin=dict(given))
    plugin_lib.ActivationsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == kept


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
            "conv": tag_entry(recorded.written(CONV), kept, STEPS - 1, keep),
            "dense": tag_entry(recorded.written(DENSE), kept, STEPS - 1, keep),
            metadata.PROBE_TAG: tag_entry(recorded.written(PROBE), 1, 0, keep),
        },
        HTML_RUN: {
            HTML_TAG: tag_entry(recorded.written(HTML), 3, 20, keep),
            SLASH_TAG: tag_entry(recorded.written(SLASH), 3, 20, keep),
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
        "stats_fields": list(metadata.LAYER_STATS_FIELDS),
    }
    np.testing.assert_allclose(
        v1(as_array(stats)), expected_stats(x)[probe], rtol=1e-5, atol=1e-6, equal_nan=True
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
    assert r.get_json()["stats"][2][:V1] == [None, None, None, None, 0.0, 1.0]


def test_layer_default_probe_is_0(full):
    assert get_json(full, "layer", run=RUN, tag="conv", step=3) == get_json(
        full, "layer", run=RUN, tag="conv", step=3, probe=0
    )


@pytest.mark.parametrize("probe", [0, 1])
def test_layer_at_the_latest_kept_step(client, probe):
    # What the panel asks for before it has the step list.
    kept = [s["step"] for s in get_json(client, "steps", run=RUN, tag="conv")["steps"]]
    latest = get_json(client, "layer", run=RUN, tag="conv", step="latest", probe=probe)
    assert latest["step"] == kept[-1] == STEPS - 1
    assert latest == get_json(client, "layer", run=RUN, tag="conv", step=kept[-1], probe=probe)


@pytest.mark.parametrize(
    "body",
    [
        {"run": "r", "pixels": plugin_lib.Base64("AAEC"), "n": [1.5, None]},
        {"pixels": plugin_lib.Base64("")},
        {"a": plugin_lib.Base64("QQ=="), "b": plugin_lib.Base64("Qg=="), "tag": 'ü " \u2028'},
        {"tag": "<conv>", "steps": [{"pixels": "AAEC"}]},
    ],
)
def test_dumps_splices_base64_into_the_same_json(body):
    text = plugin_lib.dumps(body)
    assert json.loads(text) == json.loads(json.dumps(body))
    assert text.decode("utf-8")


@pytest.mark.parametrize("pack", [plugin_lib.gzipped, plugin_lib.zlib_gzipped])
def test_gzipped_is_one_gzip_stream_of_the_text_dated_0(pack):
    text = plugin_lib.dumps({"run": "r", "pixels": plugin_lib.Base64("A" * 20000)})
    packed = pack(text)
    assert gzip.decompress(packed) == text
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == bytes(4)
    assert len(packed) < len(text) // 10


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
            v1(as_array(s["stats"])),
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
    assert body == {"run": RUN, "tag": "conv", "fields": list(metadata.LAYER_STATS_FIELDS)}
    assert [(s["step"], s["wall_time"], s["epoch"]) for s in steps] == [
        (s, wall(s), float(s)) for s in range(STEPS)
    ]
    for s in steps:
        np.testing.assert_allclose(
            v1(as_array(s["stats"])),
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
    files = [f for f in static.frontend_dir().iterdir() if f.name.endswith(name)]
    assert files, f"no {name} file in {static.frontend_dir()}"
    for f in files:
        r = client.get(URL + "static/" + f.name)
        assert r.status_code == 200, f.name
        assert r.mimetype == content_type
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.data == f.read_bytes()


def test_every_stylesheet_the_panel_names_is_a_frontend_file(client):
    # However the styles are split, each file a script or a stylesheet names
    # (a <link> built in JS, an @import) is there (or joined from its parts)
    # and served as CSS.
    frontend = static.frontend_dir()
    sources = [f.read_text() for f in frontend.iterdir() if f.suffix in (".js", ".css")]
    named = {n for text in sources for n in re.findall(r"[\w.-]+\.css\b", text)}
    assert named, "the panel links no stylesheet"
    assert named <= {f.name for f in frontend.iterdir()} | {static.STYLESHEET}, named
    for n in named:
        assert client.get(URL + "static/" + n).mimetype == "text/css", n


def test_index_js_is_served(client):
    r = client.get(URL + "static/index.js")
    assert r.status_code == 200
    assert r.mimetype == "text/javascript"
    assert b"export" in r.data


def test_static_files_are_revalidated_by_their_entity_tag(client):
    want = (static.frontend_dir() / "app.js").read_bytes()
    r = client.get(URL + "static/app.js", headers={"Accept-Encoding": "gzip"})
    assert (r.status_code, r.headers["Content-Encoding"]) == (200, "gzip")
    assert gzip.decompress(r.data) == want
    etag = r.headers["ETag"]
    # TensorBoard's rule for files whose URL has no version: ask every time.
    assert r.headers["Cache-Control"] == "no-cache, must-revalidate"
    same = client.get(URL + "static/app.js", headers={"If-None-Match": etag})
    assert (same.status_code, same.data, same.headers["ETag"]) == (304, b"", etag)
    other = client.get(URL + "static/model.js", headers={"If-None-Match": etag})
    assert other.status_code == 200
    assert other.data == (static.frontend_dir() / "model.js").read_bytes()


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
    ("layer", "run=activations&tag=conv&step=Latest", "step", "'Latest'"),
    ("layer", "run=activations&tag=conv&step=latest&step=1", "step", "'latest', '1'"),
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
    ("overview", "", "run", None),
    ("overview", "run=", "run", None),
    ("overview", "run=activations&run=x", "run", "'x'"),
    ("overview", "run=activations&tau=nan", "tau", "'nan'"),
    ("overview", "run=activations&tau=-0.1", "tau", "'-0.1'"),
    ("overview", "run=activations&tau=1e-3", "tau", "'1e-3'"),
    ("overview", "run=activations&tau=", "tau", "''"),
    ("overview", "run=activations&tau=0.1&tau=0.2", "tau", "'0.2'"),
    ("timeline", "tag=conv", "run", None),
    ("timeline", "run=activations", "tag", None),
    ("timeline", "run=activations&tag=", "tag", None),
    ("timeline", "run=activations&tag=conv&tag=dense", "tag", "'dense'"),
    ("curves", "", "run", None),
    ("curves", "run=activations&run=x", "run", "'x'"),
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
    ("overview", {"run": "nope"}, "'nope'"),
    ("timeline", {"run": "nope", "tag": "conv"}, "'nope'"),
    ("timeline", {"run": RUN, "tag": "nope"}, "'nope'"),
    ("timeline", {"run": RUN, "tag": metadata.PROBE_TAG}, "probe image, which has no timeline"),
    ("timeline", {"run": HTML_RUN, "tag": metadata.PROBE_TAG}, "no probe"),
    ("timeline", {"run": "broken", "tag": "future"}, "format"),
    ("curves", {"run": "nope"}, "'nope'"),
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
ROUTES += ["overview", "timeline", "curves", "export"]


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
    np.testing.assert_allclose(v1(as_array(body["stats"])), expected, rtol=1e-4, atol=1e-5)
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


# -- overview, timeline and curves: measures over training ---------------------
#
# The reference values below are the definitions of docs/measures.md written
# again with numpy, from the full-precision activations a training run
# recorded beside its log.

TOLERANCE = 0.02  # the bound against full-precision values
V1_FIELDS = ("min", "max", "mean", "std", "zero_fraction", "nonfinite_fraction")


def matrix(a: np.ndarray) -> np.ndarray:
    """A layer's raw (probes, ...) activations as the logged matrix: rows
    are positions (probe x height x width, or probe x time), columns are
    channels; a units layer is one channel of all its units."""
    a = np.asarray(a, np.float64)
    return a.reshape(-1, 1) if a.ndim == 2 else a.reshape(-1, a.shape[-1])


def ref_change(a: np.ndarray, b: np.ndarray) -> float:
    top = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if top == 0 else float(np.linalg.norm(a - b) / top)


def ref_drift(a: np.ndarray, b: np.ndarray) -> float:
    """1 - linear CKA (Kornblith et al. 2019), NaN where undefined."""
    if len(a) < 3:
        return np.nan
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return np.nan if den == 0 else 1 - float(np.linalg.norm(b.T @ a) ** 2 / den)


def ref_layer_rows(maps: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer measure at each step, from the (positions, channels) maps."""
    first = maps[0]
    out = {m: np.full(len(maps), np.nan) for m in plugin_lib.LAYER_MEASURES}
    for i, a in enumerate(maps):
        if i:
            out["change_prev"][i] = ref_change(a, maps[i - 1])
            out["drift_prev"][i] = ref_drift(a, maps[i - 1])
        out["change_start"][i] = ref_change(a, first)
        out["drift_start"][i] = ref_drift(a, first)
        out["dead_fraction"][i] = np.mean((a == 0).all(axis=0))
        out["mean"][i] = a.mean()
    return out


def ref_health_rows(raw: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The probe set's layer measures at each step (`recorded.ref_health`),
    and the unit measures as (units, steps)."""
    per_step = [recorded.ref_health(a) for a in raw]
    return {
        k: (np.stack([h[k] for h in per_step], axis=-1))
        for k in (*plugin_lib.UNIT_MEASURES, *health.LAYER_MEASURES)
    }


def ref_channel_rows(maps: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each channel measure, (channels, steps)."""
    channels = maps[0].shape[1]
    out = {m: np.full((channels, len(maps)), np.nan) for m in plugin_lib.CHANNEL_MEASURES}
    for i, a in enumerate(maps):
        for c in range(channels):
            if i:
                out["change_prev"][c, i] = ref_change(a[:, c], maps[i - 1][:, c])
            out["change_start"][c, i] = ref_change(a[:, c], maps[0][:, c])
        out["dead"][:, i] = (a == 0).all(axis=0)
        out["mean"][:, i] = a.mean(axis=0)
        out["max"][:, i] = a.max(axis=0)
        out["zero_fraction"][:, i] = (a == 0).mean(axis=0)
    return out


def ref_events(steps: list[int], dead: np.ndarray) -> list[dict]:
    out = []
    for i in range(1, len(steps)):
        for c in range(dead.shape[0]):
            if dead[c, i] != dead[c, i - 1]:
                kind = "died" if dead[c, i] else "revived"
                out.append({"channel": c, "kind": kind, "step": steps[i]})
    return out


def nulls(values) -> np.ndarray:
    """JSON rows with null back to floats with NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in values], np.float64)


def timeline_rows(body: dict, key: str = "rows") -> dict[str, np.ndarray]:
    """The base64 float32 rows back to (channels, steps) arrays; with
    `key="unit_rows"`, a Dense layer's (units, steps) ones."""
    assert body["encoding"] == plugin_lib.ENCODING
    out = {}
    for name, text in body[key].items():
        rows = body["units"] if key == "unit_rows" else body["channels"]
        shape = (rows, len(body["steps"]))
        raw = base64.b64decode(text, validate=True)
        assert len(raw) == 4 * shape[0] * shape[1], name
        out[name] = np.frombuffer(raw, "<f4").reshape(shape).astype(np.float64)
    return out


def assert_rows(got: np.ndarray, expected: np.ndarray, what: str, atol: float = TOLERANCE):
    """Equal within `atol`, with null (NaN) exactly where expected."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0, equal_nan=True, err_msg=what)


@pytest.fixture(scope="module")
def ground(ground_truth):
    """A real training run with known dead, dying and frozen features (see
    `recorded.train_ground_truth`), served keeping every step."""
    return ground_truth, make_client(ground_truth.log_dir, 500)


def test_overview_of_a_training_run_matches_numpy(ground):
    truth, client = ground
    body = get_json(client, "overview", run=RUN)
    assert body["layers"] == list(recorded.GROUND_TRUTH_LAYERS)
    assert body["steps"] == truth.steps
    assert body["measures"] == list(plugin_lib.LAYER_MEASURES)
    assert body["unavailable"] == {}
    assert set(body["rows"]) == set(plugin_lib.LAYER_MEASURES)
    for i, layer in enumerate(body["layers"]):
        expected = ref_layer_rows([matrix(a) for a in truth.activations[layer]])
        expected.update(ref_health_rows(truth.activations[layer]))
        for measure, rows in body["rows"].items():
            assert len(rows) == len(body["layers"])
            got = nulls([rows[i]])[0]
            if measure in ("effective_rank", "rms"):  # relative
                got, expected[measure] = got / expected[measure], expected[measure] * 0 + 1
            assert_rows(got, expected[measure], f"{layer} {measure}")
    conv1 = body["layers"].index("conv1")
    # Frozen: its maps never change, so neither do the measures.
    assert body["rows"]["change_prev"][conv1][1:] == [0.0] * (len(truth.steps) - 1)
    assert body["rows"]["change_start"][conv1] == [0.0] * len(truth.steps)
    assert max(body["rows"]["drift_start"][conv1]) < 1e-5


@pytest.mark.parametrize("layer", recorded.GROUND_TRUTH_LAYERS)
def test_timeline_of_a_training_run_matches_numpy(ground, layer):
    truth, client = ground
    body = get_json(client, "timeline", run=RUN, tag=layer)
    maps = [matrix(a) for a in truth.activations[layer]]
    expected = ref_channel_rows(maps)
    assert (body["run"], body["tag"], body["steps"]) == (RUN, layer, truth.steps)
    assert body["channels"] == maps[0].shape[1]
    assert body["unavailable"] == {}
    rows = timeline_rows(body)
    assert list(rows) == [*plugin_lib.CHANNEL_MEASURES, *plugin_lib.UNIT_MEASURES]
    for measure in plugin_lib.CHANNEL_MEASURES:
        assert_rows(rows[measure], expected[measure], f"{layer} {measure}")
    units = ref_health_rows(truth.activations[layer])
    if layer == "dense1":  # one channel of 12 units: the units have their own rows
        unit_rows = timeline_rows(body, "unit_rows")
        assert body["units"] == 12
        assert_rows(rows["on_rate"], units["on_rate"].mean(axis=0)[None], "channel on_rate")
        assert np.isnan(rows["dormant_score"]).all()
    else:
        unit_rows = rows
        assert body["units"] == body["channels"] and body["unit_rows"] == {}
    for measure in plugin_lib.UNIT_MEASURES:
        assert_rows(unit_rows[measure], units[measure], f"{layer} {measure}")
    np.testing.assert_array_equal(rows["dead"], expected["dead"])
    dead = expected["dead"].astype(bool)
    assert body["events"] == ref_events(truth.steps, dead)
    assert body["never_active"] == [int(c) for c in np.flatnonzero(dead.all(axis=1))]


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("overview", {"run": RUN}),
        ("timeline", {"run": RUN, "tag": "conv2"}),
        ("curves", {"run": RUN}),
        ("tags", {}),
        ("steps", {"run": RUN, "tag": "conv2"}),
        ("layer", {"run": RUN, "tag": "conv1", "step": "last"}),
        ("series", {"run": RUN, "tag": "conv2", "channel": 3}),
        ("stats", {"run": RUN, "tag": "conv2"}),
    ],
)
def test_answers_reach_clients_with_and_without_gzip_alike(ground, route, params):
    truth, client = ground
    if params.get("step") == "last":
        params = {**params, "step": truth.steps[-1]}
    plain = get(client, route, **params)
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    zipped = [
        client.get(URL + route, query_string=params, headers={"Accept-Encoding": "gzip"})
        for _ in range(2)
    ]
    for r in zipped:
        assert r.status_code == 200
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.mimetype == "application/json"
    # A cached answer is sent again byte for byte; the others gzip alike.
    assert zipped[0].get_data() == zipped[1].get_data()
    assert json.loads(gzip.decompress(zipped[0].get_data())) == plain.get_json()


def test_timeline_finds_the_known_deaths(ground):
    truth, client = ground
    body = get_json(client, "timeline", run=RUN, tag="conv2")
    assert set(recorded.DEAD_FROM_START) <= set(body["never_active"])
    for channel in recorded.KILLED:
        assert {"channel": channel, "kind": "died", "step": truth.kill_step} in body["events"]
        assert channel not in body["never_active"]
    died = [e for e in body["events"] if e["channel"] in recorded.KILLED]
    assert [e["kind"] for e in died] == ["died"] * len(recorded.KILLED)
    assert body["events"] == sorted(body["events"], key=lambda e: (e["step"], e["channel"]))


def curve(body: dict, run: str, tag: str) -> dict:
    (found,) = [s for s in body["series"] if (s["run"], s["tag"]) == (run, tag)]
    return found


def test_curves_put_keras_epoch_values_on_the_iterations_of_the_same_values(ground):
    truth, client = ground
    body = get_json(client, "curves", run=RUN)
    assert (body["run"], body["steps"]) == (RUN, truth.steps)
    assert {s["run"] for s in body["series"]} == {"train", "validation"}
    # Keras writes each validation value twice: at the epoch index and at
    # the iteration count when it was computed.
    by_epoch = curve(body, "validation", "epoch_loss")
    by_iteration = curve(body, "validation", "evaluation_loss_vs_iterations")
    assert (by_epoch["axis"], by_iteration["axis"]) == ("epoch", "iteration")
    assert [p[:2] for p in by_epoch["points"]] == [p[:2] for p in by_iteration["points"]]
    assert [p[2] for p in by_epoch["points"]] == list(range(truth.epochs))
    assert all(p[3] for p in by_epoch["points"])
    assert (by_epoch["unmapped"], by_epoch["note"]) == ([], None)
    batch = curve(body, "train", "batch_loss")
    assert batch["axis"] == "iteration"
    assert [p[0] for p in batch["points"]] == [p[2] for p in batch["points"]]
    assert len(batch["points"]) == truth.epochs * truth.steps_per_epoch


@pytest.fixture(scope="module")
def every_other_epoch(tmp_path_factory):
    """The same training, logging activations every second epoch."""
    truth = recorded.train_ground_truth(tmp_path_factory.mktemp("every_other"), freq=2)
    return truth, truth.log_dir


def test_curves_interpolate_epochs_between_logged_states(every_other_epoch):
    truth, log_dir = every_other_epoch
    body = get_json(make_client(log_dir, 500), "curves", run=RUN)
    per = truth.steps_per_epoch
    assert body["steps"] == [0, 2 * per, 4 * per, 5 * per]
    by_epoch = curve(body, "validation", "epoch_loss")
    by_iteration = curve(body, "validation", "evaluation_loss_vs_iterations")
    # Epochs have the same number of batches, so interpolating lands on
    # the very iteration Keras wrote the value at.
    assert [p[:2] for p in by_epoch["points"]] == [p[:2] for p in by_iteration["points"]]
    assert [p[3] for p in by_epoch["points"]] == [False, True, False, True, True]
    assert by_epoch["note"] is None


def test_curves_say_which_epochs_no_kept_state_places(every_other_epoch):
    truth, log_dir = every_other_epoch
    # Sampling keeps only the newest activations step (5 epochs done); the
    # scalars keep every value.
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"activations": 1})
    mux.AddRunsFromDirectory(log_dir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, log_dir)
    context = base_plugin.TBContext(logdir=log_dir, data_provider=provider)
    client = Client(application.TensorBoardWSGI([plugin_lib.ActivationsLoader().load(context)]))
    body = get_json(client, "curves", run=RUN)
    last = truth.epochs * truth.steps_per_epoch
    assert body["steps"] == [last]
    by_epoch = curve(body, "validation", "epoch_loss")
    values = [p[1] for p in curve(body, "validation", "evaluation_loss_vs_iterations")["points"]]
    assert by_epoch["points"] == [[float(last), values[-1], truth.epochs - 1, True]]
    assert by_epoch["unmapped"] == [[e, values[e]] for e in range(truth.epochs - 1)]
    assert by_epoch["note"] == (
        "4 of 5 epoch values unmapped: no logged state is at or around the end of "
        "epoch index 0, 1, 2, 3; logged states cover 5 to 5 epochs completed."
    )


# -- measures of small hand-written logs, where every value is known ------------

# One probe of 2 x 2 positions: channel 0 moves, channel 1 is never active.
HAND_CONV = recorded.layer_info("conv", 2, probes=1, h=2, w=2, position=0)
HAND_DENSE = recorded.layer_info(
    "dense", 1, probes=1, h=1, w=4, layout="units", class_name="Dense",
    output_shape=(None, 4), position=1,
)  # fmt: skip
HAND_CONV_CH0 = {0: [1, 2, 3, 4], 10: [2, 4, 6, 8], 20: [1, 2, 4, 3]}
HAND_DENSE_UNITS = {0: [0, 0, 0, 0], 10: [1, 0, 0, 0], 20: [0, 0, 0, 0]}  # revives, dies
SEQ = recorded.layer_info(
    "seq", 3, probes=2, h=1, w=5, layout="sequence", class_name="LSTM",
    output_shape=(None, 5, 3), position=0,
)  # fmt: skip


def hand_conv(step: int) -> np.ndarray:
    x = np.zeros((1, 2, 2, 2), np.float32)
    x[0, :, :, 0] = np.reshape(HAND_CONV_CH0[step], (2, 2))
    return x


def hand_dense(step: int) -> np.ndarray:
    return np.array([HAND_DENSE_UNITS[step]], np.float32)


def seq_array(step: int) -> np.ndarray:
    x = np.random.default_rng(300 + step).normal(size=(2, 5, 3)).astype(np.float32)
    return np.maximum(x, 0)  # some zeros, as after ReLU


def write_scalars(run_dir, tag: str, points) -> None:
    """Scalars as Keras's `TensorBoard` callback writes them: float32
    tensors under the `scalars` plugin."""
    writer = EventFileWriter(str(run_dir))
    meta = scalar_metadata.create_summary_metadata(display_name=tag, description="")
    for step, value in points:
        value = summary_pb2.Summary.Value(
            tag=tag, metadata=meta, tensor=tensor_util.make_tensor_proto(np.float32(value))
        )
        writer.add_event(
            summary.event_pb2.Event(
                wall_time=wall(step), step=step, summary=summary_pb2.Summary(value=[value])
            )
        )
    writer.close()


def write_v1(run_dir, info: metadata.LayerInfo, steps: dict[int, np.ndarray]) -> None:
    """Steps as a version without measures wrote them: the six statistics
    of format 1 and a header of epoch, batch and index only."""
    info = dataclasses.replace(info, stats_fields=V1_FIELDS)
    writer = EventFileWriter(str(run_dir))
    for index, (step, x) in enumerate(steps.items()):
        stats, pngs = encoding.encode_layer(x, max_size=None)
        header = json.dumps({"epoch": float(index), "batch": None, "index": index}).encode()
        blobs = [header, metadata.encode_stats(stats[..., : len(V1_FIELDS)]), *pngs]
        writer.add_event(summary.make_event(info, step, wall(step), blobs))
    writer.close()


def write_v2(run_dir, info: metadata.LayerInfo, steps: dict[int, np.ndarray]) -> None:
    """Steps as format version 2 wrote them: stacked PNGs and the measures'
    sums per probe, without the probe set's blobs and header keys."""
    info = dataclasses.replace(info, channels_per_image=info.channels, version=2)
    writer = EventFileWriter(str(run_dir))
    tracker = measures.Tracker()
    for index, (step, x) in enumerate(steps.items()):
        header = {"epoch": float(index), "batch": None, "index": index}
        logged, blobs, _ = summary.encode_step(
            summary.LayerValue(info, x), header, max_size=None, tracker=tracker, step=step
        )
        fields = metadata.decode_header(blobs[0])
        header = {k: v for k, v in fields.items() if k not in metadata.SET_HEADER_KEYS}
        v2 = dataclasses.replace(
            logged, samples=None, units=None, set_fields=(), unit_fields=(), version=2
        )
        blobs = [json.dumps(header).encode(), *blobs[1 : v2.blob_count]]
        writer.add_event(summary.make_event(v2, step, wall(step), blobs))
    writer.close()


@pytest.fixture(scope="module")
def hand(hand_root):
    return make_client(hand_root, 500)


@pytest.fixture(scope="module")
def hand_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand_measures")
    arrays = {HAND_CONV: hand_conv, HAND_DENSE: hand_dense}
    write_with_probe(root / "hand" / RUN, arrays, {0: 0.0, 10: 1.0, 20: 2.0})
    write_scalars(root / "hand" / "train", "epoch_loss", [(0, 0.5), (1, 0.25), (2, 0.125)])
    write_scalars(root / "hand" / "train", "batch_loss", [(5, 1.0), (15, 0.75)])
    # Not a sibling of hand/activations.
    write_scalars(root / "train", "epoch_loss", [(0, 2.0), (1, 1.0)])

    write_v1(root / "older", HAND_CONV, {0: hand_conv(0), 10: hand_conv(10)})
    broken = hand_conv(20)
    broken[0, 0, 0, 0] = np.nan
    write_v2(root / "v2", HAND_CONV, {0: hand_conv(0), 10: hand_conv(10), 20: broken})

    writer = summary.ActivationWriter(root / "snapshot")
    writer.submit(100, [summary.LayerValue(HAND_CONV, hand_conv(0))], wall_time=wall(100))
    writer.close()

    writer = summary.ActivationWriter(root / "dead")
    for step in (0, 1):
        zeros = np.zeros((1, 2, 2, 2), np.float32)
        writer.submit(step, [summary.LayerValue(HAND_CONV, zeros)], wall_time=wall(step))
    writer.close()

    writer = summary.ActivationWriter(root / "seq")
    for step in range(3):
        writer.submit(step, [summary.LayerValue(SEQ, seq_array(step))], wall_time=wall(step))
    writer.close()
    return root


def rounded(value, digits: int = 6):
    """Floats rounded, so that values computed in float32 compare exactly."""
    if isinstance(value, float):
        return round(value, digits) + 0.0  # no -0.0
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return value


def decoded(body: dict) -> dict:
    """A timeline with its rows decoded to lists, NaN as None."""
    rows = timeline_rows(body)
    as_json = {
        k: [[None if np.isnan(x) else x for x in row] for row in v.tolist()]
        for k, v in rows.items()
    }
    return {**body, "rows": as_json}


N = None
R34 = (34 / 120) ** 0.5  # ||[-1, -2, -2, -5]|| / ||[2, 4, 6, 8]||
R2 = (2 / 30) ** 0.5  # ||[0, 0, 1, -1]|| / ||[1, 2, 3, 4]||
RMS30 = (30 / 8) ** 0.5  # [1, 2, 3, 4] and four zeros
RMS120 = (120 / 8) ** 0.5  # [2, 4, 6, 8] and four zeros


def test_overview_exact(hand):
    assert rounded(get_json(hand, "overview", run="hand/activations")) == rounded(
        {
            "run": "hand/activations",
            "layers": ["conv", "dense"],
            "steps": [0, 10, 20],
            "measures": list(plugin_lib.LAYER_MEASURES),
            "rows": {
                "change_prev": [[N, 0.5, R34], [N, 1.0, 1.0]],
                "change_start": [[0.0, 0.5, R2], [0.0, 1.0, 0.0]],
                # Centred, channel 0 at step 20 has cos^2 = 0.64 with the others.
                "drift_prev": [[N, 0.0, 0.36], [N, N, N]],
                # A zero matrix has no CKA: null by the definition, not unavailable.
                "drift_start": [[0.0, 0.0, 0.36], [N, N, N]],
                "dead_fraction": [[0.5, 0.5, 0.5], [1.0, 0.0, 1.0]],
                "mean": [[1.25, 2.5, 1.25], [0.0, 0.25, 0.0]],
                # Channel 1 is 0: its score 0, channel 0's 2. A layer of zeros
                # has no score, so no dormant fraction.
                "dormant_fraction": [[0.5, 0.5, 0.5], [N, 0.75, N]],
                # One sample: no two to compare, and no spread to rank.
                "effective_rank": [[N, N, N], [N, N, N]],
                "similarity": [[N, N, N], [N, N, N]],
                "rms": [[RMS30, RMS120, RMS30], [0.0, 0.5, 0.0]],
                "saturation": [[N, N, N], [N, N, N]],
            },
            "unavailable": {},
            "first_nonfinite": {},
            "effective_rank_max": {"conv": 0, "dense": 0},
            "samples": {"conv": 1, "dense": 1},
            "tau": 0.025,
        }
    )


@pytest.mark.parametrize(
    ("tau", "conv"),
    [("0", [0.5, 0.5, 0.5]), ("2", [1.0, 1.0, 1.0]), ("1.99", [0.5, 0.5, 0.5])],
)
def test_overview_takes_another_tau(hand, tau, conv):
    # conv's channel scores are 0 and 2 at every step.
    body = get_json(hand, "overview", run="hand/activations", tau=tau)
    assert body["tau"] == float(tau)
    assert rounded(body["rows"]["dormant_fraction"][0]) == conv


def test_timeline_exact(hand):
    body = get_json(hand, "timeline", run="hand/activations", tag="conv")
    assert rounded(decoded(body)) == rounded(
        {
            "run": "hand/activations",
            "tag": "conv",
            "steps": [0, 10, 20],
            "channels": 2,
            "encoding": plugin_lib.ENCODING,
            "rows": {
                "change_prev": [[N, 0.5, R34], [N, 0.0, 0.0]],
                "change_start": [[0.0, 0.5, R2], [0.0, 0.0, 0.0]],
                "dead": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
                "mean": [[2.5, 5.0, 2.5], [0.0, 0.0, 0.0]],
                "max": [[4.0, 8.0, 4.0], [0.0, 0.0, 0.0]],
                "zero_fraction": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
                "on_rate": [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]],
                "dormant_score": [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]],
            },
            "units": 2,
            "unit_rows": {},
            "events": [],
            "never_active": [1],
            "unavailable": {},
        }
    )


def test_timeline_of_units_marks_a_revival_and_a_death(hand):
    body = decoded(get_json(hand, "timeline", run="hand/activations", tag="dense"))
    assert rounded(body["rows"]) == {
        "change_prev": [[N, 1.0, 1.0]],
        "change_start": [[0.0, 1.0, 0.0]],
        "dead": [[1.0, 0.0, 1.0]],
        "mean": [[0.0, 0.25, 0.0]],
        "max": [[0.0, 1.0, 0.0]],
        "zero_fraction": [[1.0, 0.75, 1.0]],
        # One channel: the share over its units; the units' scores are their own.
        "on_rate": [[0.0, 0.25, 0.0]],
        "dormant_score": [[N, N, N]],
    }
    # A Dense layer's units are its units here, one row each.
    body_units = get_json(hand, "timeline", run="hand/activations", tag="dense")
    as_units = {"rows": body_units["unit_rows"], "channels": body_units["units"]}
    units = decoded({**body_units, **as_units})["rows"]
    assert rounded(units) == {
        "on_rate": [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        "dormant_score": [[N, 4.0, N], [N, 0.0, N], [N, 0.0, N], [N, 0.0, N]],
    }
    assert body["units"] == 4
    assert body["events"] == [
        {"channel": 0, "kind": "revived", "step": 10},
        {"channel": 0, "kind": "died", "step": 20},
    ]
    assert (body["channels"], body["never_active"], body["unavailable"]) == (1, [], {})


def test_curves_exact(hand):
    assert get_json(hand, "curves", run="hand/activations") == {
        "run": "hand/activations",
        "steps": [0, 10, 20],
        "series": [
            {
                "run": "hand/train",
                "tag": "batch_loss",
                "axis": "iteration",
                "points": [[5, 1.0, 5, True], [15, 0.75, 15, True]],
                "unmapped": [],
                "note": None,
            },
            {
                "run": "hand/train",
                "tag": "epoch_loss",
                "axis": "epoch",
                "points": [[10.0, 0.5, 0, True], [20.0, 0.25, 1, True]],
                "unmapped": [[2, 0.125]],
                "note": "1 of 3 epoch values unmapped: no logged state is at or around the "
                "end of epoch index 2; logged states cover 0 to 2 epochs completed.",
            },
        ],
    }


def test_older_log_gives_what_format_1_statistics_can_and_says_why_not_the_rest(hand):
    overview = get_json(hand, "overview", run="older")
    moving = ("change_prev", "change_start", "drift_prev", "drift_start")
    set_measures = ("dormant_fraction", "effective_rank", "similarity", "rms")
    assert overview["unavailable"] == {
        **{m: {"conv": measures.NO_MEASURES} for m in moving},
        **{m: {"conv": health.NO_SET_MEASURES} for m in set_measures},
    }
    assert measures.NO_MEASURES == "logged by a version without measures"
    assert rounded(overview["rows"]) == {
        **{m: [[N, N]] for m in (*moving, *set_measures, "saturation")},
        "dead_fraction": [[0.5, 0.5]],
        "mean": [[1.25, 2.5]],
    }
    assert overview["first_nonfinite"] == {}
    timeline = decoded(get_json(hand, "timeline", run="older", tag="conv"))
    assert timeline["unavailable"] == {
        "change_prev": measures.NO_MEASURES,
        "change_start": measures.NO_MEASURES,
        "on_rate": health.NO_SET_MEASURES,
        "dormant_score": health.NO_SET_MEASURES,
    }
    assert (timeline["units"], timeline["unit_rows"]) == (0, {})
    assert timeline["rows"].pop("on_rate") == [[N, N]] * 2
    assert timeline["rows"].pop("dormant_score") == [[N, N]] * 2
    assert rounded(timeline["rows"]) == {
        "change_prev": [[N, N], [N, N]],
        "change_start": [[N, N], [N, N]],
        "dead": [[0.0, 0.0], [1.0, 1.0]],
        "mean": [[2.5, 5.0], [0.0, 0.0]],
        "max": [[4.0, 8.0], [0.0, 0.0]],
        "zero_fraction": [[0.0, 0.0], [1.0, 1.0]],
    }
    assert (timeline["events"], timeline["never_active"]) == ([], [1])


def test_a_version_2_log_keeps_its_measures_and_finds_its_first_non_finite_step(hand):
    (series,) = [v for k, v in get_json(hand, "tags")["v2"].items() if k == "conv"]
    assert (series["version"], series["set_fields"]) == (2, [])
    overview = get_json(hand, "overview", run="v2")
    set_measures = ("dormant_fraction", "effective_rank", "similarity", "rms")
    assert overview["unavailable"] == {m: {"conv": health.NO_SET_MEASURES} for m in set_measures}
    assert overview["first_nonfinite"] == {"conv": 20}  # from the statistics
    rows = rounded(overview["rows"])
    assert rows["change_prev"] == [[N, 0.5, N]] and rows["change_start"] == [[0.0, 0.5, N]]
    assert rows["dead_fraction"] == [[0.5, 0.5, 0.5]]
    timeline = decoded(get_json(hand, "timeline", run="v2", tag="conv"))
    assert timeline["units"] == 0 and timeline["rows"]["on_rate"] == [[N, N, N]] * 2
    assert timeline["rows"]["dead"] == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_one_step_snapshot(hand):
    overview = get_json(hand, "overview", run="snapshot")
    assert (overview["steps"], overview["unavailable"]) == ([100], {})
    assert rounded(overview["rows"]) == {
        "change_prev": [[N]],
        "change_start": [[0.0]],
        "drift_prev": [[N]],
        "drift_start": [[0.0]],
        "dead_fraction": [[0.5]],
        "mean": [[1.25]],
        "dormant_fraction": [[0.5]],
        "effective_rank": [[N]],
        "similarity": [[N]],
        "rms": [[round(RMS30, 6)]],
        "saturation": [[N]],
    }
    timeline = decoded(get_json(hand, "timeline", run="snapshot", tag="conv"))
    assert timeline["rows"]["change_prev"] == [[N], [N]]
    assert (timeline["events"], timeline["never_active"]) == ([], [1])
    # A snapshot has no epoch, so the epoch values of its sibling runs have
    # nowhere to go: unmapped, with the reason.
    curves = get_json(hand, "curves", run="snapshot")
    assert curves["steps"] == [100]
    (epoch_loss,) = curves["series"]
    assert (epoch_loss["run"], epoch_loss["points"]) == ("train", [])
    assert epoch_loss["unmapped"] == [[0, 2.0], [1, 1.0]]
    assert epoch_loss["note"] == (
        "2 of 2 epoch values unmapped: the activations' steps carry no epochs "
        "(log_activations snapshots)."
    )


def test_all_dead_layer(hand):
    overview = get_json(hand, "overview", run="dead")
    assert overview["unavailable"] == {}
    assert overview["rows"] == {
        "change_prev": [[N, 0.0]],
        "change_start": [[0.0, 0.0]],
        "drift_prev": [[N, N]],
        "drift_start": [[N, N]],
        "dead_fraction": [[1.0, 1.0]],
        "mean": [[0.0, 0.0]],
        # No activity at all: no unit is more dormant than another.
        "dormant_fraction": [[N, N]],
        "effective_rank": [[N, N]],
        "similarity": [[N, N]],
        "rms": [[0.0, 0.0]],
        "saturation": [[N, N]],
    }
    timeline = get_json(hand, "timeline", run="dead", tag="conv")
    assert (timeline["events"], timeline["never_active"]) == ([], [0, 1])
    assert timeline_rows(timeline)["dead"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_sequence_layer_with_two_probes_matches_numpy(hand):
    maps = [matrix(seq_array(step)) for step in range(3)]
    timeline = get_json(hand, "timeline", run="seq", tag="seq")
    assert (timeline["channels"], timeline["steps"]) == (3, [0, 1, 2])
    rows = timeline_rows(timeline)
    for measure, expected in ref_channel_rows(maps).items():
        assert_rows(rows[measure], expected, measure)
    overview = get_json(hand, "overview", run="seq")
    expected = ref_layer_rows(maps)
    expected.update(ref_health_rows([seq_array(step) for step in range(3)]))
    for measure, got in overview["rows"].items():
        assert_rows(nulls(got)[0], expected[measure], measure)


def test_repeated_answers_are_the_same_bytes(hand):
    for route, params in [
        ("overview", {"run": "hand/activations"}),
        ("timeline", {"run": "hand/activations", "tag": "conv"}),
        ("curves", {"run": "hand/activations"}),
    ]:
        first = get(hand, route, **params)
        again = get(hand, route, **params)
        assert first.status_code == again.status_code == 200
        assert first.data == again.data


def test_measures_of_a_damaged_run_say_why_they_are_missing(client):
    overview = get_json(client, "overview", run="broken")
    assert overview["layers"] == ["badmode", "badsize", "badstats", "textstats", "truncated"]
    # Unreadable statistics or no well-formed step: nothing to measure.
    for measure in plugin_lib.LAYER_MEASURES:
        assert overview["unavailable"][measure]["badstats"] == "no readable step"
        assert overview["unavailable"][measure]["truncated"] == "no readable step"
    timeline = get_json(client, "timeline", run="broken", tag="badstats")
    assert (timeline["steps"], timeline["events"], timeline["never_active"]) == ([], [], [])
    assert timeline_rows(timeline)["dead"].shape == (2, 0)


# -- export: a channel's evolution and a layer's grid as files --------------------

GRAY_LUT = np.arange(256)


def frames_of(data: bytes) -> list[np.ndarray]:
    """Every frame of an animation as a viewer shows it (GIF frames drawn
    over the ones before), RGB."""
    image = Image.open(io.BytesIO(data))
    out = []
    for i in range(image.n_frames):
        image.seek(i)
        out.append(np.asarray(image.convert("RGB")))
    return out


def upscaled(levels: np.ndarray, factor: int) -> np.ndarray:
    return levels.repeat(factor, axis=0).repeat(factor, axis=1)


def find_tile(image: np.ndarray, tile: np.ndarray) -> list[tuple[int, int]]:
    """Where `tile` (h, w) occurs exactly in the gray `image`."""
    h, w = tile.shape
    rows = np.lib.stride_tricks.sliding_window_view(image, w, axis=1)
    ys, xs = np.nonzero((rows == tile[0]).all(axis=-1))
    return [
        (int(y), int(x))
        for y, x in zip(ys, xs)
        if y + h <= image.shape[0] and (image[y : y + h, x : x + w] == tile).all()
    ]


def get_export(client, media_type: str, file_name: str, **params):
    r = get(client, "export", **params)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == media_type
    assert r.headers["Content-Disposition"] == f'attachment; filename="{file_name}"'
    return r.data


@pytest.mark.parametrize(
    ("format", "media_type", "suffix", "tolerance"),
    # A GIF keeps a pixel's colour while it moves by at most one of its 64
    # colours, and rounds to the nearest: 1.5 colours; an APNG half of one of 252.
    [("gif", "image/gif", ".gif", 1.5 * 255 / 63), ("apng", "image/apng", ".png", 255 / 251 / 2)],
)
@pytest.mark.parametrize(("probe", "channel"), [(0, 0), (1, 1)])
def test_export_evolution_frames_show_each_kept_step(
    full, format, media_type, suffix, tolerance, probe, channel
):
    name = f"activations-conv-c{channel}{f'-p{probe}' if probe else ''}{suffix}"
    data = get_export(
        full, media_type, name, **LAYER, channel=channel, format=format, cmap="gray", probe=probe
    )
    frames = frames_of(data)
    steps = [s["step"] for s in get_json(full, "steps", **LAYER)["steps"]]
    assert len(frames) == len(steps) == STEPS
    factor = int(np.ceil(export.MIN_SIDE / max(CONV.height, CONV.width)))
    for frame, step in zip(frames, steps):
        levels = layer_levels(get_json(full, "layer", **LAYER, step=step, probe=probe))[channel]
        body = frame[frame.shape[0] - CONV.height * factor :, : CONV.width * factor]
        # Gray: each pixel's colour is its level, within the format's colour step.
        got = body.astype(np.float64)
        assert (got[..., 0] == got[..., 2]).all()
        np.testing.assert_allclose(
            got[..., 0], upscaled(levels, factor), atol=tolerance + 0.5
        )  # + the 8-bit rounding
        band = frame[: frame.shape[0] - CONV.height * factor]
        assert (band < 128).any(), "the step is written above the map"


def test_export_evolution_in_a_colormap_and_a_scale(full):
    lut = np.array(COLORMAPS_LUTS["magma"])
    own, fixed = (
        frames_of(
            get_export(
                full,
                "image/gif",
                "activations-conv-c0.gif",
                **LAYER,
                channel=0,
                cmap="magma",
                norm=norm,
            )
        )
        for norm in ("channel", "layer-fixed")
    )
    factor = int(np.ceil(export.MIN_SIDE / max(CONV.height, CONV.width)))
    body = own[-1][-CONV.height * factor :, : CONV.width * factor].reshape(-1, 3)
    # Every pixel is one of the colormap's colours.
    distance = np.abs(body[:, None, :].astype(int) - lut[None]).sum(axis=-1).min(axis=1)
    assert distance.max() <= 6
    # Over the layer's range at every step, a channel's own range is narrower.
    assert not np.array_equal(own[-1], fixed[-1])
    assert (
        np.ptp(fixed[-1][-CONV.height * factor :].reshape(-1, 3), axis=0).sum()
        < np.ptp(body, axis=0).sum()
    )


COLORMAPS_LUTS = {name: plugin_lib.colormap_luts()[name] for name in COLORMAPS}


def test_export_grid_holds_every_channel_at_the_step(full):
    step = 3
    data = get_export(
        full,
        "image/png",
        "activations-conv-step3-p1.png",
        **LAYER,
        step=step,
        format="png",
        cmap="gray",
        probe=1,
    )
    image = decode_png(data)
    assert image.ndim == 3 and (image[..., 0] == image[..., 2]).all()
    levels = layer_levels(get_json(full, "layer", **LAYER, step=step, probe=1))
    factor = int(np.ceil(export.MIN_TILE_SIDE / max(CONV.height, CONV.width)))
    places = [find_tile(image[..., 0], upscaled(levels[c], factor)) for c in range(CONV.channels)]
    assert all(len(p) == 1 for p in places), places
    # In channel order, row by row.
    assert [p[0] for p in places] == sorted(p[0] for p in places)


def test_export_defaults_and_units(full):
    plain = get_export(full, "image/gif", "activations-conv-c2.gif", **LAYER, channel=2)
    explicit = get(full, "export", **LAYER, channel=2, format="gif", cmap="viridis", norm="channel")
    assert plain == explicit.data
    grid = get_export(full, "image/png", "activations-conv-step0.png", **LAYER, step=0)
    assert decode_png(grid).ndim == 3
    frames = frames_of(
        get_export(
            full,
            "image/apng",
            "activations-dense-c0.png",
            run=RUN,
            tag="dense",
            channel=0,
            format="apng",
        )
    )
    assert len(frames) == STEPS


def test_export_file_name_is_safe_for_any_name(client):
    r = get(client, "export", run=HTML_RUN, tag=SLASH_TAG, step=10, probe=0)
    assert r.status_code == 200
    disposition = r.headers["Content-Disposition"]
    name = disposition.split('filename="')[1].rstrip('"')
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name), name
    assert name.endswith("-step10.png") and "block_1_conv" in name


EXPORT_BAD = [
    ({"channel": 0, "format": "bmp"}, ["'bmp'", "gif, apng"]),
    ({"channel": 0, "format": "png"}, ["'png'", "gif, apng"]),
    ({"step": 1, "format": "gif"}, ["'gif'", "png"]),
    ({"channel": 0, "cmap": "jet"}, ["'jet'", "viridis, gray, magma"]),
    ({"step": 1, "norm": "global"}, ["'global'", "channel, layer, channel-fixed, layer-fixed"]),
    ({"channel": 0, "step": 1}, ["channel='0' and step='1'", "exactly one"]),
    ({}, ["neither", "exactly one"]),
    ({"channel": "x"}, ["'x'", "non-negative integer"]),
    ({"step": "1.5"}, ["'1.5'", "non-negative integer"]),
    ({"channel": 0, "probe": "-1"}, ["'-1'", "'probe'"]),
    ({"channel": 0, "format": ""}, ["'format'", "empty"]),
]


@pytest.mark.parametrize(("params", "words"), EXPORT_BAD)
def test_export_bad_request_names_the_value_and_the_choices(client, params, words):
    r = get(client, "export", **LAYER, **params)
    assert r.status_code == 400
    assert r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    for word in words:
        assert word in text, (word, text)


def test_export_repeated_option_is_a_bad_request(client):
    r = client.get(URL + "export?run=activations&tag=conv&channel=0&format=gif&format=apng")
    assert r.status_code == 400
    assert "'format' was given 2 times" in r.get_data(as_text=True)


EXPORT_NOT_FOUND = [
    ({"run": "nope", "tag": "conv", "channel": 0}, "'nope'"),
    ({"run": RUN, "tag": "nope", "step": 0}, "'nope'"),
    ({**LAYER, "step": 99}, "Step 99"),
    ({**LAYER, "channel": 3}, "Channel 3"),
    ({**LAYER, "channel": 0, "probe": PROBES}, f"Probe {PROBES}"),
    ({**LAYER, "step": 1, "probe": PROBES}, f"Probe {PROBES}"),
    ({"run": RUN, "tag": metadata.PROBE_TAG, "step": 0}, "probe image"),
    ({"run": "broken", "tag": "future", "channel": 0}, "format"),
]


@pytest.mark.parametrize(("params", "message"), EXPORT_NOT_FOUND)
def test_export_not_found(client, params, message):
    r = get(client, "export", **params)
    assert r.status_code == 404
    assert r.mimetype == "text/plain"
    assert message in r.get_data(as_text=True)


def test_export_of_odd_input_is_never_a_server_error(client):
    for run, tag in itertools.product(
        [RUN, HTML_RUN, "broken"],
        ["conv", "dense", HTML_TAG, "badstats", "truncated", "textstats", "badsize"],
    ):
        for extra in ({"channel": 0}, {"step": 0}, {"step": 1}, {"channel": 1, "format": "apng"}):
            r = get(client, "export", run=run, tag=tag, **extra)
            assert r.status_code in (200, 400, 404), (run, tag, extra, r.status_code)
            assert b"Traceback" not in r.data


@pytest.mark.parametrize("impl", ["overview_impl", "curves_impl"])
def test_an_answer_not_cached_lists_the_run_once(hand_root, impl):
    from tensorboard import context

    from tb_activations.reader import Reader

    root = hand_root
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(root))
    listed = []
    real = provider.list_blob_sequences

    def counting(ctx, **kwargs):  # the real listing, counted
        listed.append(kwargs.get("run_tag_filter"))
        return real(ctx, **kwargs)

    provider.list_blob_sequences = counting
    reader = Reader(provider)
    ctx = context.RequestContext()
    first = getattr(plugin_lib, impl)(reader, ctx, "", "hand/activations")
    assert len(listed) == 1 and listed[0].runs == frozenset({"hand/activations"})
    again = getattr(plugin_lib, impl)(reader, ctx, "", "hand/activations")
    assert len(listed) == 2 and again is first  # cached: one listing for the versions


def test_probe_of_each_input(tmp_path):
    """`input=` names the input whose probe picture to send: the main one's
    own name gives `__probe__`, another's gives `__probe__/<name>`."""
    keras = pytest.importorskip("keras")
    from tb_activations import log_activations

    image = keras.Input((6, 6, 1), name="image")
    table = keras.Input((4,), name="table")
    x = keras.layers.Flatten(name="flat")(image)
    x = keras.layers.Concatenate(name="both")([x, table])
    model = keras.Model([image, table], keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 4)).astype("float32")
    probe = {"image": rng.random((2, 6, 6, 1)).astype("float32"), "table": values}
    log_activations(model, probe, tmp_path, layers=["out"], verbose=0)
    c = make_client(tmp_path, 10)
    tags = get_json(c, "tags")["activations"]
    assert tags[metadata.PROBE_TAG]["input_name"] == "image"
    assert tags[f"{metadata.PROBE_TAG}/table"]["probe_kind"] == "values"
    main = get(c, "probe", run="activations", probe=1)
    assert get(c, "probe", run="activations", probe=1, input="image").data == main.data
    r = get(c, "probe", run="activations", probe=1, input="table")
    assert r.status_code == 200 and r.mimetype == "image/png"
    x = values[1].astype(np.float64)
    expected = np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_allclose(decode_png(r.data).reshape(-1), expected, atol=1, rtol=0)
    missing = get(c, "probe", run="activations", input="nope")
    assert missing.status_code == 404 and "nope" in missing.get_data(as_text=True)
    empty = get(c, "probe", run="activations", input="")
    assert empty.status_code == 400 and "'input'" in empty.get_data(as_text=True)
