"""Probes that follow the model's inputs: one array, a list, or a dict.

`probe=` has the structure of the model's inputs: an array (or image) for a
model with one input, a list or tuple in input order for several, or a dict
keyed by input name (every keras-hub text backbone takes one). Each input is
read as `tb_activations.probe` reads a single probe, and keeps its dtype
family: token IDs and masks stay integers, everything else is float32.

A model without symbolic inputs (a subclassed model) takes the probe as it
is given, batch axis included: a dict or a list of arrays is its inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from PIL import Image

from tb_activations import encoding, metadata
from tb_activations import probe as probe_lib


@dataclass(frozen=True)
class InputSpec:
    """One input of a model: its name, shape (None for the batch) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.name} {self.shape} {self.dtype}"


def specs(model) -> list[InputSpec] | None:
    """The model's inputs in order, or None for a model without symbolic inputs."""
    try:
        tensors = list(model.inputs or [])
    except (AttributeError, ValueError):
        return None
    if not tensors:
        return None
    return [
        InputSpec(
            name=str(getattr(t, "name", f"input_{i}")),
            shape=tuple(None if d is None else int(d) for d in t.shape),
            dtype=str(keras.backend.standardize_dtype(t.dtype)),
        )
        for i, t in enumerate(tensors)
    ]


def _structure(model):
    """The model's `input` structure: a KerasTensor, a list, or a dict."""
    try:
        return model.input
    except (AttributeError, ValueError):
        return None


def describe(probe) -> str:
    """What the user passed, for an error message."""
    if isinstance(probe, Mapping):
        return f"a dict with keys {sorted(map(str, probe))}"
    if isinstance(probe, (list, tuple)) and probe and all(_is_array(p) for p in probe):
        shapes = ", ".join(str(tuple(np.shape(p))) for p in probe)
        return f"a {type(probe).__name__} of {len(probe)} arrays of shapes {shapes}"
    if isinstance(probe, (list, tuple)):
        kinds = ", ".join(type(p).__name__ for p in probe[:5])
        return f"a {type(probe).__name__} of {len(probe)} items ({kinds})"
    if isinstance(probe, (str, os.PathLike, Image.Image)):
        return f"one image {probe!r}"
    try:
        return f"one array of shape {tuple(np.shape(probe))}"
    except Exception:  # noqa: BLE001 - only describing it
        return f"{type(probe).__name__}"


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, Image.Image)


def _mismatch(model, expected: list[InputSpec], probe) -> ValueError:
    listed = ", ".join(str(s) for s in expected)
    return ValueError(
        f"The model {model.name!r} takes {len(expected)} inputs: {listed}; pass a list in "
        f"this order or a dict keyed by input name. Received: probe={describe(probe)}"
    )


def _by_input(model, expected: list[InputSpec], probe) -> list[Any]:
    """The probe's part for each input, in input order."""
    names = [s.name for s in expected]
    if isinstance(probe, Mapping):
        if sorted(map(str, probe)) != sorted(names):
            raise _mismatch(model, expected, probe)
        return [probe[n] for n in names]
    if isinstance(probe, (list, tuple)) and len(probe) == len(expected):
        parts = (list, tuple, str, os.PathLike, Image.Image)
        if all(_is_array(p) or isinstance(p, parts) for p in probe):
            return list(probe)
    raise _mismatch(model, expected, probe)


def _as_given(x):
    """A probe part for a model without symbolic inputs: its dtype family kept."""
    if isinstance(x, (str, os.PathLike, Image.Image)):
        return probe_lib.load(x, (None, None, None, None))
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(
            "Each probe input must be a numeric array (with its batch axis) or an image. "
            f"Received: probe of type {type(x).__name__} ({arr.dtype})"
        )
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int32)
    return arr if arr.dtype == bool else arr.astype(np.float32)


def load(
    probe,
    model,
    data_format: str = "channels_last",
    preprocess: Callable[[Any], Any] | None = None,
):
    """The probe in the structure `model` takes: an array, a list or a dict.

    `preprocess` is called once on the whole batch: the array for one input,
    the list or dict for several.

    Raises:
        ValueError: on a probe whose structure, shapes or dtypes do not fit
            the model's inputs; the message names every input the model takes.
    """
    expected = specs(model)
    if expected is None:
        if isinstance(probe, Mapping):
            batch = {k: _as_given(v) for k, v in probe.items()}
        elif isinstance(probe, (list, tuple)) and probe and all(_is_array(p) for p in probe):
            batch = [_as_given(p) for p in probe]
        else:
            batch = _as_given(probe)
        if preprocess is not None:
            batch = preprocess(batch)
        return batch
    if len(expected) == 1:
        (spec,) = expected
        if isinstance(probe, Mapping):
            if list(probe) != [spec.name]:
                raise ValueError(
                    f"The model {model.name!r} takes one input: {spec}. "
                    f"Received: probe={describe(probe)}"
                )
            probe = probe[spec.name]
        arr = probe_lib.load(probe, spec.shape, data_format, preprocess, dtype=spec.dtype)
        structure = _structure(model)
        # A model built on a dict of one input (keras-hub's image backbones
        # take {"images": ...}) is called with that dict: Keras warns when
        # handed the bare array.
        return {next(iter(structure)): arr} if isinstance(structure, Mapping) else arr
    parts = _by_input(model, expected, probe)
    arrays = []
    for spec, part in zip(expected, parts):
        try:
            arrays.append(probe_lib.load(part, spec.shape, data_format, dtype=spec.dtype))
        except ValueError as e:
            raise ValueError(f"Probe input {spec.name!r} ({spec}): {e}") from None
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(
            "Every probe input must hold the same number of samples. Received: "
            + ", ".join(f"{s.name} {a.shape}" for s, a in zip(expected, arrays))
        )
    structure = _structure(model)
    if isinstance(structure, Mapping):
        batch: Any = {s.name: a for s, a in zip(expected, arrays)}
        # The model's own keys, when they differ from the input layers' names.
        if sorted(structure) != sorted(batch):
            batch = {k: batch[t.name] for k, t in structure.items()}
    else:
        batch = arrays
    if preprocess is not None:
        batch = preprocess(batch)
    return batch


def first(batch) -> np.ndarray:
    """The first array of a batch of any structure."""
    if isinstance(batch, Mapping):
        return np.asarray(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return np.asarray(batch[0])
    return np.asarray(batch)


def size(batch) -> int:
    """How many samples a batch holds."""
    return int(first(batch).shape[0])


def named(batch, model) -> list[tuple[str, np.ndarray]]:
    """Each input of a batch with its name, in input order."""
    expected = specs(model)
    if isinstance(batch, Mapping):
        return [(str(k), np.asarray(v)) for k, v in batch.items()]
    if isinstance(batch, (list, tuple)):
        names = [s.name for s in expected] if expected else []
        return [
            (names[i] if i < len(names) else f"input_{i}", np.asarray(b))
            for i, b in enumerate(batch)
        ]
    return [(expected[0].name if expected else "input", np.asarray(batch))]


def main_input(named: list[tuple[str, np.ndarray]], kinds: list[str]) -> int:
    """The input the probe's own tag shows: the first image, else the first
    whose name speaks of tokens (`token_ids`), else the first."""
    if "image" in kinds:
        return kinds.index("image")
    return next((i for i, (n, _) in enumerate(named) if "token" in n.lower()), 0)


def kind(arr: np.ndarray) -> str:
    """How an input is drawn: `image` (rank 4 or 5), `tokens` (integer IDs,
    one row per sample) or `values` (any other array, as a strip)."""
    if arr.ndim >= 4:
        return "image"
    if arr.ndim == 2 and (np.issubdtype(arr.dtype, np.integer)):
        return "tokens"
    return "values"


ProbeTokens = Sequence[str] | Sequence[Sequence[str]] | Callable[[int], str] | None


def tokens_for(ids: np.ndarray, probe_tokens: ProbeTokens) -> tuple[tuple, ...]:
    """Per sample, the tokens of an integer input: the IDs, or strings.

    Raises:
        ValueError: when `probe_tokens` does not have one string per ID.
    """
    if probe_tokens is None:
        return tuple(tuple(int(i) for i in row) for row in ids)
    if callable(probe_tokens):
        return tuple(tuple(str(probe_tokens(int(i))) for i in row) for row in ids)
    rows = list(probe_tokens)
    if rows and isinstance(rows[0], str):
        rows = [rows]
    shapes_fit = len(rows) == ids.shape[0] and all(len(r) == ids.shape[1] for r in rows)
    if not shapes_fit:
        raise ValueError(
            f"probe_tokens must hold one string per token ID: {ids.shape[0]} rows of "
            f"{ids.shape[1]}. Received: probe_tokens of {len(rows)} rows of lengths "
            f"{[len(r) for r in rows]}"
        )
    return tuple(tuple(str(t) for t in r) for r in rows)


def probe_series(
    batch, model, data_format: str, probe_tokens: ProbeTokens = None
) -> list[tuple[metadata.LayerInfo, np.ndarray]]:
    """Each input of the probe batch as the writer stores it: (info, images).

    One input goes to the probe's tag; of several, the main one does
    (`main_input`), and each other one to `PROBE_TAG/<input name>`.
    `probe_tokens` names the tokens of the main input, or of the first input
    of token IDs when the main one is not.
    """
    named_inputs = named(batch, model)
    kinds = [kind(a) for _, a in named_inputs]
    main = main_input(named_inputs, kinds)
    worded = (
        main
        if kinds[main] == "tokens"
        else next((i for i, k in enumerate(kinds) if k == "tokens"), None)
    )
    out = []
    for i, (name, arr) in enumerate(named_inputs):
        tag = metadata.PROBE_TAG if i == main else f"{metadata.PROBE_TAG}/{name}"
        tokens = None
        if kinds[i] == "tokens":
            tokens = tokens_for(arr, probe_tokens if i == worded else None)
        out.append(_probe_input(tag, name, arr, kinds[i], tokens, data_format))
    return out


def _probe_input(tag: str, name: str, b: np.ndarray, kind_: str, tokens, data_format: str):
    """One probe input as the model takes it, stored as channels-last images.

    Its metadata describes the model's input as Keras sees it, as a layer's
    describes the layer's output: `output_shape` is the input's shape, with
    the channel axis `data_format` says. The stored images do not depend on it.
    """
    images = b
    if b.ndim >= 4 and data_format == "channels_first":
        images = np.moveaxis(b, 1, -1)
    _, h, w, _ = encoding.probe_nhwc(images[:1]).shape
    info = metadata.LayerInfo(
        layer=tag,
        class_name="Probe",
        layout="probe",
        output_shape=(None, *b.shape[1:]),
        channels=1,
        total_channels=int(images.shape[-1]) if images.ndim > 2 else 1,
        probes=int(b.shape[0]),
        height=int(h),
        width=int(w),
        source_height=int(h),
        source_width=int(w),
        data_format=data_format,
        normalization="per probe min..max over all its pixels and channels to 0..255",
        input_name=name,
        probe_kind=kind_,
        tokens=tokens,
    )
    return info, images
