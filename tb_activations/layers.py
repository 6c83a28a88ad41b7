"""Which layers to log, by path, and one Keras model that outputs them all.

Layers inside nested models (a `keras.applications` model used as a layer of
a bigger model) are named by their path, `outer_layer/inner_layer`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras

# What `layers=None` picks: the layers people draw feature maps of.
DEFAULT_CLASSES = (
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "Dense",
    # A text or sequence model's representations: its embeddings and
    # recurrent layers (a Bidirectional wrapper stands for its two).
    "Embedding",
    "RNN",  # a recurrent layer of any cell, a user's own included
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    # A recurrent seq2seq model's attention (its scores are logged too).
    "Attention",
    "AdditiveAttention",
)

LayerSpec = None | str | re.Pattern | Sequence[Any]


def is_default(layer) -> bool:
    """A layer `layers=None` may pick: of a class in DEFAULT_CLASSES by name,
    or of a subclass of Keras's own (keras-hub's `ReversibleEmbedding`, a
    user's `Conv2D` with a custom `call`), or a `TimeDistributed` wrapper of
    such a layer (a video model's per-frame convolution), which stands for it."""
    if isinstance(layer, keras.layers.TimeDistributed):
        return is_default(layer.layer)
    return type(layer).__name__ in DEFAULT_CLASSES or any(
        k.__name__ in DEFAULT_CLASSES and k.__module__.startswith("keras.")
        for k in type(layer).__mro__[1:]
    )


def is_block(layer) -> bool:
    """A layer of the user's or a library's own (not Keras's, not a model)
    that holds layers `is_default` picks: an FNet encoder block, a residual
    block. A graph does not reach inside it, so its output stands for them,
    as a transformer block's does."""
    if _is_model(layer) or type(layer).__module__.startswith("keras."):
        return False
    inner = layer._flatten_layers(include_self=False, recursive=True)
    return any(is_default(sub) for sub in inner)


def is_gate(layer, shape) -> bool:
    """Whether `layer`'s output of `shape` (batch first) is a convolution's
    that is one pixel in space: a squeeze-and-excitation gate's (MobileNetV3,
    EfficientNet), its channels tiles of one pixel. Not a feature map to look
    at, so `layers=None` leaves it out; named, it is logged."""
    if "Conv" not in type(layer).__name__ or len(shape) < 4:
        return False
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    return all(d == 1 for d in (shape[2:] if channels_first else shape[1:-1]))


def picked_by_default(layer) -> bool:
    """What `layers=None` picks among a graph's layers: `is_default` or `is_block`."""
    return is_default(layer) or is_block(layer)


@dataclass(frozen=True)
class Tap:
    """One layer to log: where it sits and what its output looks like."""

    path: str
    layer: Any  # keras.layers.Layer
    output_shape: tuple[int | None, ...]
    data_format: str
    # Which call of the layer in one pass, and which of its outputs, for a
    # layer reached by observing calls (`capture`).
    call: int = 1
    key: str | None = None


def _is_model(layer) -> bool:
    return isinstance(layer, keras.Model)


def has_graph(model) -> bool:
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def walk(model, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every layer below `model`, depth first, nested models included."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if _is_model(layer) and has_graph(layer):
            yield from walk(layer, prefix=f"{path}/")


def _output_shape(layer) -> tuple[int | None, ...] | None:
    """The single output's shape, or None when there is not exactly one."""
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(out, (list, tuple, dict)):
        return None
    shape = getattr(out, "shape", None)
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


def why_not_showable(layer) -> str | None:
    """None if the layer's output can be shown, else the reason it cannot."""
    if isinstance(layer, keras.layers.InputLayer):
        return "it is an input layer; the probe itself is logged instead"
    try:
        out = layer.output
    except (AttributeError, ValueError) as e:
        return f"its output is not defined ({e})"
    if isinstance(out, (list, tuple, dict)):
        return "it has several outputs"
    dtype = str(getattr(out, "dtype", ""))
    if "float" not in dtype and "int" not in dtype and "bool" not in dtype:
        return f"its output is of type {dtype or 'unknown'}, not numbers"
    rank = len(out.shape)
    if rank < 2 or rank > 5:
        return f"its output has rank {rank}; ranks 2 to 5 (batch included) can be shown"
    return None


_FORMATS = ("channels_first", "channels_last")


def data_formats(model, entries=None) -> tuple[str, dict[str, str]]:
    """The data format of the model's input, and the one each layer's output is in.

    The input is laid out like the first layer that declares a format (a
    convolution, a pooling); Keras's default when none does. A layer without
    a `data_format` of its own (an activation, a BatchNorm, a Rescaling)
    inherits the one of the closest earlier layer that has one, or the
    input's when it comes before them all.
    """
    entries = walk(model) if entries is None else entries
    declared = [(path, getattr(layer, "data_format", None)) for path, layer in entries]
    input_format = next(
        (fmt for _, fmt in declared if fmt in _FORMATS), keras.config.image_data_format()
    )
    current = input_format
    formats = {}
    for path, fmt in declared:
        if fmt in _FORMATS:
            current = fmt
        formats[path] = current
    return input_format, formats


def available(model) -> list[tuple[str, Any]]:
    return [(p, layer) for p, layer in walk(model) if why_not_showable(layer) is None]


def spread(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    if limit == 1:
        return [items[-1]]
    picks = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in picks]


def unknown(name: str, model, names: list[str] | None = None) -> ValueError:
    """The error for a layer `model` does not have, with the closest of `names`
    (its layers' paths by default)."""
    names = [p for p, _ in walk(model)] if names is None else names
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        close = [p for p in names if name.lower() in p.lower()][:5] or names[:10]
    return ValueError(
        f"No layer named {name!r} in model {model.name!r}. Closest available layers: "
        f"{', '.join(close)}. Received: layers={name!r}"
    )


def check_spec(layers) -> None:
    """Raises a ValueError unless `layers` has the type of a `layers` argument."""
    if layers is None or isinstance(layers, (str, re.Pattern, keras.layers.Layer)):
        return
    if isinstance(layers, Sequence) and not isinstance(layers, (bytes, bytearray)):
        return
    raise ValueError(
        "layers must be None, 'all', a regular expression, or a list of layer names or "
        f"layer objects. Received: layers={layers!r}"
    )


def select(model, layers: LayerSpec, max_layers: int) -> list[str]:
    """Resolves a `layers` argument to layer paths, in model order."""
    if not has_graph(model):
        raise ValueError(
            f"Model {model.name!r} has no symbolic inputs and outputs, so no graph "
            "reaches its layers; the logger reaches them by observing their calls "
            "(tb_activations.capture.choose). "
            f"Received: model={type(model).__name__}"
        )
    ordered = [p for p, _ in walk(model)]
    by_path = dict(walk(model))
    if layers is None:
        picks = [
            p
            for p, layer in available(model)
            if picked_by_default(layer) and not is_gate(layer, layer.output.shape)
        ]
        return spread(picks, max_layers)
    if isinstance(layers, str) and layers == "all":
        return [p for p, _ in available(model)]
    if isinstance(layers, re.Pattern):
        picks = [p for p, _ in available(model) if layers.search(p)]
        if not picks:
            raise ValueError(
                f"No showable layer of model {model.name!r} matches {layers.pattern!r}. "
                f"Available: {', '.join(p for p, _ in available(model)[:20])}. "
                f"Received: layers={layers!r}"
            )
        return picks
    check_spec(layers)
    if isinstance(layers, str):
        layers = [layers]
    wanted = []
    for item in layers:
        if isinstance(item, str):
            path = item if item in by_path else _unique_by_name(model, item)
        elif isinstance(item, keras.layers.Layer):
            path = next((p for p, layer in by_path.items() if layer is item), None)
            if path is None:
                raise ValueError(
                    f"Layer {item.name!r} is not part of model {model.name!r}. "
                    f"Received: layers=[..., {item!r}, ...]"
                )
        else:
            raise ValueError(
                f"Each entry of layers must be a layer name or a layer object. Received: {item!r}"
            )
        reason = why_not_showable(by_path[path])
        if reason:
            raise ValueError(f"Layer {path!r} cannot be shown: {reason}. Received: layers={path!r}")
        if path not in wanted:
            wanted.append(path)
    if not wanted:
        raise ValueError(f"layers is empty. Received: layers={layers!r}")
    return sorted(wanted, key=ordered.index)


def _unique_by_name(model, name: str) -> str:
    """A bare layer name may stand for a nested layer when it is unique."""
    matches = [p for p, _ in walk(model) if p.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(
            f"Layer name {name!r} is ambiguous in model {model.name!r}; use one of the "
            f"paths {', '.join(matches)}. Received: layers={name!r}"
        )
    raise unknown(name, model)


def taps(model, paths: Sequence[str]) -> list[Tap]:
    by_path = dict(walk(model))
    _, formats = data_formats(model)
    return [Tap(p, by_path[p], _output_shape(by_path[p]) or (), formats[p]) for p in paths]


def graph_calls(model, path: str) -> int:
    """How many times the graph of the model holding `path` calls that layer."""
    container = model
    *outer, name = path.split("/")
    for part in outer:
        container = container.get_layer(part)
    layer = container.get_layer(name)
    by_depth = getattr(container, "_nodes_by_depth", None)
    if by_depth is None:
        return 1  # a Sequential model calls each of its layers once
    return sum(node.operation is layer for nodes in by_depth.values() for node in nodes)


def _outer_node(container, child):
    """The node where `child` is called inside `container`'s graph."""
    for nodes in container._nodes_by_depth.values():
        for node in nodes:
            if node.operation is child:
                return node
    raise ValueError(f"Layer {child.name!r} is not called in the graph of {container.name!r}")


def _symbolic_outputs(model, paths: Sequence[str], picks: Sequence | None = None) -> list:
    """KerasTensors in `model`'s own graph for each path below it.

    `picks[i]`, when not None, is a KerasTensor of the graph the layer at
    `paths[i]` is called in (computed from its inputs, say), taken instead
    of the layer's output.
    """
    picks = list(picks) if picks is not None else [None] * len(paths)
    outs: list = [None] * len(paths)
    nested: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        head, _, rest = path.partition("/")
        if rest:
            nested.setdefault(head, []).append(i)
        else:
            outs[i] = model.get_layer(head).output if picks[i] is None else picks[i]
    for head, idxs in nested.items():
        child = model.get_layer(head)
        inner = _symbolic_outputs(
            child, [paths[i].partition("/")[2] for i in idxs], [picks[i] for i in idxs]
        )
        # The child's intermediate tensors live in its own graph; re-calling a
        # model from the child's inputs to them on the tensors the child gets
        # in the outer graph connects them to the outer inputs.
        bridge = keras.Model(child.inputs, inner, name=f"{child.name}_taps")
        node = _outer_node(model, child)
        args = node.input_tensors if len(node.input_tensors) > 1 else node.input_tensors[0]
        result = bridge(args)
        result = result if isinstance(result, (list, tuple)) else [result]
        for i, tensor in zip(idxs, result):
            outs[i] = tensor
    return outs


def extractor(model, paths: Sequence[str], extra: Sequence[tuple[str, Any]] = ()):
    """One model from `model`'s inputs (in their structure) to the outputs of
    all `paths`, then the `extra` tensors: `(path, tensor)`, a KerasTensor of
    the graph the layer at `path` is called in (its attention scores:
    attention.GraphScores)."""
    outputs = _symbolic_outputs(
        model, [*paths, *(p for p, _ in extra)], [None] * len(paths) + [t for _, t in extra]
    )
    # A dict of one input stays a dict (the probe comes in that structure,
    # `inputs.load`); a list of one is called with its array.
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a Sequential built from the probe
        structure = None
    single = len(model.inputs) == 1 and not isinstance(structure, Mapping)
    inputs = model.inputs[0] if single else structure
    return keras.Model(inputs, outputs, name=f"{model.name}_activations")
