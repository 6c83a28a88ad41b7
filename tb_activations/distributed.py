"""Which process of a distributed training logs: the chief.

A distributed training runs one script in several processes, and their
replicas hold the same weights, so each would log the same activations. Only
the chief logs. A process finds out whether it is the chief from what its
launcher told it, the first of these that says anything:

1. torch: `torch.distributed.get_rank() == 0`, once the script has
   initialized a process group;
2. JAX: `jax.process_index() == 0`, once the script has initialized
   `jax.distributed` (as `keras.distribution.initialize()` does);
3. `TF_CONFIG` (`tf.distribute`): the task of type `"chief"`, or worker 0
   when the cluster has no chief; an evaluator or a parameter server never
   logs;
4. `RANK` (set by `torchrun` and other launchers): rank 0.

A process that none of them places is alone, and its own chief. Nothing here
imports or initializes JAX or torch: a framework is asked only when the
training script has already imported it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

__all__ = ["Process", "decide", "this_process"]

# The task types that lead a tf.distribute cluster ("master" is TF1's name).
_TF_CHIEF_TYPES = ("chief", "master")


@dataclass(frozen=True)
class Process:
    """Whether this process logs, and what said so."""

    chief: bool
    source: str  # e.g. "TF_CONFIG task worker 1, in a cluster with a chief"


def this_process() -> Process:
    """This process's place in a distributed training, from its launcher's conventions.

    Raises:
        ValueError: on a `TF_CONFIG` or `RANK` that cannot be read.
    """
    return decide(
        torch_rank=_torch_rank(),
        jax_index=_jax_index(),
        tf_config=os.environ.get("TF_CONFIG"),
        rank=os.environ.get("RANK"),
    )


def decide(
    *,
    torch_rank: tuple[int, int] | None = None,
    jax_index: tuple[int, int] | None = None,
    tf_config: str | None = None,
    rank: str | None = None,
) -> Process:
    """Whether a process is the chief, from what each convention says of it.

    Args:
        torch_rank: `(rank, world size)` of an initialized torch process
            group, or None.
        jax_index: `(process index, process count)` of an initialized
            `jax.distributed`, or None.
        tf_config: the `TF_CONFIG` variable, or None when it is not set.
        rank: the `RANK` variable, or None when it is not set.

    Raises:
        ValueError: on a `tf_config` or `rank` that cannot be read.
    """
    if torch_rank is not None:
        r, size = torch_rank
        return Process(r == 0, f"torch.distributed rank {r} of {size}")
    if jax_index is not None:
        i, count = jax_index
        return Process(i == 0, f"jax.process_index() {i} of {count}")
    if tf_config is not None and tf_config.strip():
        found = _from_tf_config(tf_config)
        if found is not None:
            return found
    if rank is not None and rank.strip():
        r = _integer(rank.strip())
        if r is None:
            raise ValueError(
                "RANK must be a process's rank, an integer >= 0, as torchrun sets it; "
                f"or pass chief=True or False to decide yourself. Received: RANK={rank!r}"
            )
        return Process(r == 0, f"RANK={r}")
    return Process(True, "a single process")


def _from_tf_config(text: str) -> Process | None:
    def bad(why: str) -> ValueError:
        return ValueError(
            f"TF_CONFIG must be a JSON object whose task has a type and an index ({why}); "
            f"or pass chief=True or False to decide yourself. Received: TF_CONFIG={text!r}"
        )

    try:
        config = json.loads(text)
    except ValueError:
        raise bad("it is not JSON") from None
    if not isinstance(config, dict):
        raise bad("it is not an object")
    task = config.get("task")
    if not task:
        return None  # a cluster with no task for this process: as tf.distribute, alone
    if not isinstance(task, dict) or not isinstance(task.get("type"), str):
        raise bad("the task has no type")
    index = _integer(task.get("index"))
    if index is None:
        raise bad("the task's index is not an integer >= 0")
    kind = task["type"]
    cluster = config.get("cluster")
    cluster = {} if cluster is None else cluster
    if not isinstance(cluster, dict):
        raise bad("the cluster is not an object")
    has_chief = any(cluster.get(t) for t in _TF_CHIEF_TYPES)
    where = "a cluster with a chief" if has_chief else "a cluster without a chief"
    if kind in _TF_CHIEF_TYPES:
        chief = True
    else:
        chief = kind == "worker" and index == 0 and not has_chief
    return Process(chief, f"TF_CONFIG task {kind} {index}, in {where}")


def _integer(value) -> int | None:
    """`value` as an integer >= 0 (an int or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _torch_rank() -> tuple[int, int] | None:
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def _jax_index() -> tuple[int, int] | None:
    jax = sys.modules.get("jax")
    initialized = getattr(getattr(jax, "distributed", None), "is_initialized", None)
    # Asking before jax.distributed is initialized would start JAX's backends
    # in a single-process state, and a later initialize() would fail.
    if initialized is None or not initialized():
        return None
    return int(jax.process_index()), int(jax.process_count())
