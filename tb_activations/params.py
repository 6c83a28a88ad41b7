"""Query parameters of the plugin's routes, checked strictly.

A parameter that is missing, empty, repeated or malformed raises
`tensorboard.errors.InvalidArgumentError` (TensorBoard answers 400) with a
message naming the parameter, the value received and what was expected.
"""

from __future__ import annotations

import re

from tensorboard import errors

__all__ = ["decimal", "name", "show", "uint", "uint_or"]

# ASCII digits only: int() would also take " 1", "1_0" and other scripts'
# digits. Twenty digits cover every step a summary can carry (int64).
_UINT = re.compile(r"[0-9]{1,20}")
# A plain decimal: float() would also take "nan", "inf", "1e3" and "+1".
_DECIMAL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")


def show(value: str, limit: int = 200) -> str:
    """A received value, quoted for an error message, cut if long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _one(request, key: str, expected: str, default: str | None = None) -> str:
    values = request.args.getlist(key)
    if not values:
        if default is not None:
            return default
        raise errors.InvalidArgumentError(f"Missing parameter {key!r}: expected {expected}.")
    if len(values) > 1:
        raise errors.InvalidArgumentError(
            f"Parameter {key!r} was given {len(values)} times; expected it once, "
            f"as {expected}. Received: {', '.join(show(v) for v in values)}"
        )
    return values[0]


def name(request, key: str) -> str:
    """A non-empty name, such as `run` or `tag`, given once."""
    value = _one(request, key, f"a {key} name")
    if not value:
        raise errors.InvalidArgumentError(f"Parameter {key!r} is empty; expected a {key} name.")
    return value


def uint(request, key: str, default: int | None = None) -> int:
    """A non-negative integer in plain ASCII digits, given at most once;
    `default` when absent, or required when `default` is None."""
    expected = "a non-negative integer"
    value = _one(request, key, expected, None if default is None else str(default))
    if not _UINT.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"Parameter {key!r} must be {expected} (at most 20 digits). "
            f"Received: {key}={show(value)}"
        )
    return int(value)


def uints(request, *required: str) -> tuple[int, ...]:
    """The `required` non-negative integers in order, then `probe` (0 when
    absent): the numbers most routes take."""
    return (*(uint(request, key) for key in required), uint(request, "probe", default=0))


def uint_or(request, key: str, word: str) -> int | None:
    """As `uint`, required, or None when the value is `word` (such as "latest")."""
    expected = f"a non-negative integer or {word!r}"
    value = _one(request, key, expected)
    if value == word:
        return None
    if not _UINT.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"Parameter {key!r} must be {expected} (at most 20 digits). "
            f"Received: {key}={show(value)}"
        )
    return int(value)


def decimal(request, key: str, default: float) -> float:
    """A non-negative number in plain decimal digits, such as `0.025`, given
    at most once; `default` when absent."""
    expected = "a non-negative decimal"
    value = _one(request, key, expected, repr(default))
    if not _DECIMAL.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"Parameter {key!r} must be {expected}, such as 0.025. Received: {key}={show(value)}"
        )
    return float(value)
