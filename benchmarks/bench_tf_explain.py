"""tf-explain's activations callback beside ActivationLogger, on the writer benchmark's model.

tf-explain is not a dependency of this project; run this in a separate
environment that has it, e.g. a throwaway venv that sees this project's
packages through a .pth file:

    python3 -m venv /tmp/tfx && /tmp/tfx/bin/pip install --no-deps tf-explain \\
        opencv-python-headless
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/tfx/lib/python3.11/site-packages/main.pth
    echo "$PWD" > /tmp/tfx/lib/python3.11/site-packages/src.pth
    /tmp/tfx/bin/python benchmarks/bench_tf_explain.py [--quick] [--output FILE]

tf-explain's `ActivationsVisualizationCallback` draws one layer's channels
as one grid image, scaled by the grid's global min..max, and writes it with
`tf.summary.image` on the training thread; it builds a new extraction model
at every epoch end. Five callbacks log the five layers. Figures are medians
of interleaved repeats.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import common  # first: sets TensorFlow's log level before it loads
from common import LAYERS, median, ms, save_output, size, table, timed

import keras
import tensorflow as tf

from tb_activations import ActivationLogger


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--output", help="also write the table to this markdown file")
    common.add_quiet_arguments(ap)
    args = ap.parse_args(argv)
    from tf_explain.callbacks.activations_visualization import ActivationsVisualizationCallback

    n = args.repeats or (2 if args.quick else 7)
    wait = args.wait if args.wait is not None else (0 if args.quick else 600)

    pixels = common.probe_pixels()
    model = common.vgg16()
    tmp = tempfile.mkdtemp(prefix="tb_act_tfx_")
    ours = ActivationLogger(
        os.path.join(tmp, "ours"),
        pixels,
        LAYERS,
        preprocess=keras.applications.vgg16.preprocess_input,
        verbose=0,
    )
    ours.set_model(model)
    ours.on_train_begin()
    ours.session.flush()
    batch = ours.session.batch
    extractor = ours.session.extractor
    theirs = []
    for layer in LAYERS:
        cb = ActivationsVisualizationCallback(
            (batch, None), [layer], output_dir=os.path.join(tmp, "tf_explain", layer)
        )
        cb.set_model(model)
        theirs.append(cb)

    def tf_explain_event(epoch):
        for cb in theirs:
            cb.on_epoch_end(epoch)

    def flush_theirs():
        for cb in theirs:
            cb.file_writer.flush()

    # Warm-up: traces and first files.
    extractor.predict_on_batch(batch)
    tf_explain_event(0)
    flush_theirs()

    load = common.wait_for_quiet(args.max_load, wait)
    forward, blocking, theirs_blocking, theirs_disk, bytes_ours, bytes_theirs = (
        [] for _ in range(6)
    )
    for epoch in range(1, n + 1):
        forward.append(timed(lambda: extractor.predict_on_batch(batch)))

        ours.session.flush()
        before = dir_bytes(os.path.join(tmp, "ours"))
        model.optimizer.iterations.assign_add(1)
        blocking.append(timed(lambda e=epoch: ours.on_epoch_end(e)))
        ours.session.flush()
        bytes_ours.append(dir_bytes(os.path.join(tmp, "ours")) - before)

        before = dir_bytes(os.path.join(tmp, "tf_explain"))
        t = time.perf_counter()
        tf_explain_event(epoch)
        theirs_blocking.append(time.perf_counter() - t)
        flush_theirs()
        theirs_disk.append(time.perf_counter() - t)
        bytes_theirs.append(dir_bytes(os.path.join(tmp, "tf_explain")) - before)
    ours.on_train_end()
    load_after = os.getloadavg()[0]

    bare = median(forward)
    rows = [
        ("bare forward (`predict_on_batch` of the five-output model)", ms(bare), "1.00x", ""),
        (
            "ActivationLogger: training loop blocked per logging event",
            ms(median(blocking)),
            f"{median(blocking) / bare:.2f}x",
            size(median(bytes_ours)),
        ),
        (
            "tf-explain, five callbacks: training loop blocked per logging event",
            ms(median(theirs_blocking)),
            f"{median(theirs_blocking) / bare:.2f}x",
            size(median(bytes_theirs)),
        ),
        (
            "tf-explain, five callbacks: the same, then flushed to disk",
            ms(median(theirs_disk)),
            f"{median(theirs_disk) / bare:.2f}x",
            "",
        ),
    ]
    out = io.StringIO()

    def emit(s=""):
        print(s)
        out.write(s + "\n")

    import tf_explain

    emit(f"## tf-explain {tf_explain.__version__} beside ActivationLogger")
    emit()
    emit(
        f"VGG16, the five `blockN_conv1` layers, one 224x224 probe; median of {n} interleaved "
        f"repeats; 1-min load average {load:.2f} before, {load_after:.2f} after; TensorFlow "
        f"{tf.__version__}."
    )
    emit()
    emit(table(["measure", "median", "x bare forward", "bytes per step"], rows))
    emit()
    emit(
        "tf-explain stores one grid image per layer scaled by the layer's global min..max "
        "(a channel with small values is black), no statistics and no per-channel access; "
        "ActivationLogger stores every channel scaled by its own min..max, and its "
        "statistics, and does the encoding off the training thread."
    )
    emit()
    save_output(args.output, out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
