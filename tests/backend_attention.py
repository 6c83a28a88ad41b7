"""Attention scores on the Keras backend KERAS_BACKEND names, in a venv without
TensorFlow (keras-hub needs TensorFlow: hand-built keras.layers models here).

    KERAS_BACKEND=jax .venv-jax/bin/python tests/backend_attention.py OUT_DIR

tests/test_attention.py runs it in each backend's venv and judges what it
leaves in OUT_DIR: `facts.json` and `arrays.npz`, which holds, per mask case,
the logged scores at full precision (`<case>/logged`, the logger's own
forward pass), as read back from the event files (`<case>/read`), the numpy
reference from the layer's weights (`<case>/reference`) and the layer's own
`return_attention_scores=True` (`<case>/own`); the same for a
GroupQueryAttention, logged through the graph and by observing
(`grouped/<case>/graph`, `.../observed`, `.../reference`, `.../own`); a
recurrent seq2seq model's `Attention` and `AdditiveAttention` logged by
default (`seq2seq/<kind>/logged`, `.../own`); and for a short fit with the
logger, the model's predictions before and after a snapshot (`fit/before`,
`fit/after`), its losses and the logged steps. A subclassed transformer
(tests/attention_models.py: a custom block called twice), reached by
observing calls, leaves the same per call (`observed/<case>/<tag>/logged`,
`.../reference`, the first call's `.../own`), its outputs around logging,
and a fit with the logger (`observed/fit/...`).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

CASES = {"plain": (False, False), "padding": (True, False), "causal": (False, True)}
CASES["padding-causal"] = (True, True)
# GroupQueryAttention: (padding, causal, sliding window)
GROUPED = {"plain": (False, False, None), "padding-causal-window": (True, True, 3)}
SEQ2SEQ = ("dot", "additive")


def main(out_dir: str) -> None:
    import keras
    from attention_models import (
        TOKENS,
        grouped_model,
        reverse_task,
        seq2seq_model,
        sublayer_outputs,
        tiny_vit,
        token_model,
        token_reference,
    )

    from tb_activations import ActivationLogger, log_activations, read
    from tb_activations.session import LoggingSession

    facts: dict = {"backend": keras.backend.backend(), "tensorflow_loaded": False}
    arrays: dict[str, np.ndarray] = {}
    for i, (case, (padding, causal)) in enumerate(CASES.items()):
        keras.utils.set_random_seed(i)
        model = token_model(padding=padding, causal=causal)
        session = LoggingSession(os.path.join(out_dir, case), TOKENS, ["mha"], verbose=0)
        session.bind(model)
        values = {v.info.layer: v for v in session.forward()}
        arrays[f"{case}/logged"] = values["mha/attention_scores"].array
        arrays[f"{case}/reference"] = token_reference(model, TOKENS, padding=padding, causal=causal)
        x = model.get_layer("embed")(TOKENS)
        _, own = model.get_layer("mha")(x, x, use_causal_mask=causal, return_attention_scores=True)
        arrays[f"{case}/own"] = keras.ops.convert_to_numpy(own)
        session.log(0, strict=True)
        session.close()
        log = read(os.path.join(out_dir, case))
        arrays[f"{case}/read"] = log.activations("activations", "mha/attention_scores", 0)
        facts[f"{case}/info"] = log.info("activations", "mha/attention_scores").to_json()

    for i, (case, (padding, causal, window)) in enumerate(GROUPED.items()):
        keras.utils.set_random_seed(20 + i)
        model = grouped_model(padding=padding, causal=causal, window=window)
        key = f"grouped/{case}"
        arrays[f"{key}/reference"] = token_reference(
            model, TOKENS, padding=padding, causal=causal, layer="gqa"
        )
        x = model.get_layer("embed")(TOKENS)
        _, own = model.get_layer("gqa")(x, x, use_causal_mask=causal, return_attention_scores=True)
        arrays[f"{key}/own"] = keras.ops.convert_to_numpy(own)
        # By name through the graph; by default observed, as a transformer.
        for route, layers in (("graph", ["gqa"]), ("observed", None)):
            session = LoggingSession(os.path.join(out_dir, key, route), TOKENS, layers, verbose=0)
            session.bind(model)
            values = {v.info.layer: v for v in session.forward()}
            arrays[f"{key}/{route}"] = values["gqa/attention_scores"].array
            session.close()

    # A recurrent seq2seq model's Attention and AdditiveAttention, by default.
    for i, kind in enumerate(SEQ2SEQ):
        keras.utils.set_random_seed(30 + i)
        model = seq2seq_model(kind)
        session = LoggingSession(os.path.join(out_dir, "seq2seq", kind), TOKENS, verbose=0)
        session.bind(model)
        values = {v.info.layer: v for v in session.forward()}
        facts[f"seq2seq/{kind}/series"] = sorted(values)
        arrays[f"seq2seq/{kind}/logged"] = values["att/attention_scores"].array
        session.close()
        names = ["queries", "encoder"]
        query, states = (model.get_layer(n).output for n in names)
        query, states = keras.Model(model.inputs, [query, states])(TOKENS)
        _, own = model.get_layer("att")(
            [query, states], mask=[None, TOKENS != 0], return_attention_scores=True
        )
        arrays[f"seq2seq/{kind}/own"] = keras.ops.convert_to_numpy(own)

    # A ViT's tokens on the patch grid, its class token apart.
    keras.utils.set_random_seed(5)
    vit = tiny_vit()
    image = np.random.default_rng(5).random((2, 32, 32, 3)).astype("float32")
    session = LoggingSession(os.path.join(out_dir, "vit"), image, ["tokens", "mha"], verbose=0)
    session.bind(vit)
    values = {v.info.layer: v for v in session.forward()}
    facts["vit/series"] = sorted(values)
    for tag in ("tokens", "tokens/class_token", "mha/attention_scores"):
        arrays[f"vit/{tag}"] = values[tag].array
    arrays["vit/tokens_direct"] = sublayer_outputs(vit, ["tokens"], image)[0]

    keras.utils.set_random_seed(7)
    x, y = reverse_task(64, TOKENS.shape[1], 12)
    model = token_model(padding=True, causal=True, name="fit")
    tokens = model.inputs[0]
    per_token = keras.layers.Dense(12, name="per_token")(model.get_layer("mha").output)
    seq = keras.Model(tokens, per_token)
    seq.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    arrays["fit/before"] = keras.ops.convert_to_numpy(seq.predict_on_batch(TOKENS))
    arrays["fit/reference_before"] = token_reference(model, TOKENS, padding=True, causal=True)
    log_activations(seq, TOKENS, out_dir, layers=["mha"], run_name="snapshot", verbose=0)
    arrays["fit/after"] = keras.ops.convert_to_numpy(seq.predict_on_batch(TOKENS))
    logger = ActivationLogger(out_dir, TOKENS, ["mha"], batch_freq=1, verbose=0)
    history = seq.fit(x, y, batch_size=16, epochs=3, callbacks=[logger], verbose=0)
    facts["fit/loss"] = history.history["loss"]
    log = read(out_dir)
    facts["fit/steps"] = log.steps("activations", "mha/attention_scores")
    stats = log.stats("activations", "mha/attention_scores")
    arrays["fit/max"] = stats["max"]
    # After training, the logger's own forward pass: the trained weights'
    # scores, not those of the weights its compiled function first saw.
    after = {v.info.layer: v for v in logger.session.forward()}
    arrays["fit/logged_after"] = after["mha/attention_scores"].array
    arrays["fit/reference_after"] = token_reference(model, TOKENS, padding=True, causal=True)
    observed(out_dir, facts, arrays)
    facts["tensorflow_loaded"] = "tensorflow" in sys.modules
    with open(os.path.join(out_dir, "facts.json"), "w") as f:
        json.dump(facts, f)
    np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)


def observed(out_dir: str, facts: dict, arrays: dict) -> None:
    """A subclassed transformer: each attention call's scores from the
    observer's own traced pass, padding and causal masks."""
    import keras
    from attention_models import (
        SUBCLASSED_SCORES,
        TOKENS,
        VOCAB,
        reverse_task,
        subclassed_references,
        subclassed_transformer,
    )

    from tb_activations import ActivationLogger, capture, read
    from tb_activations.session import LoggingSession

    for i, causal in enumerate((False, True)):
        case = "causal" if causal else "padding"
        keras.utils.set_random_seed(20 + i)
        model = subclassed_transformer(causal=causal)
        before = keras.ops.convert_to_numpy(model(TOKENS))
        session = LoggingSession(os.path.join(out_dir, f"observed-{case}"), TOKENS, verbose=0)
        session.bind(model)
        facts[f"observed/{case}/observer"] = isinstance(session.extractor, capture.Observer)
        values = {v.info.layer: v for v in session.forward()}
        facts[f"observed/{case}/series"] = sorted(values)
        want = subclassed_references(model, TOKENS, causal=causal)
        for tag in SUBCLASSED_SCORES:
            arrays[f"observed/{case}/{tag}/logged"] = values[tag].array
            arrays[f"observed/{case}/{tag}/reference"] = want[tag]
            facts[f"observed/{case}/{tag}/info"] = values[tag].info.to_json()
        x = model.embed(TOKENS)
        keys = keras.ops.expand_dims(keras.ops.not_equal(TOKENS, 0), 1)
        _, own = model.block.mha(
            x, x, attention_mask=keys, use_causal_mask=causal, return_attention_scores=True
        )
        arrays[f"observed/{case}/{SUBCLASSED_SCORES[0]}/own"] = keras.ops.convert_to_numpy(own)
        arrays[f"observed/{case}/before"] = before
        arrays[f"observed/{case}/after"] = keras.ops.convert_to_numpy(model(TOKENS))

    keras.utils.set_random_seed(22)
    model = subclassed_transformer(causal=True)
    x, y = reverse_task(64, TOKENS.shape[1], VOCAB)
    x[:, -1] = 0
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    fit_dir = os.path.join(out_dir, "observed-fit")
    logger = ActivationLogger(fit_dir, TOKENS, ["block/mha"], batch_freq=2, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[logger], verbose=0)
    facts["observed/fit/loss"] = history.history["loss"]
    log = read(fit_dir)
    facts["observed/fit/steps"] = {t: log.steps("activations", t) for t in SUBCLASSED_SCORES}
    after = {v.info.layer: v for v in logger.session.forward()}
    want = subclassed_references(model, TOKENS, causal=True)
    for tag in SUBCLASSED_SCORES:
        arrays[f"observed/fit/{tag}/logged"] = after[tag].array
        arrays[f"observed/fit/{tag}/reference"] = want[tag]
        arrays[f"observed/fit/{tag}/std"] = log.stats("activations", tag)["std"]


if __name__ == "__main__":
    main(sys.argv[1])
