import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tb_activations import encoding, metadata

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "shape, data_format, expected, layout",
    [
        ((2, 10), "channels_last", (2, 1, 10, 1), "units"),
        ((2, 7, 5), "channels_last", (2, 1, 7, 5), "sequence"),
        ((2, 5, 7), "channels_first", (2, 1, 7, 5), "sequence"),
        ((2, 6, 4, 3), "channels_last", (2, 6, 4, 3), "image"),
        ((2, 3, 6, 4), "channels_first", (2, 6, 4, 3), "image"),
        ((2, 5, 6, 4, 3), "channels_last", (2, 6, 4, 3), "image"),
        ((2, 3, 5, 6, 4), "channels_first", (2, 6, 4, 3), "image"),
    ],
)
def test_to_nhwc_shapes(shape, data_format, expected, layout):
    x = RNG.normal(size=shape).astype(np.float32)
    assert encoding.to_nhwc(x, data_format).shape == expected
    assert encoding.layout_of(len(shape)) == layout


def test_rank5_is_mean_over_depth():
    x = RNG.normal(size=(1, 4, 3, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(encoding.to_nhwc(x), x.mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize("rank", [1, 6])
def test_unshowable_rank_is_refused(rank):
    with pytest.raises(ValueError, match=f"rank={rank}"):
        encoding.layout_of(rank)


def _numpy_stats(channel: np.ndarray) -> list[float]:
    finite = channel[np.isfinite(channel)].astype(np.float64)
    return [
        finite.min(),
        finite.max(),
        finite.mean(),
        finite.std(),
        np.mean(channel == 0),
        1 - finite.size / channel.size,
    ]


@pytest.mark.parametrize(
    "fill, shape",
    [
        ("normal", (2, 9, 7, 4)),
        ("relu", (2, 9, 7, 4)),  # many exact zeros
        ("constant", (2, 9, 7, 4)),
        ("nan_and_inf", (2, 9, 7, 4)),
        ("offset", (2, 9, 7, 4)),  # a std 1e-6 of the mean
        ("relu", (2, 300, 300, 4)),  # sums over several chunks, the last one short
        ("normal", (2, 37, 41, 3)),  # extrema: 1517 rows folded 41 at a time
        ("normal", (2, 3, 3, 1100)),  # extrema: rows wider than a fold
    ],
)
def test_stats_match_numpy(fill, shape):
    x = RNG.normal(size=shape).astype(np.float32)
    if fill == "relu":
        x = np.maximum(x, 0)
    elif fill == "constant":
        x[..., 1] = 3.5
    elif fill == "nan_and_inf":
        x[0, 0, 0, 0] = np.nan
        x[1, 2, 3, 2] = np.inf
        x[1, 4, 4, 2] = -np.inf
    elif fill == "offset":
        x = (1000 + x * 1e-3).astype(np.float32)
    stats = encoding.compute_stats(x)
    assert stats.shape == (2, shape[-1], len(metadata.STATS_FIELDS))
    for p in range(2):
        for c in range(shape[-1]):
            np.testing.assert_allclose(
                stats[p, c], _numpy_stats(x[p, ..., c]), rtol=1e-5, atol=1e-6
            )
    if fill == "constant":
        assert (stats[:, 1, 3] == 0).all()


def test_channel_with_no_finite_value_has_nan_range():
    x = np.full((1, 2, 2, 1), np.nan, np.float32)
    stats = encoding.compute_stats(x)
    assert np.isnan(stats[0, 0, :4]).all()
    assert stats[0, 0, 5] == 1.0


def test_quantize_inverts_through_stats():
    x = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32) * 10
    stats = encoding.compute_stats(x)
    q = encoding.quantize(x, stats)
    assert q.dtype == np.uint8 and q.shape == (2, 3, 5, 6)
    lo, hi = stats[..., 0], stats[..., 1]
    back = lo[:, :, None, None] + q / 255.0 * (hi - lo)[:, :, None, None]
    step = (hi - lo)[:, :, None, None] / 255
    assert np.all(np.abs(back - x.transpose(0, 3, 1, 2)) <= step / 2 + 1e-4)
    assert q.min() == 0 and q.max() == 255  # each channel spans the full range


def test_quantize_maps_nonfinite_and_constant_to_zero():
    x = np.ones((1, 2, 2, 2), np.float32)
    x[0, 0, 0, 1] = np.nan
    x[0, 1, 1, 1] = 5
    q = encoding.quantize(x, encoding.compute_stats(x))
    assert (q[0, 0] == 0).all()
    assert q[0, 1, 0, 0] == 0 and q[0, 1, 1, 1] == 255


def test_quantize_maps_a_span_too_small_to_scale_to_zero_like_a_constant():
    # 255 / span overflows float32: the channel shows as constant, not as garbage.
    x = np.array([0, 1e-45, 0, 1e-45], np.float32).reshape(1, 2, 2, 1)
    q = encoding.quantize(x, encoding.compute_stats(x))
    assert (q == 0).all()


@pytest.mark.parametrize(
    "h, w, max_size, factor",
    [
        (224, 224, 256, 1),
        (224, 224, 224, 1),
        (300, 100, 256, 2),
        (1024, 8, 256, 4),
        (50, 50, None, 1),
    ],
)
def test_downscale_factor(h, w, max_size, factor):
    assert encoding.downscale_factor(h, w, max_size) == factor


@pytest.mark.parametrize(
    "h, w, channels, per_image",
    [
        (224, 224, 64, 1),
        (14, 14, 512, 334),  # 2**16 pixels hold 334 maps of 14 x 14
        (28, 28, 512, 83),
        (1, 10, 1, 1),  # a Dense layer's one strip
        (1, 100, 300, 300),  # a sequence: every channel fits
        (300, 300, 4, 1),  # one map larger than the budget
    ],
)
def test_channels_per_image(h, w, channels, per_image):
    assert encoding.channels_per_image(h, w, channels) == per_image


def _decoded(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L"
    return np.asarray(img)


@pytest.mark.parametrize("executor", [None, "threads"])
@pytest.mark.parametrize("per_image, images", [(1, 5), (2, 3), (5, 1), (8, 1)])
def test_encode_layer_pngs_decode_to_quantized_channels(executor, per_image, images):
    x = RNG.normal(size=(2, 12, 10, 5)).astype(np.float32)
    pool = ThreadPoolExecutor(2) if executor else None
    # pool_pixels=0: this small layer's PNGs go to the pool all the same.
    stats, pngs = encoding.encode_layer(x, per_image=per_image, executor=pool, pool_pixels=0)
    q = encoding.quantize(x, stats)
    assert len(pngs) == 2 * images
    for p in range(2):
        stacked = np.concatenate([_decoded(png) for png in pngs[p * images : (p + 1) * images]])
        assert stacked.shape == (5 * 12, 10)
        np.testing.assert_array_equal(stacked.reshape(5, 12, 10), q[p])


class _CountingPool(ThreadPoolExecutor):
    def __init__(self):
        super().__init__(2)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


@pytest.mark.parametrize(
    "shape, pool_pixels, on_pool",
    [
        ((2, 12, 10, 5), encoding.POOL_PIXELS, 0),  # small: in the caller's thread
        ((2, 12, 10, 5), 1200, 10),  # 2 x 5 x 12 x 10 = 1200 pixels: not below
        ((2, 12, 10, 5), 1201, 0),
        ((1, 256, 256, 4), encoding.POOL_PIXELS, 4),  # 2**18 pixels: on the pool
    ],
)
def test_encode_layer_uses_the_pool_from_pool_pixels(shape, pool_pixels, on_pool):
    x = RNG.normal(size=shape).astype(np.float32)
    pool = _CountingPool()
    stats, pngs = encoding.encode_layer(x, executor=pool, pool_pixels=pool_pixels)
    pool.shutdown()
    assert pool.submitted == on_pool
    _, inline = encoding.encode_layer(x)
    assert pngs == inline


@pytest.mark.parametrize("per_image", [1, 2])
@pytest.mark.parametrize("h", [42, 41])  # at 41 rows, a box would straddle two maps
def test_encode_layer_downscales_each_map_above_max_size(per_image, h):
    x = RNG.normal(size=(1, h, 20, 2)).astype(np.float32)
    stats, pngs = encoding.encode_layer(x, max_size=16, per_image=per_image)
    q = encoding.quantize(x, stats)
    each = [np.asarray(Image.fromarray(m).reduce(3)) for m in q[0]]
    assert each[0].shape == (14, 7)
    got = np.concatenate([_decoded(png) for png in pngs])
    np.testing.assert_array_equal(got, np.concatenate(each))


@pytest.mark.parametrize(
    "shape, mode, size",
    [
        ((2, 8, 6, 3), "RGB", (6, 8)),
        ((1, 8, 6, 1), "L", (6, 8)),
        ((1, 8, 6, 5), "L", (6, 8)),
        ((1, 20), "L", (20, 1)),
        ((1, 30, 4), "L", (4, 30)),
    ],
)
def test_probe_images(shape, mode, size):
    x = RNG.uniform(0, 255, size=shape).astype(np.float32)
    stats, pngs = encoding.probe_images(x)
    assert len(pngs) == shape[0] and stats.shape == (shape[0], 1, len(metadata.STATS_FIELDS))
    img = Image.open(io.BytesIO(pngs[0]))
    assert img.mode == mode and img.size == size


def _plane(kind):
    yy, xx = np.mgrid[0:9, 0:13]
    planes = {
        "constant": np.full((9, 13), 7),
        # Residuals of 19 to the left, 71 above: Sub leaves the smaller ones.
        "across": (xx * 19 + yy * 71) % 256,
        # 97 to the left, 29 above: Up.
        "down": (xx * 97 + yy * 29) % 256,
        "noise": RNG.integers(0, 256, size=(9, 13)),
        "wrapping": (xx * 200 + yy * 90) % 256,  # residuals wrap around 0 and 255
        "strip": RNG.integers(0, 256, size=(1, 13)),
        "column": RNG.integers(0, 256, size=(9, 1)),
    }
    return planes[kind].astype(np.uint8)


@pytest.mark.parametrize(
    "kind", ["constant", "across", "down", "noise", "wrapping", "strip", "column"]
)
def test_gray_png_decodes_to_the_same_levels(kind):
    plane = _plane(kind)
    img = Image.open(io.BytesIO(encoding.png_bytes(plane)))
    assert img.mode == "L" and img.size == plane.shape[::-1]
    np.testing.assert_array_equal(np.asarray(img), plane)
