"""Writing activation steps to a TensorBoard run, off the training thread.

`ActivationWriter` takes raw activations, and a background thread turns them
into events (`encoding`), adds each layer's measures (`measures.Tracker`, at
full precision) and writes them with TensorBoard's own `EventFile`. Steps are
written in the order they were submitted. A failed write never raises into
training: it warns once, keeps the step's events, and tries them again, in
order, before the next step. A failed measure never loses the step: it warns
once and writes the step without measures.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import queue
import socket
import statistics
import struct
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from tensorboard.compat import tf as tb_tf
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_activations import encoding, health, measures, metadata

logger = logging.getLogger("tb_activations")

# Events kept for a retry while the log directory cannot be written. Past
# this, the oldest are dropped, with a warning, so memory stays bounded.
MAX_PENDING_BYTES = 512 * 1024 * 1024

# PNG encoding threads per writer: zlib and numpy release the GIL, so they
# run beside the training thread and the writer's own (which computes the
# measures meanwhile). Only for a layer's pictures of at least
# `encoding.POOL_PIXELS` pixels; smaller ones cost less in the writer's thread.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


@dataclass
class LayerValue:
    """One layer's raw activations at one step, as the model gave them.

    Reshaping (`encoding.to_nhwc`) and the channel cap (`info.channels`)
    happen in the writer's thread, so the training loop only pays for the
    forward pass.
    """

    info: metadata.LayerInfo
    array: np.ndarray
    data_format: str = "channels_last"

    def nhwc(self) -> np.ndarray:
        return encoding.to_nhwc(self.array, self.data_format)[..., : self.info.channels]


def blob_tensor(blobs: Sequence[bytes]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=list(blobs),
    )


def make_event(
    info: metadata.LayerInfo, step: int, wall_time: float, blobs: Sequence[bytes]
) -> event_pb2.Event:
    # The metadata goes into every event, not only the first of a file: a
    # retried step may be the first one a new event file holds.
    value = summary_pb2.Summary.Value(
        tag=info.layer,
        metadata=metadata.create_summary_metadata(info),
        tensor=blob_tensor(blobs),
    )
    values = [value]
    # The step's measures again, as the index series (see `metadata`): the
    # same bytes, in the same event, so a step's index is written, and
    # retried, with its blobs.
    index = metadata.index_blobs(info)
    if info.layout != "probe" and len(blobs) == info.blob_count:
        values.append(
            summary_pb2.Summary.Value(
                tag=metadata.INDEX_TAG_PREFIX + info.layer,
                metadata=metadata.create_index_metadata(info),
                tensor=blob_tensor([blobs[i] for i in index]),
            )
        )
    return event_pb2.Event(
        wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values)
    )


def encode_step(
    value: LayerValue,
    header: dict,
    *,
    max_size: int | None,
    executor=None,
    tracker: measures.Tracker | None = None,
    step: int = 0,
) -> tuple[metadata.LayerInfo, list[bytes], Exception | None]:
    """The blobs of one layer's step, the layer info they go with, and what
    the measures raised (None when nothing did).

    `header` holds `metadata.encode_header`'s arguments. The first
    `info.probes` samples of the set get statistics and PNGs; the whole set
    (`info.samples`) feeds the set statistics and unit measures (`health`)
    and, with a `tracker`, the change and CKA (`MEASURE_FIELDS` after the
    pictured probes' statistics, the reference keys in the header). A
    measure that fails leaves the step without those values (NaN, null).
    """
    if value.info.layout == "probe":
        stats, pngs = encoding.probe_images(value.array[: value.info.probes])
        info = replace(value.info, stats_fields=metadata.STATS_FIELDS)
        return info, [metadata.encode_header(**header), metadata.encode_stats(stats), *pngs], None
    # One float32 C-contiguous array for every measure, which the tracker
    # then keeps as its reference without a copy.
    x = np.ascontiguousarray(value.nhwc(), dtype=np.float32)
    pictured = x[: value.info.probes]
    # Strips (units, sequences) are one pixel high: small at any length,
    # and a downscaled strip would no longer line up with its units.
    size_cap = max_size if value.info.layout == "image" else None
    stats, pending = encoding.encode_layer_async(
        pictured, max_size=size_cap, per_image=value.info.channels_per_image, executor=executor
    )
    units = x.shape[2] if value.info.layout == "units" else x.shape[3]
    info = replace(
        value.info,
        stats_fields=metadata.LAYER_STATS_FIELDS,
        samples=int(x.shape[0]),
        units=int(units),
        set_fields=metadata.SET_FIELDS,
        unit_fields=metadata.UNIT_FIELDS,
    )
    # While the pool compresses the PNGs, after the statistics and the
    # quantization, so that a map that cannot be encoded is not kept as a
    # reference for the next step.
    extra = np.full((x.shape[0], x.shape[3], len(measures.MEASURE_FIELDS)), np.nan, np.float32)
    fields: dict = {}
    set_base = np.full((x.shape[3], 4), np.nan, np.float32)
    unit_values = np.full((units, len(metadata.UNIT_FIELDS)), np.nan, np.float32)
    error = None
    # The tracker's pass over the map also makes the set's sums (`health`),
    # so that the map is read once for both.
    sums = health.set_sums(x, info.layout, info.activation) if tracker is not None else None
    if tracker is not None:
        try:
            extra, refs = tracker.update(value.info.layer, step, x, sums, copy=False)
            fields.update(refs)
        except Exception as e:  # noqa: BLE001 - the step is written without these measures
            error = e
            sums = None
    try:
        set_base, unit_values, set_header, _ = health.measure_with_sums(
            x, info.layout, info.activation, sums
        )
        fields.update(set_header)
    except Exception as e:  # noqa: BLE001 - the step is written without these measures
        error = error or e
    with np.errstate(invalid="ignore", over="ignore"):
        set_sums = extra.sum(axis=0, dtype=np.float64)
    pngs = pending()
    blobs = [
        metadata.encode_header(**header, **fields),
        metadata.encode_stats(np.concatenate([stats, extra[: info.probes]], axis=2)),
        *pngs,
        metadata.encode_stats(np.concatenate([set_base, set_sums], axis=1)),
        metadata.encode_stats(unit_values),
    ]
    return info, blobs, error


def _c_crc32c():
    """google-crc32c's checksum function when its C extension loads, else None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    # The package falls back to pure Python itself when its C part is missing.
    return google_crc32c.value if google_crc32c.implementation == "c" else None


_crc32c = _c_crc32c()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data` (needs `google-crc32c`'s C extension)."""
    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


class CRecordWriter:
    """TFRecord framing, as TensorBoard's `RecordWriter` writes it, with a C checksum.

    A record is its length (uint64), the length's masked CRC32C, the data
    and the data's masked CRC32C, all little-endian.
    """

    def __init__(self, file):
        self._file = file

    def write(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        # One write per record: TensorBoard's local GFile opens the file for each.
        self._file.write(
            b"".join(
                (
                    length,
                    struct.pack("<I", masked_crc32c(length)),
                    data,
                    struct.pack("<I", masked_crc32c(data)),
                )
            )
        )

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


_slow_crc_warned = False


def _pure_python_records(file) -> RecordWriter:
    global _slow_crc_warned
    if not _slow_crc_warned:
        _slow_crc_warned = True
        logger.warning(
            "tb_activations: without TensorFlow or google-crc32c, event files are "
            "checksummed in pure Python (about 0.15 s per MB), which holds Python's "
            "lock and slows training; pip install google-crc32c (or the package's "
            "jax or torch extra) to avoid it."
        )
    return RecordWriter(file)


class EventFile:
    """One event file, written synchronously from the writer's thread.

    Its records are TFRecords with a CRC32C of each. TensorFlow's record
    writer checksums in C++, and is used when Keras loaded TensorFlow.
    Without TensorFlow (Keras on JAX or torch), `CRecordWriter` checksums
    with google-crc32c, in C, at gigabytes a second. TensorBoard's own
    `RecordWriter`, the last resort, does it in pure Python at about 7 MB/s,
    holding Python's lock, so that the training thread waits on it for a
    large share of every step (0.4 s for a step of VGG16's five
    `blockN_conv1` layers; benchmarks/bench_backends.py); it warns once. All
    three write the same bytes.
    """

    _count = 0

    def __init__(self, logdir: str):
        tb_tf.io.gfile.makedirs(logdir)
        EventFile._count += 1
        # TensorBoard's Python loader follows the last file of a run by name:
        # the count is zero-padded, so that a process's tenth file of the same
        # second sorts after its ninth.
        self.path = os.path.join(
            logdir,
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
            f".{os.getpid()}.{EventFile._count:06d}",
        )
        # Only a TensorFlow that Keras already loaded: importing it here could
        # happen during interpreter exit, and costs seconds otherwise.
        tf = sys.modules.get("tensorflow")
        if tf is not None and hasattr(tf, "io"):
            self._records = tf.io.TFRecordWriter(self.path)
        elif _crc32c is not None:
            self._records = CRecordWriter(tb_tf.io.gfile.GFile(self.path, "wb"))
        else:
            self._records = _pure_python_records(tb_tf.io.gfile.GFile(self.path, "wb"))
        self.add_event(
            event_pb2.Event(
                wall_time=time.time(),
                file_version="brain.Event:2",
                source_metadata=event_pb2.SourceMetadata(writer="tb_activations"),
            )
        )
        self.flush()

    def add_event(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        self._records.close()


_live_writers: weakref.WeakSet[ActivationWriter] = weakref.WeakSet()


_exit_hook_registered = False


def _flush_all_at_exit() -> None:
    for writer in list(_live_writers):
        writer.close()


def _register_exit_hook() -> None:
    """Flushes every writer at normal interpreter exit.

    atexit runs hooks last-registered first; TensorFlow tears itself down in
    a hook of its own, so ours must be registered after TensorFlow is
    imported (TensorBoard's `compat.tf` imports it on first use) to run
    while the record writer still works.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        tb_tf.io  # noqa: B018 - resolves the lazy import now
        atexit.register(_flush_all_at_exit)
        _exit_hook_registered = True


class ActivationWriter:
    """Encodes and writes steps for one run directory in a background thread."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        max_size: int | None = None,
        max_queue: int = 4,
        workers: int | None = None,
        pending: Sequence[event_pb2.Event] = (),
        tracker: measures.Tracker | None = None,
    ):
        self.run_dir = os.fspath(run_dir)
        # Kept by the caller across writers (repeated fits) so that measures
        # continue from the last logged step; else this writer's own.
        self.tracker = tracker if tracker is not None else measures.Tracker()
        self._measures_failed = False
        self.max_size = max_size
        # A bounded queue: if encoding falls behind, training waits rather
        # than memory growing without limit. No step is dropped.
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.workers = workers or DEFAULT_WORKERS
        self._executor: ThreadPoolExecutor | None = None
        self._file_writer: EventFile | None = None
        self._pending: collections.deque[tuple[event_pb2.Event, int]] = collections.deque()
        self._pending_bytes = 0
        self._enqueue_pending(list(pending))
        self._failing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._submitted = 0
        # For the warning when training waits for the writer: the seconds
        # the last steps took to encode and write, the start of the one in
        # progress, and the step and time the previous submit returned.
        self._job_seconds: collections.deque[float] = collections.deque(maxlen=8)
        self._job_started: float | None = None
        self._last_submit: tuple[int, float] | None = None
        self._warned_behind = False
        self.last_error: BaseException | None = None
        _live_writers.add(self)

    # -- training thread -------------------------------------------------

    def submit(
        self,
        step: int,
        values: Sequence[LayerValue],
        *,
        epoch: float | None = None,
        batch: int | None = None,
        index: int | None = None,
        wall_time: float | None = None,
    ) -> None:
        """Queues one step; returns as soon as the queue has room.

        `index` counts the steps logged to this run (see `metadata`); it
        defaults to the steps this writer was given.
        """
        if self._closed:
            raise RuntimeError("This ActivationWriter is closed.")
        self._start()
        header = {
            "epoch": epoch,
            "batch": batch,
            "index": self._submitted if index is None else index,
        }
        self._submitted += 1
        step = int(step)
        job = (step, wall_time or time.time(), header, values)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            if not self._warned_behind:
                self._warned_behind = True
                self._warn_behind(step)
            self._queue.put(job)
        self._last_submit = (step, time.perf_counter())

    def _warn_behind(self, step: int) -> None:
        """Says once that training waits for the writer, and how often to log instead."""
        now = time.perf_counter()
        started = self._job_started
        encode = max(
            statistics.median(self._job_seconds) if self._job_seconds else 0.0,
            now - started if started is not None else 0.0,
        )
        advice = ""
        if self._last_submit is not None and step > self._last_submit[0]:
            batches = step - self._last_submit[0]
            between = now - self._last_submit[1]
            # The batches whose training takes as long as encoding one step.
            freq = max(batches + 1, math.ceil(batches * encode / max(between, 1e-9)))
            advice = (
                f" Steps come {batches} batches ({between:.2f} s) apart. Log every {freq} "
                f"batches or less often (batch_freq={freq}) for the writer to keep up."
            )
        logger.warning(
            "tb_activations: the writer falls behind: a step takes %.2f s to encode and "
            "write, and its queue of %d steps is full, so training waits for it.%s",
            encode,
            self._queue.maxsize,
            advice,
        )

    def flush(self) -> None:
        """Blocks until every submitted step is written (or kept for retry)."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> list[event_pb2.Event]:
        """Writes what it can and closes the file.

        Returns the events that could not be written, so that a later writer
        can be given them (`pending=`) and no logged step is lost.
        """
        if self._closed:
            return []
        self.flush()
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        self._close_file_writer()
        unwritten = [event for event, _ in self._pending]
        if unwritten:
            logger.warning(
                "tb_activations: %d activation events are not written to %s yet (%s); "
                "they are kept for the next writer of this run.",
                len(unwritten),
                self.run_dir,
                self.last_error,
            )
        self._pending.clear()
        self._pending_bytes = 0
        return unwritten

    # -- background thread -------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                _register_exit_hook()
                self._executor = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="tb_activations-png"
                )
                self._thread = threading.Thread(
                    target=self._run, name="tb_activations-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._job_started = time.perf_counter()
                self._write_job(*job)
                self._job_seconds.append(time.perf_counter() - self._job_started)
            finally:
                self._job_started = None
                self._queue.task_done()

    def _write_job(self, step, wall_time, header, values) -> None:
        records = []
        for value in values:
            try:
                info, blobs = self._encode(step, value, header)
            except Exception as e:  # noqa: BLE001 - a bad layer must not stop the others
                logger.warning(
                    "tb_activations: could not encode layer %r at step %d: %r",
                    value.info.layer,
                    step,
                    e,
                )
                continue
            records.append(make_event(info, step, wall_time, blobs))
        self._enqueue_pending(records)
        self._drain()

    def _encode(self, step, value, header) -> tuple[metadata.LayerInfo, list[bytes]]:
        kw = {"max_size": self.max_size, "tracker": self.tracker, "step": step}
        try:
            info, blobs, error = encode_step(value, header, executor=self._executor, **kw)
        except RuntimeError:
            # Thread pools refuse new work once the interpreter has begun to
            # exit, which is when the atexit flush runs.
            info, blobs, error = encode_step(value, header, **kw)
        if error is not None and not self._measures_failed:
            self._measures_failed = True
            logger.warning(
                "tb_activations: could not measure layer %r at step %d (%r); its "
                "steps are written without measures when this happens.",
                value.info.layer,
                step,
                error,
            )
        return info, blobs

    def _enqueue_pending(self, records: list[event_pb2.Event]) -> None:
        for r in records:
            size = r.ByteSize()
            self._pending.append((r, size))
            self._pending_bytes += size
        dropped = 0
        while self._pending_bytes > MAX_PENDING_BYTES and len(self._pending) > len(records):
            self._pending_bytes -= self._pending.popleft()[1]
            dropped += 1
        if dropped:
            logger.warning(
                "tb_activations: dropped %d unwritten activation events to bound memory "
                "while %s cannot be written.",
                dropped,
                self.run_dir,
            )

    def _drain(self) -> None:
        try:
            if self._file_writer is None:
                self._file_writer = EventFile(self.run_dir)
            for event, _ in self._pending:
                self._file_writer.add_event(event)
            # Only a successful flush proves the events reached the file; until
            # then they stay pending. A retry may thus repeat a step in a new
            # file, which readers take as the same step, rather than lose it.
            self._file_writer.flush()
            self._pending.clear()
            self._pending_bytes = 0
            if self._failing:
                logger.warning("tb_activations: writing to %s works again.", self.run_dir)
            self._failing = False
        except Exception as e:  # noqa: BLE001 - training must go on
            self.last_error = e
            if not self._failing:
                logger.warning(
                    "tb_activations: could not write activations to %s (%r). Training goes "
                    "on; the step is kept and written when the directory works again.",
                    self.run_dir,
                    e,
                )
            self._failing = True
            self._close_file_writer()

    def _close_file_writer(self) -> None:
        if self._file_writer is not None:
            try:
                self._file_writer.close()
            except Exception:  # noqa: BLE001 - the file is already broken
                pass
            self._file_writer = None
