"""Dropout and Dropout2d: the dropped fraction (of elements, of channels) and the exact scaling,
training and evaluation modes, seeding, backward against central finite differences, the mask
kept for backward, argument checks."""
import math
import re

import numpy as np
import pytest

import ranvier as rv
from _reference import check_gradient


@pytest.mark.quick
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_fraction_and_exact_scaling(rng, dtype, num_threads, p):
    x = (rng.normal(size=(257, 129)) + 10).astype(dtype)  # no zeros in x
    layer = rv.Dropout(p, seed=3)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    frac = 1 - kept.mean()
    sigma = math.sqrt(p * (1 - p) / x.size)
    assert abs(frac - p) < 5 * sigma, (frac, p)
    scale = dtype.type(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y[kept], x[kept] * scale)  # the scaling is exact
    r = rng.normal(size=x.shape).astype(dtype)
    dx = layer.backward(r)  # the same mask, the same scale
    np.testing.assert_array_equal(dx, np.where(kept, r * scale, 0))
    # each row and column drops about p of its elements (no stripes from the parallel split)
    col = 1 - kept.mean(axis=0)
    assert np.all(np.abs(col - p) < 6 * math.sqrt(p * (1 - p) / x.shape[0]))


def test_dropout_eval_is_identity(rng, dtype):
    x = rng.normal(size=(7, 33)).astype(dtype)
    layer = rv.Dropout(0.5, seed=0)
    layer.training = False
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x)
    assert y is not x and y.dtype == dtype
    r = rng.normal(size=x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(r), r)
    model = rv.Sequential([rv.Dropout(0.5, seed=0)])
    model.eval()
    np.testing.assert_array_equal(model.forward(x), x)
    model.train()
    assert np.count_nonzero(model.forward(x) == 0) > 0


def test_dropout_p_zero_is_identity_in_training(rng):
    x = rng.normal(size=(7, 33))
    layer = rv.Dropout(0.0, seed=0)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


@pytest.mark.quick
def test_dropout_seeding(rng, dtype):
    x = np.ones((33, 129), dtype)
    a, b, c = rv.Dropout(0.5, seed=7), rv.Dropout(0.5, seed=7), rv.Dropout(0.5, seed=8)
    masks_a = [a.forward(x) != 0 for _ in range(3)]
    masks_b = [b.forward(x) != 0 for _ in range(3)]
    masks_c = [c.forward(x) != 0 for _ in range(3)]
    for ma, mb, mc in zip(masks_a, masks_b, masks_c):
        np.testing.assert_array_equal(ma, mb)  # same seed, same sequence of masks
        assert not np.array_equal(ma, mc)      # another seed, other masks
    assert not np.array_equal(masks_a[0], masks_a[1])  # a new mask every forward
    # the mask does not depend on the data's dtype
    other = np.float64 if dtype == np.float32 else np.float32
    d = rv.Dropout(0.5, seed=7)
    np.testing.assert_array_equal(d.forward(x.astype(other)) != 0, masks_a[0])
    # a Generator is used as given
    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    np.testing.assert_array_equal(rv.Dropout(0.5, seed=g1).forward(x),
                                  rv.Dropout(0.5, seed=g2).forward(x))


@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (129, 257)], ids=["1x1", "7x33", "129x257"])
def test_dropout_backward_matches_finite_differences(rng, shape):
    """A fresh layer with the same seed draws the same mask, so the objective is a fixed
    function of x."""
    x = rng.normal(size=shape)
    r = rng.normal(size=shape)
    layer = rv.Dropout(0.3, seed=21)
    layer.forward(x)
    dx = layer.backward(r)
    check_gradient(lambda xx: float(np.sum(r * rv.Dropout(0.3, seed=21).forward(xx))), x.copy(),
                   dx, rng)


def test_dropout_backward_uses_the_mask_of_the_last_forward_even_after_eval(rng):
    x = rng.normal(size=(7, 33)) + 10
    layer = rv.Dropout(0.5, seed=1)
    y = layer.forward(x)
    layer.training = False  # switching mode between forward and backward
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, np.where(y != 0, 2.0, 0.0))


def test_dropout_reuses_its_draw_buffer_across_batch_sizes(rng):
    layer = rv.Dropout(0.5, seed=2)
    big = rng.normal(size=(33, 7)) + 10
    small = rng.normal(size=(5, 7)) + 10
    layer.forward(big)
    buf = layer._u
    y = layer.forward(small)
    assert layer._u is buf
    np.testing.assert_array_equal(layer.backward(np.ones_like(small)),
                                  np.where(y != 0, 2.0, 0.0))
    y = layer.forward(big)
    np.testing.assert_array_equal(layer.backward(np.ones_like(big)), np.where(y != 0, 2.0, 0.0))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"p": 1.5}, ValueError, "p must be in"), ({"p": 1.0}, ValueError, "p must be in"),
    ({"p": -0.1}, ValueError, "p must be"), ({"p": float("nan")}, ValueError, "p must be finite"),
    ({"p": "0.5"}, TypeError, "p must be a number"), ({"p": True}, TypeError, "p must be"),
    ({"seed": "x"}, TypeError, "seed must be"), ({"seed": 1.5}, TypeError, "seed must be"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
])
def test_dropout_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rv.Dropout(**kwargs)




# -- Dropout2d --------------------------------------------------------------------------------------
@pytest.mark.quick
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout2d_zeroes_whole_channels_with_exact_scaling(rng, dtype, num_threads, p):
    x = (rng.normal(size=(64, 33, 7, 5)) + 10).astype(dtype)  # no zeros in x; past the cut-off
    layer = rv.Dropout2d(p, seed=3)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y[:, :, 0, 0] != 0                     # one decision per (sample, channel)
    np.testing.assert_array_equal(y != 0, np.broadcast_to(kept[:, :, None, None], x.shape))
    sigma = math.sqrt(p * (1 - p) / kept.size)
    assert abs((1 - kept.mean()) - p) < 5 * sigma
    scale = dtype.type(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y, np.where(kept[:, :, None, None], x * scale, 0))
    r = rng.normal(size=x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(r), np.where(kept[:, :, None, None], r * scale, 0))


def test_dropout2d_seeding_threads_and_eval(rng):
    x = rng.normal(size=(33, 17, 16, 16)) + 10
    out = []
    for t in (1, 2):
        rv.set_num_threads(t)
        try:
            rv.manual_seed(5)
            layer = rv.Dropout2d(0.5)   # drawn from ranvier's default generator
            out.append((layer.forward(x), layer.forward(x), layer.backward(x)))
        finally:
            rv.set_num_threads(None)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0][0], out[0][1])   # a new mask every forward
    layer = rv.Dropout2d(0.5, seed=1)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x), x)
    assert rv.Dropout2d(**rv.Dropout2d(0.3, seed=4).config()).config() == {"p": 0.3, "seed": 4}
    assert rv.layers.layer_class("Dropout2d") is rv.Dropout2d


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7)], ids=["1x1x1x1", "2x3x5x7"])
def test_dropout2d_backward_matches_finite_differences(rng, shape):
    x = rng.normal(size=shape)
    r = rng.normal(size=shape)
    layer = rv.Dropout2d(0.3, seed=21)
    layer.forward(x)
    dx = layer.backward(r)
    check_gradient(lambda xx: float(np.sum(r * rv.Dropout2d(0.3, seed=21).forward(xx))),
                   x.copy(), dx, rng)


def test_dropout2d_bad_inputs():
    layer = rv.Dropout2d(0.5)
    for bad in (np.ones((3, 4)), np.ones((2, 3, 4)), np.ones((1, 2, 3, 4, 5))):
        with pytest.raises(ValueError, match=r"Dropout2d expects 4-D input \(batch, channels, "
                                             r"height, width\), got shape "
                                             + re.escape(str(bad.shape))):
            layer.forward(bad)
    with pytest.raises(ValueError, match="p must be in"):
        rv.Dropout2d(1.0)
    layer.forward(np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((2, 3, 4, 5)))
