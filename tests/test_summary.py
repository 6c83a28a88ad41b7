import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from tb_activations import encoding, summary

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
        assert s.header == {"epoch": s.step / 5, "batch": None, "index": s.step // 5}
        np.testing.assert_allclose(s.stats, encoding.compute_stats(x), rtol=1e-6)
        q = encoding.quantize(x, s.stats)
        for c in range(3):
            np.testing.assert_array_equal(s.image(series.info, 0, c), q[0, c])


def test_channel_cap_keeps_the_first_channels(tmp_path):
    writer = summary.ActivationWriter(tmp_path / "activations")
    info = _info(channels=2)
    x = np.random.default_rng(0).normal(size=(1, 6, 5, 7)).astype(np.float32)
    writer.submit(0, [summary.LayerValue(info, x)])
    writer.close()
    step = read_run(tmp_path)["conv"].steps[0]
    np.testing.assert_allclose(step.stats, encoding.compute_stats(x[..., :2]), rtol=1e-6)
    assert len(step.blobs) == info.blob_count


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
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {result.stderr}")
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
