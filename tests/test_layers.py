"""Layers at the API level: backward against central finite differences (float64) at awkward sizes,
forward/backward against numpy and torch, read-only inputs, dtypes, threads, initialisation."""
import numpy as np
import pytest

import ranvier as rv
from conftest import AWKWARD, check_gradient, eps, readonly


# (batch, in_features, out_features) drawn from the awkward sizes (1, primes, block edges +- 1)
DENSE_SIZES = [(1, 1, 1), (2, 5, 7), (7, 15, 16), (17, 31, 33), (5, 63, 65), (2, 127, 129),
               (2, 257, 17), (33, 17, 257)]
# (batch, features) for the elementwise layers and Softmax; (129, 257) is past the parallel cut-off
ACT_SHAPES = [(1, 1), (2, 7), (5, 16), (17, 33), (7, 65), (2, 129), (1, 257), (129, 257)]
assert {d for s in DENSE_SIZES for d in s} <= set(AWKWARD)
assert {d for s in ACT_SHAPES for d in s} <= set(AWKWARD)

ACTIVATIONS = {"ReLU": rv.ReLU, "Sigmoid": rv.Sigmoid, "Tanh": rv.Tanh, "Softmax": rv.Softmax}


def _np_act(name, x):
    if name == "ReLU":
        return np.maximum(x, 0)
    if name == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "Tanh":
        return np.tanh(x)
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _act_input(name, rng, shape, dtype=np.float64):
    x = rng.normal(0.0, 2.0, size=shape)
    if name == "ReLU":  # keep every element at least 0.05 away from the kink at 0
        x = np.sign(x) * (0.05 + np.abs(x))
    return x.astype(dtype)


# -- finite differences ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,fin,fout", DENSE_SIZES)
def test_dense_backward_matches_finite_differences(rng, n, fin, fout):
    layer = rv.Dense(fin, fout, dtype=np.float64, seed=1)
    layer.bias.data[:] = rng.normal(size=fout)  # non-zero bias
    x = rng.normal(size=(n, fin))
    r = rng.normal(size=(n, fout))  # objective: sum(r * layer(x))
    layer.forward(x)
    dx = layer.backward(r)
    dw, db = layer.weight.grad.copy(), layer.bias.grad.copy()
    assert dx.shape == x.shape and dw.shape == (fout, fin) and db.shape == (fout,)

    def obj(_):
        return float(np.sum(r * layer.forward(x)))

    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)
    check_gradient(obj, layer.weight.data, dw, rng)
    check_gradient(obj, layer.bias.data, db, rng)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=[f"{a}x{b}" for a, b in ACT_SHAPES])
def test_activation_backward_matches_finite_differences(rng, name, shape):
    layer = ACTIVATIONS[name]()
    x = _act_input(name, rng, shape)
    r = rng.normal(size=shape)
    layer.forward(x)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=[f"{a}x{b}" for a, b in ACT_SHAPES])
def test_activation_forward_backward_match_numpy(rng, dtype, name, shape):
    """Every element (the finite-difference test samples coordinates of large arrays)."""
    x = _act_input(name, rng, shape, dtype)
    layer = ACTIVATIONS[name]()
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    ref = _np_act(name, x.astype(np.float64))
    np.testing.assert_allclose(y, ref, rtol=8 * eps(dtype), atol=8 * eps(dtype))
    r = rng.normal(size=shape).astype(dtype)
    dx = layer.backward(r)
    r64 = r.astype(np.float64)
    if name == "ReLU":
        ref_dx = np.where(x > 0, r64, 0.0)
    elif name == "Sigmoid":
        ref_dx = r64 * ref * (1 - ref)
    elif name == "Tanh":
        ref_dx = r64 * (1 - ref ** 2)
    else:
        ref_dx = ref * (r64 - np.sum(r64 * ref, axis=1, keepdims=True))
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, ref_dx, rtol=32 * eps(dtype), atol=32 * eps(dtype))


@pytest.mark.parametrize("n,fin,fout", DENSE_SIZES)
def test_dense_forward_matches_numpy(rng, dtype, n, fin, fout):
    layer = rv.Dense(fin, fout, dtype=dtype, seed=2)
    layer.bias.data[:] = rng.normal(size=fout)
    x = rng.normal(size=(n, fin)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == (n, fout)
    w, b, x64 = (a.astype(np.float64) for a in (layer.weight.data, layer.bias.data, x))
    ref = x64 @ w.T + b
    bound = np.abs(x64) @ np.abs(w).T + np.abs(b)  # forward-error bound scale: k * eps * |x||w|
    assert np.all(np.abs(y - ref) <= 2 * (fin + 1) * eps(dtype) * bound)


# -- read-only inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Dense"] + list(ACTIVATIONS))
def test_readonly_inputs_give_same_results(rng, dtype, name):
    n, d = 17, 33

    def make():
        return rv.Dense(d, 15, dtype=dtype, seed=3) if name == "Dense" else ACTIVATIONS[name]()

    x = _act_input(name, rng, (n, d), dtype)
    r = rng.normal(size=(n, 15 if name == "Dense" else d)).astype(dtype)
    ref_layer, ro_layer = make(), make()
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
    assert y.flags.writeable and dx.flags.writeable


def test_dense_readonly_float64_finite_differences(rng):
    layer = rv.Dense(31, 7, dtype=np.float64, seed=4)
    x, r = readonly(rng.normal(size=(5, 31))), readonly(rng.normal(size=(5, 7)))
    layer.forward(x)
    dx = layer.backward(r)
    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), np.array(x), dx, rng)


# -- Dense semantics ------------------------------------------------------------------------------
def test_dense_weight_layout_and_parameters():
    layer = rv.Dense(5, 3, seed=0)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    assert isinstance(layer.weight, rv.Parameter)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.parameters() == [layer.weight, layer.bias]
    assert layer.weight.grad.shape == layer.weight.data.shape
    assert layer.weight.dtype == np.float32 and layer.dtype == np.float32


def test_dense_without_bias(rng):
    layer = rv.Dense(7, 5, bias=False, dtype=np.float64, seed=0)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = rng.normal(size=(4, 7))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.data.T, rtol=1e-13)
    r = rng.normal(size=(4, 5))
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, r @ layer.weight.data, rtol=1e-13)
    np.testing.assert_allclose(layer.weight.grad, r.T @ x, rtol=1e-13)


def test_dense_backward_overwrites_grads_and_need_input_grad(rng):
    layer = rv.Dense(16, 17, dtype=np.float64, seed=0)
    x, r = rng.normal(size=(5, 16)), rng.normal(size=(5, 17))
    layer.forward(x)
    layer.backward(r)
    first = [p.grad.copy() for p in layer.parameters()]
    assert layer.backward(r, need_input_grad=False) is None  # second call: same grads, not 2x
    for p, g in zip(layer.parameters(), first):
        np.testing.assert_array_equal(p.grad, g)
    np.testing.assert_allclose(first[1], r.sum(axis=0), rtol=1e-13)


def test_dense_same_seed_same_weights_different_seed_different():
    a, b, c = rv.Dense(33, 17, seed=7), rv.Dense(33, 17, seed=7), rv.Dense(33, 17, seed=8)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    np.testing.assert_array_equal(a.bias.data, np.zeros(17, np.float32))


@pytest.mark.parametrize("init,fan", [("he_uniform", "in"), ("he_normal", "in"), ("he", "in"),
                                      ("xavier_uniform", "sum"), ("xavier_normal", "sum"),
                                      ("xavier", "sum")])
def test_dense_init_scale(init, fan):
    fin, fout = 257, 129
    w = rv.Dense(fin, fout, init=init, seed=0, dtype=np.float64).weight.data
    std = np.sqrt(2.0 / fin) if fan == "in" else np.sqrt(2.0 / (fin + fout))
    assert abs(w.std() / std - 1) < 0.03  # 33k samples: the sample std is within ~1% of std
    assert abs(w.mean()) < 0.03 * std
    if init.endswith("uniform") or init in ("he", "xavier"):
        assert np.abs(w).max() <= np.sqrt(3.0) * std


def test_dense_converts_input_dtype(rng):
    layer = rv.Dense(5, 3, seed=0)  # float32
    y64 = layer.forward(rng.normal(size=(4, 5)))  # float64 in
    assert y64.dtype == np.float32
    yint = layer.forward(rng.integers(-3, 4, size=(4, 5)))
    assert yint.dtype == np.float32
    dx = layer.backward(rng.normal(size=(4, 3)))  # float64 grad_output
    assert dx.dtype == np.float32 and layer.weight.grad.dtype == np.float32


@pytest.mark.parametrize("name", ["Dense"] + list(ACTIVATIONS))
def test_output_and_grad_dtypes(rng, dtype, name):
    layer = rv.Dense(7, 5, dtype=dtype, seed=0) if name == "Dense" else ACTIVATIONS[name]()
    x = rng.normal(size=(3, 7)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(rng.normal(size=y.shape).astype(dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    assert all(p.data.dtype == dtype and p.grad.dtype == dtype for p in layer.parameters())


@pytest.mark.parametrize("name", ["Dense"] + list(ACTIVATIONS))
def test_backward_before_forward_raises(name):
    layer = rv.Dense(3, 2) if name == "Dense" else ACTIVATIONS[name]()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 2), np.float32))


def test_layer_astype_converts_parameters(rng):
    layer = rv.Dense(5, 4, seed=0)
    w32 = layer.weight.data.copy()
    assert layer.astype(np.float64) is layer
    assert layer.weight.dtype == np.float64 and layer.weight.grad.dtype == np.float64
    assert layer.bias.dtype == np.float64
    np.testing.assert_array_equal(layer.weight.data, w32.astype(np.float64))
    assert layer.forward(rng.normal(size=(2, 5)).astype(np.float32)).dtype == np.float64


# -- activations: numerics ------------------------------------------------------------------------
def test_sigmoid_tanh_saturate_without_overflow(dtype):
    x = np.array([[-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]], dtype)
    with np.errstate(all="raise"):
        s = rv.Sigmoid().forward(x)
        t = rv.Tanh().forward(x)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t))
    assert s[0, 0] == 0 and s[0, -1] == 1 and s[0, 3] == 0.5
    assert t[0, 0] == -1 and t[0, -1] == 1 and t[0, 3] == 0


def test_softmax_rows_sum_to_one_for_huge_logits(rng, dtype):
    x = (rng.normal(size=(65, 17)) * 1e4).astype(dtype)
    y = rv.Softmax().forward(x)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=20 * eps(dtype))
    np.testing.assert_array_equal(y.argmax(axis=1), x.argmax(axis=1))
    np.testing.assert_allclose(y, _np_act("Softmax", x.astype(np.float64)), atol=20 * eps(dtype))


def test_softmax_is_shift_invariant(rng):
    x = rng.normal(size=(7, 15))
    np.testing.assert_allclose(rv.Softmax().forward(x), rv.Softmax().forward(x + 1e3), rtol=1e-11)


def test_relu_gradient_is_zero_for_negative_inputs(rng):
    x = _act_input("ReLU", rng, (5, 16))
    layer = rv.ReLU()
    layer.forward(x)
    r = rng.normal(size=x.shape)
    np.testing.assert_array_equal(layer.backward(r), np.where(x > 0, r, 0.0))


def test_elementwise_layers_keep_higher_rank_shapes(rng):
    x = rng.normal(size=(3, 4, 5))
    for cls in (rv.ReLU, rv.Sigmoid, rv.Tanh):
        layer = cls()
        y = layer.forward(x)
        assert y.shape == x.shape
        assert layer.backward(np.ones_like(x)).shape == x.shape


# -- threads ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Dense"] + list(ACTIVATIONS))
def test_layers_bitwise_identical_for_1_and_2_threads(rng, dtype, name):
    """Work sizes past the parallel cut-off (32768): each output element is computed the same way
    whatever the thread count."""
    shape = (129, 257)
    x = _act_input(name, rng, shape, dtype)
    results = []
    try:
        for t in (1, 2):
            rv.set_num_threads(t)
            layer = rv.Dense(257, 129, dtype=dtype, seed=5) if name == "Dense" else \
                ACTIVATIONS[name]()
            y = layer.forward(x)
            dx = layer.backward(np.cos(np.arange(y.size, dtype=dtype)).reshape(y.shape))
            results.append([y, dx] + [p.grad.copy() for p in layer.parameters()])
    finally:
        rv.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_dense_results_do_not_depend_on_threads_fixture(rng, dtype, num_threads):
    """Forward/backward under the conftest thread matrix agree with numpy (float64 reference)."""
    layer = rv.Dense(129, 257, dtype=dtype, seed=6)
    x = rng.normal(size=(65, 129)).astype(dtype)
    r = rng.normal(size=(65, 257)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(r)
    w64, x64, r64 = (a.astype(np.float64) for a in (layer.weight.data, x, r))
    tol = 200 * eps(dtype)
    np.testing.assert_allclose(y, x64 @ w64.T, rtol=tol, atol=tol * np.sqrt(129))
    np.testing.assert_allclose(dx, r64 @ w64, rtol=tol, atol=tol * np.sqrt(257))
    np.testing.assert_allclose(layer.weight.grad, r64.T @ x64, rtol=tol, atol=tol * np.sqrt(65) * 4)
    np.testing.assert_allclose(layer.bias.grad, r64.sum(axis=0), rtol=tol, atol=tol * 8)


# -- torch -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_forward_backward_match_torch(torch, rng, dtype, name):
    x = _act_input(name, rng, (17, 33), dtype)
    r = rng.normal(size=x.shape).astype(dtype)
    layer = ACTIVATIONS[name]()
    y = layer.forward(x)
    dx = layer.backward(r)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    fn = {"ReLU": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
          "Softmax": lambda t: torch.softmax(t, dim=1)}[name]
    ty = fn(tx)
    ty.backward(torch.from_numpy(r.copy()))
    tol = 16 * eps(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * 4)


@pytest.mark.parametrize("n,fin,fout", DENSE_SIZES[:6])
def test_dense_matches_torch_linear(torch, rng, dtype, n, fin, fout):
    layer = rv.Dense(fin, fout, dtype=dtype, seed=9)
    layer.bias.data[:] = rng.normal(size=fout)
    lin = torch.nn.Linear(fin, fout, dtype=getattr(torch, dtype.name))
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
        lin.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
    x = rng.normal(size=(n, fin)).astype(dtype)
    r = rng.normal(size=(n, fout)).astype(dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = lin(tx)
    ty.backward(torch.from_numpy(r.copy()))
    y = layer.forward(x)
    dx = layer.backward(r)
    tol = 100 * eps(dtype)
    scale = np.sqrt(max(fin, fout, n))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(layer.weight.grad, lin.weight.grad.numpy(), rtol=tol,
                               atol=tol * scale)
    np.testing.assert_allclose(layer.bias.grad, lin.bias.grad.numpy(), rtol=tol, atol=tol * scale)
