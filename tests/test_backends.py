"""The logger on Keras's JAX and torch backends, with TensorFlow not installed.

Each backend has its own venv (`make backends`: .venv-jax, .venv-torch), so
backends never mix and TensorFlow is absent there. `backend_fit.py` trains in
that venv and reads the log back with TensorBoard's readers, in that venv;
this module judges the result against the model's own forward pass.

Also here: the record writer those venvs use (`summary.CRecordWriter`), whose
bytes must be TensorBoard's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_activations import metadata, summary

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "backend_fit.py"
RUN_TIMEOUT = 900

# What backend_fit.py's fit logs: step 0, every batch of the first epoch
# (3 batches of 32 out of 96 samples; the last is the epoch end), then each epoch end.
FIT_STEPS = [0, 1, 2, 3, 6, 9]
SNAPSHOT_STEP = 1000
LAYERS = ("conv1", "conv2", "dense1")


def venv_python(backend: str) -> Path:
    return ROOT / f".venv-{backend}" / "bin" / "python"


def run_in_venv(backend: str, script: Path, out: Path) -> subprocess.CompletedProcess:
    """Runs `script OUT` with the backend's venv and Keras backend; fails on
    a non-zero exit, skips (fails in CI) when the venv is missing."""
    python = venv_python(backend)
    if not python.exists():
        pytest.skip(f"no {python.parent.parent.name} venv: make backends installs it")
    if not (python.parent.parent / ".installed").exists():
        pytest.skip(f"{python.parent.parent.name} is not fully installed: run make backends")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [str(python), str(script), str(out)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
    )
    assert r.returncode == 0, f"{script.name} on {backend} failed:\n{r.stdout}\n{r.stderr}"
    return r


# Slow: each trains in a process of its own (about 20 s on two cores).
@pytest.fixture(
    scope="module", params=[pytest.param(b, marks=pytest.mark.slow) for b in ("jax", "torch")]
)
def fit(request, tmp_path_factory):
    """backend_fit.py's facts and arrays, from a run in that backend's venv."""
    backend = request.param
    out = tmp_path_factory.mktemp(f"fit-{backend}")
    r = run_in_venv(backend, SCRIPT, out)
    facts = json.loads((out / "facts.json").read_text())
    with np.load(out / "arrays.npz") as z:
        arrays = dict(z)
    return backend, facts, arrays, r.stderr


def channels_of(a: np.ndarray) -> np.ndarray:
    """(probes, positions, channels) of a channels-last output, as the format
    defines its channels: a Dense output (probes, units) is one channel."""
    if a.ndim == 2:
        a = a[..., None]
    return a.reshape(a.shape[0], -1, a.shape[-1]).astype(np.float64)


def field(stats: np.ndarray, info: dict, name: str) -> np.ndarray:
    return stats[..., info["stats_fields"].index(name)]


def test_the_venv_has_the_backend_and_no_tensorflow(fit):
    backend, facts, _, _ = fit
    assert facts["backend"] == backend
    assert facts["tensorflow_import_error"] is not None
    assert "No module named 'tensorflow'" in facts["tensorflow_import_error"]
    assert facts["tensorflow_loaded"] is False
    # The C checksum, not TensorBoard's pure-Python one.
    assert facts["record_writer"] == "CRecordWriter"


def test_every_step_of_the_fit_and_the_snapshot_is_logged(fit):
    _, facts, _, _ = fit
    runs = facts["runs"]
    assert sorted(runs["activations"]) == sorted([metadata.PROBE_TAG, *LAYERS])
    for layer in LAYERS:
        assert runs["activations"][layer]["steps"] == FIT_STEPS, layer
        assert [h["index"] for h in runs["activations"][layer]["headers"]] == list(
            range(len(FIT_STEPS))
        )
        assert runs["snapshot"][layer]["steps"] == [SNAPSHOT_STEP]
    assert facts["snapshot_layers"] == list(LAYERS)


@pytest.mark.parametrize("run", ["activations", "snapshot"])
def test_statistics_are_the_models_own_forward_pass(fit, run):
    _, facts, arrays, _ = fit
    for layer in LAYERS:
        info = facts["runs"][run][layer]["info"]
        for step in facts["runs"][run][layer]["steps"]:
            key = "snapshot" if run == "snapshot" else str(step)
            a = channels_of(arrays[f"forward/{key}/{layer}"])
            stats = arrays[f"{run}/{layer}/{step}/stats"]
            assert stats.shape[:2] == (a.shape[0], a.shape[2])
            where = f"{run} {layer} step {step}"
            for name, expected in (
                ("min", a.min(axis=1)),
                ("max", a.max(axis=1)),
                ("mean", a.mean(axis=1)),
                ("std", a.std(axis=1)),
                ("zero_fraction", (a == 0).mean(axis=1)),
                ("sq_norm", (a**2).sum(axis=1)),
            ):
                np.testing.assert_allclose(
                    field(stats, info, name), expected, rtol=1e-5, atol=1e-6, err_msg=where
                )


def test_images_are_the_forward_pass_scaled_per_channel(fit):
    _, facts, arrays, _ = fit
    for layer in ("conv1", "conv2"):
        for step in FIT_STEPS:
            a = arrays[f"forward/{step}/{layer}"].astype(np.float64)  # (probes, h, w, c)
            lo = a.min(axis=(1, 2), keepdims=True)
            span = a.max(axis=(1, 2), keepdims=True) - lo
            scaled = np.divide(a - lo, span, out=np.zeros_like(a), where=span > 0) * 255
            expected = np.moveaxis(scaled, 3, 1)  # (probes, channels, h, w)
            images = arrays[f"activations/{layer}/{step}/images"].astype(np.float64)
            assert images.shape == expected.shape, (layer, step)
            # Rounding in float32 may land a level off at a .5.
            assert np.abs(images - expected).max() <= 1.0, (layer, step)


def test_measures_compare_each_step_with_the_previous_and_the_first(fit):
    _, facts, arrays, _ = fit
    for layer in LAYERS:
        series = facts["runs"]["activations"][layer]
        info = series["info"]
        first = channels_of(arrays[f"forward/0/{layer}"])
        prev = None
        for step, header in zip(series["steps"], series["headers"]):
            a = channels_of(arrays[f"forward/{step}/{layer}"])
            stats = arrays[f"activations/{layer}/{step}/stats"]
            where = f"{layer} step {step}"
            # The first step is its own start reference.
            assert header["start_step"] == 0, where
            np.testing.assert_allclose(
                field(stats, info, "sq_diff_start"),
                ((a - first) ** 2).sum(axis=1),
                rtol=1e-4,
                atol=1e-6,
                err_msg=where,
            )
            if prev is None:
                assert np.isnan(field(stats, info, "sq_diff_prev")).all(), where
                assert header["prev_step"] is None, where
            else:
                np.testing.assert_allclose(
                    field(stats, info, "sq_diff_prev"),
                    ((a - prev[1]) ** 2).sum(axis=1),
                    rtol=1e-4,
                    atol=1e-6,
                    err_msg=where,
                )
                assert header["prev_step"] == prev[0], where
            prev = (step, a)


def test_training_logs_no_warning(fit):
    _, _, _, stderr = fit
    assert "tb_activations:" not in stderr, stderr


# -- make's plan for the backend venvs --------------------------------------------------

# The same rules keep .venv (tests/test_quickstart.py checks its cases); here,
# what they plan for a backend's venv. `make -n` prints the plan, runs nothing.


def sound(venv: Path):
    (venv / "bin").mkdir(parents=True)
    # A pip that runs: this interpreter's own.
    (venv / "bin" / "pip").symlink_to(Path(sys.executable).parent / "pip")
    (venv / ".installed").touch()


def stale(venv: Path):
    sound(venv)
    os.utime(venv / ".installed", (1e9, 1e9))


def cut_short(venv: Path):
    sound(venv)
    (venv / ".installing").touch()


def pip_broken(venv: Path):
    sound(venv)
    (venv / "bin" / "pip").unlink()
    (venv / "bin" / "pip").symlink_to(venv / "nowhere")


def absent(venv: Path):
    pass


# A venv's state -> (make installs into it, make makes it anew first).
PLANS = {
    sound: (False, False),
    stale: (True, False),
    cut_short: (True, True),
    pip_broken: (True, True),
    absent: (True, True),
}


@pytest.mark.parametrize("state", PLANS, ids=lambda state: state.__name__)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_make_backends_reuses_a_sound_venv_and_remakes_a_broken_one(tmp_path, backend, state):
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    os.utime(tmp_path / "pyproject.toml", (1e9 + 60, 1e9 + 60))
    venv = tmp_path / f".venv-{backend}"
    state(venv)
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "backends", f"BACKENDS={backend}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    planned = (
        f'-m pip install --quiet -e ".[{backend}]"' in plan,
        f"rm -rf .venv-{backend}" in plan,
    )
    assert planned == PLANS[state], plan
    # Only the backend asked for; never TensorFlow's venv.
    assert "rm -rf .venv\n" not in plan and ".venv/" not in plan, plan
    if backend == "torch" and planned[0]:
        # The pinned CPU build first, then the package.
        assert plan.index("torch==2.13.0") < plan.index('-e ".[torch]"'), plan


# -- the record writer without TensorFlow ----------------------------------------------


class Collect:
    """A file that keeps what is written to it."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data):
        self.chunks.append(bytes(data))

    def flush(self):
        pass

    def close(self):
        pass


@pytest.mark.parametrize(
    "records",
    [
        [b""],
        [b"x"],
        [b"\x00" * 3, bytes(range(256)) * 40],
        # A record as large as a VGG16 layer's step, with every byte value.
        [np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()],
    ],
    ids=["empty", "one byte", "two records", "3 MB"],
)
def test_c_record_writer_writes_tensorboards_bytes(records):
    if summary._crc32c is None:
        pytest.skip("google-crc32c's C extension is not installed: pip install google-crc32c")
    ours, theirs = Collect(), Collect()
    for r in records:
        summary.CRecordWriter(ours).write(r)
        RecordWriter(theirs).write(r)
    assert b"".join(ours.chunks) == b"".join(theirs.chunks)
    # One write per record: TensorBoard's local files reopen on each write.
    assert len(ours.chunks) == len(records)


def test_without_a_c_checksum_the_writer_falls_back_and_warns_once(tmp_path, monkeypatch, caplog):
    # As in a venv with neither TensorFlow loaded nor google-crc32c installed.
    monkeypatch.setattr(summary, "_crc32c", None)
    monkeypatch.setattr(summary, "_slow_crc_warned", False)
    # TensorBoard resolves its `tf` once, for good: resolve it while
    # TensorFlow imports, or hiding TensorFlow would leave every later test
    # of this process on TensorBoard's stub.
    summary.tb_tf.io  # noqa: B018
    # None: TensorFlow cannot be imported; TensorBoard's own paths are used.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    files = [summary.EventFile(tmp_path / str(i)) for i in range(2)]
    for f in files:
        f.close()
    assert [type(f._records) for f in files] == [RecordWriter, RecordWriter]
    warnings = [r.getMessage() for r in caplog.records if "pure Python" in r.getMessage()]
    assert len(warnings) == 1
    assert "pip install google-crc32c" in warnings[0]
