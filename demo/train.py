"""Train a small CNN and watch what its layers see, in TensorBoard's Activations tab.

    python demo/train.py                  # about two minutes on two CPU cores
    python demo/train.py --no-tensorboard # train and log only (or DEMO_NO_TENSORBOARD=1)

The images are made here (demo/shapes.py): stripes, diagonal lines, rings and
crosses, so nothing is downloaded. One fixed probe image holds all of them;
its activations are logged before training, several times during the first
epoch, when the first layer's features change fastest, and after every epoch.
Keras's own TensorBoard callback writes the loss and accuracy to the same log
directory, so the Scalars tab sits beside the Activations tab.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
from pathlib import Path

# TensorFlow's start-up notes on stderr would bury the progress bar.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402 - the sibling module, found through the line above

# Marks a directory this demo made, so that a rerun may clear it (and nothing else).
MARKER = ".tb_activations_demo"
BATCH_SIZE = 64
# Activation steps logged within the first epoch, besides its end.
FIRST_EPOCH_LOGS = 5


def add_common_flags(p: argparse.ArgumentParser) -> None:
    """The flags every demo takes: --seed, and how it ends (--no-tensorboard, --port)."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-tensorboard",
        action="store_true",
        default=os.environ.get("DEMO_NO_TENSORBOARD", "") not in ("", "0"),
        help="do not start TensorBoard at the end (also: DEMO_NO_TENSORBOARD=1)",
    )
    p.add_argument("--port", type=int, default=6006, help="first port to try (default: 6006)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train a small CNN on generated images, log its activations, open TensorBoard."
    )
    p.add_argument("--logdir", default="logs/demo", help="log directory (default: logs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 10; 3 with --fast)")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training images (default: 6000; 2000 with --fast)",
    )
    p.add_argument("--fast", action="store_true", help="a tiny run, for tests")
    p.add_argument(
        "--dataset",
        choices=("shapes", "cifar10"),
        default="shapes",
        help="shapes (made here, the default) or cifar10 (downloaded: needs a network)",
    )
    add_common_flags(p)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.fast else 10
    if args.samples is None:
        args.samples = 2000 if args.fast else 6000
    if args.epochs < 1 or args.samples < BATCH_SIZE:
        p.error(f"--epochs must be >= 1 and --samples >= {BATCH_SIZE}")
    return args


def prepare_logdir(logdir: Path) -> None:
    """Starts from an empty log directory, so a rerun does not mix two trainings."""
    if logdir.exists() and any(logdir.iterdir()):
        if not (logdir / MARKER).exists():
            sys.exit(
                f"{logdir} already holds files this demo did not write. Choose another "
                "--logdir, or remove it."
            )
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / MARKER).write_text("Written by demo/train.py, which clears it on a rerun.\n")


def load_data(args):
    """(x, y), (x_val, y_val), probe, class names: images in 0..1, channels last."""
    if args.dataset == "shapes":
        n_val = max(BATCH_SIZE, args.samples // 5)
        train = shapes.dataset(args.samples, seed=args.seed)
        # Another seed: validation images the model has never seen.
        val = shapes.dataset(n_val, seed=args.seed + 10_000)
        return train, val, shapes.probe(), shapes.CLASSES

    import keras

    # A download that cannot connect should fail, not hang.
    socket.setdefaulttimeout(30)
    try:
        (x, y), (x_val, y_val) = keras.datasets.cifar10.load_data()
    except Exception as e:  # noqa: BLE001 - any failure means the same to the user
        sys.exit(
            f"Could not load CIFAR-10 ({type(e).__name__}: {e}).\n"
            "--dataset cifar10 downloads it (about 170 MB) on first use and needs a network "
            "connection. The default, --dataset shapes, needs none."
        )
    x = x[: args.samples].astype("float32") / 255.0
    y = y[: args.samples, 0].astype("int32")
    n_val = max(BATCH_SIZE, args.samples // 5)
    x_val = x_val[:n_val].astype("float32") / 255.0
    y_val = y_val[:n_val, 0].astype("int32")
    names = ("airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    # The first test image (a cat): a probe the model is never trained on.
    return (x, y), (x_val, y_val), x_val[0], names


def build_model(channels: int, classes: int):
    import keras

    # Any image size: trained on 32x32 tiles, the model also runs on the
    # larger probe mosaic, so one probe shows every kind of feature at once.
    inputs = keras.Input((None, None, channels), name="image")
    x = keras.layers.Conv2D(16, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    # Max, not average: "is there a ring anywhere" is the question, wherever it is.
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name="demo_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def read_back(logdir: Path) -> dict:
    """What reached the disk, read with TensorBoard's own reader: layer -> (info, steps)."""
    from tensorboard.backend.event_processing import plugin_event_accumulator

    from tb_activations import metadata

    acc = plugin_event_accumulator.EventAccumulator(
        str(logdir / "activations"), size_guidance={"tensors": 0}
    )
    acc.Reload()
    out = {}
    for tag, content in acc.PluginTagToContent(metadata.PLUGIN_NAME).items():
        info = metadata.parse_plugin_metadata(content)
        out[tag] = (info, [e.step for e in acc.Tensors(tag)])
    return out


def free_port(first: int, tries: int = 50) -> int:
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit(f"No free port in {first}..{first + tries - 1}; pass --port.")


def serve(logdir: Path, first_port: int) -> None:
    """TensorBoard on this machine only, until Ctrl-C."""
    from tensorboard import program

    port = free_port(first_port)
    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)])
    url = tb.launch().rstrip("/")
    print(f"\nTensorBoard is running. Open {url}/#activations\n(Ctrl-C to stop.)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopped TensorBoard.")


def fit(model, train, validation, epochs: int, callbacks: list, logdir: Path):
    """`model.fit` in batches of BATCH_SIZE; its History, or None after Ctrl-C."""
    try:
        return model.fit(
            *train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            validation_data=validation,
            callbacks=callbacks,
            # One line per epoch when the output is a log file, not a terminal.
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. What was logged so far is in {logdir}/: tensorboard --logdir {logdir}"
        )
        return None


def end(logdir: Path, args: argparse.Namespace) -> None:
    """TensorBoard until Ctrl-C, or with --no-tensorboard the command that opens it."""
    if args.no_tensorboard:
        print(f"\nTo look at it: tensorboard --logdir {logdir}, then open the Activations tab.")
        return
    serve(logdir, args.port)


def main(argv=None) -> int:
    args = parse_args(argv)
    logdir = Path(args.logdir)

    import keras

    from tb_activations import ActivationLogger

    keras.utils.set_random_seed(args.seed)
    (x, y), (x_val, y_val), probe, names = load_data(args)
    prepare_logdir(logdir)
    model = build_model(x.shape[-1], len(names))
    steps_per_epoch = -(-len(x) // BATCH_SIZE)
    print(
        f"Training {model.name} on {len(x)} {args.dataset} images ({len(names)} classes: "
        f"{', '.join(names)}), {args.epochs} epochs of {steps_per_epoch} batches."
    )

    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(logdir)),
        ActivationLogger(
            log_dir=str(logdir),
            probe=probe,
            freq=1,
            batch_freq=max(1, steps_per_epoch // (FIRST_EPOCH_LOGS + 1)),
            batch_epochs=1,
        ),
    ]
    start = time.monotonic()
    history = fit(model, (x, y), (x_val, y_val), args.epochs, callbacks, logdir)
    if history is None:
        return 130
    seconds = time.monotonic() - start

    logged = read_back(logdir)
    probe_tag = logged.pop("__probe__", None)
    val_acc = history.history["val_accuracy"][-1]
    print(f"\nLogged to {logdir}/ in {seconds:.0f} s of training:")
    for tag, (info, steps) in logged.items():
        if info.layout == "image":
            what = f"{info.total_channels} channels of {info.source_height}x{info.source_width}"
        else:
            what = f"{info.output_shape[-1]} units"
        print(f"  activations/{tag}: {what}, {len(steps)} steps ({steps[0]}..{steps[-1]})")
    if probe_tag is not None:
        print("  activations/__probe__: the probe image, as the model sees it")
    print("  train/, validation/: Keras's loss and accuracy per epoch (Scalars tab)")
    print(
        f"Validation accuracy after {args.epochs} epoch{'s' if args.epochs != 1 else ''}: "
        f"{val_acc:.1%} "
        f"(chance: {1 / len(names):.0%})."
    )

    end(logdir, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
