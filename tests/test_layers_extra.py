"""LeakyReLU, GELU, ELU, Dropout, BatchNorm1d and Flatten: backward against central finite
differences (float64), forward/backward against torch autograd and float64 NumPy references at
awkward sizes, both dtypes, 1 and 2 threads, read-only inputs; Dropout's statistics and seeding;
BatchNorm1d's running statistics against torch over several steps; a model that uses them all;
argument checks."""
import math

import numpy as np
import pytest

import ranvier as rv
from conftest import AWKWARD, check_gradient, eps, readonly
from ranvier._kernels import activations as act
from ranvier._kernels import norm


# (batch, features); (129, 257) is past the parallel cut-off (32768 elements), so the num_threads
# fixture really runs two threads there
SHAPES = [(1, 1), (2, 7), (7, 33), (33, 129), (1, 257), (129, 257)]
# batch norm in training needs a batch of at least 2
BN_SHAPES = [(2, 1), (7, 7), (33, 33), (7, 129), (129, 7), (129, 257)]
assert {d for s in SHAPES + BN_SHAPES for d in s} <= set(AWKWARD)

ACTS = {"LeakyReLU": lambda: rv.LeakyReLU(0.07), "GELU": rv.GELU, "ELU": lambda: rv.ELU(0.7)}


def _act_input(name, rng, shape, dtype=np.float64):
    x = rng.normal(0.0, 2.0, size=shape)
    if name != "GELU":  # keep every element at least 0.05 away from the kink at 0
        x = np.sign(x) * (0.05 + np.abs(x))
    return x.astype(dtype)


def _torch_act(torch, name):
    return {"LeakyReLU": torch.nn.LeakyReLU(0.07), "GELU": torch.nn.GELU(),
            "ELU": torch.nn.ELU(0.7)}[name]


def _assert_within(got, ref, bound, what):
    got64 = np.asarray(got, np.float64)
    err = np.abs(got64 - ref)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0)),
                             err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} entries off; worst at {i}: "
                             f"got {got64[i]!r}, expected {ref[i]!r}, bound {bound[i]:.3e}")


# -- elementwise activations ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
def test_activation_backward_matches_finite_differences(rng, name, shape):
    layer = ACTS[name]()
    x = _act_input(name, rng, shape)
    r = rng.normal(size=shape)
    layer.forward(x)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
def test_activation_matches_torch(torch, rng, dtype, num_threads, name, shape):
    """Against torch autograd in the same dtype and in float64. Bounds are a few eps of the value
    plus eps * |x|: GELU's 1 + erf(x / sqrt 2) cancels for negative x, in torch too."""
    x = _act_input(name, rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    layer = ACTS[name]()
    y = layer.forward(x)
    dx = layer.backward(r)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == dx.shape == x.shape
    x64 = np.abs(x.astype(np.float64))
    for tdt in (dtype, np.float64):
        tx = torch.from_numpy(x.astype(tdt)).requires_grad_(True)
        ty = _torch_act(torch, name)(tx)
        ty.backward(torch.from_numpy(r.astype(tdt)))
        ref_y, ref_dx = ty.detach().numpy().astype(np.float64), tx.grad.numpy().astype(np.float64)
        tol = 16 * eps(dtype)
        _assert_within(y, ref_y, tol * (np.abs(ref_y) + x64 + 1), f"{name} forward vs torch")
        _assert_within(dx, ref_dx, tol * (np.abs(ref_dx) + np.abs(r) * (x64 + 1)),
                       f"{name} backward vs torch")


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
def test_leaky_relu_is_exact(rng, dtype, shape):
    """One multiply per element: the result is the correctly rounded x * slope, bit for bit."""
    x = _act_input("LeakyReLU", rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    layer = rv.LeakyReLU(0.07)
    s = dtype.type(0.07)
    np.testing.assert_array_equal(layer.forward(x), np.where(x > 0, x, x * s))
    np.testing.assert_array_equal(layer.backward(r), np.where(x > 0, r, r * s))


def test_leaky_relu_negative_and_zero_slopes_use_the_input_sign(rng):
    x = _act_input("LeakyReLU", rng, (7, 33))
    r = rng.normal(size=x.shape)
    for slope in (-0.5, 0.0, 1.5):
        layer = rv.LeakyReLU(slope)
        np.testing.assert_array_equal(layer.forward(x), np.where(x > 0, x, slope * x))
        np.testing.assert_array_equal(layer.backward(r), np.where(x > 0, r, slope * r))


def test_elu_and_gelu_special_values(dtype):
    x = np.array([[-1e30, -1e4, -50.0, -1e-8, 0.0, 1e-8, 50.0, 1e4, 1e30]], dtype)
    y = rv.ELU(2.0).forward(x)
    assert np.all(np.isfinite(y))
    assert y[0, 0] == -2 and y[0, 1] == -2 and y[0, 4] == 0 and y[0, -1] == dtype.type(1e30)
    # expm1 keeps the digits of tiny negative inputs (exp(x) - 1 would lose them: 0 in float32)
    np.testing.assert_allclose(y[0, 3], 2 * np.expm1(np.float64(x[0, 3])), rtol=4 * eps(dtype))
    layer = rv.GELU()
    g = layer.forward(x)
    dg = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(dg))
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 4] == 0
    assert g[0, -1] == dtype.type(1e30) and g[0, -2] == dtype.type(1e4)
    assert dg[0, 4] == 0.5 and dg[0, 0] == 0 and dg[0, -1] == 1
    el = rv.ELU(2.0)
    el.forward(x)
    de = el.backward(np.ones_like(x))
    assert de[0, 4] == 2 and de[0, -1] == 1 and de[0, 0] == 0  # x == 0: the left derivative


def test_activations_keep_higher_rank_shapes_and_convert_ints(rng):
    x = rng.normal(size=(3, 4, 5))
    for make in list(ACTS.values()) + [lambda: rv.Dropout(0.3, seed=0)]:
        layer = make()
        y = layer.forward(x)
        assert y.shape == x.shape and y.dtype == np.float64
        assert layer.backward(np.ones_like(x)).shape == x.shape
        yi = layer.forward(np.arange(-6, 6).reshape(3, 4))
        assert yi.dtype == np.float32


# -- kernels: thread count never changes a bit ----------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 33, 129, 4103])
def test_elementwise_kernels_bitwise_identical_for_1_and_2_threads(rng, dtype, n):
    """Called directly, so two threads run even below the layers' parallel cut-off."""
    x = _act_input("ELU", rng, n, dtype)
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


@pytest.mark.parametrize("n,c", [(2, 1), (7, 17), (33, 33), (5, 129), (65, 257)])
def test_batchnorm_kernels_bitwise_identical_for_1_and_2_threads(rng, dtype, n, c):
    x = readonly((3 * rng.normal(size=(n, c)) + 1).astype(dtype))
    dy = readonly(rng.normal(size=(n, c)).astype(dtype))
    w, b = readonly(rng.normal(size=c).astype(dtype)), readonly(rng.normal(size=c).astype(dtype))
    res = []
    for t in (1, 2):
        mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
        out, dx = np.empty((n, c), dtype), np.empty((n, c), dtype)
        dw, db = np.empty(c, dtype), np.empty(c, dtype)
        norm.batchnorm_forward_train(x, w, b, 1e-5, mean, var, invstd, out, t)
        norm.batchnorm_backward(x, dy, mean, invstd, w, True, dw, db, dx, t)
        ev = np.empty((n, c), dtype)
        norm.batchnorm_forward_apply(x, mean, invstd, np.zeros(c), ev, t)
        res.append((mean, var, invstd, out, dx, dw, db, ev))
    for a, b_ in zip(*res):
        np.testing.assert_array_equal(a, b_)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(res[0][0], x64.mean(axis=0), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(res[0][1], x64.var(axis=0), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["LeakyReLU", "GELU", "ELU", "Dropout", "BatchNorm1d"])
def test_layers_bitwise_identical_for_1_and_2_threads(rng, dtype, name):
    shape = (129, 257)
    x = _act_input("ELU", rng, shape, dtype)
    r = np.cos(np.arange(x.size, dtype=dtype)).reshape(shape)
    results = []
    try:
        for t in (1, 2):
            rv.set_num_threads(t)
            if name == "Dropout":
                layer = rv.Dropout(0.4, seed=11)
            elif name == "BatchNorm1d":
                layer = rv.BatchNorm1d(257, dtype=dtype)
                layer.weight.data[:] = np.linspace(-2, 2, 257)
            else:
                layer = ACTS[name]()
            y = layer.forward(x)
            dx = layer.backward(r)
            results.append([y, dx] + [p.grad.copy() for p in layer.parameters()]
                           + [b.copy() for _, b in getattr(layer, "named_buffers", list)()])
    finally:
        rv.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# -- read-only inputs -----------------------------------------------------------------------------
def _make(name, dtype):
    if name == "Dropout":
        return rv.Dropout(0.3, seed=5)
    if name == "BatchNorm1d":
        layer = rv.BatchNorm1d(33, dtype=dtype)
        layer.weight.data[:] = np.linspace(0.5, 2, 33)
        layer.bias.data[:] = np.linspace(-1, 1, 33)
        return layer
    if name == "Flatten":
        return rv.Flatten()
    return ACTS[name]()


@pytest.mark.parametrize("name", list(ACTS) + ["Dropout", "BatchNorm1d", "Flatten"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_readonly_inputs_give_same_results(rng, dtype, name, training):
    x = _act_input("ELU", rng, (17, 33), dtype)
    r = rng.normal(size=(17, 33)).astype(dtype)
    ref_layer, ro_layer = _make(name, dtype), _make(name, dtype)
    ref_layer.training = ro_layer.training = training
    y_ref = ref_layer.forward(x.copy())
    dx_ref = ref_layer.backward(r.copy())
    x_ro, r_ro = readonly(x), readonly(r)
    y = ro_layer.forward(x_ro)
    dx = ro_layer.backward(r_ro)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for p, q in zip(ro_layer.parameters(), ref_layer.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    np.testing.assert_array_equal(x_ro, x)  # inputs untouched
    np.testing.assert_array_equal(r_ro, r)
    if name != "Flatten":  # Flatten returns a view of its input, as numpy's reshape
        assert y.flags.writeable and dx.flags.writeable


# -- Dropout --------------------------------------------------------------------------------------
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


# -- Flatten --------------------------------------------------------------------------------------
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


# -- BatchNorm1d ----------------------------------------------------------------------------------
def _bn_ref(x, w, b, eps_, dy):
    """float64 reference: training-mode output and gradients, plus error-bound scales."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (x, w, b, dy))
    n = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    invstd = 1 / np.sqrt(var + eps_)
    xhat = (x - mean) * invstd
    y = xhat * w + b
    db = dy.sum(axis=0)
    dw = (dy * xhat).sum(axis=0)
    dx = w * invstd * (dy - db / n - xhat * dw / n)
    # Error scales: xhat = (x - mean) * invstd carries eps * invstd * (|mean| + |x - mean|) (the
    # mean itself is rounded), which is much more than eps * |xhat| when |mean| >> std.
    cond = invstd * (np.abs(mean) + np.abs(x - mean))
    ady = np.abs(dy)
    scale = {"y": np.abs(w) * cond + np.abs(b),
             "dx": np.abs(w) * invstd * (ady + ady.mean(axis=0) + cond * (ady * cond).mean(axis=0)),
             "dw": (ady * cond).sum(axis=0), "db": ady.sum(axis=0)}
    return {"y": y, "dx": dx, "dw": dw, "db": db, "mean": mean, "var": var,
            "uvar": var * n / max(n - 1, 1)}, scale


def _bn_input(rng, shape, dtype):
    # a mean far from zero and spread that differs per feature
    return (rng.normal(size=shape) * np.linspace(0.5, 3, shape[1]) + 5).astype(dtype)


def _bn_layer(rng, c, dtype, **kw):
    layer = rv.BatchNorm1d(c, dtype=dtype, **kw)
    if layer.affine:
        layer.weight.data[:] = rng.normal(size=c)
        layer.bias.data[:] = rng.normal(size=c)
    return layer


@pytest.mark.parametrize("shape", BN_SHAPES, ids=[f"{a}x{b}" for a, b in BN_SHAPES])
def test_batchnorm_backward_matches_finite_differences_training(rng, shape):
    n, c = shape
    layer = _bn_layer(rng, c, np.float64)
    x = _bn_input(rng, shape, np.float64)
    r = rng.normal(size=shape)
    layer.forward(x)
    dx = layer.backward(r)
    dw, db = layer.weight.grad.copy(), layer.bias.grad.copy()

    def obj(_):
        return float(np.sum(r * layer.forward(x)))

    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)
    check_gradient(obj, layer.weight.data, dw, rng)
    check_gradient(obj, layer.bias.data, db, rng)


@pytest.mark.parametrize("shape", [(1, 1), (1, 33), (7, 7), (129, 257)],
                         ids=["1x1", "1x33", "7x7", "129x257"])
def test_batchnorm_backward_matches_finite_differences_eval(rng, shape):
    n, c = shape
    layer = _bn_layer(rng, c, np.float64)
    layer.running_mean[:] = rng.normal(size=c)
    layer.running_var[:] = rng.uniform(0.5, 2, size=c)
    layer.training = False
    x = _bn_input(rng, shape, np.float64)
    r = rng.normal(size=shape)
    layer.forward(x)
    dx = layer.backward(r)
    dw, db = layer.weight.grad.copy(), layer.bias.grad.copy()

    def obj(_):
        return float(np.sum(r * layer.forward(x)))

    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)
    check_gradient(obj, layer.weight.data, dw, rng)
    check_gradient(obj, layer.bias.data, db, rng)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=[f"{a}x{b}" for a, b in BN_SHAPES])
def test_batchnorm_training_matches_float64_reference(rng, dtype, num_threads, shape):
    """Every element, against a float64 NumPy evaluation of the formulas."""
    n, c = shape
    layer = _bn_layer(rng, c, dtype)
    x = _bn_input(rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(r)
    ref, scale = _bn_ref(x, layer.weight.data, layer.bias.data, 1e-5, r)
    tol = 8 * eps(dtype)
    _assert_within(y, ref["y"], tol * scale["y"], "y")
    _assert_within(dx, ref["dx"], tol * scale["dx"], "dx")
    _assert_within(layer.weight.grad, ref["dw"], tol * scale["dw"], "dweight")
    _assert_within(layer.bias.grad, ref["db"], tol * scale["db"], "dbias")
    _assert_within(layer.running_mean, 0.1 * ref["mean"], tol * (np.abs(ref["mean"]) + 1),
                   "running_mean")
    _assert_within(layer.running_var, 0.9 + 0.1 * ref["uvar"], tol * (np.abs(ref["uvar"]) + 1),
                   "running_var")


@pytest.mark.parametrize("shape", BN_SHAPES, ids=[f"{a}x{b}" for a, b in BN_SHAPES])
def test_batchnorm_matches_torch_train_then_eval(torch, rng, dtype, num_threads, shape):
    n, c = shape
    layer = _bn_layer(rng, c, dtype)
    tbn = torch.nn.BatchNorm1d(c, dtype=getattr(torch, dtype.name))
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
        tbn.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
    tol = 32 * eps(dtype)

    def step(x, r):
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tbn.zero_grad()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(r.copy()))
        y = layer.forward(x)
        dx = layer.backward(r)
        _, scale = _bn_ref(x, layer.weight.data, layer.bias.data, 1e-5, r)
        _assert_within(y, ty.detach().numpy().astype(np.float64), tol * scale["y"], "y")
        _assert_within(dx, tx.grad.numpy().astype(np.float64), tol * scale["dx"], "dx")
        _assert_within(layer.weight.grad, tbn.weight.grad.numpy().astype(np.float64),
                       tol * scale["dw"], "dweight")
        _assert_within(layer.bias.grad, tbn.bias.grad.numpy().astype(np.float64),
                       tol * scale["db"], "dbias")

    for _ in range(3):  # running statistics after several steps
        step(_bn_input(rng, shape, dtype), rng.normal(size=shape).astype(dtype))
        rm, rvar = tbn.running_mean.numpy(), tbn.running_var.numpy()
        _assert_within(layer.running_mean, rm.astype(np.float64), tol * (np.abs(rm) + 1),
                       "running_mean")
        _assert_within(layer.running_var, rvar.astype(np.float64), tol * (np.abs(rvar) + 1),
                       "running_var")
        assert int(layer.num_batches_tracked) == int(tbn.num_batches_tracked)
    assert layer.running_mean.dtype == dtype and layer.running_var.dtype == dtype
    tbn.eval()
    layer.training = False
    before = [b.copy() for _, b in layer.named_buffers()]
    for m in (1, n):  # evaluation takes a batch of one too
        step(_bn_input(rng, (m, c), dtype), rng.normal(size=(m, c)).astype(dtype))
    for (_, b), b0 in zip(layer.named_buffers(), before):
        np.testing.assert_array_equal(b, b0)  # evaluation leaves the running statistics alone


@pytest.mark.parametrize("kw", [{"momentum": None}, {"affine": False},
                                {"track_running_stats": False}, {"momentum": 0.5, "eps": 1e-3}],
                         ids=["cumulative", "no-affine", "no-running-stats", "momentum-eps"])
def test_batchnorm_options_match_torch(torch, rng, dtype, kw):
    n, c = 33, 17
    layer = _bn_layer(rng, c, dtype, **kw)
    tbn = torch.nn.BatchNorm1d(c, dtype=getattr(torch, dtype.name), **kw)
    if layer.affine:
        with torch.no_grad():
            tbn.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
            tbn.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
    tol = 64 * eps(dtype)
    for mode in ("train", "train", "train", "eval"):
        if mode == "eval":
            tbn.eval()
            layer.training = False
        x = _bn_input(rng, (n, c), dtype)
        r = rng.normal(size=(n, c)).astype(dtype)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tbn.zero_grad()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(r.copy()))
        y, dx = layer.forward(x), layer.backward(r)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol * 4)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * 4)
        if layer.affine:
            np.testing.assert_allclose(layer.weight.grad, tbn.weight.grad.numpy(), rtol=tol,
                                       atol=tol * n)
            np.testing.assert_allclose(layer.bias.grad, tbn.bias.grad.numpy(), rtol=tol,
                                       atol=tol * n)
        if layer.track_running_stats:
            np.testing.assert_allclose(layer.running_mean, tbn.running_mean.numpy(), rtol=tol,
                                       atol=tol)
            np.testing.assert_allclose(layer.running_var, tbn.running_var.numpy(), rtol=tol,
                                       atol=tol)
            assert int(layer.num_batches_tracked) == int(tbn.num_batches_tracked)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {name for name, _ in tbn.named_parameters()}
    assert {name for name, _ in layer.named_buffers()} == {name for name, _ in tbn.named_buffers()}


def test_batchnorm_constant_feature_gives_zero_not_nan(dtype):
    x = np.full((7, 3), 4.0, dtype)
    x[:, 1] = np.arange(7)
    layer = rv.BatchNorm1d(3, dtype=dtype)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y[:, 0], 0)
    np.testing.assert_allclose(y[:, 1].mean(), 0, atol=8 * eps(dtype))


def test_batchnorm_parameters_buffers_config_astype(rng):
    layer = rv.BatchNorm1d(7)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.parameters() == [layer.weight, layer.bias]
    np.testing.assert_array_equal(layer.weight.data, np.ones(7, np.float32))
    np.testing.assert_array_equal(layer.bias.data, np.zeros(7, np.float32))
    bufs = dict(layer.named_buffers())
    assert list(bufs) == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bufs["running_mean"], 0)
    np.testing.assert_array_equal(bufs["running_var"], 1)
    assert bufs["num_batches_tracked"].dtype == np.int64 and bufs["num_batches_tracked"].shape == ()
    layer.forward(rng.normal(size=(5, 7)))
    layer.forward(rng.normal(size=(5, 7)))
    assert int(dict(layer.named_buffers())["num_batches_tracked"]) == 2  # the same arrays, updated
    rm = layer.running_mean.copy()
    assert layer.astype(np.float64) is layer
    for arr in (layer.weight.data, layer.weight.grad, layer.bias.data, layer.running_mean,
                layer.running_var):
        assert arr.dtype == np.float64
    np.testing.assert_array_equal(layer.running_mean, rm.astype(np.float64))
    assert layer.dtype == np.float64
    assert layer.forward(rng.normal(size=(5, 7)).astype(np.float32)).dtype == np.float64
    cfg = layer.config()
    assert cfg == {"num_features": 7, "eps": 1e-5, "momentum": 0.1, "affine": True,
                   "track_running_stats": True}
    assert rv.BatchNorm1d(**cfg).config() == cfg
    bare = rv.BatchNorm1d(3, affine=False, track_running_stats=False, dtype=np.float64)
    assert bare.named_parameters() == [] and bare.named_buffers() == []
    assert bare.astype(np.float32).dtype == np.float32
    assert bare.forward(rng.normal(size=(4, 3))).dtype == np.float32


def test_batchnorm_need_input_grad_false_still_fills_parameter_grads(rng):
    layer = _bn_layer(rng, 17, np.float64)
    x, r = _bn_input(rng, (7, 17), np.float64), rng.normal(size=(7, 17))
    layer.forward(x)
    dx = layer.backward(r)
    grads = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[:] = np.nan
    assert layer.backward(r, need_input_grad=False) is None
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert dx.shape == x.shape


def test_configs_rebuild_layers():
    for layer in [rv.LeakyReLU(0.2), rv.GELU(), rv.ELU(0.5), rv.Dropout(0.25, seed=3),
                  rv.Flatten(), rv.BatchNorm1d(5, eps=1e-3, momentum=None, affine=False)]:
        cfg = layer.config()
        again = type(layer)(**cfg)
        assert again.config() == cfg
        assert repr(again) == repr(layer)
    assert rv.LeakyReLU(0.2).config() == {"negative_slope": 0.2}
    assert rv.ELU(0.5).config() == {"alpha": 0.5}
    assert rv.Dropout(0.25, seed=3).config() == {"p": 0.25, "seed": 3}
    assert rv.GELU().config() == {} and rv.Flatten().config() == {}


# -- in a model -----------------------------------------------------------------------------------
def test_model_with_new_layers_trains_and_eval_is_deterministic(rng):
    n = 200
    X = rng.normal(size=(n, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    model = rv.Sequential([rv.Flatten(), rv.Dense(784, 64, seed=0), rv.BatchNorm1d(64),
                           rv.ReLU(), rv.Dropout(0.2, seed=1), rv.Dense(64, 10, seed=2)])
    names = [name for name, _ in model.named_parameters()]
    assert names == ["1.weight", "1.bias", "2.weight", "2.bias", "5.weight", "5.bias"]
    hist = model.fit(X, y, epochs=4, batch_size=32, seed=0, verbose=0)
    loss = hist.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.8 * loss[0]
    bn = model[2]
    assert int(bn.num_batches_tracked) == 4 * math.ceil(n / 32)
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    assert not model.training and not bn.training and not model[4].training
    p1 = model.predict(X[:33])
    o1 = model.forward(X[:33])
    o2 = model.forward(X[:33])
    np.testing.assert_array_equal(o1, o2)  # eval: running statistics, no dropout
    np.testing.assert_array_equal(model.predict(X[:33]), p1)
    # evaluation mode computes exactly the eval-mode layers in sequence
    h = model[1].forward(X[:5])
    h = (h - bn.running_mean) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps) \
        * bn.weight.data + bn.bias.data
    ref = model[5].forward(np.maximum(h, 0).astype(np.float32))
    np.testing.assert_allclose(model.forward(X[:5]), ref, rtol=1e-4, atol=1e-4)
    model.train()
    assert not np.array_equal(model.forward(X[:33]), model.forward(X[:33]))  # dropout is back


def test_model_with_new_layers_float64_and_gelu_elu_leaky(rng):
    X = rng.normal(size=(64, 3, 11))
    y = rng.integers(0, 3, size=64)
    model = rv.Sequential([rv.Flatten(), rv.Dense(33, 16, seed=0), rv.BatchNorm1d(16),
                           rv.GELU(), rv.Dense(16, 16, seed=1), rv.ELU(), rv.Dropout(0.1, seed=2),
                           rv.Dense(16, 16, seed=3), rv.LeakyReLU(0.1), rv.Dense(16, 3, seed=4)],
                          dtype=np.float64)
    assert model[2].running_mean.dtype == np.float64
    hist = model.fit(X.reshape(64, 33), y, epochs=5, batch_size=16, seed=0, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    out = model.forward(X)  # images-like 3-D input goes through Flatten
    assert out.dtype == np.float64 and out.shape == (64, 3)


# -- bad inputs -----------------------------------------------------------------------------------
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


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"num_features": 0}, ValueError, "num_features must be >= 1"),
    ({"num_features": -3}, ValueError, "num_features"),
    ({"num_features": 2.5}, TypeError, "num_features must be an int"),
    ({"num_features": None}, TypeError, "num_features"),
    ({"num_features": 4, "eps": 0.0}, ValueError, "eps must be > 0"),
    ({"num_features": 4, "eps": "a"}, TypeError, "eps must be a number"),
    ({"num_features": 4, "momentum": 1.5}, ValueError, "momentum must be <= 1"),
    ({"num_features": 4, "momentum": -0.1}, ValueError, "momentum must be >= 0"),
    ({"num_features": 4, "momentum": "fast"}, TypeError, "momentum must be a number"),
    ({"num_features": 4, "affine": "yes"}, TypeError, "affine must be True or False"),
    ({"num_features": 4, "track_running_stats": 1}, TypeError, "track_running_stats"),
    ({"num_features": 4, "dtype": np.int32}, TypeError, "dtype must be float32 or float64"),
])
def test_batchnorm_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rv.BatchNorm1d(**kwargs)


@pytest.mark.parametrize("cls,arg,name", [(rv.LeakyReLU, "negative_slope", "negative_slope"),
                                          (rv.ELU, "alpha", "alpha")])
def test_activation_bad_arguments(cls, arg, name):
    for bad in ("0.1", None, True, [0.1]):
        with pytest.raises(TypeError, match=f"{name} must be a number"):
            cls(**{arg: bad})
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            cls(**{arg: bad})


def test_batchnorm_bad_inputs(rng):
    layer = rv.BatchNorm1d(7)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((3, 7)))
    with pytest.raises(ValueError, match=r"expects 7 features \(num_features\)"):
        layer.forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        layer.forward(np.ones(7))
    with pytest.raises(ValueError, match="2-D"):
        layer.forward(np.ones((3, 7, 2)))
    with pytest.raises(TypeError, match="numeric"):
        layer.forward(np.array([["a"] * 7] * 3))
    with pytest.raises(ValueError, match="more than 1 sample"):
        layer.forward(np.ones((1, 7)))
    with pytest.raises(ValueError, match="more than 1 sample"):
        _eval(rv.BatchNorm1d(7, track_running_stats=False)).forward(np.ones((1, 7)))
    assert _eval(rv.BatchNorm1d(7)).forward(np.ones((1, 7))).shape == (1, 7)  # running stats
    assert int(layer.num_batches_tracked) == 0  # failed calls changed nothing
    layer.forward(rng.normal(size=(3, 7)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((3, 6)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((2, 7)))


def _eval(layer):
    layer.training = False
    return layer


def test_new_layers_bad_inputs():
    for layer in (rv.LeakyReLU(), rv.GELU(), rv.ELU(), rv.Dropout(0.5), rv.Flatten()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.ones((2, 2)))
        with pytest.raises(TypeError, match="numeric"):
            layer.forward(np.array([["a", "b"]]))
        layer.forward(np.ones((2, 3, 2)))
        with pytest.raises(ValueError, match="grad_output must have shape"):
            layer.backward(np.ones((2, 5)))
    for bad in (np.ones(5), np.float64(3.0)):
        with pytest.raises(ValueError, match="at least 2-D"):
            rv.Flatten().forward(bad)
    with pytest.raises(TypeError, match="numeric array"):
        rv.Flatten().forward("images")


def test_need_input_grad_false_returns_none(rng):
    x = rng.normal(size=(3, 5))
    for layer in (rv.LeakyReLU(), rv.GELU(), rv.ELU(), rv.Dropout(0.5, seed=0), rv.Flatten()):
        layer.forward(x)
        assert layer.backward(np.ones((3, 5)), need_input_grad=False) is None
