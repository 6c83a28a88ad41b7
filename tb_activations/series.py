"""What a `reader.Reader` returns: a series as sampling keeps it, its
steps' headers and statistics, and the bounded cache the reader keeps
them in.

They hold what was read, and read nothing themselves: a `StatsSeries` is
every readable kept step of one series with its header, its pictured
probes' statistics and, from format version 3, the probe set's statistics
and unit measures (`metadata.SET_FIELDS`, `UNIT_FIELDS`).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from tb_activations import metadata

__all__ = ["ChannelStep", "Header", "Listed", "Scalars", "Series", "SetValues", "StatsSeries"]


# Reads ask for every kept step. Passing 0 returns nothing (TensorBoard
# #5550), and both providers return the whole series for any larger bound.
READ_ALL = 1 << 30


class _Gone(Exception):
    """A blob of a listed step could not be read (evicted or corrupt)."""


@dataclass
class Series:
    """One (run, tag) as sampling keeps it now."""

    run: str
    tag: str
    info: metadata.LayerInfo
    data: list[provider.BlobSequenceDatum]  # well-formed kept steps, by step
    # Changes whenever the kept steps may have: answers computed from the
    # series are cached under it.
    version: tuple = ()
    experiment: str = ""

    @property
    def steps(self) -> list[int]:
        return [d.step for d in self.data]

    def find(self, step: int) -> provider.BlobSequenceDatum:
        """The kept step `step`; NotFoundError listing the kept steps if none."""
        for datum in self.data:
            if datum.step == step:
                return datum
        kept = self.steps
        shown = ", ".join(map(str, kept[:20])) + (", ..." if len(kept) > 20 else "")
        raise errors.NotFoundError(
            f"Step {step} of run {self.run!r}, tag {self.tag!r} is not kept. Kept steps: [{shown}]"
        )

    def latest(self) -> provider.BlobSequenceDatum:
        """The latest kept step; NotFoundError if none is kept."""
        if not self.data:
            raise errors.NotFoundError(f"Run {self.run!r}, tag {self.tag!r} has no kept step yet.")
        return self.data[-1]

    def check_probe(self, probe: int) -> None:
        if probe >= self.info.probes:
            raise errors.NotFoundError(
                f"Probe {probe} is out of range: run {self.run!r}, tag {self.tag!r} "
                f"has {self.info.probes} probe(s), numbered from 0."
            )

    def check_channel(self, channel: int) -> None:
        if channel >= self.info.channels:
            raise errors.NotFoundError(
                f"Channel {channel} is out of range: run {self.run!r}, tag "
                f"{self.tag!r} has {self.info.channels} logged channel(s), numbered from 0."
            )

    def fields(self, stats: np.ndarray) -> list[str]:
        """The names of the statistics `stats` (one step's) has."""
        return list(self.info.stats_fields[: stats.shape[-1]])

    def _gone(self, e: _Gone) -> errors.NotFoundError:
        where = (
            f"Probe image of run {self.run!r}"
            if self.tag == metadata.PROBE_TAG
            else f"Run {self.run!r}, tag {self.tag!r}"
        )
        return errors.NotFoundError(f"{where}: {e}.")


@dataclass(frozen=True)
class Header:
    """A step's header: `epoch`, `batch` and `index` when they are numbers,
    else None; `values` is the whole decoded header ({} if unreadable), for
    keys later writers add."""

    epoch: float | None
    batch: int | None
    index: int | None
    values: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Listed:
    """A series as `Reader.tags` lists it."""

    info: metadata.LayerInfo
    steps_kept: int
    max_step: int
    max_wall_time: float


@dataclass(frozen=True)
class SetValues:
    """One step's probe-set values (format version 3): `stats` is `(channels,
    len(info.set_fields))`, `units` is `(units, len(info.unit_fields))`."""

    stats: np.ndarray
    units: np.ndarray


@dataclass(frozen=True)
class StatsSeries:
    """The readable kept steps of a series with their headers and statistics
    (each `(probes, channels, fields)`), oldest first; `sets` holds each
    step's probe-set values, None where the log has none (before format
    version 3) or they are unreadable."""

    series: Series
    data: list[provider.BlobSequenceDatum]
    headers: list[Header]
    stats: list[np.ndarray]
    sets: list[SetValues | None] = field(default_factory=list)

    @property
    def steps(self) -> list[int]:
        return [d.step for d in self.data]

    @property
    def fields(self) -> list[str]:
        """The statistics' names: those of the newest readable step."""
        if not self.stats:
            return list(self.series.info.stats_fields)
        return self.series.fields(self.stats[-1])

    def latest(self) -> StatsSeries:
        """One entry per step number, in increasing step order: the last
        logged of a step logged twice (two loggers, or a retried write, in one
        run), as the measures count steps."""
        last = {d.step: i for i, d in enumerate(self.data)}
        order = [last[step] for step in sorted(last)]
        return StatsSeries(
            self.series,
            [self.data[i] for i in order],
            [self.headers[i] for i in order],
            [self.stats[i] for i in order],
            [self.sets[i] for i in order] if self.sets else [],
        )

    def array(self) -> np.ndarray:
        """The statistics as one `(steps, probes, channels, fields)` float32
        array, cut to the fields every step has; `(0, 0, 0, 0)` when no step
        is readable."""
        if not self.stats:
            return np.zeros((0, 0, 0, 0), np.float32)
        info = self.series.info
        count = min((s.shape[2] for s in self.stats), default=len(info.stats_fields))
        out = np.empty((len(self.stats), info.probes, info.channels, count), np.float32)
        for i, s in enumerate(self.stats):
            out[i] = s[:, :, :count]
        return out


@dataclass(frozen=True)
class Scalars:
    """The scalar series of a run and its sibling runs: `points[run][tag]`
    are `(step, value)` pairs, runs in `curves.sibling_runs` order, tags by
    name. `version` changes whenever a series may have."""

    points: dict[str, dict[str, list[tuple[int, float]]]]
    version: tuple


@dataclass(frozen=True)
class ChannelStep:
    """One step of one (probe, channel): its statistics `(fields,)` and its
    `(height, width)` gray levels."""

    datum: provider.BlobSequenceDatum
    header: Header
    stats: np.ndarray
    levels: np.ndarray


class _LRU:
    """A thread-safe LRU cache bounded by the total cost (bytes, say) of its
    values."""

    def __init__(self, max_cost: int):
        self._max_cost = max_cost
        self._cost = 0
        self._items: collections.OrderedDict[Any, tuple[Any, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._cost -= old[1]
            self._items[key] = (value, size)
            self._cost += size
            while self._cost > self._max_cost and len(self._items) > 1:
                self._cost -= self._items.popitem(last=False)[1][1]
