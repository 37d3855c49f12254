"""Activation kernels (ReLU, sigmoid, tanh, softmax; forward and backward) against float64 NumPy.

Tolerances are forward error bounds of the formula each kernel evaluates, in units of the dtype's
eps: a handful of roundings for the elementwise functions, plus eps * |x - max| for softmax, whose
exponent x - max is rounded in the working precision.
"""
import numpy as np
import pytest

import _reference as ref64
from _assert import assert_sentinels, assert_within, guarded
from _layers import act_input
from conftest import AWKWARD, eps, readonly
from ranvier._kernels import activations as act

# Flat lengths: the awkward sizes, 255, and lengths long enough for both threads to get work.
LENGTHS = sorted(set(AWKWARD) | {255, 4103, 100003})
# Softmax (rows, classes).
SOFTMAX_SHAPES = [(n, d) for n in (1, 2, 7, 33) for d in (1, 2, 5, 16, 17, 63, 129, 257)]
SOFTMAX_SHAPES += [(257, 10), (1000, 31), (129, 255)]


def _data(rng, shape, dtype, spread=3.0):
    return (spread * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------------------------
# ReLU: exact
# --------------------------------------------------------------------------------------------

def test_relu_forward_backward(dtype, num_threads, isa):
    rng = np.random.default_rng(1)
    for n in LENGTHS:
        x = _data(rng, n, dtype)
        x[:: 7] = 0.0                       # the kink itself: relu(0) = 0, relu'(0) = 0
        x[3:: 11] = -0.0
        dy = _data(rng, n, dtype)
        expected_y = np.where(x > 0, x, dtype.type(0))
        for xin in (x, readonly(x)):
            buf, y = guarded(n, dtype)
            act.forward(act.ACTIVATIONS["relu"], xin, y, 0.0, num_threads)
            np.testing.assert_array_equal(y, expected_y, err_msg=f"relu_forward n={n}")
            assert_sentinels(buf, f"relu_forward n={n}")
        expected_dx = np.where(expected_y > 0, dy, dtype.type(0))
        buf, dx = guarded(n, dtype)
        act.backward(act.ACTIVATIONS["relu"], readonly(expected_y), readonly(dy), dx, 0.0, num_threads)
        np.testing.assert_array_equal(dx, expected_dx, err_msg=f"relu_backward n={n}")
        assert_sentinels(buf, f"relu_backward n={n}")


def test_relu_propagates_nan_as_torch(dtype, isa, torch):
    """relu(NaN) = NaN (torch.relu's clamp_min keeps it), also through the fused bias kernel;
    the backward passes dy where y is NaN, as torch's threshold_backward(dy, y, 0)."""
    x = np.array([np.nan, -np.nan, -np.inf, -1.0, -0.0, 0.0, 2.0, np.inf] * 3, dtype)
    y = np.empty_like(x)
    act.forward(act.ACTIVATIONS["relu"], x, y, 0.0, 1)
    expected = torch.relu(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(y, expected)
    yb = np.empty((3, 8), dtype)
    act.bias_forward(act.ACTIVATIONS["relu"], x.reshape(3, 8), np.zeros(8, dtype), yb, 0.0, 1)
    np.testing.assert_array_equal(yb.reshape(-1), expected)
    dy = np.ones_like(x)
    dx = np.empty_like(x)
    act.backward(act.ACTIVATIONS["relu"], y, dy, dx, 0.0, 1)
    ref = torch.ops.aten.threshold_backward(torch.from_numpy(dy), torch.from_numpy(y), 0).numpy()
    np.testing.assert_array_equal(dx, ref)


# --------------------------------------------------------------------------------------------
# Sigmoid and tanh
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
def test_sigmoid_forward(dtype, num_threads, isa):
    rng = np.random.default_rng(2)
    tiny = np.finfo(dtype).tiny
    for n in LENGTHS:
        x = _data(rng, n, dtype, spread=6.0)
        for xin in (x, readonly(x)):
            buf, y = guarded(n, dtype)
            act.forward(act.ACTIVATIONS["sigmoid"], xin, y, 0.0, num_threads)
            ref = ref64.sigmoid(x)
            assert_within(y, ref, 4 * eps(dtype) * ref + tiny, f"sigmoid n={n}")
            assert_sentinels(buf, f"sigmoid n={n}")


def test_sigmoid_extreme_inputs_do_not_overflow(dtype, num_threads, isa):
    big = [20, 40, 80, 88.5, 100, 700, 710, 1000, 1e30]
    x = np.array([v for b in big for v in (b, -b)] + [np.inf, -np.inf, 0.0, -0.0], dtype)
    y = np.empty_like(x)
    act.forward(act.ACTIVATIONS["sigmoid"], x, y, 0.0, num_threads)
    assert np.isfinite(y).all(), f"sigmoid produced {y[~np.isfinite(y)]} for {x[~np.isfinite(y)]}"
    ref = ref64.sigmoid(x)
    assert_within(y, ref, 4 * eps(dtype) * ref + np.finfo(dtype).tiny, "sigmoid extremes")
    assert y[x == np.inf] == 1 and y[x == -np.inf] == 0
    assert ((y >= 0) & (y <= 1)).all()


def test_sigmoid_backward(dtype, num_threads, isa):
    rng = np.random.default_rng(3)
    for n in LENGTHS:
        y = np.empty(n, dtype)
        act.forward(act.ACTIVATIONS["sigmoid"], _data(rng, n, dtype, spread=6.0), y, 0.0, num_threads)
        dy = _data(rng, n, dtype)
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        ref = dy64 * y64 * (1 - y64)
        buf, dx = guarded(n, dtype)
        act.backward(act.ACTIVATIONS["sigmoid"], readonly(y), readonly(dy), dx, 0.0, num_threads)
        # Three roundings (1 - y, two products) and the final one; 1 - y is exact for y >= 1/2.
        assert_within(dx, ref, 4 * eps(dtype) * np.abs(ref) + np.finfo(dtype).tiny,
                      f"sigmoid_backward n={n}")
        assert_sentinels(buf, f"sigmoid_backward n={n}")


def test_tanh_forward(dtype, num_threads, isa):
    rng = np.random.default_rng(4)
    for n in LENGTHS:
        x = _data(rng, n, dtype)
        for xin in (x, readonly(x)):
            buf, y = guarded(n, dtype)
            act.forward(act.ACTIVATIONS["tanh"], xin, y, 0.0, num_threads)
            ref = np.tanh(x.astype(np.float64))
            assert_within(y, ref, 4 * eps(dtype) * np.abs(ref) + np.finfo(dtype).tiny,
                          f"tanh n={n}")
            assert_sentinels(buf, f"tanh n={n}")
    x = np.array([20, -20, 1000, -1000, 1e30, -1e30, np.inf, -np.inf, 1e-30, -1e-30], dtype)
    y = np.empty_like(x)
    act.forward(act.ACTIVATIONS["tanh"], x, y, 0.0, num_threads)
    np.testing.assert_array_equal(y[:8], [1, -1, 1, -1, 1, -1, 1, -1])
    np.testing.assert_allclose(y[8:], x[8:], rtol=eps(dtype))


def test_tanh_float32_dense_sweep(isa):
    """Every float32 in [7, 7.9] (where the rational's rounding error peaks, near 1) and every
    4099th float in [1e-30, 10], both signs: within the 4 eps bound of test_tanh_forward."""
    lo, hi = np.array([7.0, 7.9, 1e-30, 10.0], np.float32).view(np.uint32).reshape(2, 2)
    bits = np.concatenate([np.arange(lo[0], lo[1] + 1), np.arange(hi[0], hi[1] + 1, 4099)])
    x = bits.astype(np.uint32).view(np.float32)
    x = np.concatenate([x, -x])
    y = np.empty_like(x)
    act.forward(act.ACTIVATIONS["tanh"], x, y, 0.0, 2)
    ref = np.tanh(x.astype(np.float64))
    assert_within(y, ref, 4 * eps(np.float32) * np.abs(ref) + np.finfo(np.float32).tiny,
                  "tanh sweep")
    assert np.signbit(y[0]) == np.signbit(x[0]) and np.signbit(y[-1]) == np.signbit(x[-1])


def test_tanh_special_values(dtype, isa):
    big = 9.02 if dtype == np.float32 else 19.1      # tanh rounds to 1 from here on
    x = np.array([np.nan, -0.0, 0.0, 7.9, -7.9, 7.91, big, -big], dtype)
    y = np.empty_like(x)
    act.forward(act.ACTIVATIONS["tanh"], x, y, 0.0, 1)
    assert np.isnan(y[0])
    assert y[1] == 0 and np.signbit(y[1]) and y[2] == 0 and not np.signbit(y[2])
    np.testing.assert_allclose(y[3:5], np.tanh(x[3:5].astype(np.float64)), rtol=4 * eps(dtype))
    np.testing.assert_array_equal(np.abs(y[6:]), 1)


def test_tanh_backward(dtype, num_threads, isa):
    rng = np.random.default_rng(5)
    for n in LENGTHS:
        y = np.empty(n, dtype)
        act.forward(act.ACTIVATIONS["tanh"], _data(rng, n, dtype), y, 0.0, num_threads)
        dy = _data(rng, n, dtype)
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        ref = dy64 * (1 - y64 * y64)
        buf, dx = guarded(n, dtype)
        act.backward(act.ACTIVATIONS["tanh"], readonly(y), readonly(dy), dx, 0.0, num_threads)
        # Forward error of dy * (1 - y*y): the rounding of y*y is relative to y^2, not to the
        # (possibly much smaller) 1 - y^2, hence |dy| (1 + y^2) rather than |ref|.
        bound = 4 * eps(dtype) * np.abs(dy64) * (1 + y64 * y64) + np.finfo(dtype).tiny
        assert_within(dx, ref, bound, f"tanh_backward n={n}")
        assert_sentinels(buf, f"tanh_backward n={n}")


# Every entry of the activation table, with a parameter for those that take one.
TABLE = sorted(act.ACTIVATIONS)
PARAM = {"leaky_relu": 0.07, "elu": 0.7}


def _fwd(name):
    """f(x, out, nt) for the table entry ``name``."""
    return lambda x, out, nt: act.forward(act.ACTIVATIONS[name], x, out, PARAM.get(name, 0.0), nt)


def _bwd(name):
    """f(v, dy, dx, nt) for the table entry ``name``."""
    return lambda v, dy, dx, nt: act.backward(act.ACTIVATIONS[name], v, dy, dx,
                                              PARAM.get(name, 0.0), nt)


def test_table_lists_every_activation_once():
    assert TABLE == sorted(["none", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu",
                            "silu"])
    assert sorted(act.ACTIVATIONS.values()) == list(range(len(TABLE)))
    assert act.NEEDS_OUTPUT == {"none", "relu", "sigmoid", "tanh"}
    with pytest.raises(ValueError, match="unknown activation code"):
        act.forward(len(TABLE), np.ones(3), np.empty(3))


@pytest.mark.parametrize("name", TABLE)
def test_elementwise_same_bits_for_any_thread_count(dtype, name, isa):
    rng = np.random.default_rng(6)
    n = 100003
    x = _data(rng, n, dtype)
    dy = _data(rng, n, dtype)
    fwd, bwd = _fwd(name), _bwd(name)
    ys, dxs = [], []
    for nt in (1, 2):
        y = np.empty(n, dtype)
        fwd(x, y, nt)
        dx = np.empty(n, dtype)
        bwd(y, dy, dx, nt)
        ys.append(y.tobytes())
        dxs.append(dx.tobytes())
    assert ys[0] == ys[1] and dxs[0] == dxs[1]


@pytest.mark.parametrize("n", [1, 2, 7, 33, 129, 4103])
def test_elementwise_kernels_bitwise_identical_for_1_and_2_threads(rng, dtype, n):
    """Called directly, so two threads run even below the layers' parallel cut-off."""
    x = act_input("ELU", rng, n, dtype)
    dy = rng.normal(size=n).astype(dtype)
    u = rng.random(n, dtype=np.float32)
    table = act.ACTIVATIONS
    calls = [(act.forward, table[name], (x,), param) for name, param in
             (("leaky_relu", 0.07), ("gelu", 0.0), ("elu", 0.7), ("silu", 0.0))]
    calls += [(act.backward, code, (x, dy), param) for _, code, _, param in calls]
    for fn, code, ins, param in calls:
        outs = []
        for t in (1, 2):
            out = np.full(n + 2, np.nan, dtype)
            fn(code, *ins, out[1:-1], param, t)
            assert np.isnan(out[0]) and np.isnan(out[-1]), "wrote outside the output"
            outs.append(out[1:-1])
        np.testing.assert_array_equal(outs[0], outs[1])
    outs = []
    for t in (1, 2):
        out = np.empty(n, dtype)
        act.dropout_apply(x, u, 0.3, 1 / 0.7, out, t)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], np.where(u >= np.float32(0.3), x * dtype.type(1 / 0.7),
                                                    0))



@pytest.mark.parametrize("group", [1, 3, 49])
def test_dropout_apply_one_draw_per_group(rng, dtype, group):
    """group > 1 (Dropout2d: a channel's plane per draw): every element of a group kept or
    dropped with its draw; bitwise the same for 1 and 2 threads; u must have one draw per group."""
    u = rng.random(257).astype(np.float32)
    x = rng.normal(size=257 * group).astype(dtype)
    outs = []
    for t in (1, 2):
        out = np.full(x.size + 2, np.nan, dtype)
        act.dropout_apply(x, u, 0.4, 1 / 0.6, out[1:-1], t, group)
        assert np.isnan(out[0]) and np.isnan(out[-1]), "wrote outside the output"
        outs.append(out[1:-1])
    np.testing.assert_array_equal(outs[0], outs[1])
    keep = np.repeat(u >= np.float32(0.4), group)
    np.testing.assert_array_equal(outs[0], np.where(keep, x * dtype.type(1 / 0.6), 0))
    with pytest.raises(ValueError, match="dropout_apply: u has 257 entries, expected one per "
                                         "group"):
        act.dropout_apply(x[:-1], u, 0.4, 1 / 0.6, outs[0][:-1], 1, group)
    with pytest.raises(ValueError, match="dropout_apply: group must be >= 1"):
        act.dropout_apply(x, u, 0.4, 1 / 0.6, outs[0], 1, 0)

@pytest.mark.parametrize("name", TABLE)
def test_elementwise_in_place(dtype, name, isa):
    """out may be x itself: the same values as into a separate output."""
    rng = np.random.default_rng(13)
    for n in (1, 17, 4103, 100003):
        x = _data(rng, n, dtype)
        fwd, bwd = _fwd(name), _bwd(name)
        y = np.empty_like(x)
        fwd(x, y, 2)
        x_in = x.copy()
        fwd(x_in, x_in, 2)
        np.testing.assert_array_equal(x_in, y)
        dy = _data(rng, n, dtype)
        dx = np.empty_like(x)
        bwd(y, dy, dx, 2)
        bwd(y, dy, dy, 2)
        np.testing.assert_array_equal(dy, dx)


def test_elementwise_empty(dtype):
    e = np.empty(0, dtype)
    for name in TABLE:
        _fwd(name)(e, np.empty(0, dtype), 2)
        _bwd(name)(e, e, np.empty(0, dtype), 2)


# --------------------------------------------------------------------------------------------
# Fused bias + activation
# --------------------------------------------------------------------------------------------

BIAS_SHAPES = [(r, c) for r in (1, 3, 4, 5, 9) for c in (1, 7, 16, 17, 63)]
BIAS_SHAPES += [(130, 257), (1000, 33), (6, 4099)]     # past the 16384-element parallel task


@pytest.mark.parametrize("name", TABLE)
def test_bias_activation_matches_unfused(dtype, num_threads, isa, name):
    """bias_forward(act, z, b, y) gives the same bits as z + b (rounded in the working precision,
    as bias_add does) followed by forward(act), into a separate output and in place."""
    rng = np.random.default_rng(14)
    code, param = act.ACTIVATIONS[name], PARAM.get(name, 0.0)
    unfused = _fwd(name)

    def fused(z, b, y, nt):
        act.bias_forward(code, z, b, y, param, nt)

    for rows, cols in BIAS_SHAPES:
        z = _data(rng, (rows, cols), dtype)
        b = _data(rng, cols, dtype)
        expected = np.empty_like(z)
        unfused((z + b).reshape(-1), expected.reshape(-1), 1)
        buf, y = guarded((rows, cols), dtype)
        fused(readonly(z), readonly(b), y, num_threads)
        np.testing.assert_array_equal(y, expected, err_msg=f"bias_{name} {rows}x{cols}")
        assert_sentinels(buf, f"bias_{name} {rows}x{cols}")
        fused(z, b, z, num_threads)                       # in place
        np.testing.assert_array_equal(z, expected, err_msg=f"bias_{name} in place")


def test_bias_relu_against_float64(dtype, num_threads):
    rng = np.random.default_rng(15)
    z = _data(rng, (37, 65), dtype)
    b = _data(rng, 65, dtype)
    y = np.empty_like(z)
    act.bias_forward(act.ACTIVATIONS["relu"], z, b, y, 0.0, num_threads)
    ref = np.maximum(z.astype(np.float64) + b.astype(np.float64), 0)
    assert_within(y, ref, eps(dtype) * np.abs(ref), "bias_relu")   # one rounding: z + b


def test_bias_activation_bad_arguments(dtype):
    z, b, y = np.zeros((4, 5), dtype), np.zeros(5, dtype), np.zeros((4, 5), dtype)
    with pytest.raises(ValueError, match="b has 4"):
        act.bias_forward(act.ACTIVATIONS["relu"], z, b[:4], y, 0.0, 1)
    with pytest.raises(ValueError, match="y has shape"):
        act.bias_forward(act.ACTIVATIONS["relu"], z, b, y[:3], 0.0, 1)
    big = np.zeros((5, 5), dtype)
    with pytest.raises(ValueError, match="overlap"):          # y shifted by one row over z
        act.bias_forward(act.ACTIVATIONS["relu"], big[:4], b, big[1:], 0.0, 1)
    with pytest.raises(ValueError, match="overlap"):          # b inside y
        act.bias_forward(act.ACTIVATIONS["relu"], z, big[2], big[:4], 0.0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        act.bias_forward(act.ACTIVATIONS["relu"], np.zeros((4, 10), dtype)[:, ::2], b, y, 0.0, 1)
    with pytest.raises((TypeError, ValueError)):              # no kernel for mixed dtypes
        act.bias_forward(act.ACTIVATIONS["relu"], z, b.astype(np.float16), y, 0.0, 1)
    with pytest.raises(ValueError, match="read-only"):
        act.bias_forward(act.ACTIVATIONS["relu"], z, b, readonly(y), 0.0, 1)
    act.bias_forward(act.ACTIVATIONS["relu"], np.zeros((0, 5), dtype), b, np.zeros((0, 5), dtype), 0.0, 2)
    act.bias_forward(act.ACTIVATIONS["relu"], np.zeros((3, 0), dtype), b[:0], np.zeros((3, 0), dtype), 0.0, 2)


# --------------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------------

def _softmax_bound(x, ref, dtype):
    # Relative error of each probability: the rounded exponent x - max costs eps |x - max| / 2
    # in the numerator and at most the row's worst in the sum; plus exp, sum and divide.
    x64 = np.asarray(x, np.float64)
    spread = (x64.max(axis=1, keepdims=True) - x64.min(axis=1, keepdims=True))
    return 2 * eps(dtype) * (3 + spread) * ref + np.finfo(dtype).tiny


@pytest.mark.quick
def test_softmax_forward(dtype, num_threads):
    rng = np.random.default_rng(7)
    for n, d in SOFTMAX_SHAPES:
        x = (4 * rng.standard_normal((n, d))).astype(dtype)
        ref = ref64.softmax(x)
        for xin in (x, readonly(x)):
            buf, y = guarded((n, d), dtype)
            act.softmax_forward(xin, y, num_threads)
            assert_within(y, ref, _softmax_bound(x, ref, dtype), f"softmax {n}x{d}")
            assert_sentinels(buf, f"softmax {n}x{d}")
            row_sums = y.astype(np.float64).sum(axis=1)
            assert np.all(np.abs(row_sums - 1) <= 2 * (d + 2) * eps(dtype)), f"rows {n}x{d}"


@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_softmax_forward_large_logits(dtype, num_threads, magnitude):
    """Logits far outside exp's range: no overflow, no NaN, still the float64 reference."""
    rng = np.random.default_rng(8)
    x = (magnitude * rng.standard_normal((65, 17))).astype(dtype)
    x[0] = magnitude                      # a constant row: uniform probabilities
    x[1] = -magnitude
    x[2, :] = magnitude
    x[2, 5] = magnitude - 1               # a near tie at the top of the range
    y = np.empty_like(x)
    act.softmax_forward(x, y, num_threads)
    assert np.isfinite(y).all()
    ref = ref64.softmax(x)
    assert_within(y, ref, _softmax_bound(x, ref, dtype), f"softmax |x|~{magnitude}")
    np.testing.assert_allclose(y[0], np.full(17, 1 / 17), rtol=4 * eps(dtype))
    np.testing.assert_allclose(y[1], np.full(17, 1 / 17), rtol=4 * eps(dtype))


def test_softmax_backward(dtype, num_threads):
    rng = np.random.default_rng(9)
    for n, d in SOFTMAX_SHAPES:
        y = np.empty((n, d), dtype)
        act.softmax_forward((3 * rng.standard_normal((n, d))).astype(dtype), y, num_threads)
        dy = rng.standard_normal((n, d)).astype(dtype)
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        dot = (dy64 * y64).sum(axis=1, keepdims=True)
        ref = y64 * (dy64 - dot)
        # dx_j = y_j (dy_j - <dy, y>): the dot product's error scales with sum |dy y|.
        absdot = np.abs(dy64 * y64).sum(axis=1, keepdims=True)
        bound = 4 * eps(dtype) * (np.abs(ref) + y64 * absdot) + np.finfo(dtype).tiny
        buf, dx = guarded((n, d), dtype)
        act.softmax_backward(readonly(y), readonly(dy), dx, num_threads)
        assert_within(dx, ref, bound, f"softmax_backward {n}x{d}")
        assert_sentinels(buf, f"softmax_backward {n}x{d}")
        # The gradient of a softmax is orthogonal to the ones vector: rows of dx sum to ~0.
        assert np.all(np.abs(dx.astype(np.float64).sum(axis=1))
                      <= 4 * (d + 2) * eps(dtype) * (np.abs(ref).sum(axis=1) + absdot[:, 0]))


def test_softmax_same_bits_for_any_thread_count(dtype):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2000, 33)).astype(dtype)
    dy = rng.standard_normal((2000, 33)).astype(dtype)
    res = []
    for nt in (1, 2):
        y = np.empty_like(x)
        act.softmax_forward(x, y, nt)
        dx = np.empty_like(x)
        act.softmax_backward(y, dy, dx, nt)
        res.append((y.tobytes(), dx.tobytes()))
    assert res[0] == res[1]


def test_softmax_empty(dtype):
    act.softmax_forward(np.empty((0, 5), dtype), np.empty((0, 5), dtype), 2)
    act.softmax_forward(np.empty((3, 0), dtype), np.empty((3, 0), dtype), 2)
    act.softmax_backward(np.empty((3, 0), dtype), np.empty((3, 0), dtype),
                         np.empty((3, 0), dtype), 2)
