"""The `tb-activations` command, run as a process on a real training log,
and the notebook example of docs/notebooks-and-cli.md run against the same log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import recorded

RUN = "run1/activations"
NOTEBOOK_DOC = Path(__file__).resolve().parent.parent / "docs" / "notebooks-and-cli.md"


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    truth = recorded.train_ground_truth(root / "logs" / "run1")
    return root, truth


def cli(*args, cwd, script: bool = False) -> subprocess.CompletedProcess:
    installed = Path(sys.executable).parent / "tb-activations"
    command = [str(installed)] if script else [sys.executable, "-m", "tb_activations.cli"]
    return subprocess.run(
        [*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def dead_rows(truth, layer: str) -> np.ndarray:
    """(channels, steps): every value of the channel, over all probes, is 0."""
    rows = []
    for a in truth.activations[layer]:
        a = a.reshape(a.shape[0], -1, a.shape[-1]) if a.ndim > 2 else a.reshape(-1, 1)
        rows.append((a == 0).reshape(-1, a.shape[-1]).all(axis=0))
    return np.array(rows).T


def expected_report(truth) -> dict[str, list]:
    out = {}
    for layer in recorded.GROUND_TRUTH_LAYERS:
        dead = dead_rows(truth, layer)
        died = (~dead[:, :-1] & dead[:, 1:]).any(axis=1).sum()
        first, last = truth.activations[layer][0], truth.activations[layer][-1]
        norm = max(np.linalg.norm(first), np.linalg.norm(last))
        change = np.linalg.norm(last - first) / norm if norm else 0.0
        out[layer] = [
            dead.shape[0],
            int(dead[:, -1].sum()),
            int(died),
            int(dead.all(1).sum()),
            change,
            recorded.ref_health(truth.activations[layer][-1]),
        ]
    return out


def report_rows(stdout: str) -> dict[str, list]:
    rows = {}
    for line in stdout.splitlines():
        m = re.fullmatch(
            r"\s+(\S+)\s+(\d+)\s+(\d+) \(\d+%\)\s+(\d+)\s+(\d+)\s+(\S+)"
            r"\s+(\S+)\s+(\S+) / (\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)",
            line,
        )
        if m:
            layer, *counts, change = m.groups()[:6]
            dormant, rank, rank_max, similarity, rms, saturation, broke = m.groups()[6:]
            rows[layer] = [*map(int, counts), float(change)]
            rows[layer].append(
                {
                    "dormant_fraction": number(dormant.rstrip("%")) / 100,
                    "effective_rank": number(rank),
                    "effective_rank_max": int(rank_max),
                    "similarity": number(similarity),
                    "rms": number(rms),
                    "saturation": number(saturation),
                    "first_nonfinite": None if broke == "-" else int(broke),
                }
            )
    return rows


def number(text: str) -> float:
    return float("nan") if text == "n/a" else float(text)


def test_report_prints_each_layers_counts_and_change(logs):
    root, truth = logs
    r = cli("report", "logs", cwd=root, script=True)  # the installed console script
    assert r.returncode == 0, r.stderr
    assert f"run {RUN} (steps 0..{truth.steps[-1]}, {len(truth.steps)} logged)" in r.stdout
    got = report_rows(r.stdout)
    expected = expected_report(truth)
    assert list(got) == list(expected)
    for layer, row in expected.items():
        assert got[layer][:4] == row[:4], layer
        assert got[layer][4] == pytest.approx(row[4], abs=2e-3), layer
        printed, ref = got[layer][5], row[5]
        # As printed: a whole percent, 2 decimals, 3 decimals, 3 digits.
        assert printed["dormant_fraction"] == pytest.approx(ref["dormant_fraction"], abs=0.006)
        assert printed["effective_rank"] == pytest.approx(ref["effective_rank"], abs=0.006)
        # min(N - 1, units): two samples here.
        assert printed["effective_rank_max"] == min(len(truth.probe) - 1, 12)
        assert printed["similarity"] == pytest.approx(ref["similarity"], abs=6e-4)
        assert printed["rms"] == pytest.approx(ref["rms"], rel=6e-3)
        assert np.isnan(printed["saturation"])  # ReLU layers
        assert printed["first_nonfinite"] is None


def test_fail_dead_above_exits_1_naming_the_layers(logs):
    root, truth = logs
    fractions = {layer: row[1] / row[0] for layer, row in expected_report(truth).items()}
    worst = max(fractions, key=fractions.get)
    assert fractions[worst] > 0  # conv2 has channels dead from the start
    r = cli("report", "logs", "--fail-dead-above", fractions[worst] - 0.01, cwd=root)
    assert r.returncode == 1, r.stderr
    assert "FAILED" in r.stdout
    assert f"{RUN}  {worst}: {fractions[worst]:.1%}" in r.stdout
    r = cli("report", "logs", "--fail-dead-above", fractions[worst], cwd=root)
    assert r.returncode == 0, r.stderr
    ok = f"OK: no layer with dead fraction at the last step above {fractions[worst]:g}."
    assert ok in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("report", "logs", "--run", "nope"),
            "No activations logged for run 'nope'.*Runs: 'run1/activations'",
        ),
        (
            ("report", "logs", "--fail-dead-above", "1.5"),
            "--fail-dead-above takes a fraction from 0 to 1",
        ),
        (("report", "missing"), "No log directory 'missing'"),
        (("report", "logs/run1/train"), "No activations logged in"),
        (
            ("export", "logs", "--run", RUN, "--layer", "conv9", "--channel", "0"),
            "no logged layer 'conv9'.*'conv1'",
        ),
        (
            ("export", "logs", "--run", RUN, "--layer", "conv2", "--channel", "16"),
            "Channel 16 is out of range",
        ),
        (
            ("export", "logs", "--run", RUN, "--layer", "conv2", "--step", "1"),
            "no step 1. Steps: 0, 3",
        ),
        (
            ("export", "logs", "--run", RUN, "--layer", "conv2", "--step", "0", "--format", "gif"),
            "Unknown format 'gif'; expected one of png",
        ),
        (
            ("export", "logs", "--run", RUN, "--layer", "conv2"),
            "one of the arguments --channel --step is required",
        ),
        (
            (
                "export",
                "logs",
                "--run",
                RUN,
                "--layer",
                "conv2",
                "--channel",
                "0",
                "--colormap",
                "jet",
            ),
            "invalid choice: 'jet'",
        ),
    ],
)
def test_bad_arguments_exit_2_saying_why(logs, args, message):
    root, _ = logs
    r = cli(*args, cwd=root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert re.search(message, r.stderr), r.stderr


@pytest.mark.parametrize("format", ["gif", "apng"])
def test_export_a_channels_evolution(logs, format, tmp_path):
    root, truth = logs
    out = tmp_path / f"c3.{format}"
    r = cli(
        "export",
        root / "logs",
        "--run",
        RUN,
        "--layer",
        "conv2",
        "--channel",
        3,
        "--format",
        format,
        "--normalization",
        "channel-fixed",
        "-o",
        out,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    with Image.open(out) as image:
        assert image.format == ("GIF" if format == "gif" else "PNG")
        assert image.n_frames == len(truth.steps)
        assert image.size[0] >= 200  # an 11 x 11 map upscaled to be seen


def test_export_a_layers_grid_under_its_default_name(logs, tmp_path):
    root, truth = logs
    step = truth.steps[-1]
    r = cli("export", root / "logs", "--run", RUN, "--layer", "conv1", "--step", step, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / f"run1_activations-conv1-step{step}.png"
    assert f"wrote {out.name}" in r.stdout
    with Image.open(out) as image:
        assert image.mode == "RGB" and image.size[0] >= 3 * 64  # 8 tiles, 3 columns


def test_the_command_line_reads_without_importing_tensorflow(logs):
    root, _ = logs
    code = (
        "import sys; from tb_activations import cli; "
        "cli.main(['report', 'logs']); print('tensorflow' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "False"


def test_notebook_example_runs(logs):
    root, truth = logs
    text = NOTEBOOK_DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- notebook-example -->\n```python\n(.*?)```", text, re.S)
    assert block, f"{NOTEBOOK_DOC.name} lost its marked code block (<!-- notebook-example -->)"
    code = block.group(1) + "print(len(plt.get_fignums()))\n"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "5"  # the mean over steps, and four channels
