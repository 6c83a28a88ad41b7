"""The reader's public surface on real event files, written by the project's
writer and read through TensorBoard's own multiplexer and data provider."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading

import numpy as np
import pytest
from PIL import Image
from tensorboard import context, errors
from tensorboard.backend.event_processing import (
    data_provider,
    event_file_loader,
    plugin_event_multiplexer,
)
from tensorboard.data import server_ingester
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import grpc_util

from tb_activations import metadata, step_index, summary
from tb_activations.reader import Reader

import recorded
import support

RUN = "activations"
BROKEN = "broken"
STEPS = 6
MAX_SIZE = 16
EXP = ""

# Positions out of name order, so model order and name order differ; layers
# without a position (older logs) come last, by name.
# CONV's PNGs stack two channels, then one; OLD_Y is a format-1 layer, one PNG
# per channel.
CONV = recorded.layer_info("b_conv", 3, probes=2, position=0, channels_per_image=2)
DENSE = recorded.layer_info(
    "a_dense",
    1,
    probes=2,
    h=1,
    w=40,  # longer than MAX_SIZE: strips are never downscaled
    layout="units",
    class_name="Dense",
    output_shape=(None, 40),
    position=1,
)
OLD_Z = recorded.layer_info("z_old", 2)
OLD_Y = recorded.layer_info("y_old", 2, version=1)
PROBE = recorded.layer_info(
    metadata.PROBE_TAG, 1, probes=2, h=8, w=8, layout="probe", class_name="Probe"
)
LAYERS = (CONV, DENSE, OLD_Z, OLD_Y)
V1 = len(metadata.STATS_FIELDS)  # the statistics every format-1 log has


BADSTATS = recorded.layer_info("badstats", 2)
# Two channels stacked in a PNG of an odd number of rows.
BADROWS = recorded.layer_info("badrows", 2, h=3, channels_per_image=2)


def array(info: metadata.LayerInfo, step: int) -> np.ndarray:
    rng = np.random.default_rng([step, sum(map(ord, info.layer))])
    if info.layout == "units":
        return rng.normal(size=(info.probes, info.width)).astype(np.float32)
    shape = (info.probes, info.height, info.width, info.channels)
    return rng.normal(size=shape).astype(np.float32)


def nhwc(info: metadata.LayerInfo, step: int) -> np.ndarray:
    return summary.LayerValue(info, array(info, step)).nhwc().astype(np.float64)


def expected_stats(info: metadata.LayerInfo, step: int) -> np.ndarray:
    """(probes, channels, 6) from the array with numpy alone; no value is
    zero or non-finite."""
    x = nhwc(info, step)
    zeros = np.zeros(x.shape[::3])
    return np.stack([x.min((1, 2)), x.max((1, 2)), x.mean((1, 2)), x.std((1, 2)), zeros, zeros], -1)


def expected_levels(info: metadata.LayerInfo, step: int, probe: int) -> np.ndarray:
    """(channels, height, width): each channel quantized from its own min..max."""
    x = np.moveaxis(nhwc(info, step)[probe], -1, 0)
    lo = x.min((1, 2), keepdims=True)
    hi = x.max((1, 2), keepdims=True)
    return np.floor((x - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)


def header_of(step: int) -> dict:
    return {"epoch": step / 2, "batch": step if step % 2 else None, "index": step}


def wall(step: int) -> float:
    return 1000.0 + step


def png(shape=(6, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", shape[::-1]).save(buf, format="PNG")
    return buf.getvalue()


def write_run(run_dir, steps) -> None:
    writer = summary.ActivationWriter(run_dir, max_size=MAX_SIZE)
    for step in steps:
        values = [summary.LayerValue(info, array(info, step)) for info in LAYERS]
        if step == 0:
            values.append(summary.LayerValue(PROBE, np.ones((2, 8, 8, 3), np.float32)))
        h = header_of(step)
        writer.submit(step, values, epoch=h["epoch"], batch=h["batch"], wall_time=wall(step))
    writer.close()


def write_broken_run(run_dir) -> None:
    """A series in a newer format, and one whose statistics are not an array."""
    writer = EventFileWriter(str(run_dir))
    header = metadata.encode_header(0.0)
    stats = metadata.encode_stats(np.zeros((1, 2, 6)))
    for step in range(2):
        future = summary.make_event(BADSTATS, step, wall(step), [header, stats, png(), png()])
        content = json.loads(future.summary.value[0].metadata.plugin_data.content)
        content["version"] = metadata.FORMAT_VERSION + 1
        del future.summary.value[1:]  # the index series (a layer's, not the future one's)
        future.summary.value[0].tag = "future"
        future.summary.value[0].metadata.plugin_data.content = json.dumps(content).encode()
        writer.add_event(future)
        writer.add_event(
            summary.make_event(BADSTATS, step, wall(step), [header, b"not npy", png(), png()])
        )
        badrows = [header, stats, png((7, 5))]
        writer.add_event(summary.make_event(BADROWS, step, wall(step), badrows))
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader_logs")
    write_run(root / RUN, range(STEPS))
    write_broken_run(root / BROKEN)
    return root


def make_reader(logdir, keep: int = 0, hint: int | None = 0):
    """A reader over TensorBoard's Python loader keeping `keep` steps per
    series (0: all); returns it and the multiplexer (to reload)."""
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": keep})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return Reader(data_provider.MultiplexerDataProvider(mux, str(logdir)), hint), mux


@pytest.fixture(scope="module")
def reader(logdir):
    return make_reader(logdir)[0]


@pytest.fixture
def ctx():
    return context.RequestContext()


# -- series ------------------------------------------------------------------------


@pytest.mark.parametrize(("hint", "limit"), [(None, None), (0, None), (10, 10), (500, 500)])
def test_sampling_limit_is_none_when_unlimited_or_unknown(logdir, hint, limit):
    assert make_reader(logdir, hint=hint)[0].sampling_limit == limit


@pytest.mark.parametrize(("keep", "kept"), [(0, STEPS), (3, 3)])
def test_tags_list_readable_series_with_their_kept_steps(logdir, ctx, keep, kept):
    listed = make_reader(logdir, keep)[0].tags(ctx, EXP)
    assert set(listed) == {RUN, BROKEN}
    assert set(listed[BROKEN]) == {"badstats", "badrows"}  # "future" is left out
    assert listed[BROKEN]["badstats"].steps_kept == 2
    assert {tag: s.info for tag, s in listed[RUN].items()} == {
        **{info.layer: recorded.written(info) for info in LAYERS},
        PROBE.layer: PROBE,
    }
    for tag, s in listed[RUN].items():
        last = 0 if tag == metadata.PROBE_TAG else STEPS - 1
        assert (s.steps_kept, s.max_step, s.max_wall_time) == (
            1 if tag == metadata.PROBE_TAG else kept,
            last,
            wall(last),
        )


@pytest.mark.parametrize(("keep", "steps"), [(0, list(range(STEPS))), (3, None)])
def test_series_holds_the_kept_steps(logdir, ctx, keep, steps):
    series = make_reader(logdir, keep)[0].series(ctx, EXP, RUN, "b_conv")
    assert (series.run, series.tag, series.info) == (RUN, "b_conv", recorded.written(CONV))
    if steps is None:  # TensorBoard's reservoir keeps the newest step
        assert len(series.steps) == keep and series.steps[-1] == STEPS - 1
        assert series.steps == sorted(series.steps)
    else:
        assert series.steps == steps
    assert all(len(d.values) == recorded.written(CONV).blob_count for d in series.data)


@pytest.mark.parametrize(
    ("run", "tag", "message"),
    [
        ("nope", "b_conv", "No activations logged for run 'nope', tag 'b_conv'."),
        (RUN, "nope", "No activations logged for run 'activations', tag 'nope'."),
        (BROKEN, metadata.PROBE_TAG, "Run 'broken' has no probe image logged."),
        (BROKEN, "future", "in a format this version of tb-activations cannot read"),
    ],
)
def test_series_not_found(reader, ctx, run, tag, message):
    with pytest.raises(errors.NotFoundError, match=message):
        reader.series(ctx, EXP, run, tag)


def test_series_is_read_again_only_when_it_changed(tmp_path, ctx):
    write_run(tmp_path / RUN, range(2))
    reader, mux = make_reader(tmp_path)
    first = reader.series(ctx, EXP, RUN, "b_conv")
    assert reader.series(ctx, EXP, RUN, "b_conv") is first
    write_run(tmp_path / RUN, range(2, 4))
    mux.Reload()
    again = reader.series(ctx, EXP, RUN, "b_conv")
    assert (first.steps, again.steps) == ([0, 1], [0, 1, 2, 3])
    assert reader.tags(ctx, EXP)[RUN]["b_conv"].steps_kept == 4


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda s: s.find(STEPS), r"Step 6 of run 'activations', tag 'b_conv' is not kept. "),
        (lambda s: s.find(STEPS), r"Kept steps: \[0, 1, 2, 3, 4, 5\]"),
        (lambda s: s.check_probe(2), "Probe 2 is out of range: .* has 2 probe"),
        (lambda s: s.check_channel(3), "Channel 3 is out of range: .* has 3 logged channel"),
    ],
)
def test_series_checks(reader, ctx, check, message):
    series = reader.series(ctx, EXP, RUN, "b_conv")
    with pytest.raises(errors.NotFoundError, match=message):
        check(series)
    assert series.find(3).step == 3
    series.check_probe(1)
    series.check_channel(2)


def test_layers_in_model_order_without_the_probe(reader, ctx):
    layers = reader.layers(ctx, EXP, RUN)
    assert [s.tag for s in layers] == ["b_conv", "a_dense", "y_old", "z_old"]
    assert all(s.steps == list(range(STEPS)) for s in layers)
    assert layers[0] is reader.series(ctx, EXP, RUN, "b_conv")


def test_versions_come_from_the_listing_and_follow_the_layers(logdir, ctx):
    reader, _ = make_reader(logdir)
    versions = reader.versions(ctx, EXP, RUN)
    assert [tag for tag, _ in versions] == sorted(info.layer for info in LAYERS)
    layers = {s.tag: s.version for s in reader.layers(ctx, EXP, RUN)}
    assert dict(versions) == layers
    with pytest.raises(errors.NotFoundError, match="'nope'"):
        reader.versions(ctx, EXP, "nope")


def test_layers_of_an_unknown_run_are_not_found(reader, ctx):
    with pytest.raises(errors.NotFoundError, match="'nope'"):
        reader.layers(ctx, EXP, "nope")


# -- one step ------------------------------------------------------------------------


def test_header(reader, ctx):
    series = reader.series(ctx, EXP, RUN, "b_conv")
    for datum in series.data:
        header = reader.header(ctx, series, datum)
        expected = header_of(datum.step)
        assert (header.epoch, header.batch, header.index) == tuple(expected.values())
        # Later keys come through as written: the measures' references.
        assert header.values == {
            **expected,
            "prev_step": datum.step - 1 if datum.step else None,
            "start_step": 0,
            "cka_prev": header.values["cka_prev"],
            "cka_start": header.values["cka_start"],
            # The probe set's layer values (format version 3).
            **{k: header.values[k] for k in metadata.SET_HEADER_KEYS},
        }
        assert header.values["nonfinite"] is False


@pytest.mark.parametrize(("info", "probe"), [(CONV, 0), (CONV, 1), (DENSE, 1), (OLD_Y, 0)])
def test_stats_levels_and_png_of_one_step(reader, ctx, info, probe):
    series = reader.series(ctx, EXP, RUN, info.layer)
    for datum in series.data:
        stats = reader.stats(ctx, series, datum)
        assert series.fields(stats) == list(metadata.LAYER_STATS_FIELDS)
        expected = expected_stats(info, datum.step)
        np.testing.assert_allclose(stats[..., :V1], expected, rtol=1e-5, atol=1e-6)
        sq_norm = (nhwc(info, datum.step) ** 2).sum((1, 2))
        np.testing.assert_allclose(stats[..., V1], sq_norm, rtol=1e-5)
        levels = reader.layer_levels(ctx, series, datum, probe)
        # Every layer keeps its metadata's size, the long units strip too.
        assert levels.shape == (info.channels, info.height, info.width)
        assert levels.dtype == np.uint8
        assert (series.info.version, series.info.channels_per_image) == (
            info.version,
            info.channels_per_image,
        )
        expected = expected_levels(info, datum.step, probe)
        np.testing.assert_allclose(levels, expected, atol=1, rtol=0)
        for c in range(info.channels):
            image = Image.open(io.BytesIO(reader.png(ctx, series, datum, probe, c)))
            np.testing.assert_array_equal(np.asarray(image), levels[c])


def test_unreadable_statistics(reader, ctx):
    series = reader.series(ctx, EXP, BROKEN, "badstats")
    with pytest.raises(errors.NotFoundError, match="step 0 has unreadable statistics"):
        reader.stats(ctx, series, series.find(0))
    assert [d.step for d, _ in reader.headers(ctx, series)] == [0, 1]
    assert reader.stats_series(ctx, series).steps == []
    assert reader.channel_series(ctx, series, 0, 1) == []


def test_a_png_that_does_not_split_into_its_channels(reader, ctx):
    series = reader.series(ctx, EXP, BROKEN, "badrows")
    datum = series.find(1)
    message = "step 1 has an image of 7 rows for 2 stacked channels"
    with pytest.raises(errors.NotFoundError, match=message):
        reader.layer_levels(ctx, series, datum, 0)
    with pytest.raises(errors.NotFoundError, match=message):
        reader.png(ctx, series, datum, 0, 1)
    assert reader.channel_series(ctx, series, 0, 1) == []


# -- every kept step ----------------------------------------------------------------


@pytest.mark.parametrize("info", [CONV, DENSE])
def test_stats_series_is_every_step_with_its_header_and_stats(reader, ctx, info):
    series = reader.series(ctx, EXP, RUN, info.layer)
    got = reader.stats_series(ctx, series)
    assert got.series is series
    assert got.steps == list(range(STEPS))
    assert got.fields == list(metadata.LAYER_STATS_FIELDS)
    assert [(h.epoch, h.batch, h.index) for h in got.headers] == [
        tuple(header_of(s).values()) for s in range(STEPS)
    ]
    assert [d for d, _ in reader.headers(ctx, series)] == got.data
    array = got.array()
    assert array.shape == (STEPS, info.probes, info.channels, len(metadata.LAYER_STATS_FIELDS))
    for i, step in enumerate(got.steps):
        np.testing.assert_array_equal(array[i], got.stats[i])
        expected = expected_stats(info, step)
        np.testing.assert_allclose(got.stats[i][..., :V1], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("tag", "probe", "channel"),
    [("b_conv", 0, 0), ("b_conv", 1, 1), ("b_conv", 1, 2), ("y_old", 0, 1)],
)
def test_channel_series_is_one_channel_at_every_step(reader, ctx, tag, probe, channel):
    series = reader.series(ctx, EXP, RUN, tag)
    got = reader.channel_series(ctx, series, probe, channel)
    assert [s.datum.step for s in got] == list(range(STEPS))
    for s in got:
        assert s.header == reader.header(ctx, series, s.datum)
        np.testing.assert_array_equal(s.stats, reader.stats(ctx, series, s.datum)[probe, channel])
        layer = reader.layer_levels(ctx, series, s.datum, probe)
        np.testing.assert_array_equal(s.levels, layer[channel])


def test_steps_whose_run_vanished_are_gone(tmp_path, ctx):
    write_run(tmp_path / RUN, range(2))
    reader, mux = make_reader(tmp_path)
    series = reader.series(ctx, EXP, RUN, "b_conv")
    shutil.rmtree(tmp_path / RUN)
    mux.Reload()  # the Python loader forgets the run
    with pytest.raises(errors.NotFoundError, match="'b_conv': step 1 is no longer available."):
        reader.layer_levels(ctx, series, series.find(1), 0)
    with pytest.raises(errors.NotFoundError, match="step 0 is no longer available"):
        reader.header(ctx, series, series.find(0))
    assert reader.headers(ctx, series) == []
    assert reader.stats_series(ctx, series).steps == []
    with pytest.raises(errors.NotFoundError, match="'activations'"):
        reader.series(ctx, EXP, RUN, "b_conv")


# -- scalars and computed answers ---------------------------------------------------


def test_scalars_of_a_run_and_its_siblings_read_again_only_when_they_changed(tmp_path, ctx):
    from test_plugin import write_scalars

    write_run(tmp_path / "a" / RUN, range(2))
    write_scalars(tmp_path / "a" / "train", "epoch_loss", [(0, 0.5)])
    write_scalars(tmp_path / "b" / "train", "epoch_loss", [(0, 9.0)])  # not a sibling
    reader, mux = make_reader(tmp_path)
    first = reader.scalars(ctx, EXP, f"a/{RUN}")
    assert first.points == {"a/train": {"epoch_loss": [(0, 0.5)]}}
    assert reader.scalars(ctx, EXP, f"a/{RUN}") is first
    write_scalars(tmp_path / "a" / "validation", "epoch_loss", [(0, 0.25), (1, 0.125)])
    mux.AddRunsFromDirectory(str(tmp_path))  # as TensorBoard's reload finds new runs
    mux.Reload()
    again = reader.scalars(ctx, EXP, f"a/{RUN}")
    assert again.points == {
        "a/train": {"epoch_loss": [(0, 0.5)]},
        "a/validation": {"epoch_loss": [(0, 0.25), (1, 0.125)]},
    }
    assert reader.scalars(ctx, EXP, "nope").points == {}


def test_memo_computes_once_per_key(reader):
    calls = []

    def compute():
        calls.append(1)
        return len(calls), 8

    assert reader.memo(("k", 1), compute) == 1
    assert reader.memo(("k", 1), compute) == 1
    assert reader.memo(("k", 2), compute) == 2


def test_a_series_version_changes_with_new_steps(tmp_path, ctx):
    write_run(tmp_path / RUN, range(2))
    reader, mux = make_reader(tmp_path)
    before = reader.series(ctx, EXP, RUN, "b_conv").version
    write_run(tmp_path / RUN, range(2, 3))
    mux.Reload()
    assert reader.series(ctx, EXP, RUN, "b_conv").version != before


def test_blobs_read_from_the_kept_tensors_are_the_providers(logdir, ctx):
    # The in-process loader's blobs come straight from its kept tensors
    # (Reader._blob), not through read_blob's whole-tensor conversion: the
    # bytes must be the provider's own, and a step it no longer keeps gone.
    reader, mux = make_reader(logdir)
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    for info in LAYERS:
        series = reader.series(ctx, EXP, RUN, info.layer)
        for datum in series.data:
            for i, ref in enumerate(datum.values):
                want = provider.read_blob(ctx, blob_key=ref.blob_key)
                assert reader._kept.read(ref.blob_key) == want
                assert reader._blob(ctx, datum, i) == want
    gone = reader.series(ctx, EXP, RUN, CONV.layer).data[0]
    other, _ = make_reader(logdir, keep=1)  # the last step only
    with pytest.raises(Exception, match=f"step {gone.step} is no longer available"):
        other._blob(ctx, gone, 0)


# -- the index series: a layer's measures in one read --------------------------------

INDEXED, UNINDEXED, HALF = "indexed", "unindexed", "half"


def strip_index(src, dst, keep=lambda step: False) -> None:
    """Copies a run's events without the index values of the steps `keep`
    rejects: a log written before the index series, or one whose index
    lacks some steps."""
    writer = EventFileWriter(str(dst))
    for path in sorted(src.iterdir()):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            if event.HasField("file_version"):
                continue
            if not keep(event.step):
                kept = [
                    v
                    for v in event.summary.value
                    if not v.tag.startswith(metadata.INDEX_TAG_PREFIX)
                ]
                del event.summary.value[:]
                event.summary.value.extend(kept)
            writer.add_event(event)
    writer.close()


@pytest.fixture(scope="module")
def index_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("index_logs")
    write_run(root / INDEXED, range(STEPS))
    strip_index(root / INDEXED, root / UNINDEXED)
    strip_index(root / INDEXED, root / HALF, keep=lambda step: step % 2 == 1)
    return root


class CountingReader(Reader):
    """Counts the blobs read from the provider (not from an index)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.blob_reads = 0
        self._count_lock = threading.Lock()

    def _blob(self, ctx, datum, index):
        with self._count_lock:
            self.blob_reads += 1
        return super()._blob(ctx, datum, index)


def python_provider(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return data_provider.MultiplexerDataProvider(mux, str(logdir))


@contextlib.contextmanager
def rust_data_server(logdir, keep: int, loaded):
    """A data provider of the Rust data server (`--load_fast`) over `logdir`,
    keeping `keep` steps (0: all) of both plugin names, once `loaded(it)`."""
    ingester = server_ingester.SubprocessServerDataIngester(
        server_ingester.get_server_binary(),
        str(logdir),
        reload_interval=0,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin={metadata.PLUGIN_NAME: keep, metadata.INDEX_PLUGIN_NAME: keep},
    )
    ingester.start()
    try:
        got = ingester.data_provider
        support.wait_until(lambda: loaded(got), 60, "the data server to load the log")
        yield got
    finally:
        ingester._stdin_handle.close()  # the server exits when its stdin closes


def max_steps(got) -> list[int]:
    """Every series' last step, of both plugin names, sorted."""
    ctx = context.RequestContext()
    blobs = got.list_blob_sequences(ctx, experiment_id=EXP, plugin_name=metadata.PLUGIN_NAME)
    index = got.list_tensors(ctx, experiment_id=EXP, plugin_name=metadata.INDEX_PLUGIN_NAME)
    return sorted(
        ts.max_step for tags in (*blobs.values(), *index.values()) for ts in tags.values()
    )


@pytest.fixture(scope="module")
def rust_provider(index_logdir):
    """The Rust data server over `index_logdir`, every step kept."""
    # Every layer's last step, and the probe's only one (step 0).
    want = [0] * 3 + [STEPS - 1] * (3 + 2) * len(LAYERS)
    with rust_data_server(index_logdir, 0, lambda got: max_steps(got) == want) as got:
        yield got


@pytest.fixture(params=["python", "rust"])
def index_provider(request, index_logdir):
    if request.param == "rust":
        return request.getfixturevalue("rust_provider")
    return python_provider(index_logdir)


def stats_of(reader, ctx, run):
    return {
        info.layer: reader.stats_series(ctx, reader.series(ctx, EXP, run, info.layer))
        for info in LAYERS
    }


def assert_same_stats(got, want):
    assert got.keys() == want.keys()
    for tag in want:
        a, b = got[tag], want[tag]
        assert a.steps == b.steps == list(range(STEPS))
        assert a.headers == b.headers
        for x, y in zip(a.stats, b.stats):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(a.sets, b.sets):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x.stats, y.stats)
                np.testing.assert_array_equal(x.units, y.units)


def blobs_per_step(got) -> int:
    """The blobs of one step of every series in `got` that the index copies."""
    return sum(len(metadata.index_blobs(s.series.info)) for s in got.values())


@pytest.mark.parametrize(
    "run, steps_from_blobs",
    [(INDEXED, []), (UNINDEXED, list(range(STEPS))), (HALF, list(range(0, STEPS, 2)))],
)
def test_stats_series_reads_the_index_and_blobs_only_for_steps_it_lacks(
    index_provider, ctx, run, steps_from_blobs
):
    # The measures from the index equal the blobs' (a log without index
    # is read from its blobs alone), and every step the index holds costs
    # no blob read: on the Rust data server each is a gRPC call.
    from_blobs = stats_of(Reader(index_provider, 0), ctx, UNINDEXED)
    reader = CountingReader(index_provider, 0)
    got = stats_of(reader, ctx, run)
    assert_same_stats(got, from_blobs)
    assert blobs_per_step(got) == 4 * len(LAYERS)  # header, stats, set stats, units
    assert reader.blob_reads == blobs_per_step(got) * len(steps_from_blobs)
    # Decoded once: asking again reads neither.
    stats_of(reader, ctx, run)
    assert reader.blob_reads == blobs_per_step(got) * len(steps_from_blobs)


@pytest.mark.parametrize("run, blob_reads", [(INDEXED, 0), (UNINDEXED, STEPS)])
def test_headers_come_from_the_index(index_provider, ctx, run, blob_reads):
    want = Reader(index_provider, 0).headers(
        ctx, Reader(index_provider, 0).series(ctx, EXP, UNINDEXED, CONV.layer)
    )
    reader = CountingReader(index_provider, 0)
    got = reader.headers(ctx, reader.series(ctx, EXP, run, CONV.layer))
    assert [(d.step, h) for d, h in got] == [(d.step, h) for d, h in want]
    assert reader.blob_reads == blob_reads


def test_the_index_is_read_once_for_headers_and_statistics_asked_together(
    index_provider, ctx, monkeypatch
):
    # The panel's first map asks `curves` (headers) and `overview`
    # (statistics) at once: the index series is read once, with every value
    # its steps hold, whichever asks first.
    reads = []
    real = step_index.read

    def counted(*args):
        reads.append(args[-1].tag)
        return real(*args)

    monkeypatch.setattr(step_index, "read", counted)
    reader = CountingReader(index_provider, 0)
    series = reader.series(ctx, EXP, INDEXED, CONV.layer)
    start = threading.Barrier(2)
    got = {}

    def ask(name, fn):
        start.wait()
        got[name] = fn(ctx, series)

    threads = [
        threading.Thread(target=ask, args=("headers", reader.headers)),
        threading.Thread(target=ask, args=("stats", reader.stats_series)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads == [CONV.layer]
    assert reader.blob_reads == 0
    assert [h for _, h in got["headers"]] == got["stats"].headers
    reader.stats_series(ctx, series)
    assert reads == [CONV.layer]


def test_an_index_of_other_blobs_is_ignored(tmp_path, ctx, caplog):
    # A writer copying other blobs (or another layer's) must not be trusted:
    # the reader warns and reads the blobs.
    write_run(tmp_path / "src", range(2))
    writer = EventFileWriter(str(tmp_path / RUN))
    for path in sorted((tmp_path / "src").iterdir()):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.tag == metadata.INDEX_TAG_PREFIX + CONV.layer:
                    content = json.loads(v.metadata.plugin_data.content)
                    content["blobs"] = content["blobs"][::-1]
                    v.metadata.plugin_data.content = json.dumps(content).encode()
            writer.add_event(event)
    writer.close()
    shutil.rmtree(tmp_path / "src")
    provider = python_provider(tmp_path)
    reader = CountingReader(provider, 0)
    got = reader.stats_series(ctx, reader.series(ctx, EXP, RUN, CONV.layer))
    assert reader.blob_reads == 2 * len(metadata.index_blobs(got.series.info))
    assert "index series ignored" in caplog.text
    want = Reader(provider, 0).stats_series(
        ctx, Reader(provider, 0).series(ctx, EXP, RUN, CONV.layer)
    )
    assert got.headers == want.headers


@pytest.mark.parametrize("loader", ["python", "rust"])
def test_sampling_keeps_the_same_steps_of_the_index_and_the_blobs(tmp_path, ctx, loader):
    # Both loaders sample each series alike when they keep as many steps of
    # both plugin names (what the plugin's loader sets): the index then
    # holds every kept step, and no blob is read for the measures.
    keep, steps = 4, 40
    write_run(tmp_path / RUN, range(steps))
    if loader == "python":
        mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": keep})
        mux.AddRunsFromDirectory(str(tmp_path))
        mux.Reload()
        server = contextlib.nullcontext(data_provider.MultiplexerDataProvider(mux, str(tmp_path)))
    else:
        want = [0] + [steps - 1] * 2 * len(LAYERS)
        server = rust_data_server(tmp_path, keep, lambda got: max_steps(got) == want)
    with server as got:
        reader = CountingReader(got, keep)
        series = reader.layers(ctx, EXP, RUN)
        kept = {s.tag: s.steps for s in series}
        assert all(len(k) == keep for k in kept.values())
        # A reservoir sample, not the last steps.
        assert all(k != list(range(steps - keep, steps)) for k in kept.values())
        index = got.read_tensors(
            ctx, experiment_id=EXP, plugin_name=metadata.INDEX_PLUGIN_NAME, downsample=1 << 30
        )[RUN]
        assert {t: [d.step for d in index["__index__/" + t]] for t in kept} == kept
        for s in series:
            assert reader.stats_series(ctx, s).steps == kept[s.tag]
        assert reader.blob_reads == 0
