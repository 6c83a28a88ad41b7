"""Attention probabilities of Keras's attention layers: `MultiHeadAttention`
and `GroupQueryAttention` (a transformer's, a map per head) and a recurrent
seq2seq model's `Attention` and `AdditiveAttention` (one map).

Keras's fused attention (`ops.dot_product_attention`) never materializes the
probabilities, and asking the layer for them (`return_attention_scores=True`)
would change how the model runs. So the logger recomputes them, outside the
model, from one call's inputs: the layer's own projections (`query_dense`,
`key_dense`), its own mask logic (`_compute_attention_mask`: Keras masks of
the inputs, `attention_mask`, `use_causal_mask`, a sliding window) and its own
`_compute_attention` asked for the scores, with `training=False` (no dropout).
Nothing of the layer changes: no weight, no traced function, no attribute.

`attention_scores` takes the arguments of one call, whoever observed it, and
both of the logger's routes compute the scores in their own compiled pass
over the probe: the Functional extractor (`GraphCall` outputs the call's
symbolic inputs, `_Scores` computes the scores as a layer of the extractor;
`GraphScores`) and the observer of calls (`capture.Observer` calls
`call_scores` on each observed call's arguments inside its traced function;
`ObservedScores`). The observer passes the arguments as the layer's `call`
receives them: `Layer.__call__` has then put the inputs' Keras masks in
`query_mask`, `value_mask` and `key_mask`, which matters because
`MultiHeadAttention.call` clears the query tensor's own mask as it runs.
The scores run the layer's projection sublayers (`query_dense`, `key_dense`,
`value_dense`) through their `__call__`: the observer runs them
`capture.unobserved`, so that they are not recorded as the model's calls.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

try:  # Keras's masks of tensors that cannot hold attributes (JAX arrays) too
    from keras.src.backend.common.masking import get_keras_mask, set_keras_mask
except ImportError:  # Keras before 3.6 kept them as an attribute

    def get_keras_mask(x):
        return getattr(x, "_keras_mask", None)

    def set_keras_mask(x, mask):
        x._keras_mask = mask


__all__ = [
    "SUFFIX",
    "GraphCall",
    "GraphScores",
    "ObservedScores",
    "attention_scores",
    "call_scores",
    "is_attention",
    "scores_tag",
]

# The series of a layer's attention probabilities is tagged `path + SUFFIX`.
SUFFIX = "/attention_scores"

# What a scores map's rows and columns are (metadata.LayerInfo.axes).
AXES = ("query", "key")

_MASK_OF = {"query_mask": "query", "value_mask": "value", "key_mask": "key"}


# Keras's attention layers with heads, a transformer's. GroupQueryAttention
# (Keras 3.6 on) shares each key and value head among several query heads.
_GROUPED = getattr(keras.layers, "GroupQueryAttention", None)
HEADED_CLASSES = (keras.layers.MultiHeadAttention, *([_GROUPED] if _GROUPED else []))
# And the dot-product attention of one head, Luong's (`Attention`) and
# Bahdanau's (`AdditiveAttention`, a subclass), as in a recurrent seq2seq
# model: their calls take `[query, value, key]` and `mask` lists.
ATTENTION_CLASSES = (*HEADED_CLASSES, keras.layers.Attention)


def is_attention(layer) -> bool:
    """Whether `layer` is one of Keras's attention layers (or a subclass),
    whose probabilities are logged: `MultiHeadAttention`,
    `GroupQueryAttention`, `Attention` or `AdditiveAttention`."""
    return isinstance(layer, ATTENTION_CLASSES)


def has_heads(layer) -> bool:
    """A transformer's attention: `MultiHeadAttention` or `GroupQueryAttention`."""
    return isinstance(layer, HEADED_CLASSES)


def _grouped(layer) -> bool:
    return _GROUPED is not None and isinstance(layer, _GROUPED)


def _dot_product(layer) -> bool:
    return isinstance(layer, keras.layers.Attention)


def scores_tag(path: str) -> str:
    """The tag of the attention scores series of the layer at `path`."""
    return path + SUFFIX


@functools.cache
def _call_parameters(cls) -> tuple[str, ...]:
    return tuple(inspect.signature(cls.call).parameters)[1:]  # without self


def _bind(layer, call_args: tuple, call_kwargs: dict) -> dict[str, Any]:
    names = _call_parameters(type(layer))
    if len(call_args) > len(names):
        raise ValueError(
            f"{type(layer).__name__}.call takes at most {len(names)} positional "
            f"arguments. Received: call_args of length {len(call_args)}"
        )
    bound = dict(zip(names, call_args))
    for k, v in call_kwargs.items():
        if k in bound:
            raise ValueError(
                f"Argument {k!r} of {type(layer).__name__}.call is given twice. "
                f"Received: call_kwargs={sorted(call_kwargs)}"
            )
        bound[k] = v
    if _dot_product(layer):
        inputs = bound.get("inputs")
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                f"A call of {type(layer).__name__} takes inputs [query, value] or "
                f"[query, value, key]. Received: inputs of type {type(inputs).__name__}"
                + (f" and length {len(inputs)}" if isinstance(inputs, (list, tuple)) else "")
            )
        return bound
    for name in ("query", "value"):
        if bound.get(name) is None:
            raise ValueError(
                f"A call of {type(layer).__name__} needs {name!r}. "
                f"Received: arguments {sorted(bound)}"
            )
    return bound


def _tensor(x):
    if x is None:
        return None
    mask = None if isinstance(x, np.ndarray) else get_keras_mask(x)
    t = keras.ops.convert_to_tensor(x)
    if mask is not None and get_keras_mask(t) is None:
        set_keras_mask(t, mask)
    return t


def _unmasked(t):
    return t if get_keras_mask(t) is None else keras.ops.copy(t)


def _masks(layer, bound: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """The Keras masks the layer's call sees, as its own `call` would take them.

    `Layer.__call__` fills an argument `x_mask` of `call` from the Keras mask
    of the argument `x` when the caller gave none; `MultiHeadAttention.call`
    then takes the query's mask from the query tensor itself, whatever was
    passed. A subclass whose `call` has no `x_mask` argument never sees it.
    """
    names = _call_parameters(type(layer))
    masks = {}
    for name, source in _MASK_OF.items():
        if name not in names:
            continue
        given = bound.get(name)
        if given is None and tensors.get(source) is not None and source in bound:
            given = get_keras_mask(tensors[source])
        masks[name] = given
    if type(layer).call is keras.layers.MultiHeadAttention.call:
        # Its call takes the query's mask from the tensor, and clears it
        # there: a call observed after it ran has it in `query_mask` only,
        # where `Layer.__call__` put it.
        own = get_keras_mask(tensors["query"])
        masks["query_mask"] = own if own is not None else bound.get("query_mask")
    return {k: None if v is None else keras.ops.convert_to_tensor(v) for k, v in masks.items()}


def attention_scores(layer, call_args: tuple, call_kwargs: dict) -> np.ndarray:
    """The attention probabilities of one call of one of Keras's attention
    layers (`is_attention`).

    Computed with the layer's own weights and mask logic from the call's
    arguments, as the call computes them before dropout, without running the
    call itself. A padded key (a Keras mask from `Embedding(mask_zero=True)`,
    or `attention_mask`) gets weight 0; with `use_causal_mask=True`, so does
    every later token.

    Args:
        layer: a built `keras.layers.MultiHeadAttention`,
            `GroupQueryAttention`, `Attention` or `AdditiveAttention` (or
            subclass).
        call_args: the call's positional arguments (`query`, `value`, ...;
            `[query, value]` for an `Attention`), tensors or arrays. A
            tensor's Keras mask is used as the call uses it.
        call_kwargs: the call's keyword arguments: `key`, `attention_mask`,
            `use_causal_mask`, `query_mask`, `value_mask`, `key_mask`; others
            (`training`, `return_attention_scores`) are ignored.

    Returns:
        float32 array of shape `(batch, heads, queries, keys)`; over `keys`,
        each row sums to 1 (or is all 0 where the layer's softmax gives a
        fully masked row 0). Layers attending over several axes have their
        query and key positions flattened in row-major order.

    Raises:
        ValueError: on a layer that is none of those, a call with a `cache`
            (scores of a decoding step are not computed), missing `query` or
            `value` (an `Attention`'s inputs not `[query, value(, key)]`), or
            scores of an unexpected rank.
    """
    if not is_attention(layer):
        raise ValueError(
            "attention_scores takes a keras.layers.MultiHeadAttention, "
            "GroupQueryAttention, Attention or AdditiveAttention. "
            f"Received: layer={type(layer).__name__}"
        )
    bound = _bind(layer, tuple(call_args), dict(call_kwargs))
    scores = _scores(layer, bound)
    return _flatten(layer, np.asarray(keras.ops.convert_to_numpy(scores), np.float32))


def _scores(layer, bound: dict[str, Any]):
    """`attention_scores` before numpy: backend tensors in, a backend tensor
    out, so that it runs eagerly or traced inside the extractor (`_Scores`)."""
    _check_cache(layer, bound)
    if _dot_product(layer):
        return _dot_product_scores(layer, bound)
    tensors = {name: _tensor(bound.get(name)) for name in ("query", "value", "key")}
    query, value = tensors["query"], tensors["value"]
    key = value if tensors["key"] is None else tensors["key"]
    attention_mask = bound.get("attention_mask")
    attention_mask = None if attention_mask is None else _tensor(attention_mask)
    names = _call_parameters(type(layer))
    if type(layer).call is keras.layers.MultiHeadAttention.call or any(
        n in names for n in ("use_causal_mask", *_MASK_OF)
    ):
        mask = layer._compute_attention_mask(
            query,
            value,
            attention_mask=attention_mask,
            use_causal_mask=bool(bound.get("use_causal_mask", False))
            and "use_causal_mask" in names,
            **_masks(layer, bound, tensors),
        )
    else:
        # A call of its own that takes no Keras masks (keras-hub's
        # CachedMultiHeadAttention) applies `attention_mask` as given.
        mask = None if attention_mask is None else keras.ops.cast(attention_mask, "bool")
    # As the layer's call does, the projections see no Keras mask.
    query, key, value = (_unmasked(t) for t in (query, key, value))
    q = layer._query_dense(query)
    k = layer._key_dense(key)
    if _grouped(layer):
        return _grouped_scores(layer, q, k, mask)
    scores = None
    own = type(layer)._compute_attention is not keras.layers.MultiHeadAttention._compute_attention
    if own and not getattr(layer, "_flash_attention", False):
        v = layer._value_dense(value)
        scores = _own_scores(layer, q, k, v, mask)
    if scores is None:
        # Keras's own `_compute_attention` gives the scores as the masked
        # softmax of the scaled dot product (the mask above includes the
        # causal one): computed so, without the values and the output it
        # would compute too. Its flash attention refuses to return them.
        q = keras.ops.multiply(q, keras.ops.cast(layer._inverse_sqrt_key_dim, q.dtype))
        scores = layer._masked_softmax(keras.ops.einsum(layer._dot_product_equation, k, q), mask)
    return scores


def _grouped_scores(layer, q, k, mask):
    """A GroupQueryAttention's probabilities, as its `_compute_attention`
    computes them when asked for them: each key head repeated for the query
    heads that share it, the scaled dot product, the masked softmax (the
    mask above holds the causal and sliding-window ones). One map per query
    head."""
    k = keras.ops.repeat(k, layer.num_repeats, axis=2)
    q = keras.ops.multiply(q, keras.ops.cast(layer._inverse_sqrt_head_dim, q.dtype))
    return layer._masked_softmax(keras.ops.einsum(layer._dot_product_equation, q, k), mask)


def _dot_product_scores(layer, bound: dict[str, Any]):
    """An `Attention`'s or `AdditiveAttention`'s probabilities, by its own
    steps: `_calculate_scores` (its dot product or its additive score), the
    mask of the value's Keras mask and `use_causal_mask`, and the softmax of
    `_apply_scores` without dropout. As one head: `(batch, 1, queries, keys)`."""
    inputs = [_tensor(x) for x in bound["inputs"]]
    query, value = inputs[0], inputs[1]
    key = inputs[2] if len(inputs) > 2 else value
    masks = bound.get("mask")
    if masks is None:
        # What `Layer.__call__` passes as `mask` when the caller gave none.
        masks = [get_keras_mask(t) for t in inputs]
    value_mask = masks[1] if len(masks) > 1 and masks[1] is not None else None
    if value_mask is not None:
        value_mask = keras.ops.convert_to_tensor(value_mask)
    scores = layer._calculate_scores(query=query, key=key)
    causal = bool(bound.get("use_causal_mask", False))
    scores_mask = layer._calculate_score_mask(scores, value_mask, causal)
    _, weights = layer._apply_scores(scores=scores, value=value, scores_mask=scores_mask)
    return keras.ops.expand_dims(weights, 1)


def _check_cache(layer, bound: dict[str, Any]) -> None:
    if bound.get("cache") is not None:
        raise ValueError(
            f"Attention scores of {layer.name!r} are not computed for a call with a cache "
            "(a decoding step). Received: cache of type "
            f"{type(bound['cache']).__name__}"
        )


def _own_scores(layer, q, k, v, mask):
    """The scores of the layer's own `_compute_attention`, or None when it
    cannot give them (a subclass with another signature, an older Keras)."""
    params = inspect.signature(layer._compute_attention).parameters
    kwargs = {"attention_mask": mask, "training": False}
    if "return_attention_scores" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    ):
        kwargs["return_attention_scores"] = True
    try:
        _, scores = layer._compute_attention(q, k, v, **kwargs)
    except (TypeError, ValueError):
        return None
    return scores


def _flatten(layer, scores: np.ndarray) -> np.ndarray:
    """(batch, heads, *query_axes, *key_axes) to (batch, heads, queries, keys)."""
    # GroupQueryAttention attends over one axis, the sequence's.
    attention_axes = getattr(layer, "_attention_axes", None) or (1,)
    axes = len(attention_axes)
    if scores.ndim != 2 + 2 * axes:
        raise ValueError(
            f"Attention scores of {layer.name!r} have shape {scores.shape}; scores with "
            "batch axes besides the first are not shown. Received: attention_axes="
            f"{attention_axes}"
        )
    n, heads = scores.shape[:2]
    queries = int(np.prod(scores.shape[2 : 2 + axes]))
    return scores.reshape(n, heads, queries, -1)


# -- Functional models: the call's inputs from the extractor's own pass ------


@dataclasses.dataclass
class GraphCall:
    """A MultiHeadAttention's call in a Functional graph, as extractor outputs.

    `tensors` are KerasTensors of the layer's own graph (its inputs, the Keras
    masks they carry, a symbolic `attention_mask`); the extractor outputs
    them, and `scores(values)` rebuilds the call from what it computed.
    """

    path: str
    layer: Any
    args: tuple
    kwargs: dict
    tensors: list
    # For each mask argument, the index in `tensors` of the mask to pass.
    mask_index: dict[str, int]

    @classmethod
    def of(cls, path: str, layer) -> GraphCall:
        """The layer's first call in its graph (the one `layer.output` is of)."""
        nodes = getattr(layer, "_inbound_nodes", None) or []
        if not nodes:
            raise ValueError(f"Layer {path!r} is not called in a graph. Received: layer={layer!r}")
        arguments = nodes[0].arguments
        tensors: list = []
        index: dict[int, int] = {}

        def slot(x):
            if isinstance(x, keras.KerasTensor):
                if id(x) not in index:
                    index[id(x)] = len(tensors)
                    tensors.append(x)
                return _Slot(index[id(x)])
            return x

        args = tuple(slot(a) for a in arguments.args)
        kwargs = {k: slot(v) for k, v in arguments.kwargs.items()}
        bound = _bind(layer, args, kwargs)
        mask_index = {}
        for name, source in _MASK_OF.items():
            source_slot = bound.get(source)
            if isinstance(source_slot, _Slot) and bound.get(name) is None:
                mask = get_keras_mask(tensors[source_slot.i])
                if isinstance(mask, keras.KerasTensor):
                    mask_index[name] = len(tensors)
                    tensors.append(mask)
        return cls(path, layer, args, kwargs, tensors, mask_index)

    def bound(self, values: Sequence[Any]) -> dict[str, Any]:
        """The call's arguments by name, with `values` for `tensors`."""

        def fill(x):
            return values[x.i] if isinstance(x, _Slot) else x

        args = tuple(fill(a) for a in self.args)
        kwargs = {k: fill(v) for k, v in self.kwargs.items()}
        kwargs.pop("training", None)
        kwargs.pop("return_attention_scores", None)
        bound = _bind(self.layer, args, kwargs)
        for name, i in self.mask_index.items():
            bound[name] = values[i]
        if "query_mask" in self.mask_index:
            # MultiHeadAttention.call takes the query's mask from the tensor.
            query = keras.ops.convert_to_tensor(bound["query"])
            set_keras_mask(query, keras.ops.convert_to_tensor(bound["query_mask"]))
            bound["query"] = query
        return bound

    def scores(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """The attention scores, eagerly, from values of `tensors`."""
        bound = self.bound(values)
        positional = (bound.pop("query"), bound.pop("value"))
        return attention_scores(self.layer, positional, bound)

    def symbolic_scores(self):
        """A KerasTensor of the scores, `(batch, heads, *queries, *keys)`, in
        the layer's graph: an extractor that outputs it computes them in its
        own compiled pass, with the layer's variables as they are then."""
        _check_cache(self.layer, _bind(self.layer, self.args, self.kwargs))
        return _Scores(self)(list(self.tensors))


class _Scores(keras.layers.Layer):
    """A GraphCall's attention scores as a layer of the extractor model.

    It tracks the attention layer, so that a backend that passes variables
    into its compiled function (JAX) passes the layer's current weights.
    """

    def __init__(self, call: GraphCall):
        super().__init__(
            name=f"{call.layer.name}_attention_scores",
            dtype=call.layer.dtype_policy,
            trainable=False,
        )
        self.attention = call.layer
        self._graph_call = [call]  # a list: not a layer to track
        # Its inputs' Keras masks are its arguments (GraphCall.mask_index);
        # the scores carry none.
        self.supports_masking = True
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, tensors):
        call = self._graph_call[0]
        return _scores(call.layer, call.bound(list(tensors)))


@dataclasses.dataclass(frozen=True)
class _Slot:
    i: int


def warn_unlogged(path: str, error: Exception | str) -> None:
    """The notice for a call whose scores cannot be computed."""
    warnings.warn(
        f"ActivationLogger: the attention scores of {path!r} are not logged ({error}); "
        "its output is.",
        stacklevel=4,
    )


class _Series:
    """Scores arrays to one `LayerValue` per call, tagged `scores_tag(tap.path)`,
    channels first: heads are the channels, queries x keys the map.

    `_sources` holds, per series, the tap of the call the scores are of.
    """

    def __init__(self) -> None:
        self._sources: list[Any] = []
        self._infos: dict[str, Any] = {}

    def values(self, arrays: Sequence[np.ndarray], describe) -> list:
        """The scores series from the computed scores, one array per source.

        `describe(tap, array, name=)` is the recorder's, for a layer's
        LayerInfo; `name` is the series' tag, which its warnings name.
        """
        from tb_activations import metadata
        from tb_activations.summary import LayerValue

        out = []
        for source, raw in zip(self._sources, arrays):
            scores = _flatten(source.layer, np.asarray(raw, np.float32))
            info = self._infos.get(source.path)
            if info is None:
                tap = dataclasses.replace(
                    source,
                    output_shape=(None, *scores.shape[1:]),
                    data_format="channels_first",
                    key=None,
                )
                info = dataclasses.replace(
                    describe(tap, scores, name=scores_tag(source.path)),
                    kind=metadata.KIND_ATTENTION,
                    source=source.path,
                    axes=AXES,
                    reduction=None,
                )
                self._infos[source.path] = info
            out.append(LayerValue(info, scores, data_format="channels_first"))
        return out


class GraphScores(_Series):
    """The attention scores series of a Functional model's chosen layers.

    `requests` go to `layers.extractor` as its extra outputs; `values` turns
    the scores it computed into one `LayerValue` per MultiHeadAttention.

    The scores are computed in the extractor's own compiled pass (`_Scores`).
    A layer whose scores cannot be computed (a call this module does not
    know) loses its scores series, with a warning when the extractor is
    built, never its output's series or the step.
    """

    def __init__(self, taps: Sequence[Any]):
        super().__init__()
        self._requests: list[tuple[str, Any]] = []
        for tap in taps:
            if not is_attention(tap.layer):
                continue
            try:
                scores = GraphCall.of(tap.path, tap.layer).symbolic_scores()
            except Exception as e:  # noqa: BLE001 - the layer's own series goes on
                warn_unlogged(tap.path, e)
                continue
            self._requests.append((tap.path, scores))
            self._sources.append(tap)

    @property
    def requests(self) -> list[tuple[str, Any]]:
        """`(path, KerasTensor)`: each layer's scores, for the extractor to output."""
        return list(self._requests)


# -- any model: the call's arguments as an observer of calls sees them --------


def call_scores(layer, call_args: tuple, call_kwargs: dict):
    """The scores of one call, `(batch, heads, *queries, *keys)`, as a backend
    tensor, from the arguments the layer's `call` received (see the module
    docstring): eagerly, or inside a traced function (`capture.Observer`)."""
    kwargs = {
        k: v for k, v in call_kwargs.items() if k not in ("training", "return_attention_scores")
    }
    return _scores(layer, _bind(layer, tuple(call_args), kwargs))


class ObservedScores(_Series):
    """The attention scores series of calls reached by observing calls.

    `calls` are the taps of the calls (`path`, `path@2`: a tap's `path` is
    the call's series name, its `call` which call it is); `names` their
    scores tags, which `capture.Observer` computes in its own traced pass
    (`call_scores`), after the logged layers' outputs.
    """

    def __init__(self, calls: Sequence[Any]):
        super().__init__()
        self._sources = list(calls)

    @property
    def names(self) -> list[str]:
        return [scores_tag(c.path) for c in self._sources]
