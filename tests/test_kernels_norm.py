"""Batch-norm kernels called directly on (batch, channels, spatial) arrays: the same bits for 1
and 2 threads, statistics against float64 NumPy."""
import numpy as np
import pytest

from conftest import readonly
from ranvier._kernels import norm


@pytest.mark.quick
@pytest.mark.parametrize("n,c,s", [(2, 1, 1), (7, 17, 1), (33, 33, 1), (5, 129, 1), (65, 257, 1),
                                   (1, 3, 2), (2, 5, 49), (3, 17, 31), (1, 1, 129)])
def test_batchnorm_kernels_bitwise_identical_for_1_and_2_threads(rng, dtype, n, c, s):
    x = readonly((3 * rng.normal(size=(n, c, s)) + 1).astype(dtype))
    dy = readonly(rng.normal(size=(n, c, s)).astype(dtype))
    w, b = readonly(rng.normal(size=c).astype(dtype)), readonly(rng.normal(size=c).astype(dtype))
    res = []
    for t in (1, 2):
        mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
        out, dx = np.empty((n, c, s), dtype), np.empty((n, c, s), dtype)
        dw, db = np.empty(c, dtype), np.empty(c, dtype)
        norm.batchnorm_forward_train(x, w, b, 1e-5, mean, var, invstd, out, t)
        norm.batchnorm_backward(x, dy, mean, invstd, w, True, dw, db, dx, t)
        ev = np.empty((n, c, s), dtype)
        norm.batchnorm_forward_apply(x, mean, invstd, np.zeros(c), ev, t)
        res.append((mean, var, invstd, out, dx, dw, db, ev))
    for a, b_ in zip(*res):
        np.testing.assert_array_equal(a, b_)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(res[0][0], x64.mean(axis=(0, 2)), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(res[0][1], x64.var(axis=(0, 2)), rtol=1e-13, atol=1e-14)


def test_batchnorm_kernel_needs_values():
    x = np.empty((0, 3, 4))
    with pytest.raises(ValueError, match="batchnorm_forward_train: the batch size times the "
                                         "spatial size must be >= 1"):
        norm.batchnorm_forward_train(x, None, None, 1e-5, np.empty(3), np.empty(3), np.empty(3),
                                     np.empty_like(x))
