import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from tb_activations import probe

PHOTO = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # 512 wide, 600 high, RGB


def photo(mode: str, size=None) -> np.ndarray:
    """The photo as HxWxC float32, converted and resized by Pillow itself."""
    img = Image.open(PHOTO).convert(mode)
    if size is not None:
        img = img.resize(size, Image.Resampling.BILINEAR)
    a = np.asarray(img, np.float32)
    return a[..., None] if a.ndim == 2 else a


def ramp(*shape) -> np.ndarray:
    """Distinct values in every position: a swapped axis or a wrong resize shows."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def resized(batch: np.ndarray, size) -> np.ndarray:
    """Each NxHxWxC plane resized to `size` (w, h) by Pillow, bilinear."""
    return np.stack(
        [
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(image[:, :, c], "F").resize(size, Image.Resampling.BILINEAR)
                    )
                    for c in range(image.shape[2])
                ],
                axis=-1,
            )
            for image in batch
        ]
    )


def channels_first(hwc: np.ndarray) -> np.ndarray:
    """(..., H, W, C) to (..., C, H, W), one channel plane at a time."""
    return np.stack([hwc[..., c] for c in range(hwc.shape[-1])], axis=-3)


@pytest.mark.parametrize(
    "make, input_shape, data_format, expected",
    [
        (
            lambda: PHOTO,
            (None, 224, 224, 3),
            "channels_last",
            lambda: photo("RGB", (224, 224))[None],
        ),
        (lambda: PHOTO, (None, 64, 32, 1), "channels_last", lambda: photo("L", (32, 64))[None]),
        (
            lambda: PHOTO,
            (None, 3, 40, 50),
            "channels_first",
            lambda: channels_first(photo("RGB", (50, 40)))[None],
        ),
        (lambda: PHOTO, (None, None, None, 3), "channels_last", lambda: photo("RGB")[None]),
        (
            lambda: Image.open(PHOTO),
            (None, 32, 24, 3),
            "channels_last",
            lambda: photo("RGB", (24, 32))[None],
        ),
        (
            lambda: [PHOTO, Image.open(PHOTO).transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
            (None, 16, 12, 3),
            "channels_last",
            lambda: np.stack([photo("RGB", (12, 16)), photo("RGB", (12, 16))[:, ::-1]]),
        ),
        (lambda: ramp(8, 6, 3), (None, 8, 6, 3), "channels_last", lambda: ramp(1, 8, 6, 3)),
        (lambda: ramp(1, 8, 6, 3), (None, 8, 6, 3), "channels_last", lambda: ramp(1, 8, 6, 3)),
        (lambda: ramp(5, 8, 6, 3), (None, 8, 6, 3), "channels_last", lambda: ramp(5, 8, 6, 3)),
        (
            lambda: ramp(5, 20, 10, 3),
            (None, 8, 6, 3),
            "channels_last",
            lambda: resized(ramp(5, 20, 10, 3), (6, 8)),
        ),
        (lambda: ramp(8, 6), (None, 8, 6, 1), "channels_last", lambda: ramp(1, 8, 6, 1)),
        (
            lambda: ramp(8, 6, 3),
            (None, 3, 8, 6),
            "channels_first",
            lambda: channels_first(ramp(1, 8, 6, 3)),
        ),
        (lambda: ramp(2, 3, 8, 6), (None, 3, 8, 6), "channels_first", lambda: ramp(2, 3, 8, 6)),
        (
            lambda: ramp(2, 3, 20, 10),
            (None, 3, 8, 6),
            "channels_first",
            lambda: channels_first(resized(np.moveaxis(ramp(2, 3, 20, 10), 1, -1), (6, 8))),
        ),
        (lambda: ramp(784), (None, 784), "channels_last", lambda: ramp(1, 784)),
        (lambda: ramp(3, 50, 2), (None, 50, 2), "channels_last", lambda: ramp(3, 50, 2)),
        (lambda: [[1, 2], [3, 4]], (None, 2), "channels_last", lambda: np.array([[1, 2], [3, 4]])),
    ],
)
def test_probe_values(make, input_shape, data_format, expected):
    batch = probe.load(make(), input_shape, data_format)
    want = expected()
    assert batch.dtype == np.float32
    assert batch.shape == want.shape
    np.testing.assert_allclose(batch, want, rtol=1e-6, atol=1e-4)


def test_image_keeps_pixel_values_and_preprocess_runs_once():
    calls = []

    def preprocess(x):
        calls.append(x.shape)
        return x / 255.0

    batch = probe.load(PHOTO, (None, 600, 512, 3), preprocess=preprocess)
    assert calls == [(1, 600, 512, 3)]
    original = np.asarray(Image.open(PHOTO).convert("RGB"), np.float32)
    np.testing.assert_allclose(batch[0], original / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "value, input_shape, message",
    [
        (np.zeros((8, 8, 3)), (None, 8, 8, 1), "3 channels but the model takes 1"),
        (np.zeros((8,)), (None, 8, 8, 1), r"expected rank 3 .* or 4"),
        (np.zeros((2, 2, 8, 8, 1)), (None, 8, 8, 1), r"probe shape=\(2, 2, 8, 8, 1\)"),
        (np.zeros((0, 8, 8, 1)), (None, 8, 8, 1), "empty"),
        (np.zeros((3, 51, 2)), (None, 50, 2), r"does not fit the model's input \(None, 50, 2\)"),
        ("/no/such/cat.jpg", (None, 8, 8, 3), "does not exist.*cat.jpg"),
        (__file__, (None, 8, 8, 3), "cannot be read as an image"),
        (PHOTO, (None, 8, 8, 6), "takes 6 input channels"),
        (PHOTO, (None, 784), "rank-4 input"),
        (None, (None, 8, 8, 3), "probe=None"),
        ({"a": 1}, (None, 8, 8, 3), "numeric array"),
        (["x", 3], (None, 8, 8, 3), "numeric array"),
    ],
)
def test_bad_probes_name_the_value_and_what_was_expected(value, input_shape, message):
    with pytest.raises(ValueError, match=message):
        probe.load(value, input_shape)
