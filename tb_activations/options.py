"""The options of a logging session: their defaults, their types and their checks.

`ActivationLogger`, a Keras callback, spells them out in its signature, typed
with their defaults, as Keras's callbacks do; `log_activations` and
`LoggingSession` take them as `**options: Unpack[SessionOptions]`. Each is
checked when the session is made, before any training.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from tb_activations import inputs as inputs_lib
from tb_activations import probe as probe_lib

RUN_NAME = "activations"
DEFAULT_MAX_LAYERS = 12
DEFAULT_MAX_CHANNELS = 512
DEFAULT_MAX_SIZE = 256
DEFAULT_PROBE_IMAGES = 8


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    """Raises a ValueError naming `name` unless `value` is an integer >= `minimum`."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


def check_probe(probe) -> None:
    """Fails at construction for a probe file that cannot be read."""
    if isinstance(probe, (str, os.PathLike)):
        probe_lib.open_image(probe)
    elif probe is None:
        raise ValueError(
            "A probe is required: an image path, a PIL.Image or an array. Received: probe=None"
        )


def _is_row_of_strings(row) -> bool:
    return (
        isinstance(row, Sequence)
        and not isinstance(row, str)
        and all(isinstance(t, str) for t in row)
    )


def check_probe_tokens(probe_tokens) -> None:
    """Fails at construction for `probe_tokens` of the wrong kind."""
    if probe_tokens is None or callable(probe_tokens):
        return
    if isinstance(probe_tokens, Sequence) and not isinstance(probe_tokens, (str, bytes)):
        rows = [probe_tokens] if probe_tokens and isinstance(probe_tokens[0], str) else probe_tokens
        if all(_is_row_of_strings(r) for r in rows):
            return
    raise ValueError(
        "probe_tokens must be a list of strings (one per token of the probe), a list of "
        "such lists (one per probe), or a function from a token ID to its string. "
        f"Received: probe_tokens={probe_tokens!r}"
    )


class SessionOptions(TypedDict, total=False):
    """The keyword options a session takes, shared by `ActivationLogger` and
    `log_activations`. Their defaults are `OPTIONS`; what each means is in
    `ActivationLogger`'s docstring."""

    preprocess: Callable[[np.ndarray], Any] | None
    max_layers: int
    max_channels: int
    max_size: int | None
    probe_images: int
    run_name: str
    verbose: int
    chief: bool | None
    probe_tokens: inputs_lib.ProbeTokens


OPTIONS: dict[str, Any] = {
    "preprocess": None,
    "max_layers": DEFAULT_MAX_LAYERS,
    "max_channels": DEFAULT_MAX_CHANNELS,
    "max_size": DEFAULT_MAX_SIZE,
    "probe_images": DEFAULT_PROBE_IMAGES,
    "run_name": RUN_NAME,
    "verbose": 1,
    "chief": None,
    "probe_tokens": None,
}


def options_of(arguments: Mapping[str, Any]) -> SessionOptions:
    """The session's options among a function's arguments (its `locals()`)."""
    return {name: arguments[name] for name in OPTIONS}  # type: ignore[return-value]
