"""Log a Keras model's intermediate activations and browse them in TensorBoard.

The Keras side is imported on first use, so that TensorBoard can load the
plugin (`tb_activations.plugin`) without importing Keras or TensorFlow;
`read(logdir)` reads logs back (`tb_activations.logdir`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["ActivationLogger", "log_activations", "read"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from tb_activations.callback import ActivationLogger, log_activations
    from tb_activations.logdir import read


def __getattr__(name: str):
    if name == "read":  # reading needs TensorBoard's readers, not Keras
        from tb_activations import logdir

        return logdir.read
    if name in __all__:
        from tb_activations import callback

        return getattr(callback, name)
    raise AttributeError(f"module 'tb_activations' has no attribute {name!r}")
