"""The README's quick start on a fresh clone, in its order: the demo, then the tests.

The demo leaves its log at the clone's root (`logs/demo`). Nothing it leaves
may change what `make test` sees there: lint's verdict, the tests pytest
collects, the files git tracks or would add, the tests folder.

Every Python run here puts the clone first on PYTHONPATH, so the demo and
pytest import the clone's `tb_activations`, not the checkout installed into
the running venv (its editable finder comes after PYTHONPATH).

Both commands install into .venv first; the last test checks that a sound
venv is reused and a broken one made again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_demo import ROOT, run, run_script

pytestmark = pytest.mark.slow

# One short epoch: enough to write every kind of file the full demo writes,
# in its default place.
DEMO_ARGS = ("--no-tensorboard", "--epochs", "1", "--samples", "256")


@dataclass
class TreeState:
    lint: subprocess.CompletedProcess
    collected: list[str]
    tests_files: list[str]


def clone_env(clone: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(clone)}


def lint(clone: Path) -> subprocess.CompletedProcess:
    """`make test`'s lint line, with the ruff installed beside this interpreter.

    `-o install` keeps make from installing a venv into the clone. Ruff's cache
    is off, so that the run before the demo cannot hand its verdict to the one after.
    """
    bin_dir = Path(sys.executable).parent
    cmd = ["make", "--no-print-directory", "-o", "install", "lint", f"BIN={bin_dir}"]
    return run(cmd, clone, {"RUFF_NO_CACHE": "true"}, check=False)


def collected(clone: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    out = run(cmd, clone, clone_env(clone)).stdout
    return [line for line in out.splitlines() if "::" in line]


def files_in_tests(clone: Path) -> list[str]:
    return sorted(str(p.relative_to(clone)) for p in (clone / "tests").rglob("*"))


def tree_state(clone: Path) -> TreeState:
    return TreeState(lint(clone), collected(clone), files_in_tests(clone))


def run_demo(clone: Path) -> subprocess.CompletedProcess:
    return run_script(clone / "demo" / "train.py", *DEMO_ARGS, cwd=clone, env=clone_env(clone))


@dataclass
class Quickstart:
    clone: Path
    before: TreeState
    after: TreeState
    demo_stdout: str


def fresh_clone(tmp_path_factory) -> Path:
    """A clone of this repository's committed HEAD."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: there is nothing to clone")
    clone = tmp_path_factory.mktemp("quickstart") / "tb-activations"
    run(["git", "clone", "--quiet", ROOT, clone], clone.parent)
    return clone


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Quickstart:
    clone = fresh_clone(tmp_path_factory)
    before = tree_state(clone)
    demo = run_demo(clone)
    return Quickstart(clone, before, tree_state(clone), demo.stdout)


def test_the_demo_runs_on_the_clones_own_package(quickstart):
    clone = quickstart.clone
    # Run from demo/, as train.py's own folder heads its sys.path.
    code = "import importlib.util; print(importlib.util.find_spec('tb_activations').origin)"
    origin = run([sys.executable, "-c", code], clone / "demo", clone_env(clone)).stdout.strip()
    assert Path(origin).parent == clone / "tb_activations"
    assert "Logged to logs/demo/" in quickstart.demo_stdout


def test_lint_passes_before_and_after_the_demo(quickstart):
    for when, state in (("before", quickstart.before), ("after", quickstart.after)):
        assert state.lint.returncode == 0, (
            f"lint fails {when} the demo:\n{state.lint.stdout}\n{state.lint.stderr}"
        )
        assert "All checks passed!" in state.lint.stdout


def test_the_demo_leaves_only_ignored_files(quickstart):
    clone = quickstart.clone
    assert (clone / "logs" / "demo" / "activations").is_dir()
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], clone).stdout
    assert status == "", f"the demo left files git would show:\n{status}"
    ignored = run(["git", "status", "--porcelain", "--ignored"], clone).stdout.splitlines()
    assert "!! logs/" in ignored


@pytest.mark.parametrize(
    "path",
    [
        "logs/vgg16/activations",  # demo/vgg16_snapshot.py's default log directory
        "runs/run1",  # where many training scripts log; a user's, not the project's
        "test-artifacts/readme/panel.png",  # the browser test's screenshots
        ".venv/.installed",  # make's venv and its stamps
        ".venv-jax/.installed",  # the other Keras backends' venvs
        ".venv-torch/.installed",
    ],
)
def test_what_the_demos_and_tests_leave_at_the_root_is_ignored(quickstart, path):
    run(["git", "check-ignore", "--quiet", path], quickstart.clone)


def test_nothing_lands_in_the_tests_folder(quickstart):
    assert quickstart.after.tests_files == quickstart.before.tests_files


def test_pytest_collects_the_same_tests(quickstart):
    before, after = quickstart.before.collected, quickstart.after.collected
    assert any(node.startswith("tests/test_demo.py::") for node in before)
    assert after == before


# What `make install` (and so `make test`, `make demo`) plans for each state of
# .venv: nothing, `pip install` into it, or a new venv first. The venv is real
# (with pip); what a completed install leaves is its stamp, .venv/.installed.
# `make -n` prints the plan without running it.
INSTALL = "-m pip install --quiet -e"
NEW_VENV = "rm -rf .venv"


def stamp_newer(venv: Path):
    os.utime(venv.parent / "pyproject.toml", (1e9, 1e9))
    (venv / ".installed").touch()


def pyproject_newer(venv: Path):
    stamp_newer(venv)
    os.utime(venv / ".installed", (1e9 - 60, 1e9 - 60))


def stamp_missing(venv: Path):
    os.utime(venv.parent / "pyproject.toml", (1e9, 1e9))


def install_cut_short(venv: Path):
    stamp_missing(venv)
    (venv / ".installing").touch()


def pip_missing(venv: Path):
    stamp_newer(venv)
    (venv / "bin" / "pip").rename(venv / "pip.away")


def python_missing(venv: Path):
    stamp_newer(venv)
    for python in (venv / "bin").glob("python*"):
        python.rename(venv / f"{python.name}.away")


def no_venv(venv: Path):
    venv.rename(venv.with_name("venv.away"))


@pytest.fixture(scope="module")
def venv_clone(tmp_path_factory) -> Path:
    clone = fresh_clone(tmp_path_factory)
    run([sys.executable, "-m", "venv", clone / ".venv"], clone)
    return clone


@pytest.mark.parametrize(
    "state, installs, new_venv",
    [
        (stamp_newer, False, False),
        (pyproject_newer, True, False),
        (stamp_missing, True, False),
        (install_cut_short, True, True),
        (pip_missing, True, True),
        (python_missing, True, True),
        (no_venv, True, True),
    ],
)
def test_make_install_reuses_a_sound_venv_and_remakes_a_broken_one(
    venv_clone, state, installs, new_venv
):
    venv = venv_clone / ".venv"
    state(venv)
    try:
        plan = run(["make", "--no-print-directory", "-n", "install"], venv_clone).stdout
    finally:
        # Back to a sound venv with no stamp, for the next case.
        if venv.with_name("venv.away").exists():
            venv.with_name("venv.away").rename(venv)
        for away in venv.glob("*.away"):
            away.rename(venv / "bin" / away.name.removesuffix(".away"))
        for mark in (".installed", ".installing"):
            (venv / mark).unlink(missing_ok=True)
    assert (INSTALL in plan, NEW_VENV in plan) == (installs, new_venv), plan
    if not installs:
        assert "Nothing to be done for 'install'" in plan
