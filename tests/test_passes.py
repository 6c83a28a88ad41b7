import numpy as np
import pytest

from tb_activations import passes

COLUMN_CASES = [
    # (id, shape): every way `column_reduce` folds rows
    ("fewer rows than a fold", (7, 3)),
    ("one row", (1, 5)),
    ("whole folds", (2048, 16)),
    ("whole folds and a remainder", (2000, 16)),
    ("one column", (1025, 1)),
    ("columns wider than a fold", (3, 1100)),
    ("per sample, a fold dividing the rows", (3, 49, 64)),
    ("per sample, rows with no divisor but 1 under the fold", (2, 1031, 16)),
    ("per sample, one row", (4, 1, 5)),
]


@pytest.mark.parametrize("shape", [c[1] for c in COLUMN_CASES], ids=[c[0] for c in COLUMN_CASES])
@pytest.mark.parametrize("ufunc, numpy", [(np.maximum, np.max), (np.minimum, np.min)])
def test_column_reduce_is_numpys_reduction_down_the_rows(shape, ufunc, numpy):
    m = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert np.array_equal(passes.column_reduce(ufunc, m), numpy(m, axis=-2))


def test_column_reduce_keeps_a_nan_in_its_column():
    m = np.ones((2, 40, 3), np.float32)
    m[1, 33, 2] = np.nan
    out = passes.column_reduce(np.maximum, m)
    assert np.isnan(out[1, 2]) and np.isfinite(np.delete(out.ravel(), 5)).all()


BLOCK_CASES = [
    # (id, values per block, (probes, positions, channels))
    ("several whole probes per block, the last one short", 200, (7, 20, 3)),
    ("whole probes, as many as divide the block", 60, (6, 5, 4)),
    ("rows of one probe, the last block short", 50, (3, 30, 4)),
    ("one row per block: more channels than a block holds", 8, (2, 6, 10)),
    ("one block", 1 << 17, (2, 20, 3)),
    ("one position", 16, (9, 1, 5)),
]


@pytest.mark.parametrize(
    "values, shape", [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES]
)
def test_blocks_cover_every_value_once_as_contiguous_matrices(values, shape):
    probes, positions, c = shape
    seen = np.zeros((probes, positions), int)
    for p, count, i, rows in passes.blocks(probes, positions, c, values):
        # Whole probes, or rows of one: a (rows, channels) matrix of a
        # C-contiguous map either way.
        assert count == 1 or (i, rows) == (0, positions)
        assert count * rows * c <= max(values, c)
        seen[p : p + count, i : i + rows] += 1
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize(
    "values, shape", [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES]
)
def test_square_and_column_sums_are_numpys_in_float64(values, shape, monkeypatch):
    monkeypatch.setattr(passes, "_CHUNK_VALUES", values)
    monkeypatch.setattr(passes, "_BLOCK_ROWS", 4)
    rng = np.random.default_rng(1)
    # An offset far from 0: float32 sums of many rows would lose digits.
    x = (rng.normal(size=shape) + 1000).astype(np.float32)
    ref = (rng.normal(size=shape) + 1000).astype(np.float32)
    x64, ref64 = x.astype(np.float64), ref.astype(np.float64)
    np.testing.assert_allclose(passes.square_sums(x), (x64**2).sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        passes.square_sums(x, ref), ((x64 - ref64) ** 2).sum(axis=1), rtol=1e-5
    )
    flat = x.reshape(-1, shape[-1])
    np.testing.assert_allclose(
        passes.column_sums(flat), flat.astype(np.float64).sum(axis=0), rtol=1e-7
    )
