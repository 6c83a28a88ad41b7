"""Reaching any layer of any Keras model by observing its calls.

Keras 3 has no forward hooks, but a layer's `__call__` looks its `call` up on
the instance each time it runs. During the logger's own pass over the probe,
and only then, each chosen layer's `call` is shadowed on the instance by one
that also keeps what it returns; the shadow is removed in `finally`. Fit's
train step never runs while one is installed, so it never sees one: the
model's weights, outputs, traced functions and training are untouched.

The pass is traced once and reused: `tf.function` on TensorFlow, `jax.jit`
over `stateless_call` on JAX (both read the variables' current values at
each call), plain eager calls under `torch.no_grad()` on torch, as Keras's
own `predict_on_batch` runs there. Observing then costs a Python call per
layer while tracing, and nothing per logging event.

Names: a layer is named by its path below the logged model, the names of
the layers that hold it joined by `/` (`block1/conv`,
`transformer_layer_0/self_attention_layer`). A layer called more than once
in one pass gives one series per call: `path`, `path@2`, `path@3`. A call
that returns several tensors gives one per tensor: `path:0`, `path:1`, or
`path:key` for a dict.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from tb_activations import attention
from tb_activations import layers as layers_lib


def children(layer) -> list:
    """The layers `layer` holds directly, in the order the model has them."""
    if isinstance(layer, keras.Model):
        # A Functional model's `layers` are in graph order, inputs included.
        return list(layer.layers)
    return list(layer._flatten_layers(include_self=False, recursive=False))


def reachable(model) -> list[tuple[str, Any]]:
    """Every layer below `model` with its path, depth first.

    Layers inside custom layers and subclassed models are included. A layer
    held in two places is listed once, at the first.
    """
    seen: set[int] = set()
    out: list[tuple[str, Any]] = []

    def visit(layer, prefix: str) -> None:
        for child in children(layer):
            if id(child) in seen or child is model:
                continue
            seen.add(id(child))
            path = f"{prefix}{child.name}"
            out.append((path, child))
            visit(child, f"{path}/")

    visit(model, "")
    return out


def series_name(path: str, call: int, key: str | None) -> str:
    """The tag of one tensor of one call: `path`, `path@2`, `path:0`, `path@2:key`."""
    name = path if call == 1 else f"{path}@{call}"
    return name if key is None else f"{name}:{key}"


def _is_tensor(x) -> bool:
    return isinstance(x, keras.KerasTensor) or keras.ops.is_tensor(x)


def flat_outputs(out) -> tuple[list[tuple[str | None, Any]], list[str]]:
    """A call's tensors as (key, tensor), and the keys of what is not a tensor.

    A single tensor has the key None; a tuple's items `0`, `1`, ...; a
    dict's its keys; nested structures join keys with `:`.
    """
    if _is_tensor(out):
        return [(None, out)], []
    tensors, skipped = [], []
    for keys, leaf in keras.tree.flatten_with_path(out):
        key = ":".join(str(k) for k in keys) if keys else "0"
        if _is_tensor(leaf):
            tensors.append((key, leaf))
        elif leaf is not None:
            skipped.append(key)
    return tensors, skipped


_quiet = threading.local()


@contextlib.contextmanager
def unobserved() -> Iterator[None]:
    """Layer calls within the block are not the model's: `observing` does not
    report them (the projections the attention scores run, for instance)."""
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1


@contextlib.contextmanager
def observing(
    layers: Mapping[str, Any], keep: Callable[[str, Any, tuple, dict], None]
) -> Iterator[None]:
    """Calls `keep(path, output, args, kwargs)` after each call of each layer,
    within the block: what the call returned, and what it was called with
    (an attention layer's query, value and mask, for instance).

    The shadows live on the instances only for the duration of the block,
    and are removed even when the block raises. Calls made `unobserved`
    are not reported.
    """
    installed = []
    try:
        for path, layer in layers.items():
            had_own = "call" in layer.__dict__
            original = layer.call

            def observed(*args, __original=original, __path=path, **kwargs):
                out = __original(*args, **kwargs)
                if not getattr(_quiet, "depth", 0):
                    keep(__path, out, args, kwargs)
                return out

            functools.update_wrapper(observed, original)
            # Past Keras's attribute tracking: a function is not state.
            object.__setattr__(layer, "call", observed)
            installed.append((layer, had_own, original))
        yield
    finally:
        for layer, had_own, original in reversed(installed):
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")


def to_tensors(batch):
    """The probe batch as backend tensors, once, for every later pass."""
    return keras.tree.map_structure(keras.ops.convert_to_tensor, batch)


def _no_grad():
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


@dataclass
class Output:
    """One tensor one call of a layer returned, in the survey pass."""

    name: str
    path: str
    layer: Any
    call: int
    key: str | None
    shape: tuple[int | None, ...]
    dtype: str


@dataclass
class Survey:
    """What one observed pass of the probe saw: every call of every layer."""

    outputs: list[Output] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    # name -> keys of the call's outputs that are not tensors
    skipped: dict[str, list[str]] = field(default_factory=dict)
    # An attention layer's call (series name of the call) -> why its
    # attention scores cannot be computed, or None when they can.
    attention: dict[str, str | None] = field(default_factory=dict)

    def outputs_of(self, path: str) -> list[Output]:
        return [o for o in self.outputs if o.path == path]


def survey(model, batch, layers: Mapping[str, Any] | None = None) -> Survey:
    """Runs `model` once, eagerly, on `batch`, observing every layer (or `layers`).

    An unbuilt model runs once before: a layer builds itself at its first
    call, some by a symbolic run of their `call`, and some create their
    sublayers then (a MultiHeadAttention's projections).
    """
    tensors = to_tensors(batch)
    candidates = [model, *(layers.values() if layers else (x for _, x in reachable(model)))]
    if not all(getattr(layer, "built", True) for layer in candidates):
        with _no_grad():
            model(tensors, training=False)
    if layers is None:
        layers = {
            p: layer
            for p, layer in reachable(model)
            if not isinstance(layer, keras.layers.InputLayer)
        }
    result = Survey()

    def keep(path: str, out, args, kwargs) -> None:
        n = result.calls.get(path, 0) + 1
        result.calls[path] = n
        tensors, skipped = flat_outputs(out)
        if skipped:
            result.skipped[series_name(path, n, None)] = skipped
        for key, t in tensors:
            result.outputs.append(
                Output(
                    name=series_name(path, n, key),
                    path=path,
                    layer=layers[path],
                    call=n,
                    key=key,
                    shape=tuple(None if d is None else int(d) for d in t.shape),
                    dtype=str(keras.backend.standardize_dtype(t.dtype)),
                )
            )
        if is_attention(layers[path]):
            # Tried once here, so that a call whose scores cannot be computed
            # (a decoding step with a cache) is known before the traced pass.
            try:
                with unobserved():
                    attention.call_scores(layers[path], args, kwargs)
            except Exception as e:  # noqa: BLE001 - its output is logged all the same
                result.attention[series_name(path, n, None)] = str(e) or type(e).__name__
            else:
                result.attention[series_name(path, n, None)] = None

    with _no_grad():
        with observing(layers, keep):
            model(tensors, training=False)
    return result


def why_not_showable(output: Output) -> str | None:
    """None if a captured tensor can be shown, else why not."""
    if "float" not in output.dtype and "int" not in output.dtype and output.dtype != "bool":
        return f"its output is of type {output.dtype}, not numbers"
    rank = len(output.shape)
    if rank < 2 or rank > 5:
        return f"its output has rank {rank}; ranks 2 to 5 (batch included) can be shown"
    return None


class Observer:
    """Runs `model` on the probe and returns the chosen series, traced once.

    Args:
        model: the logged model.
        layers: the observed layers, by path.
        names: the series to return, in order (`series_name`s of those layers).
        batch: the probe batch, in the structure the model takes.
        run_eagerly: skip tracing (the model's own `run_eagerly`).
        scores: calls of attention layers among `layers` (series names of
            calls: `path`, `path@2`) whose attention scores are returned
            too, after the series, in this order; computed in the same
            pass from each call's arguments (`attention.call_scores`).
    """

    def __init__(
        self,
        model,
        layers: Mapping[str, Any],
        names: list[str],
        batch,
        run_eagerly: bool = False,
        scores: list[str] = (),
    ):
        self.model = model
        self.layers = dict(layers)
        self.names = list(names)
        self.scores = list(scores)
        self.run_eagerly = bool(run_eagerly)
        self._tensors = to_tensors(batch)
        self._traced: Callable[[], list] | None = None

    def _pass(self, run: Callable[[], Any]) -> list:
        wanted = set(self.names)
        wanted_scores = set(self.scores)
        captured: dict[str, Any] = {}
        scores: dict[str, Any] = {}
        calls: dict[str, int] = {}

        def keep(path: str, out, args, kwargs) -> None:
            n = calls[path] = calls.get(path, 0) + 1
            for key, t in flat_outputs(out)[0]:
                name = series_name(path, n, key)
                if name in wanted:
                    captured[name] = t
            call = series_name(path, n, None)
            if call in wanted_scores:
                with unobserved():
                    scores[call] = attention.call_scores(self.layers[path], args, kwargs)

        with observing(self.layers, keep):
            run()
        missing = [n for n in self.names if n not in captured]
        missing += [attention.scores_tag(n) for n in self.scores if n not in scores]
        if missing:
            raise ValueError(
                f"These layer outputs were not computed in this pass of the probe: "
                f"{', '.join(missing)}. Received: layers={sorted(self.layers)}"
            )
        return [captured[n] for n in self.names] + [scores[n] for n in self.scores]

    def _eager(self) -> list:
        with _no_grad():
            return self._pass(lambda: self.model(self._tensors, training=False))

    def _trace(self) -> Callable[[], list]:
        backend = keras.backend.backend()
        model = self.model
        if backend == "tensorflow":
            import tensorflow as tf

            fn = tf.function(
                lambda batch: self._pass(lambda: model(batch, training=False)),
                autograph=False,
            )
            return lambda: fn(self._tensors)
        if backend == "jax":
            import jax

            def stateless(trainable, non_trainable, batch):
                return self._pass(
                    lambda: model.stateless_call(trainable, non_trainable, batch, training=False)
                )

            jitted = jax.jit(stateless)
            return lambda: jitted(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                self._tensors,
            )
        # torch (Keras's predict runs eagerly there too) and numpy.
        return self._eager

    def __call__(self) -> list[np.ndarray]:
        """The chosen series on the probe, as numpy arrays."""
        if self.run_eagerly:
            outs = self._eager()
        else:
            if self._traced is None:
                self._traced = self._trace()
            try:
                outs = self._traced()
            except Exception:
                # Some models only run eagerly (Python side effects, names a
                # graph refuses); fall back once, for good.
                self.run_eagerly = True
                outs = self._eager()
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def warn(message: str) -> None:
    warnings.warn(f"ActivationLogger: {message}", stacklevel=3)


# -- which layers ------------------------------------------------------------


def graph_may_miss(layer) -> bool:
    """Whether a layer the graph cannot show may show when observed: one
    with several outputs, or several calls (its graph output is undefined)."""
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return not isinstance(layer, keras.layers.InputLayer)
    return isinstance(out, (list, tuple, dict))


# keras-hub's attention layers subclass Keras's `MultiHeadAttention`.
is_attention = attention.is_attention


def attends(layer) -> bool:
    """An attention layer for choosing defaults: Keras's, or one of its own
    (keras-hub's Llama, Gemma or DeBERTa attention), by its class name, not
    a layer making an attention mask (XLNet's `XLNetAttentionMaskLayer`).
    Only Keras's log their scores (`attention.py`)."""
    name = type(layer).__name__
    return is_attention(layer) or (
        "Attention" in name and "Mask" not in name and not isinstance(layer, keras.Model)
    )


def has_attention(model) -> bool:
    """Whether the model holds a transformer's attention (with heads)."""
    return any(attention.has_heads(layer) for _, layer in reachable(model))


def is_transformer(model, entries=None) -> bool:
    """Whether `layers=None` on a model with a graph picks as for a
    transformer (`default_layers`): it holds Keras's attention layer with
    heads (not a recurrent seq2seq model's `Attention`), or a
    block (a layer, not a model) with an attention layer of its own class
    inside, as keras-hub's Llama, Gemma and DeBERTa do. A CNN's attention
    module (CBAM's) in the graph itself is not a transformer's. `entries`:
    `reachable(model)` when the caller has it."""
    entries = reachable(model) if entries is None else entries
    if any(attention.has_heads(layer) for _, layer in entries):
        return True
    by_path = dict(entries)
    for p, layer in entries:
        block = by_path.get(_parent(p) or "")
        if attends(layer) and block is not None and not isinstance(block, keras.Model):
            return True
    return False


def _parent(path: str) -> str | None:
    return path.rpartition("/")[0] or None


def _attention_roles(attending: list[tuple[str, Any]]) -> tuple[list[str], set[str], set[str]]:
    """The attention layers among `attending` (each path with a layer that
    `attends`), which of the others are blocks and which wrappers. A layer
    named for attention that holds another is not one for the defaults: a
    block when it has weights of its own (a user's `AttentionBlock` with
    its norms and MLP), else a wrapper (DINOv2's attention around Keras's,
    with a dropout), whose output is the one inside's."""
    paths = [p for p, _ in attending]
    attention, blocks_named, wrappers = [], set(), set()
    for p, layer in attending:
        if not any(q.startswith(f"{p}/") for q in paths):
            attention.append(p)
        elif any(c.weights for c in children(layer) if not attends(c)):
            blocks_named.add(p)
        else:
            wrappers.add(p)
    return attention, blocks_named, wrappers


def _unstacked(path: str, entries, found: Survey, showable: set[str]) -> list[str]:
    """A picked block of several outputs holding a stack, several blocks of
    one class (HGNetV2's encoder, returning each stage's output), stands
    for the blocks of its stack, each logged whole; any other pick for
    itself (an RWKV block returning its hidden states and a value).
    `entries`: `reachable(model)`, whose paths name the children."""
    if len(found.outputs_of(path)) < 2:
        return [path]
    by_class: dict[type, list[str]] = {}
    for sub, child in entries:
        if _parent(sub) == path and sub in showable and layers_lib.is_block(child):
            by_class.setdefault(type(child), []).append(sub)
    stack = max(by_class.values(), key=len, default=[])
    if len(stack) < 2:
        return [path]
    return [q for sub in stack for q in _unstacked(sub, entries, found, showable)]


def _outermost(paths: list[str]) -> list[str]:
    """The paths not inside another of them, in their order: a recurrent
    layer holds its cell, a `Bidirectional` its two recurrent layers, and
    the outer layer's output is the one to show."""
    kept: list[str] = []
    for p in paths:
        if not any(p.startswith(f"{k}/") for k in kept):
            kept.append(p)
    return kept


def default_layers(model, found: Survey, max_layers: int, entries=None) -> list[str]:
    """What `layers=None` picks on a model reached by observing calls.

    A transformer (`is_transformer`): its embeddings, each
    block's output (the layer that holds an attention layer) and each
    attention layer, plus convolutions (a ViT's patches); blocks are spread
    over the depth when they do not all fit. A model with a graph: what the
    graph picks (`layers.select`), layers of several outputs included (an
    RWKV's blocks, an LSTM returning its states), and a block returning
    its stack's outputs in place of those blocks (`_unstacked`). Any other model: its
    convolution, Dense, embedding and recurrent layers, not those inside
    another of them; failing those, any leaf whose output can be shown.
    `choose` logs the first output of a picked layer that holds layers (a
    block, a recurrent layer holding its cell) and returns several.
    """
    entries = reachable(model) if entries is None else entries
    by_path = dict(entries)
    showable = {
        p
        for p in found.calls
        if any(why_not_showable(o) is None for o in found.outputs_of(p))
        and not all(layers_lib.is_gate(by_path.get(p), o.shape) for o in found.outputs_of(p))
    }
    order = {p: i for i, (p, _) in enumerate(entries)}
    kinds = {p: type(layer).__name__ for p, layer in entries}
    leaves = _outermost(
        [p for p, layer in entries if p in showable and layers_lib.is_default(layer)]
    )
    attention, blocks_named, wrappers = _attention_roles(
        [(p, layer) for p, layer in entries if p in showable and attends(layer)]
    )
    if not attention or not is_transformer(model, entries):
        if layers_lib.has_graph(model):
            picks = [
                q
                for p, layer in layers_lib.walk(model)
                if p in showable and layers_lib.picked_by_default(layer)
                for q in _unstacked(p, entries, found, showable)
            ]
            if picks:
                return layers_lib.spread(entries_order(picks, order), max_layers)
        if leaves:
            return layers_lib.spread(leaves, max_layers)
        plain = [p for p, layer in entries if p in showable and not children(layer)]
        return layers_lib.spread(plain or sorted(showable, key=order.get), max_layers)
    convs = [p for p in leaves if "Conv" in kinds[p]]
    embeddings: list[str] = []
    for p, layer in entries:
        # Not one without weights: a rotary embedding's cos and sin tables
        # (DINOv3's) depend on positions only, the same at every step.
        if p in showable and "Embedding" in kinds[p] and layer.weights:
            # Not an embedding's parts, nor the position embeddings an
            # attention layer or block applies inside.
            if not any(p.startswith(f"{e}/") for e in [*embeddings, *attention, *blocks_named]):
                embeddings.append(p)
    # A block: the layer holding an attention layer, and its attention layers.
    units: dict[str, list[str]] = {}
    for p in attention:
        block = _parent(p)
        while block in wrappers:
            block = _parent(block)
        if block in blocks_named or (block in showable and not attends(by_path[block])):
            units.setdefault(block, [block]).append(p)
        else:
            units.setdefault(p, [p])
    fixed = entries_order(convs + embeddings, order)
    keep_fixed = min(len(fixed), max(1, max_layers // 4))
    fixed = layers_lib.spread(fixed, keep_fixed)
    budget = max_layers - len(fixed)
    size = max(len(u) for u in units.values())
    blocks = layers_lib.spread(list(units), max(1, budget // size))
    picks = fixed + [p for b in blocks for p in units[b]]
    return entries_order(picks, order)[:max_layers]


def entries_order(paths: list[str], order: Mapping[str, int]) -> list[str]:
    return sorted(dict.fromkeys(paths), key=order.__getitem__)


def base_path(name: str) -> str:
    """The layer path of a series name: `a/b@2:0` -> `a/b`."""
    return name.split(":", 1)[0].split("@", 1)[0]


def call_of(name: str) -> int:
    """Which call of its layer a series name is of: `a/b@2:0` -> 2."""
    return int(name.split(":", 1)[0].partition("@")[2] or 1)


def resolve(model, item, entries=None) -> tuple[str, str | None]:
    """A layer name, path, series name or object: (layer path, series name or None).

    Raises:
        ValueError: on a layer `model` does not hold, or an ambiguous bare name.
    """
    entries = reachable(model) if entries is None else entries
    if isinstance(item, keras.layers.Layer):
        path = next((p for p, layer in entries if layer is item), None)
        if path is None:
            raise ValueError(
                f"Layer {item.name!r} is not part of model {model.name!r}. "
                f"Received: layers=[..., {item!r}, ...]"
            )
        return path, None
    if not isinstance(item, str):
        raise ValueError(
            f"Each entry of layers must be a layer name or a layer object. Received: {item!r}"
        )
    paths = {p for p, _ in entries}
    base = base_path(item)
    series = item if base != item else None
    if base in paths:
        return base, series
    matches = [p for p, _ in entries if p.rsplit("/", 1)[-1] == base]
    if len(matches) == 1:
        return matches[0], None if series is None else matches[0] + item[len(base) :]
    if len(matches) > 1:
        raise ValueError(
            f"Layer name {base!r} is ambiguous in model {model.name!r}; use one of the "
            f"paths {', '.join(matches)}. Received: layers={item!r}"
        )
    raise layers_lib.unknown(item, model, [p for p, _ in entries])


@dataclass
class Choice:
    """The observed layers and the series they give, in model order; and the
    calls of chosen attention layers whose scores are logged (series names
    of calls, `path`, `path@2`)."""

    layers: dict[str, Any]
    outputs: list[Output]
    scores: list[str] = field(default_factory=list)


def choose(model, found: Survey, spec, max_layers: int, entries=None) -> Choice:
    """Resolves a `layers` argument on a model reached by observing calls.

    A chosen layer gives every tensor of every call in `found`. Layers not
    called in the pass get one warning naming them; outputs that cannot be
    shown (not tensors, ranks outside 2..5) one notice.

    Raises:
        ValueError: on an unknown layer, a chosen layer none of whose outputs
            can be shown, or a choice that leaves nothing to log.
    """
    import re

    entries = reachable(model) if entries is None else entries
    by_path = dict(entries)
    order = {p: i for i, (p, _) in enumerate(entries)}
    explicit = not (spec is None or isinstance(spec, (str, re.Pattern)) and spec == "all")
    only: dict[str, set[str]] = {}  # layer path -> the series asked for by name
    if spec is None:
        paths = default_layers(model, found, max_layers, entries)
    elif isinstance(spec, str) and spec == "all":
        # An RNN's cell runs once per time step: its layer's outputs are the
        # sequence of them already.
        cells = {p for p, layer in entries if isinstance(layer, keras.layers.RNN)}
        paths = [p for p, _ in entries if p in found.calls and _parent(p) not in cells]
    elif isinstance(spec, re.Pattern):
        paths = [p for p, _ in entries if spec.search(p)]
        if not paths:
            raise ValueError(
                f"No layer of model {model.name!r} matches {spec.pattern!r}. "
                f"Received: layers={spec!r}"
            )
        explicit = False
    else:
        layers_lib.check_spec(spec)
        items = [spec] if isinstance(spec, (str, keras.layers.Layer)) else spec
        paths = []
        for item in items:
            path, series = resolve(model, item, entries)
            paths.append(path)
            if series is not None:
                only.setdefault(path, set()).add(series)
        if not paths:
            raise ValueError(f"layers is empty. Received: layers={spec!r}")
    paths = entries_order(paths, order)
    uncalled = [
        p
        for p in paths
        if p not in found.calls and not isinstance(by_path[p], keras.layers.InputLayer)
    ]
    if uncalled:
        warn(
            f"these layers were not called when the model ran on the probe, so they are "
            f"not logged: {', '.join(uncalled)}."
        )
    outputs, unshown = [], []
    for p in paths:
        if p not in found.calls:
            continue
        mine = [o for o in found.outputs_of(p) if p not in only or o.name in only[p]]
        if p in only and not mine:
            raise ValueError(
                f"Layer {p!r} gave no output named {', '.join(sorted(only[p]))} on the probe; "
                f"it gave {', '.join(o.name for o in found.outputs_of(p)) or 'none'}. "
                f"Received: layers={sorted(only[p])}"
            )
        if spec is None and children(by_path[p]):
            mine = _first_of_each_call(mine)
        good = [o for o in mine if why_not_showable(o) is None]
        if explicit and not good:
            reason = why_not_showable(mine[0]) if mine else "it returns no tensor"
            raise ValueError(f"Layer {p!r} cannot be shown: {reason}. Received: layers={p!r}")
        unshown += [f"{o.name} ({why_not_showable(o)})" for o in mine if o not in good]
        outputs += good
    skipped = [
        f"{n}:{k}" for n, keys in found.skipped.items() if base_path(n) in paths for k in keys
    ]
    if skipped or (explicit and unshown):
        warn(
            "these outputs are not logged, not being tensors of rank 2 to 5: "
            f"{', '.join(skipped + unshown)}."
        )
    if not outputs:
        raise ValueError(
            f"Model {model.name!r} has no chosen layer whose output can be shown on this "
            f"probe. Received: layers={spec!r}"
        )
    chosen = entries_order([o.path for o in outputs], order)
    return Choice({p: by_path[p] for p in chosen}, outputs, _scores(found, outputs))


def _first_of_each_call(outputs: list[Output]) -> list[Output]:
    """A block's hidden states without what it returns beside them (a T5
    block's position bias, an RWKV block's first value): its first tensor."""
    firsts: dict[int, Output] = {}
    for o in outputs:
        firsts.setdefault(o.call, o)
    return list(firsts.values())


def _scores(found: Survey, outputs: list[Output]) -> list[str]:
    """The calls of attention layers, among those logged, whose scores can be
    computed; one notice for each call whose scores cannot."""
    calls = list(dict.fromkeys(series_name(o.path, o.call, None) for o in outputs))
    calls = [c for c in calls if c in found.attention]
    for call in calls:
        if found.attention[call] is not None:
            attention.warn_unlogged(call, found.attention[call])
    return [c for c in calls if found.attention[c] is None]
