import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from tb_activations import probe

PHOTO = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # 512 wide, 600 high, RGB


@pytest.mark.parametrize(
    "make, input_shape, data_format, expected",
    [
        (lambda: PHOTO, (None, 224, 224, 3), "channels_last", (1, 224, 224, 3)),
        (lambda: PHOTO, (None, 64, 32, 1), "channels_last", (1, 64, 32, 1)),
        (lambda: PHOTO, (None, 3, 40, 50), "channels_first", (1, 3, 40, 50)),
        (lambda: PHOTO, (None, None, None, 3), "channels_last", (1, 600, 512, 3)),
        (lambda: Image.open(PHOTO), (None, 32, 32, 3), "channels_last", (1, 32, 32, 3)),
        (lambda: [PHOTO, Image.open(PHOTO)], (None, 16, 16, 3), "channels_last", (2, 16, 16, 3)),
        (lambda: np.zeros((8, 8, 3)), (None, 8, 8, 3), "channels_last", (1, 8, 8, 3)),
        (lambda: np.zeros((1, 8, 8, 3)), (None, 8, 8, 3), "channels_last", (1, 8, 8, 3)),
        (lambda: np.zeros((5, 8, 8, 3)), (None, 8, 8, 3), "channels_last", (5, 8, 8, 3)),
        (lambda: np.zeros((5, 20, 10, 3)), (None, 8, 8, 3), "channels_last", (5, 8, 8, 3)),
        (lambda: np.zeros((8, 8)), (None, 8, 8, 1), "channels_last", (1, 8, 8, 1)),
        (lambda: np.zeros((8, 8, 3)), (None, 3, 8, 8), "channels_first", (1, 3, 8, 8)),
        (lambda: np.zeros((2, 3, 8, 8)), (None, 3, 8, 8), "channels_first", (2, 3, 8, 8)),
        (lambda: np.zeros(784), (None, 784), "channels_last", (1, 784)),
        (lambda: np.zeros((3, 50, 2)), (None, 50, 2), "channels_last", (3, 50, 2)),
        (lambda: [[1, 2], [3, 4]], (None, 2), "channels_last", (2, 2)),
    ],
)
def test_probe_shapes(make, input_shape, data_format, expected):
    batch = probe.load(make(), input_shape, data_format)
    assert batch.shape == expected and batch.dtype == np.float32


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
