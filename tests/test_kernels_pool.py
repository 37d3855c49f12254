"""Pooling kernels called directly (_kernels/pool.pyx): max (values and argmax), average (both
divisors) and adaptive average pooling, forward and backward, against the float64 references of
tests/_reference.py and against torch, bitwise equal for 1 and 2 threads; geometry and index
checks."""
import numpy as np
import pytest

import _reference as ref
from _assert import assert_within
from conftest import eps, readonly
from ranvier._kernels import pool

# (n, c, h, w, kernel, stride, padding): odd and prime sizes, batch 1, overlapping windows,
# windows that leave a remainder, padding up to half the kernel, non-square everything.
GEOMS = [
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (2, 3, 5, 5, (2, 2), (2, 2), (0, 0)),
    (1, 2, 7, 9, (3, 3), (2, 2), (1, 1)),
    (3, 5, 13, 11, (3, 2), (1, 3), (1, 1)),
    (2, 17, 8, 8, (2, 2), (1, 1), (1, 0)),
    (1, 1, 31, 17, (5, 4), (3, 2), (2, 2)),
    (2, 33, 28, 28, (2, 2), (2, 2), (0, 0)),
    (1, 2, 6, 7, (6, 7), (1, 1), (0, 0)),
    (1, 3, 9, 10, (2, 2), (1, 3), (0, 0)),   # unpadded 2x2 windows (their own loop), overlapping
]
IDS = ["x".join(map(str, g[:4])) + f"-k{g[4][0]}{g[4][1]}s{g[5][0]}{g[5][1]}p{g[6][0]}{g[6][1]}"
       for g in GEOMS]
# (input plane, output plane) of adaptive pooling: global, fewer bins, as many, more than inputs
ADAPTIVE = [((7, 9), (1, 1)), ((13, 11), (2, 3)), ((5, 5), (5, 5)), ((6, 3), (7, 4)),
            ((28, 28), (13, 1))]


def _windows(g, count_include_pad=True):
    _, _, h, w, k, s, p = g
    return (ref.pool_windows(h, k[0], s[0], p[0], count_include_pad=count_include_pad),
            ref.pool_windows(w, k[1], s[1], p[1], count_include_pad=count_include_pad))


def _both_threads(call):
    """call(num_threads) -> arrays, for 1 and 2 threads: bitwise the same; returns the first."""
    one, two = call(1), call(2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    return one


def _sum_bound(dtype, wh, ww, absval, in_hw=None):
    """Error bound of sums of window terms rounded in dtype: (terms + 1) * eps * sum |term|, for
    the forward (absval = |x|) or the backward (absval = |dy|, in_hw the input plane)."""
    terms = max(h1 - h0 for h0, h1, _ in wh) * max(w1 - w0 for w0, w1, _ in ww)
    scale = (ref.pool2d(absval, "avg", wh, ww) if in_hw is None
             else ref.pool2d_grad(absval, "avg", wh, ww, in_hw))
    return (terms + 1) * eps(dtype) * scale


def _maxpool(x, g, t):
    ys = (g[0], g[1]) + tuple(len(a) for a in _windows(g))
    y, idx = np.full(ys, -7, x.dtype), np.full(ys, -7, np.int64)
    pool.maxpool2d_forward(x, y, idx, g[4], g[5], g[6], t)
    return y, idx


@pytest.mark.quick
@pytest.mark.parametrize("g", GEOMS, ids=IDS)
def test_maxpool_matches_reference_bitwise_for_1_and_2_threads(rng, dtype, g):
    x = readonly(rng.normal(size=g[:4]).astype(dtype))
    y, idx = _both_threads(lambda t: _maxpool(x, g, t))
    wh, ww = _windows(g)
    ry, ridx = ref.pool2d(x, "max", wh, ww)
    np.testing.assert_array_equal(y, ry.astype(dtype))   # a maximum is exact
    np.testing.assert_array_equal(idx, ridx)
    dy = readonly(rng.normal(size=y.shape).astype(dtype))

    def backward(t):
        dx = np.full(g[:4], np.nan, dtype)
        pool.maxpool2d_backward(dy, idx, dx, t)
        return (dx,)

    (dx,) = _both_threads(backward)
    # an input that is the maximum of several windows adds their gradients
    shared = ref.pool2d_grad(np.ones(y.shape), "max", wh, ww, g[2:4], ridx)
    absdy = ref.pool2d_grad(np.abs(dy.astype(np.float64)), "max", wh, ww, g[2:4], ridx)
    assert_within(dx, ref.pool2d_grad(dy, "max", wh, ww, g[2:4], ridx),
                  shared * eps(dtype) * absdy, "dx")


@pytest.mark.quick
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("g", GEOMS, ids=IDS)
def test_avgpool_matches_reference_bitwise_for_1_and_2_threads(rng, dtype, g, count_include_pad):
    x = readonly(rng.normal(size=g[:4]).astype(dtype))
    wh, ww = _windows(g, count_include_pad)
    ys = (g[0], g[1], len(wh), len(ww))
    args = (g[4], g[5], g[6], count_include_pad)

    def forward(t):
        y = np.full(ys, np.nan, dtype)
        pool.avgpool2d_forward(x, y, *args, t)
        return (y,)

    (y,) = _both_threads(forward)
    x64 = x.astype(np.float64)
    assert_within(y, ref.pool2d(x64, "avg", wh, ww), _sum_bound(dtype, wh, ww, np.abs(x64)), "y")
    dy = readonly(rng.normal(size=ys).astype(dtype))

    def backward(t):
        dx = np.full(g[:4], np.nan, dtype)
        pool.avgpool2d_backward(dy, dx, *args, t)
        return (dx,)

    (dx,) = _both_threads(backward)
    dy64 = dy.astype(np.float64)
    assert_within(dx, ref.pool2d_grad(dy64, "avg", wh, ww, g[2:4]),
                  _sum_bound(dtype, wh, ww, np.abs(dy64), g[2:4]), "dx")


@pytest.mark.quick
@pytest.mark.parametrize("planes", ADAPTIVE, ids=[f"{a}to{b}" for a, b in ADAPTIVE])
def test_adaptive_avgpool_matches_reference_bitwise_for_1_and_2_threads(rng, dtype, planes):
    (h, w), (oh, ow) = planes
    x = readonly(rng.normal(size=(3, 5, h, w)).astype(dtype))
    wh, ww = ref.pool_windows(h, out=oh), ref.pool_windows(w, out=ow)

    def forward(t):
        y = np.full((3, 5, oh, ow), np.nan, dtype)
        pool.adaptive_avgpool2d_forward(x, y, t)
        return (y,)

    (y,) = _both_threads(forward)
    x64 = x.astype(np.float64)
    assert_within(y, ref.pool2d(x64, "avg", wh, ww), _sum_bound(dtype, wh, ww, np.abs(x64)), "y")
    dy = readonly(rng.normal(size=y.shape).astype(dtype))

    def backward(t):
        dx = np.full(x.shape, np.nan, dtype)
        pool.adaptive_avgpool2d_backward(dy, dx, t)
        return (dx,)

    (dx,) = _both_threads(backward)
    dy64 = dy.astype(np.float64)
    assert_within(dx, ref.pool2d_grad(dy64, "avg", wh, ww, (h, w)),
                  _sum_bound(dtype, wh, ww, np.abs(dy64), (h, w)), "dx")


@pytest.mark.parametrize("g", GEOMS, ids=IDS)
def test_pooling_matches_torch(torch, rng, dtype, g):
    """Values, max pooling's indices and the input gradients of torch's autograd."""
    F = torch.nn.functional
    x = rng.normal(size=g[:4]).astype(dtype)
    k, s, p = g[4:]
    y, idx = _maxpool(x, g, 2)
    dy = rng.normal(size=y.shape).astype(dtype)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty, tidx = F.max_pool2d(tx, k, s, p, return_indices=True)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    dx = np.empty_like(x)
    pool.maxpool2d_backward(dy, idx, dx, 2)
    tol = 4 * eps(dtype)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    for cip in (True, False):
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = F.avg_pool2d(tx, k, s, p, count_include_pad=cip)
        ty.backward(torch.from_numpy(dy))
        pool.avgpool2d_forward(x, y, k, s, p, cip, 2)
        pool.avgpool2d_backward(dy, dx, k, s, p, cip, 2)
        tol = 4 * k[0] * k[1] * eps(dtype)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("planes", ADAPTIVE, ids=[f"{a}to{b}" for a, b in ADAPTIVE])
def test_adaptive_avgpool_matches_torch(torch, rng, dtype, planes):
    (h, w), out = planes
    x = rng.normal(size=(2, 3, h, w)).astype(dtype)
    y = np.empty((2, 3) + out, dtype)
    dy = rng.normal(size=y.shape).astype(dtype)
    dx = np.empty_like(x)
    pool.adaptive_avgpool2d_forward(x, y, 2)
    pool.adaptive_avgpool2d_backward(dy, dx, 2)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, out)
    ty.backward(torch.from_numpy(dy))
    tol = 4 * h * w * eps(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)


def test_maxpool_nan_and_ties(dtype):
    """A NaN in a window is the window's maximum (as torch); equal values give the first."""
    x = np.zeros((1, 1, 2, 4), dtype)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, :, 2:] = 3.0
    y, idx = np.empty((1, 1, 1, 2), dtype), np.empty((1, 1, 1, 2), np.int64)
    pool.maxpool2d_forward(x, y, idx, (2, 2), (2, 2), (0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 5
    assert y[0, 0, 0, 1] == 3.0 and idx[0, 0, 0, 1] == 2


@pytest.mark.parametrize("kernel,padding,second_start", [((2, 2), (0, 0), 2), ((2, 3), (0, 1), 1)],
                         ids=["2x2-loop", "general-loop"])
def test_maxpool_nan_first_last_and_infinities(dtype, kernel, padding, second_start):
    """The last NaN of a window wins even when the first input is a NaN too; a window of -inf
    gives -inf at its first input. The unpadded 2x2 loop and the general one agree on all."""
    x = np.full((1, 1, 2, 4), -np.inf, dtype)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = np.nan          # window 0: NaN first and third
    y = np.empty((1, 1, 1, 2), dtype)
    idx = np.empty((1, 1, 1, 2), np.int64)
    pool.maxpool2d_forward(x, y, idx, kernel, (2, 2), padding)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert y[0, 0, 0, 1] == -np.inf and idx[0, 0, 0, 1] == second_start


def test_empty_batch_writes_nothing(dtype):
    x = np.empty((0, 3, 4, 4), dtype)
    y, idx = np.empty((0, 3, 2, 2), dtype), np.empty((0, 3, 2, 2), np.int64)
    pool.maxpool2d_forward(x, y, idx, (2, 2), (2, 2), (0, 0))
    pool.maxpool2d_backward(y, idx, x)
    pool.avgpool2d_forward(x, y, (2, 2), (2, 2), (0, 0))
    pool.adaptive_avgpool2d_backward(y, x)


@pytest.mark.quick
@pytest.mark.parametrize("x_shape, y_shape, k, s, p, match", [
    ((1, 1, 4, 4), (1, 1, 2, 2), (2, 2), (0, 2), (0, 0), "stride must be >= 1"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (0, 2), (2, 2), (0, 0), "kernel_size and stride must be >= 1"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (2, 2), (2, 2), (-1, 0), "padding >= 0"),
    ((1, 1, 4, 4), (1, 1, 3, 3), (2, 2), (2, 2), (2, 0), r"at most half the kernel size"),
    ((1, 1, 3, 3), (1, 1, 1, 1), (5, 5), (1, 1), (0, 0), r"larger than the padded input"),
    ((1, 1, 0, 3), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0), "empty plane"),
    ((1, 1, 4, 4), (1, 1, 3, 2), (2, 2), (2, 2), (0, 0), r"gives \(1, 1, 2, 2\)"),
    ((1, 1, 4, 4), (1, 1, 2, 2), 2, (2, 2), (0, 0), "kernel_size"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (2, 2, 2), (2, 2), (0, 0), "kernel_size must be a pair"),
])
def test_bad_geometry_raises(x_shape, y_shape, k, s, p, match):
    x, y = np.zeros(x_shape), np.zeros(y_shape)
    with pytest.raises((ValueError, TypeError), match=match):
        pool.maxpool2d_forward(x, y, np.zeros(y_shape, np.int64), k, s, p)
    with pytest.raises((ValueError, TypeError), match=match):
        pool.avgpool2d_forward(x, y, k, s, p)
    with pytest.raises((ValueError, TypeError), match=match):
        pool.avgpool2d_backward(y, x, k, s, p)


def test_adaptive_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"adaptive_avgpool2d_forward: .*\(2, 3, 1, 1\).*"
                                         r"\(2, 4, 5, 5\)"):
        pool.adaptive_avgpool2d_forward(np.zeros((2, 4, 5, 5)), np.zeros((2, 3, 1, 1)))
    with pytest.raises(ValueError, match="at least 1"):
        pool.adaptive_avgpool2d_forward(np.zeros((2, 3, 5, 5)), np.zeros((2, 3, 0, 1)))
    with pytest.raises(ValueError, match="at least 1"):
        pool.adaptive_avgpool2d_backward(np.zeros((2, 3, 1, 1)), np.zeros((2, 3, 0, 5)))


def test_maxpool_backward_refuses_indices_outside_the_plane():
    dy, dx = np.ones((1, 2, 2, 2)), np.zeros((1, 2, 4, 4))
    for bad in (-1, 16):
        idx = np.zeros((1, 2, 2, 2), np.int64)
        idx[0, 1, 1, 0] = bad
        with pytest.raises(ValueError, match="1 indices lie outside the planes of dx"):
            pool.maxpool2d_backward(dy, idx, dx)
    with pytest.raises(ValueError, match="batch and channel"):
        pool.maxpool2d_backward(dy, np.zeros((1, 2, 2, 2), np.int64), np.zeros((1, 3, 4, 4)))
