"""Observed models on the Keras backend KERAS_BACKEND names, in its own venv:

    KERAS_BACKEND=jax .venv-jax/bin/python tests/backend_observe.py OUT_DIR

tests/test_capture.py runs it in each backend's venv and judges `facts.json`:
what was logged, how far each logged statistic is from the model's sublayers
called directly (tests/observed.py), and whether logging left the model's
outputs and training alone.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np


def _no_shadows(model) -> bool:
    from tb_activations import capture

    return all("call" not in layer.__dict__ for _, layer in capture.reachable(model))


def _mismatch(series, expected) -> dict[str, float]:
    import observed

    out = {}
    for name, value in expected.items():
        s = series[name]
        out[name] = observed.stats_mismatch(s.steps[-1].stats, s.info.stats_fields, value)
    return out


def subclassed(out: str) -> dict:
    import keras

    from tb_activations import ActivationLogger, log_activations

    import observed
    from recorded import read_run

    keras.utils.set_random_seed(0)
    model = observed.subclassed()
    x, y = observed.subclassed_data()
    probe = x[:2]
    before = np.asarray(keras.ops.convert_to_numpy(model(probe)))
    logged = log_activations(model, probe, out, observed.SUBCLASSED_LAYERS, verbose=0)
    after = np.asarray(keras.ops.convert_to_numpy(model(probe)))
    expected = observed.subclassed_expected(model, probe)
    weights = [np.array(w) for w in model.get_weights()]
    model.compile("adam", "mse")
    logger = ActivationLogger(out, probe, observed.SUBCLASSED_LAYERS, run_name="fit", verbose=0)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[logger])
    fitted = read_run(out, "fit")
    default = log_activations(model, probe, out, run_name="default", verbose=0)
    trained_expected = observed.subclassed_expected(model, probe)
    return {
        "logged": logged,
        "outputs_unchanged": bool(np.array_equal(before, after)),
        "no_shadows": _no_shadows(model),
        "trained": any(not np.array_equal(a, b) for a, b in zip(weights, model.get_weights())),
        "mismatch": {
            **_mismatch(read_run(out), expected),
            **{f"fit/{k}": v for k, v in _mismatch(fitted, trained_expected).items()},
        },
        "fit_steps": fitted["head"].step_numbers,
        "default_layers": default,
    }


def transformer(out: str) -> dict:
    import keras

    from tb_activations import log_activations

    import observed
    from recorded import read_run

    keras.utils.set_random_seed(1)
    model = observed.transformer()
    batch, _ = observed.transformer_data(2)
    before = np.asarray(keras.ops.convert_to_numpy(model(batch)))
    logged = log_activations(
        model, batch, out, observed.TRANSFORMER_LAYERS, run_name="transformer", verbose=0
    )
    after = np.asarray(keras.ops.convert_to_numpy(model(batch)))
    series = read_run(out, "transformer")
    default = log_activations(model, batch, out, run_name="default", verbose=0)
    # Layers the graph reaches go through the model's own graph, dict inputs and all.
    log_activations(model, batch, out, ["embed"], run_name="graph", verbose=0)
    expected = observed.transformer_expected(model, batch)
    return {
        "logged": logged,
        "outputs_unchanged": bool(np.array_equal(before, after)),
        "no_shadows": _no_shadows(model),
        "mismatch": _mismatch(series, expected),
        "graph_mismatch": _mismatch(read_run(out, "graph"), {"embed": expected["embed"]}),
        "probe_kinds": {
            tag: s.info.probe_kind for tag, s in series.items() if s.info.layout == "probe"
        },
        "default_layers": default,
    }


def main(out: str) -> None:
    import keras

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        facts = {
            "backend": keras.backend.backend(),
            "subclassed": subclassed(os.path.join(out, "subclassed")),
            "transformer": transformer(os.path.join(out, "transformer")),
        }
    facts["warnings"] = [str(w.message) for w in caught if "ActivationLogger" in str(w.message)]
    with open(os.path.join(out, "facts.json"), "w") as f:
        json.dump(facts, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1])
