"""A short training with `ActivationLogger`, then `log_activations`, on the Keras
backend that KERAS_BACKEND names, in a venv without TensorFlow.

    KERAS_BACKEND=jax .venv-jax/bin/python tests/backend_fit.py OUT_DIR

tests/test_backends.py runs it in each backend's venv and judges what it leaves
in OUT_DIR: `facts.json` (the backend, what importing TensorFlow did, which
record writer the event files got, each series' layer info and headers) and
`arrays.npz`, which holds, for every state the logger logged, the model's own
forward pass on the probe (`forward/<step>/<layer>`) beside what TensorBoard's
readers read back from the log (`<run>/<layer>/<step>/stats` and `.../images`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

LAYERS = ("conv1", "conv2", "dense1")
EPOCHS = 3
BATCH_SIZE = 32
SAMPLES = 96
PROBES = 2
BATCH_FREQ = 1
SNAPSHOT_STEP = 1000
SNAPSHOT_RUN = "snapshot"


def tensorflow_import_error() -> str | None:
    try:
        import tensorflow  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    return None


def record_writer_class() -> str:
    """The record writer an event file gets in this process, as the logger's did."""
    from tb_activations import summary

    with tempfile.TemporaryDirectory() as d:
        f = summary.EventFile(d)
        f.close()
        return type(f._records).__name__


def train(log_dir: str) -> dict:
    """Fits with the logger and records the model's forward pass at every step
    a logging event can see; then logs a snapshot of the trained model."""
    import keras

    from tb_activations import ActivationLogger, log_activations

    from recorded import small_cnn, stripes

    keras.utils.set_random_seed(0)
    model = small_cnn()
    x, y = stripes(n=SAMPLES)
    probe = x[:PROBES]
    extractor = keras.Model(model.inputs, [model.get_layer(n).output for n in LAYERS])
    forward: dict[str, list[np.ndarray]] = {}

    def record(key=None):
        # On JAX, fit detaches the variables' values from the model during an
        # epoch; a callback's `self.model` attaches them, this closure must.
        getattr(model, "jax_state_sync", lambda: None)()
        if key is None:
            key = str(int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
        outs = extractor.predict_on_batch(probe)
        forward[key] = [np.asarray(keras.ops.convert_to_numpy(o), np.float32) for o in outs]

    callbacks = [
        ActivationLogger(log_dir, probe, list(LAYERS), batch_freq=BATCH_FREQ, verbose=0),
        keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: record(),
            on_train_batch_end=lambda batch, logs: record(),
            on_epoch_end=lambda epoch, logs: record(),
        ),
    ]
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    logged = log_activations(
        model, probe, log_dir, list(LAYERS), step=SNAPSHOT_STEP, run_name=SNAPSHOT_RUN, verbose=0
    )
    record(key=SNAPSHOT_RUN)
    return {"forward": forward, "snapshot_layers": logged, "probe": probe}


def read_back(log_dir: str, arrays: dict) -> dict:
    from recorded import read_run

    runs = {}
    for run in ("activations", SNAPSHOT_RUN):
        series = read_run(log_dir, run)
        runs[run] = {}
        for tag, s in series.items():
            runs[run][tag] = {
                "info": s.info.to_json(),
                "steps": s.step_numbers,
                "headers": [step.header for step in s.steps],
            }
            for step in s.steps:
                key = f"{run}/{tag}/{step.step}"
                arrays[f"{key}/stats"] = step.stats
                if s.info.layout == "image":
                    arrays[f"{key}/images"] = np.stack(
                        [
                            np.stack([step.image(s.info, p, c) for c in range(s.info.channels)])
                            for p in range(s.info.probes)
                        ]
                    )
    return runs


def main(out: str) -> None:
    # Asked first, before Keras or this package could have imported it.
    tf_error = tensorflow_import_error()
    import keras

    log_dir = os.path.join(out, "logs")
    trained = train(log_dir)
    arrays = {"probe": trained["probe"]}
    for key, outs in trained["forward"].items():
        for layer, a in zip(LAYERS, outs):
            arrays[f"forward/{key}/{layer}"] = a
    facts = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "tensorflow_import_error": tf_error,
        "tensorflow_loaded": "tensorflow" in sys.modules,
        "record_writer": record_writer_class(),
        "layers": list(LAYERS),
        "snapshot_layers": trained["snapshot_layers"],
        "runs": read_back(log_dir, arrays),
    }
    np.savez(os.path.join(out, "arrays.npz"), **arrays)
    with open(os.path.join(out, "facts.json"), "w") as f:
        json.dump(facts, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
