"""Dense at the API level: backward against central finite differences (float64) and forward
against a float64 NumPy product at awkward sizes, read-only inputs, weight layout, bias, seeds,
initialisation scales, dtypes, threads and torch.nn.Linear."""
import numpy as np
import pytest

import ranvier as rv
from _layers import check_layer_gradients
from _reference import check_gradient
from conftest import AWKWARD, eps, readonly

# (batch, in_features, out_features) drawn from the awkward sizes (1, primes, block edges +- 1)
DENSE_SIZES = [(1, 1, 1), (2, 5, 7), (7, 15, 16), (17, 31, 33), (5, 63, 65), (2, 127, 129),
               (2, 257, 17), (33, 17, 257)]
assert {d for s in DENSE_SIZES for d in s} <= set(AWKWARD)


@pytest.mark.quick
@pytest.mark.parametrize("n,fin,fout", DENSE_SIZES)
def test_dense_backward_matches_finite_differences(rng, n, fin, fout):
    layer = rv.Dense(fin, fout, dtype=np.float64, seed=1)
    layer.bias.data[:] = rng.normal(size=fout)  # non-zero bias
    x = rng.normal(size=(n, fin))
    r = rng.normal(size=(n, fout))  # objective: sum(r * layer(x))
    dx = check_layer_gradients(layer, x, r, rng)
    assert dx.shape == x.shape and layer.weight.grad.shape == (fout, fin)
    assert layer.bias.grad.shape == (fout,)


@pytest.mark.quick
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


def test_dense_readonly_float64_finite_differences(rng):
    layer = rv.Dense(31, 7, dtype=np.float64, seed=4)
    x, r = readonly(rng.normal(size=(5, 31))), readonly(rng.normal(size=(5, 7)))
    layer.forward(x)
    dx = layer.backward(r)
    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), np.array(x), dx, rng)


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


def test_dense_torch_init_as_linear(torch):
    layer = rv.Dense(300, 200, init="torch", seed=0)
    bound = 1 / np.sqrt(300)  # nn.Linear: weight and bias uniform in +-1 / sqrt(in_features)
    torch.manual_seed(0)
    t = torch.nn.Linear(300, 200)
    for mine, theirs in ((layer.weight.data, t.weight), (layer.bias.data, t.bias)):
        theirs = theirs.detach().numpy()
        assert mine.shape == theirs.shape and mine.dtype == np.float32
        for p in (mine, theirs):  # U(-bound, bound): max near bound, mean 0, variance bound^2/3
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
            assert abs(p.mean()) < 4 * bound / np.sqrt(3 * p.size)
            assert abs(p.var() / (bound ** 2 / 3) - 1) < 0.3
    assert rv.Dense(3, 2, init="torch").config()["init"] == "torch"
    assert not rv.Dense(3, 2, init="torch", bias=False).use_bias


def test_dense_converts_input_dtype(rng):
    layer = rv.Dense(5, 3, seed=0)  # float32
    y64 = layer.forward(rng.normal(size=(4, 5)))  # float64 in
    assert y64.dtype == np.float32
    yint = layer.forward(rng.integers(-3, 4, size=(4, 5)))
    assert yint.dtype == np.float32
    dx = layer.backward(rng.normal(size=(4, 3)))  # float64 grad_output
    assert dx.dtype == np.float32 and layer.weight.grad.dtype == np.float32


def test_layer_astype_converts_parameters(rng):
    layer = rv.Dense(5, 4, seed=0)
    w32 = layer.weight.data.copy()
    assert layer.astype(np.float64) is layer
    assert layer.weight.dtype == np.float64 and layer.weight.grad.dtype == np.float64
    assert layer.bias.dtype == np.float64
    np.testing.assert_array_equal(layer.weight.data, w32.astype(np.float64))
    assert layer.forward(rng.normal(size=(2, 5)).astype(np.float32)).dtype == np.float64


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


