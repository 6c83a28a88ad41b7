"""The demos as a newcomer runs them: real training, real files, read back with
TensorBoard's own readers, and the TensorBoard the demo starts at the end."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from recorded import read_run
from support import fetch, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "demo" / "train.py"
VGG16 = ROOT / "demo" / "vgg16_snapshot.py"
RUN_TIMEOUT = 900
SERVE_TIMEOUT = 120

# What `train.py --fast` does: 2000 images in batches of 64, 3 epochs, 5 classes.
FAST_EPOCHS = 3
FAST_BATCHES = 32
CHANCE = 1 / 5
DEMO_LAYERS = {"conv1": 16, "conv2": 32, "conv3": 64}
VGG16_CHANNELS = {
    "block1_conv1": 64,
    "block2_conv1": 128,
    "block3_conv1": 256,
    "block4_conv1": 512,
    "block5_conv1": 512,
}


def run(cmd: list, cwd: Path = ROOT, env=None, check=True) -> subprocess.CompletedProcess:
    """Runs `cmd` to its end, with `env` added to this process's environment."""
    r = subprocess.run(
        [str(a) for a in cmd],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
    )
    if check:
        assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}"
    return r


def run_script(script: Path, *args: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    return run([sys.executable, script, *args], cwd, env)


def scalars(logdir: Path, run_dir: str, tag: str) -> list[tuple[int, float]]:
    mux = plugin_event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return [
        (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in mux.Tensors(run_dir, tag)
    ]


def load_script(script: Path):
    """The demo `script` as a module (demo_<name>), its main not run."""
    spec = importlib.util.spec_from_file_location(f"demo_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("demo") / "logs"
    r = run_script(TRAIN, "--fast", "--no-tensorboard", "--logdir", str(logdir))
    return logdir, r.stdout


def test_fast_run_logs_every_layer_from_the_untrained_state_on(fast_run):
    logdir, _ = fast_run
    series = read_run(logdir)
    assert set(DEMO_LAYERS) | {"dense", "logits", "__probe__"} <= set(series)
    last_step = FAST_EPOCHS * FAST_BATCHES
    for layer, channels in DEMO_LAYERS.items():
        s = series[layer]
        assert s.info.total_channels == channels
        steps = s.step_numbers
        assert steps[0] == 0 and steps[-1] == last_step, steps
        assert steps == sorted(set(steps)), steps
        epochs = [st.header["epoch"] for st in s.steps]
        # The untrained state, several states within epoch 1, then every epoch's end.
        assert epochs[0] == 0.0
        assert sum(0 < e < 1 for e in epochs) >= 2, epochs
        assert [e for e in epochs if e >= 1] == [float(n) for n in range(1, FAST_EPOCHS + 1)]
        assert len(steps) >= 1 + 2 + FAST_EPOCHS


def test_first_layer_changes_with_training(fast_run):
    logdir, _ = fast_run
    conv1 = read_run(logdir)["conv1"]
    first, last = conv1.steps[0], conv1.steps[-1]
    changed = 0
    for c in range(conv1.info.channels):
        a = first.image(conv1.info, 0, c).astype(np.int16)
        b = last.image(conv1.info, 0, c).astype(np.int16)
        changed += np.abs(a - b).mean() > 2
    assert changed >= conv1.info.channels // 2, changed


def test_keras_scalars_sit_beside_the_activations_and_show_learning(fast_run):
    logdir, stdout = fast_run
    val = scalars(logdir, "validation", "epoch_accuracy")
    assert len(val) == FAST_EPOCHS
    final = val[-1][1]
    assert final > 2 * CHANCE, val
    assert len(scalars(logdir, "train", "epoch_accuracy")) == FAST_EPOCHS
    # The closing report states the same figure the scalars hold.
    assert f"Validation accuracy after {FAST_EPOCHS} epochs: {final:.1%}" in stdout
    assert "activations/conv1: 16 channels" in stdout
    assert "tensorboard --logdir" in stdout


def test_rerun_clears_its_own_logdir_but_refuses_a_foreign_one(tmp_path):
    train = load_script(TRAIN)
    mine = tmp_path / "mine"
    train.prepare_logdir(mine)
    (mine / "activations").mkdir()
    (mine / "activations" / "events.out.tfevents.old").write_bytes(b"old")
    train.prepare_logdir(mine)
    assert sorted(p.name for p in mine.iterdir()) == [train.MARKER]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="did not write"):
        train.prepare_logdir(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_flags_and_environment(monkeypatch):
    train = load_script(TRAIN)
    monkeypatch.delenv("DEMO_NO_TENSORBOARD", raising=False)
    args = train.parse_args([])
    assert (args.logdir, args.epochs, args.samples, args.no_tensorboard) == (
        "logs/demo",
        10,
        6000,
        False,
    )
    assert train.parse_args(["--fast"]).epochs == FAST_EPOCHS
    monkeypatch.setenv("DEMO_NO_TENSORBOARD", "1")
    assert train.parse_args([]).no_tensorboard
    monkeypatch.setenv("DEMO_NO_TENSORBOARD", "0")
    assert not train.parse_args([]).no_tensorboard


def test_free_port_skips_a_busy_one():
    train = load_script(TRAIN)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert train.free_port(port) != port


def test_demo_serves_tensorboard_until_interrupted(tmp_path):
    """The default ending: a URL on 127.0.0.1 that serves the tab, and Ctrl-C stops it."""
    env = {k: v for k, v in os.environ.items() if k != "DEMO_NO_TENSORBOARD"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        first_port = s.getsockname()[1]
    cmd = [sys.executable, str(TRAIN), "--fast", "--epochs", "1", "--logdir", str(tmp_path)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(first_port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:

        def url():
            if proc.poll() is not None:
                raise AssertionError(f"train.py exited early:\n{''.join(lines)}")
            for line in list(lines):
                if "/#activations" in line:
                    return line.split("Open ", 1)[1].strip()
            return None

        link = wait_until(url, RUN_TIMEOUT, "the demo to print its TensorBoard URL")
        assert link.startswith("http://127.0.0.1:") and link.endswith("/#activations")
        base = link[: -len("#activations")]
        listing = wait_until(
            lambda: fetch(base + "data/plugins_listing", 10).json(),
            SERVE_TIMEOUT,
            "TensorBoard to answer",
        )
        assert "activations" in listing

        def layers_loaded():
            tags = fetch(base + "data/plugin/activations/tags", 10).json()
            return tags if "conv1" in tags.get("activations", {}) else None

        tags = wait_until(layers_loaded, SERVE_TIMEOUT, "the demo's run to load")
        assert tags["activations"]["conv1"]["total_channels"] == 16

        proc.send_signal(signal.SIGINT)
        assert proc.wait(SERVE_TIMEOUT) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(SERVE_TIMEOUT)
        # TensorBoard's data server is a child in the demo's process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(SERVE_TIMEOUT)
    assert "Stopped TensorBoard." in "".join(lines)


def test_vgg16_snapshot_logs_five_blocks_in_one_step(tmp_path):
    r = run_script(VGG16, "--logdir", str(tmp_path))
    series = read_run(tmp_path)
    assert set(VGG16_CHANNELS) | {"__probe__"} == set(series)
    for layer, channels in VGG16_CHANNELS.items():
        s = series[layer]
        assert s.step_numbers == [0]
        assert (s.info.total_channels, s.info.channels) == (channels, channels)
        assert f"activations/{layer}: {channels} channels" in r.stdout
    assert (series["block1_conv1"].info.source_height, series["block5_conv1"].info.height) == (
        224,
        14,
    )
    assert "ImageNet weights unavailable offline; using random weights" in r.stdout or (
        "Using the ImageNet weights" in r.stdout
    )
    assert "tensorboard --logdir" in r.stdout


def test_vgg16_snapshot_takes_any_image(tmp_path):
    from PIL import Image

    image = tmp_path / "gradient.png"
    ramp = np.linspace(0, 255, 64 * 48, dtype=np.float32).reshape(48, 64).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], -1)).save(image)
    logdir = tmp_path / "logs"
    r = run_script(VGG16, "--image", str(image), "--logdir", str(logdir))
    assert "gradient.png" in r.stdout
    probe = read_run(logdir)["__probe__"]
    assert (probe.info.height, probe.info.width) == (224, 224)
    # The logged probe is this image as VGG16 saw it: resized by Pillow, then
    # VGG16's own preprocessing (BGR, less ImageNet's mean of each channel),
    # stored from its min..max to 0..255.
    rgb = Image.open(image).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    seen = np.asarray(rgb, np.float64)[..., ::-1] - [103.939, 116.779, 123.68]
    expected = (seen - seen.min()) / (seen.max() - seen.min()) * 255
    got = probe.steps[0].image(probe.info, 0, 0).astype(np.float64)
    assert got.shape == (224, 224, 3)
    assert np.abs(got - expected).max() <= 1
