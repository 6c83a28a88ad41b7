"""demo/attention.py as a newcomer runs it: real training, real files, read back
with `tb_activations.read`; its heads must really organize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tb_activations import metadata, read

from test_demo import load_script, run_script

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "attention.py"
# What `attention.py --fast` does: 4000 sequences in batches of 64, 3 epochs.
FAST_EPOCHS = 3
FAST_BATCHES = 63
LENGTH = 8
HEADS = 2


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("attention") / "logs"
    r = run_script(DEMO, "--fast", "--no-tensorboard", "--logdir", str(logdir))
    return logdir, r.stdout


def test_fast_run_logs_the_heads_from_the_untrained_state_on(fast_run):
    logdir, _ = fast_run
    log = read(logdir)
    tag = "attention/attention_scores"
    assert tag in log.layers("activations")
    info = log.info("activations", tag)
    assert info.kind == metadata.KIND_ATTENTION and info.axes == ("query", "key")
    assert (info.channels, info.height, info.width) == (HEADS, LENGTH, LENGTH)
    steps = log.steps("activations", tag)
    assert steps[0] == 0 and steps[-1] == FAST_EPOCHS * FAST_BATCHES
    # Several states within the first epoch, where the pattern forms.
    assert sum(0 < s < FAST_BATCHES for s in steps) >= 5, steps
    assert steps == log.steps("activations", "attention")


def test_the_heads_organize_into_the_anti_diagonal(fast_run):
    logdir, stdout = fast_run
    demo = load_script(DEMO)
    log = read(logdir)
    steps = log.steps("activations", demo.TAG)
    first = demo.anti_diagonal_weight(log.activations("activations", demo.TAG, steps[0]))
    last = demo.anti_diagonal_weight(log.activations("activations", demo.TAG, steps[-1]))
    # Untrained: uniform over the 8 keys (to 8-bit precision); trained: the
    # best head puts most of its weight on the reversed position.
    np.testing.assert_allclose(first, 1 / LENGTH, atol=0.01)
    assert last.max() > 0.5, last
    assert "anti-diagonal" in stdout and f"step {steps[-1]}" in stdout


def test_anti_diagonal_weight_reads_the_reversed_positions():
    demo = load_script(DEMO)
    t = 4
    perfect = np.zeros((1, 2, t, t))
    perfect[0, 0, np.arange(t), t - 1 - np.arange(t)] = 1
    perfect[0, 1] = 1 / t
    np.testing.assert_allclose(demo.anti_diagonal_weight(perfect), [1, 1 / t])


def test_flags():
    demo = load_script(DEMO)
    fast = demo.parse_args(["--fast"])
    assert (fast.epochs, fast.samples) == (FAST_EPOCHS, 4000)
    assert -(-fast.samples // demo.BATCH_SIZE) == FAST_BATCHES
    default = demo.parse_args([])
    assert (default.epochs, default.samples, default.logdir) == (6, 12000, "logs/attention")
    with pytest.raises(SystemExit):
        demo.parse_args(["--epochs", "0"])
