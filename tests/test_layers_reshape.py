"""Flatten: forward is a C-order view, backward reshapes back (finite differences too), images
into a Dense layer."""
import math

import numpy as np
import pytest

import ranvier as rv
from _reference import check_gradient


@pytest.mark.quick
def test_flatten_forward_backward(rng, dtype):
    for shape in [(1, 28, 28), (7, 1, 1), (2, 3, 5, 7), (33, 129)]:
        x = rng.normal(size=shape).astype(dtype)
        layer = rv.Flatten()
        y = layer.forward(x)
        assert y.shape == (shape[0], math.prod(shape[1:])) and y.dtype == dtype
        np.testing.assert_array_equal(y, x.reshape(shape[0], -1))
        assert np.shares_memory(y, x)  # a view: no copy
        r = rng.normal(size=y.shape).astype(dtype)
        dx = layer.backward(r)
        assert dx.shape == shape and dx.dtype == dtype
        np.testing.assert_array_equal(dx, r.reshape(shape))
    # non-contiguous input: flattened in C order
    x = rng.normal(size=(5, 4, 3)).transpose(0, 2, 1)
    np.testing.assert_array_equal(rv.Flatten().forward(x), np.ascontiguousarray(x).reshape(5, 12))
    # an empty batch
    assert rv.Flatten().forward(np.zeros((0, 3, 4))).shape == (0, 12)


def test_flatten_backward_matches_finite_differences(rng):
    x = rng.normal(size=(7, 3, 11))
    r = rng.normal(size=(7, 33))
    layer = rv.Flatten()
    layer.forward(x)
    dx = layer.backward(r)
    check_gradient(lambda xx: float(np.sum(r * rv.Flatten().forward(xx))), x.copy(), dx, rng)


def test_flatten_then_dense_takes_images(rng):
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    model = rv.Sequential([rv.Flatten(), rv.Dense(784, 10, seed=0)])
    out = model.forward(images)
    dense = model[1]
    np.testing.assert_allclose(out, images.reshape(7, 784).astype(np.float32) @ dense.weight.data.T,
                               rtol=1e-5, atol=1e-2)
    dx = model.backward(np.ones((7, 10), np.float32))
    assert dx.shape == (7, 28, 28)


