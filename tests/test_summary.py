import logging
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_activations import encoding, measures, metadata, summary

from recorded import layer_info, read_run


def _info(layer="conv", channels=3, probes=1, h=6, w=5):
    return layer_info(layer, channels, probes, h=h, w=w)


def _value(step, info=None):
    info = info or _info()
    x = np.random.default_rng(step).normal(
        size=(info.probes, info.height, info.width, info.channels)
    )
    return summary.LayerValue(info, x.astype(np.float32))


def test_steps_are_written_in_order_with_header_and_pngs(tmp_path):
    writer = summary.ActivationWriter(tmp_path / "activations", max_queue=2)
    values = {s: _value(s) for s in range(0, 60, 5)}
    for step, value in values.items():
        writer.submit(step, [value], epoch=step / 5)
    writer.close()
    series = read_run(tmp_path)["conv"]
    assert series.step_numbers == list(values)
    for s in series.steps:
        x = values[s.step].array
        assert {k: s.header[k] for k in ("epoch", "batch", "index")} == {
            "epoch": s.step / 5,
            "batch": None,
            "index": s.step // 5,
        }
        np.testing.assert_allclose(s.stats[..., :6], encoding.compute_stats(x), rtol=1e-6)
        q = encoding.quantize(x, s.stats)
        for c in range(3):
            np.testing.assert_array_equal(s.image(series.info, 0, c), q[0, c])


def test_channel_cap_keeps_the_first_channels(tmp_path):
    writer = summary.ActivationWriter(tmp_path / "activations")
    info = _info(channels=2)
    x = np.random.default_rng(0).normal(size=(1, 6, 5, 7)).astype(np.float32)
    writer.submit(0, [summary.LayerValue(info, x)])
    writer.close()
    series = read_run(tmp_path)["conv"]
    step = series.steps[0]
    np.testing.assert_allclose(step.stats[..., :6], encoding.compute_stats(x[..., :2]), rtol=1e-6)
    # The PNGs, then the probe set's statistics and unit measures (version 3).
    assert len(step.blobs) == info.blob_count + 2 == series.info.blob_count
    assert metadata.decode_table(step.blobs[series.info.set_index], 7).shape == (2, 7)


def _change(a, b):
    den = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if den == 0 else np.linalg.norm(a - b) / den


def _cka(a, b):
    """Linear CKA from the n x n centred Grams, in float64."""
    x = a.reshape(-1, a.shape[-1]).astype(np.float64)
    y = b.reshape(-1, b.shape[-1]).astype(np.float64)
    x -= x.mean(axis=0)
    y -= y.mean(axis=0)
    k, m = x @ x.T, y @ y.T
    return np.sum(k * m) / np.sqrt(np.sum(k * k) * np.sum(m * m))


def test_measures_are_stored_at_full_precision_and_read_back(tmp_path):
    info = _info(channels=4, probes=2, h=9, w=7)
    rng = np.random.default_rng(0)
    arrays = {}
    x = rng.normal(size=(2, 9, 7, 4))  # float64: the writer sees full precision
    for step in (0, 3, 7, 12):
        x = x + rng.normal(scale=0.3, size=x.shape)
        x[..., 3] = 0.0 if step in (7, 12) else x[..., 3]  # channel 3 dies at step 7
        arrays[step] = x.copy()
    writer = summary.ActivationWriter(tmp_path / "activations")
    for step, a in arrays.items():
        writer.submit(step, [summary.LayerValue(info, a)])
    writer.close()
    series = read_run(tmp_path)["conv"]
    assert series.info.stats_fields == metadata.LAYER_STATS_FIELDS
    steps = series.step_numbers
    for i, s in enumerate(series.steps):
        a = arrays[s.step]
        prev = arrays[steps[i - 1]] if i else None
        np.testing.assert_allclose(s.stats[..., 6], (a**2).sum(axis=(1, 2)), rtol=1e-4)
        if prev is None:
            assert np.isnan(s.stats[..., 7]).all()
            assert s.header["prev_step"] is None and s.header["cka_prev"] is None
        else:
            np.testing.assert_allclose(
                s.stats[..., 7], ((a - prev) ** 2).sum(axis=(1, 2)), rtol=1e-4
            )
            assert s.header["prev_step"] == steps[i - 1]
            assert s.header["cka_prev"] == pytest.approx(_cka(a, prev), rel=1e-4)
        np.testing.assert_allclose(
            s.stats[..., 8], ((a - arrays[0]) ** 2).sum(axis=(1, 2)), rtol=1e-4, atol=1e-12
        )
        assert s.header["start_step"] == 0
        assert s.header["cka_start"] == pytest.approx(_cka(a, arrays[0]), rel=1e-4)

    args = (
        steps,
        [s.stats for s in series.steps],
        [s.header for s in series.steps],
        series.info.stats_fields,
    )
    channels = measures.channel_rows(measures.Logged(*args))
    layer = measures.layer_rows(measures.Logged(*args))
    for i, s in enumerate(steps[1:], 1):
        a, p, a0 = arrays[s], arrays[steps[i - 1]], arrays[0]
        for c in range(4):
            assert abs(channels.values["change_prev"][c, i] - _change(a[..., c], p[..., c])) < 0.02
            assert (
                abs(channels.values["change_start"][c, i] - _change(a[..., c], a0[..., c])) < 0.02
            )
        assert abs(layer.values["change_prev"][i] - _change(a, p)) < 0.02
        assert abs(layer.values["drift_prev"][i] - (1 - _cka(a, p))) < 0.02
        assert abs(layer.values["drift_start"][i] - (1 - _cka(a, a0))) < 0.02
        assert abs(layer.values["mean"][i] - a.mean()) < 0.02
    assert measures.events(steps, channels.values["dead"]) == [
        {"channel": 3, "kind": "died", "step": 7}
    ]
    np.testing.assert_allclose(layer.values["dead_fraction"], [0, 0, 0.25, 0.25])


def test_the_probe_has_no_measures(tmp_path):
    probe = layer_info(metadata.PROBE_TAG, 1, h=4, w=4, layout="probe", class_name="Probe")
    writer = summary.ActivationWriter(tmp_path / "activations")
    writer.submit(0, [summary.LayerValue(probe, np.random.rand(1, 4, 4, 3)), _value(0)])
    writer.close()
    run = read_run(tmp_path)
    assert run[metadata.PROBE_TAG].info.stats_fields == metadata.STATS_FIELDS
    assert run[metadata.PROBE_TAG].steps[0].stats.shape == (1, 1, 6)
    assert run["conv"].steps[0].stats.shape == (1, 3, 9)


def test_each_layer_event_carries_its_index_value(tmp_path):
    # The index series: the step's blobs that are not pictures, the same
    # bytes, in the same event as the layer's blobs (so that sampling keeps
    # them together), as a string tensor under its own plugin name and tag.
    probe = layer_info(metadata.PROBE_TAG, 1, h=4, w=4, layout="probe", class_name="Probe")
    writer = summary.ActivationWriter(tmp_path / "activations")
    for step in range(3):
        values = [_value(step), _value(step, _info("dense", 1, 2, 1, 7))]
        writer.submit(step, [summary.LayerValue(probe, np.random.rand(1, 4, 4, 3)), *values])
    writer.close()
    run = read_run(tmp_path)
    (path,) = (tmp_path / "activations").iterdir()
    events = [e for e in event_file_loader.EventFileLoader(str(path)).Load() if e.summary.value]
    assert len(events) == 3 * 3
    for event in events:
        layer, *rest = event.summary.value
        if layer.tag == metadata.PROBE_TAG:
            assert rest == []
            continue
        (index,) = rest
        info = run[layer.tag].info
        assert index.tag == "__index__/" + layer.tag
        assert index.metadata.plugin_data.plugin_name == "activations_index"
        assert index.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
        assert metadata.parse_index_metadata(index.metadata.plugin_data.content) == (
            layer.tag,
            (0, 1, info.set_index, info.set_index + 1),
        )
        assert index.tensor.dtype == types_pb2.DT_STRING
        assert [d.size for d in index.tensor.tensor_shape.dim] == [4]
        blobs = run[layer.tag].steps[event.step].blobs
        assert list(index.tensor.string_val) == [blobs[i] for i in metadata.index_blobs(info)]
        assert list(layer.tensor.string_val) == blobs


class _BrokenTracker(measures.Tracker):
    def update(self, path, step, nhwc):
        raise RuntimeError("broken")


def test_a_failing_tracker_warns_once_and_keeps_the_steps(tmp_path, caplog):
    writer = summary.ActivationWriter(tmp_path / "activations", tracker=_BrokenTracker())
    with caplog.at_level(logging.WARNING, logger="tb_activations"):
        for step in range(3):
            writer.submit(step, [_value(step)])
        writer.close()
    assert sum("could not measure layer 'conv'" in r.getMessage() for r in caplog.records) == 1
    series = read_run(tmp_path)["conv"]
    assert series.step_numbers == [0, 1, 2]
    for s in series.steps:
        assert np.isnan(s.stats[..., 6:]).all()
        assert s.header["cka_prev"] is None and s.header["prev_step"] is None
        np.testing.assert_allclose(
            s.stats[..., :6], encoding.compute_stats(_value(s.step).array), rtol=1e-6
        )


def test_a_tracker_given_to_writers_continues_across_them(tmp_path):
    tracker = measures.Tracker()
    for steps in ((0, 1), (2, 3)):  # two fits, one writer each
        writer = summary.ActivationWriter(tmp_path / "activations", tracker=tracker)
        for step in steps:
            writer.submit(step, [_value(step)])
        writer.close()
    headers = [s.header for s in read_run(tmp_path)["conv"].steps]
    assert [(h["prev_step"], h["start_step"]) for h in headers] == [
        (None, 0),
        (0, 0),
        (1, 0),
        (2, 0),
    ]


def test_unwritable_directory_warns_once_keeps_steps_and_retries(tmp_path, caplog):
    # Root ignores permission bits, so a regular file where the directory
    # should be is what makes the path unwritable here.
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory")
    writer = summary.ActivationWriter(blocker / "activations")
    with caplog.at_level(logging.WARNING, logger="tb_activations"):
        writer.submit(0, [_value(0)])
        writer.submit(1, [_value(1)])
        writer.flush()
        failures = [r for r in caplog.records if "could not write" in r.getMessage()]
        assert len(failures) == 1
        assert str(blocker / "activations") in failures[0].getMessage()
        os.remove(blocker)
        writer.submit(2, [_value(2)])
        writer.close()
    assert any("works again" in r.getMessage() for r in caplog.records)
    # The steps that failed were kept and written first, in order.
    assert read_run(tmp_path / "logs")["conv"].step_numbers == [0, 1, 2]


def test_a_layer_that_fails_to_encode_does_not_stop_the_others(tmp_path, caplog):
    writer = summary.ActivationWriter(tmp_path / "activations")
    bad = summary.LayerValue(_info(layer="bad"), np.zeros((1, 2), np.float32))
    bad.array = np.zeros((1,), np.float32)  # rank 1: cannot be shown
    with caplog.at_level(logging.WARNING, logger="tb_activations"):
        writer.submit(0, [bad, _value(0)])
        writer.close()
    assert "could not encode layer 'bad'" in caplog.text
    assert list(read_run(tmp_path)) == ["conv"]


def test_closed_writer_refuses_more_steps(tmp_path):
    writer = summary.ActivationWriter(tmp_path / "activations")
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(0, [_value(0)])


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB filesystem, to run out of space for real."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def test_disk_full_warns_keeps_steps_and_writes_them_once_space_is_back(tiny_disk, caplog):
    info = _info(channels=16, h=64, w=64)
    writer = summary.ActivationWriter(tiny_disk / "activations")
    with caplog.at_level(logging.WARNING, logger="tb_activations"):
        for step in range(6):  # about 70 KB of noise PNGs each: the disk fills up
            writer.submit(step, [_value(step, info)])
        writer.flush()
        assert sum("could not write" in r.getMessage() for r in caplog.records) == 1
        subprocess.run(["mount", "-o", "remount,size=16m", "tmpfs", str(tiny_disk)], check=True)
        writer.submit(6, [_value(6, info)])
        writer.close()
    steps = read_run(tiny_disk)["conv"].step_numbers
    # A step may appear in both the file that broke and the next one.
    assert sorted(set(steps)) == list(range(7))


def test_steps_reach_the_disk_when_the_process_exits_normally(tmp_path):
    script = f"""
import numpy as np
from tb_activations import metadata, summary
info = metadata.LayerInfo(layer="conv", class_name="Conv2D", layout="image",
    output_shape=(None, 32, 32, 8), channels=8, total_channels=8, probes=1, height=32,
    width=32, source_height=32, source_width=32)
writer = summary.ActivationWriter({str(tmp_path / "activations")!r})
for step in range(5):
    writer.submit(step, [summary.LayerValue(info, np.random.rand(1, 32, 32, 8))])
# no flush, no close: the interpreter's exit must write them
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert read_run(tmp_path)["conv"].step_numbers == [0, 1, 2, 3, 4]


class _GateTracker(measures.Tracker):
    """Holds the writer's thread in its first update until the gate opens."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.held = threading.Event()

    def update(self, *args, **kwargs):
        # Takes whatever `Tracker.update` takes: a signature of its own would
        # fail inside the writer, which then never waits at the gate.
        self.held.set()
        self.gate.wait()
        return super().update(*args, **kwargs)


class _Signal(logging.Handler):
    """Sets `seen` when a record with `text` is logged, from any thread."""

    def __init__(self, text):
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = threading.Event()
        self.messages = []

    def emit(self, record):
        if self.text in record.getMessage():
            self.messages.append(record.getMessage())
            self.seen.set()


def test_a_writer_that_falls_behind_says_so_once_with_a_batch_freq(tmp_path):
    tracker = _GateTracker()
    writer = summary.ActivationWriter(tmp_path / "activations", max_queue=1, tracker=tracker)
    signal = _Signal("falls behind")
    log = logging.getLogger("tb_activations")
    log.addHandler(signal)
    try:
        # Step 0 holds the writer, step 10 fills the queue: step 20 has to wait.
        writer.submit(0, [_value(0)])
        assert tracker.held.wait(60), "the writer never reached the tracker"
        writer.submit(10, [_value(10)])
        blocked = threading.Thread(target=writer.submit, args=(20, [_value(20)]))
        blocked.start()
        assert signal.seen.wait(60), "no warning while the queue was full"
        tracker.gate.set()
        blocked.join()
        for step in range(30, 90, 10):  # the queue fills again: no second warning
            writer.submit(step, [_value(step)])
        writer.close()
    finally:
        tracker.gate.set()
        log.removeHandler(signal)
    (message,) = signal.messages
    freq = int(re.search(r"batch_freq=(\d+)", message).group(1))
    # Steps came 10 batches apart and the writer did not keep up with that.
    assert freq > 10
    assert "10 batches" in message
    assert read_run(tmp_path)["conv"].step_numbers == list(range(0, 90, 10))


def test_a_writer_that_keeps_up_does_not_warn(tmp_path, caplog):
    writer = summary.ActivationWriter(tmp_path / "activations", max_queue=4)
    with caplog.at_level(logging.WARNING, logger="tb_activations"):
        for step in range(3):
            writer.submit(step, [_value(step)])
            writer.flush()
        writer.close()
    assert "falls behind" not in caplog.text


def test_a_processs_event_files_sort_in_the_order_they_were_made(tmp_path, monkeypatch):
    # TensorBoard's Python loader reads on from the last file of a run by name;
    # the ninth and tenth file of a process are where a count stops sorting.
    monkeypatch.setattr(summary.EventFile, "_count", 7)
    files = [summary.EventFile(str(tmp_path)) for _ in range(4)]
    for f in files:
        f.close()
    paths = [f.path for f in files]
    assert sorted(paths) == paths
