"""Turning what the user gives as a probe into the batch the model takes.

A probe is an image file path, a `PIL.Image`, an array (HxWxC, 1xHxWxC or
NxHxWxC; any shape the model takes, with or without the batch axis), or a list
of paths or images. Images keep their pixel values (0..255, as
`keras.utils.img_to_array` gives them); scale them with `preprocess`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

Probe = str | os.PathLike | Image.Image | np.ndarray | Sequence[Any]

_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _channel_axis(rank: int, data_format: str) -> int:
    return 1 if data_format == "channels_first" and rank >= 3 else -1


def open_image(path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise ValueError(
            f"Probe image file does not exist. Received: probe={os.fspath(path)!r}"
        ) from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(
            f"Probe file cannot be read as an image ({e}). Expected a PNG, JPEG or other "
            f"image Pillow reads. Received: probe={os.fspath(path)!r}"
        ) from None


def _image_to_array(img: Image.Image, input_shape, data_format: str) -> np.ndarray:
    """One PIL image to an HxWxC float32 array sized for the model."""
    if len(input_shape) != 4:
        raise ValueError(
            f"An image probe needs a model that takes images (rank-4 input), but this "
            f"model's input shape is {tuple(input_shape)}. Pass an array instead. "
            f"Received: probe={img!r}"
        )
    axis = _channel_axis(4, data_format)
    channels = input_shape[axis]
    mode = _PIL_MODES.get(channels or 3)
    if mode is None:
        raise ValueError(
            f"The model takes {channels} input channels; an image file gives 1, 3 or 4. "
            f"Pass an array with {channels} channels instead. Received: probe={img!r}"
        )
    img = img.convert(mode)
    h, w = (input_shape[2], input_shape[3]) if axis == 1 else (input_shape[1], input_shape[2])
    if h and w and img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    return arr[..., None] if arr.ndim == 2 else arr


def _resize_hw(batch: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an NxHxWxC float batch, channel by channel."""
    out = np.empty((batch.shape[0], h, w, batch.shape[3]), dtype=np.float32)
    for n in range(batch.shape[0]):
        for c in range(batch.shape[3]):
            plane = Image.fromarray(np.ascontiguousarray(batch[n, :, :, c], dtype=np.float32), "F")
            out[n, :, :, c] = np.asarray(plane.resize((w, h), Image.Resampling.BILINEAR))
    return out


def _fit_array(arr: np.ndarray, input_shape, data_format: str, shown) -> np.ndarray:
    rank = len(input_shape)
    if arr.ndim == rank - 1:
        arr = arr[None]
    elif rank == 4 and arr.ndim == 2:
        arr = arr[None, :, :, None]  # one grayscale HxW image
    if arr.ndim != rank:
        raise ValueError(
            f"Probe of shape {shown} does not fit the model's input {tuple(input_shape)}: "
            f"expected rank {rank - 1} (one probe) or {rank} (a batch of probes). "
            f"Received: probe shape={shown}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"Probe batch is empty. Received: probe shape={shown}")
    if rank == 4:
        want_c = input_shape[1] if data_format == "channels_first" else input_shape[3]
        if data_format == "channels_first":
            # Accept the usual NHWC image array for a channels_first model.
            if arr.shape[1] != want_c and arr.shape[3] == want_c:
                arr = arr.transpose(0, 3, 1, 2)
            nhwc = arr.transpose(0, 2, 3, 1)
        else:
            nhwc = arr
        if want_c is not None and nhwc.shape[3] != want_c:
            raise ValueError(
                f"Probe has {nhwc.shape[3]} channels but the model takes {want_c}. "
                f"Received: probe shape={shown}"
            )
        h, w = (
            (input_shape[2], input_shape[3])
            if data_format == "channels_first"
            else (
                input_shape[1],
                input_shape[2],
            )
        )
        if h and w and nhwc.shape[1:3] != (h, w):
            nhwc = _resize_hw(nhwc.astype(np.float32), h, w)
        return nhwc.transpose(0, 3, 1, 2) if data_format == "channels_first" else nhwc
    for got, want in zip(arr.shape[1:], input_shape[1:]):
        if want is not None and got != want:
            raise ValueError(
                f"Probe of shape {shown} does not fit the model's input "
                f"{tuple(input_shape)}. Received: probe shape={shown}"
            )
    return arr


def load(
    probe: Probe,
    input_shape: Sequence[int | None],
    data_format: str = "channels_last",
    preprocess: Callable[[np.ndarray], Any] | None = None,
    dtype: str = "float32",
) -> np.ndarray:
    """The probe as a batch of the model's input shape, preprocessed.

    A float input gets float32; an integer or boolean input (token IDs,
    masks, uint8 pixels) gets its own dtype, and an array for it must hold
    whole numbers (images are rounded).
    """
    if probe is None:
        raise ValueError(
            "A probe is required: an image path, a PIL.Image or an array. Received: probe=None"
        )
    if isinstance(probe, (str, os.PathLike)):
        batch = _image_to_array(open_image(probe), input_shape, data_format)[None]
        if data_format == "channels_first":
            batch = batch.transpose(0, 3, 1, 2)
    elif isinstance(probe, Image.Image):
        batch = _image_to_array(probe, input_shape, data_format)[None]
        if data_format == "channels_first":
            batch = batch.transpose(0, 3, 1, 2)
    elif (
        isinstance(probe, (list, tuple))
        and probe
        and all(isinstance(p, (str, os.PathLike, Image.Image)) for p in probe)
    ):
        batch = np.concatenate([load(p, input_shape, data_format) for p in probe])
    else:
        try:
            arr = np.asarray(probe)
        except Exception as e:  # noqa: BLE001 - anything that is not array-like
            raise ValueError(
                f"Probe cannot be read as an array ({e}). Received: probe={probe!r}"
            ) from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(
                "Probe must be an image path, a PIL.Image, a list of those, or a numeric array. "
                f"Received: probe of type {type(probe).__name__} ({arr.dtype})"
            )
        batch = _fit_array(arr, input_shape, data_format, tuple(arr.shape))
        if _whole(dtype):
            return _as_whole(batch, dtype, tuple(arr.shape), preprocess)
    if _whole(dtype):
        # An image model taking uint8 pixels: resizing may leave fractions.
        return _as_whole(np.rint(batch), dtype, tuple(np.shape(batch)), preprocess)
    batch = np.asarray(batch, dtype=np.float32)
    if preprocess is not None:
        batch = np.asarray(preprocess(batch.copy()), dtype=np.float32)
    return batch


def _whole(dtype: str) -> bool:
    return dtype == "bool" or "int" in dtype


def _as_whole(batch: np.ndarray, dtype: str, shown, preprocess) -> np.ndarray:
    if preprocess is not None:
        batch = np.asarray(preprocess(batch.copy()))
    if np.issubdtype(batch.dtype, np.floating) and not np.array_equal(batch, np.round(batch)):
        raise ValueError(
            f"The model's input takes {dtype} values, but the probe has fractions. "
            f"Received: probe shape={shown}, dtype={batch.dtype}"
        )
    return batch.astype(dtype)
