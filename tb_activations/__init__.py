"""Log a Keras model's intermediate activations and browse them in TensorBoard.

The Keras side is imported on first use, so that TensorBoard can load the
plugin (`tb_activations.plugin`) without importing Keras or TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["ActivationLogger", "log_activations"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from tb_activations.callback import ActivationLogger, log_activations


def __getattr__(name: str):
    if name in __all__:
        from tb_activations import callback

        return getattr(callback, name)
    raise AttributeError(f"module 'tb_activations' has no attribute {name!r}")
