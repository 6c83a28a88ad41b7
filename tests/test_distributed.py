"""One copy of the activations from a distributed training, by the chief.

The decision (`distributed.decide`) as a table; then real trainings, each in
processes of its own: `tf.distribute.MirroredStrategy` over two logical CPU
devices, two processes training into one log directory under each launcher's
convention, and Keras's `DataParallel` over two JAX host devices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tb_activations import distributed
from tb_activations.distributed import Process

from recorded import read_run

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHILD_TIMEOUT = 900  # seconds; two trainings share two loaded cores
LAUNCHER_VARIABLES = ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK")


def _tf_config(cluster: dict, kind: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


WITH_CHIEF = {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"], "ps": ["host3:2222"]}
WORKERS = {"worker": ["host0:2222", "host1:2222"]}


@pytest.mark.parametrize(
    "said, chief, source",
    [
        ({}, True, "a single process"),
        ({"tf_config": _tf_config(WITH_CHIEF, "chief", 0)}, True, "TF_CONFIG task chief 0"),
        # With a chief in the cluster, worker 0 is an ordinary worker.
        ({"tf_config": _tf_config(WITH_CHIEF, "worker", 0)}, False, "TF_CONFIG task worker 0"),
        ({"tf_config": _tf_config(WITH_CHIEF, "ps", 0)}, False, "TF_CONFIG task ps 0"),
        ({"tf_config": _tf_config(WORKERS, "worker", 0)}, True, "without a chief"),
        ({"tf_config": _tf_config(WORKERS, "worker", 1)}, False, "TF_CONFIG task worker 1"),
        ({"tf_config": _tf_config(WORKERS, "evaluator", 0)}, False, "task evaluator 0"),
        ({"tf_config": _tf_config({"master": ["h:1"]}, "master", 0)}, True, "task master 0"),
        ({"tf_config": '{"task": {"type": "worker", "index": "1"}}'}, False, "worker 1"),
        # TF_CONFIG without a task (or empty) places no process, as in tf.distribute.
        ({"tf_config": json.dumps({"cluster": WORKERS})}, True, "a single process"),
        ({"tf_config": "  "}, True, "a single process"),
        ({"rank": "0"}, True, "RANK=0"),
        ({"rank": "3"}, False, "RANK=3"),
        ({"rank": ""}, True, "a single process"),
        # A live process group or jax.distributed outranks the variables.
        ({"torch_rank": (1, 2), "rank": "0"}, False, "torch.distributed rank 1 of 2"),
        ({"torch_rank": (0, 2), "rank": "1"}, True, "torch.distributed rank 0 of 2"),
        ({"jax_index": (1, 4), "tf_config": _tf_config(WORKERS, "worker", 0)}, False, "jax"),
        ({"jax_index": (0, 4)}, True, "jax.process_index() 0 of 4"),
        ({"tf_config": _tf_config(WORKERS, "worker", 1), "rank": "0"}, False, "TF_CONFIG"),
    ],
)
def test_which_process_is_the_chief(said, chief, source):
    process = distributed.decide(**said)
    assert process.chief is chief
    assert source in process.source


@pytest.mark.parametrize(
    "said, message",
    [
        (
            {"tf_config": "{task: chief}"},
            r"it is not JSON\).*Received: TF_CONFIG='\{task: chief\}'",
        ),
        ({"tf_config": "[]"}, r"it is not an object"),
        ({"tf_config": '{"task": "chief"}'}, r"the task has no type"),
        ({"tf_config": '{"task": {"type": "worker"}}'}, r"index is not an integer >= 0"),
        ({"tf_config": '{"task": {"type": "worker", "index": -1}}'}, r"index is not an integer"),
        ({"tf_config": '{"task": {"type": "chief", "index": 0}, "cluster": []}'}, r"cluster"),
        ({"rank": "one"}, r"RANK must be .* an integer >= 0.*Received: RANK='one'"),
        ({"rank": "-1"}, r"Received: RANK='-1'"),
        ({"rank": "²"}, r"Received: RANK='²'"),
    ],
)
def test_unreadable_variables_say_what_was_expected(said, message):
    with pytest.raises(ValueError, match=message) as caught:
        distributed.decide(**said)
    assert "pass chief=True or False to decide yourself" in str(caught.value)


def test_this_process_reads_the_launcher_variables(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.this_process() == Process(True, "a single process")
    monkeypatch.setenv("RANK", "2")
    assert distributed.this_process() == Process(False, "RANK=2")
    monkeypatch.setenv("TF_CONFIG", _tf_config(WORKERS, "worker", 0))
    assert distributed.this_process().chief


# -- real trainings, each process started afresh ------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env | extra


def _start(python: str, spec: dict, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [python, str(TESTS / "distributed_fit.py"), json.dumps(spec)],
        cwd=ROOT,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reports(procs: list[subprocess.Popen]) -> list[dict]:
    """Waits for every process; their reports, or a failure with their output."""
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=CHILD_TIMEOUT))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, outputs):
        if proc.returncode != 0:
            pytest.fail(f"training process exited with {proc.returncode}:\n{out}\n{err[-4000:]}")
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def _writers(log_dir: Path) -> dict[str, set[int]]:
    """Run directory -> the process ids that wrote its event files."""
    found: dict[str, set[int]] = {}
    for path in log_dir.rglob("*"):
        assert path.is_dir() or path.name.startswith("events.out.tfevents."), path
        if path.is_file():
            # events.out.tfevents.<time>.<host>.<pid>.<n>
            pid = int(path.name.split(".")[-2])
            found.setdefault(str(path.parent.relative_to(log_dir)), set()).add(pid)
    return found


def _check_one_copy(log_dir: Path, run: str, report: dict) -> None:
    """The run holds every state the process logged, once, with its model's values."""
    series = read_run(log_dir, run=run)
    expected = list(range(report["iterations"] + 1))  # batch_freq=1 over every epoch
    assert sorted(int(s) for s in report["references"]) == expected
    for layer in ("conv2", "logits"):
        assert series[layer].step_numbers == expected, layer
    assert report["forward_calls"] == len(expected)
    for step in series["conv2"].steps:
        ref = report["references"][str(step.step)]
        conv2 = np.asarray(ref["conv2"], np.float32)
        np.testing.assert_allclose(
            step.stats[..., 2], conv2.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5
        )
    for step in series["logits"].steps:
        logits = np.asarray(report["references"][str(step.step)]["logits"], np.float32)
        got = step.stats[:, 0, :4]  # units: one strip per probe; min, max, mean, std
        want = np.stack([logits.min(1), logits.max(1), logits.mean(1), logits.std(1)], 1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mirrored_strategy_over_two_devices_logs_each_step_once(tmp_path):
    spec = {"log_dir": str(tmp_path), "setting": "mirrored"}
    (report,) = _reports([_start(sys.executable, spec, {})])
    assert report["replicas"] == 2 and report["chief"]
    assert report["iterations"] == 6  # 96 samples, global batch 32, two epochs
    _check_one_copy(tmp_path, "activations", report)
    assert _writers(tmp_path) == {"activations": {report["pid"]}}


def _cluster(kind_index: list[tuple[str, int]], cluster: dict) -> list[dict[str, str]]:
    return [{"TF_CONFIG": _tf_config(cluster, kind, index)} for kind, index in kind_index]


@pytest.mark.slow
@pytest.mark.parametrize(
    "envs, chief",
    [
        pytest.param(_cluster([("worker", 0), ("chief", 0)], WITH_CHIEF), 1, id="tf-chief"),
        pytest.param(_cluster([("worker", 0), ("worker", 1)], WORKERS), 0, id="tf-worker0"),
        pytest.param(
            [{"RANK": "1", "WORLD_SIZE": "2"}, {"RANK": "0", "WORLD_SIZE": "2"}], 1, id="rank"
        ),
    ],
)
def test_two_processes_one_log_written_by_the_chief(tmp_path, envs, chief):
    spec = {"log_dir": str(tmp_path), "setting": "plain"}
    reports = _reports([_start(sys.executable, spec, env) for env in envs])
    assert [r["chief"] for r in reports] == [i == chief for i in range(len(envs))]
    other = reports[1 - chief]
    # The other process ran no forward pass of the probe and wrote nothing.
    assert other["forward_calls"] == 0
    assert other["iterations"] == reports[chief]["iterations"] == 6
    assert _writers(tmp_path) == {"activations": {reports[chief]["pid"]}}
    _check_one_copy(tmp_path, "activations", reports[chief])


@pytest.mark.slow
def test_a_worker_opted_in_logs_to_a_run_of_its_own(tmp_path):
    spec = {"log_dir": str(tmp_path), "setting": "plain"}
    opted_in = spec | {"logger": {"chief": True, "run_name": "activations_worker1"}}
    reports = _reports(
        [
            _start(sys.executable, spec, {"RANK": "0", "WORLD_SIZE": "2"}),
            _start(sys.executable, opted_in, {"RANK": "1", "WORLD_SIZE": "2"}),
        ]
    )
    assert [r["source"] for r in reports] == ["RANK=0", "chief=True"]
    assert _writers(tmp_path) == {
        "activations": {reports[0]["pid"]},
        "activations_worker1": {reports[1]["pid"]},
    }
    _check_one_copy(tmp_path, "activations", reports[0])
    _check_one_copy(tmp_path, "activations_worker1", reports[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A process group as each backend's script makes it: the group's address,
# then what the session reports of ranks 1 and 0.
PROCESS_GROUPS = [
    pytest.param("torch", "tcp://127.0.0.1:{port}", "torch.distributed rank {r} of 2", id="torch"),
    pytest.param("jax", "127.0.0.1:{port}", "jax.process_index() {r} of 2", id="jax"),
]


@pytest.mark.slow
@pytest.mark.parametrize("backend, address, source", PROCESS_GROUPS)
def test_an_initialized_process_group_decides(tmp_path, backend, address, source):
    python = _backend_python(backend)
    address = address.format(port=_free_port())
    spec = {"log_dir": str(tmp_path), "setting": "plain"}
    # No RANK: only the live process group can tell the two apart.
    reports = _reports(
        [
            _start(
                python,
                spec | {f"{backend}_group": {"address": address, "rank": r, "size": 2}},
                {"KERAS_BACKEND": backend},
            )
            for r in (1, 0)
        ]
    )
    assert [r["source"] for r in reports] == [source.format(r=1), source.format(r=0)]
    assert reports[0]["forward_calls"] == 0 and reports[1]["backend"] == backend
    assert reports[0]["iterations"] == reports[1]["iterations"] == 6
    assert _writers(tmp_path) == {"activations": {reports[1]["pid"]}}
    _check_one_copy(tmp_path, "activations", reports[1])


JAX_ENV = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _backend_python(backend: str) -> str:
    """The interpreter of the backend's environment; skips without it (a failure in CI)."""
    python = ROOT / f".venv-{backend}" / "bin" / "python"
    if not python.exists():
        reason = f"no {backend} environment at {python} (make makes it)"
    else:
        check = subprocess.run(
            [str(python), "-c", f"import {backend}, keras, tb_activations"],
            cwd=ROOT,
            env=_env({"KERAS_BACKEND": backend}),
            capture_output=True,
            text=True,
        )
        if check.returncode == 0:
            return str(python)
        reason = (
            f"{python} cannot import {backend}, keras and tb_activations: {check.stderr[-500:]}"
        )
    pytest.skip(reason)


@pytest.mark.slow
def test_keras_data_parallel_on_two_jax_devices_logs_each_step_once(tmp_path):
    python = _backend_python("jax")
    spec = {"log_dir": str(tmp_path), "setting": "data_parallel"}
    (report,) = _reports([_start(python, spec, JAX_ENV)])
    assert (report["backend"], report["replicas"], report["chief"]) == ("jax", 2, True)
    assert report["iterations"] == 6
    _check_one_copy(tmp_path, "activations", report)
    assert _writers(tmp_path) == {"activations": {report["pid"]}}
