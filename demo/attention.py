"""Train a tiny transformer to reverse sequences, and watch its attention organize.

    python demo/attention.py                  # about a minute on two CPU cores
    python demo/attention.py --no-tensorboard # train and log only (or DEMO_NO_TENSORBOARD=1)

The task is made here: sequences of random tokens, and the same sequences
reversed. One self-attention layer (`keras.layers.MultiHeadAttention`) over
token plus position embeddings must learn to read, at position i, the token at
position T-1-i: its attention weights, logged by `ActivationLogger` as the
series `attention/attention_scores` (one channel per head, each a query x key
map), go from uniform to an anti-diagonal. They are logged before training,
every few batches of the first epoch, when the pattern forms, and after
every epoch. At the end, the demo prints the mean weight the logged heads put
on the anti-diagonal at the first and the last step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# TensorFlow's start-up notes on stderr would bury the progress bar.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402 - the CNN demo: shared flags, log directory, fit and serving

LENGTH = 8
VOCAB = 10
DIM = 32
HEADS = 2
BATCH_SIZE = train.BATCH_SIZE
PROBES = 4
# Activation steps logged within the first epoch, besides its end.
FIRST_EPOCH_LOGS = 12
TAG = "attention/attention_scores"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train a tiny transformer to reverse sequences, log its attention heads, "
        "open TensorBoard."
    )
    p.add_argument("--logdir", default="logs/attention", help="default: logs/attention")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 6; 3 with --fast)")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training sequences (default: 12000; 4000 with --fast)",
    )
    p.add_argument("--fast", action="store_true", help="a short run, for tests")
    train.add_common_flags(p)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.fast else 6
    if args.samples is None:
        args.samples = 4000 if args.fast else 12000
    if args.epochs < 1 or args.samples < BATCH_SIZE:
        p.error(f"--epochs must be >= 1 and --samples >= {BATCH_SIZE}")
    return args


def reversal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` sequences of LENGTH random tokens (1..VOCAB-1), and their reversals."""
    x = np.random.default_rng(seed).integers(1, VOCAB, size=(n, LENGTH)).astype("int32")
    return x, x[:, ::-1].copy()


def build_model():
    import keras

    class PositionEmbedding(keras.layers.Layer):
        """A learned vector per position, added to the token embeddings."""

        def build(self, input_shape):
            self.positions = self.add_weight(
                shape=(input_shape[1], input_shape[2]), initializer="random_normal", name="table"
            )

        def call(self, x):
            return x + self.positions

    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, DIM, name="embed")(tokens)
    x = PositionEmbedding(name="position")(x)
    attended = keras.layers.MultiHeadAttention(HEADS, DIM // HEADS, name="attention")(x, x)
    x = keras.layers.Add(name="residual")([x, attended])
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Dense(64, activation="relu", name="mlp")(x)
    logits = keras.layers.Dense(VOCAB, name="logits")(x)
    model = keras.Model(tokens, logits, name="reverser")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def anti_diagonal_weight(scores: np.ndarray) -> np.ndarray:
    """Per head, the mean weight a query at position i puts on key T-1-i.

    `scores` is (probes, heads, queries, keys); uniform attention gives 1/T.
    """
    t = scores.shape[-1]
    return scores[:, :, np.arange(t), t - 1 - np.arange(t)].mean(axis=(0, 2))


def main(argv=None) -> int:
    args = parse_args(argv)
    logdir = Path(args.logdir)

    import keras

    from tb_activations import ActivationLogger, read

    keras.utils.set_random_seed(args.seed)
    x, y = reversal(args.samples, args.seed)
    x_val, y_val = reversal(max(BATCH_SIZE, args.samples // 5), args.seed + 10_000)
    probe = reversal(PROBES, args.seed + 20_000)[0]
    train.prepare_logdir(logdir)
    model = build_model()
    steps_per_epoch = -(-len(x) // BATCH_SIZE)
    print(
        f"Training {model.name} to reverse {len(x)} sequences of {LENGTH} tokens, "
        f"{args.epochs} epochs of {steps_per_epoch} batches."
    )
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(logdir)),
        ActivationLogger(
            log_dir=str(logdir),
            probe=probe,
            layers=["embed", "attention", "mlp"],
            batch_freq=max(1, steps_per_epoch // (FIRST_EPOCH_LOGS + 1)),
            batch_epochs=1,
        ),
    ]
    start = time.monotonic()
    history = train.fit(model, (x, y), (x_val, y_val), args.epochs, callbacks, logdir)
    if history is None:
        return 130
    seconds = time.monotonic() - start

    log = read(logdir)
    steps = log.steps("activations", TAG)
    first = anti_diagonal_weight(log.activations("activations", TAG, steps[0]))
    last = anti_diagonal_weight(log.activations("activations", TAG, steps[-1]))
    print(f"\nLogged to {logdir}/ in {seconds:.0f} s of training:")
    for tag in log.layers("activations"):
        info = log.info("activations", tag)
        print(f"  activations/{tag}: {info.class_name} {list(info.output_shape)}")
    print(f"  {TAG}: {len(steps)} steps ({steps[0]}..{steps[-1]})")
    print(
        f"Mean attention weight on the anti-diagonal (uniform: {1 / LENGTH:.3f}), per head: "
        f"step {steps[0]}: {', '.join(f'{w:.3f}' for w in first)}; "
        f"step {steps[-1]}: {', '.join(f'{w:.3f}' for w in last)}."
    )
    accuracy = history.history["val_accuracy"][-1]
    print(f"Validation accuracy: {accuracy:.1%} (chance: 1/{VOCAB - 1}).")
    train.end(logdir, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
