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
