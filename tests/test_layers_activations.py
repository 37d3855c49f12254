"""Activation layers (ReLU, Sigmoid, Tanh, Softmax, LeakyReLU, GELU, ELU, SiLU): backward against
central finite differences (float64), forward/backward against the float64 references of
_reference.py and torch autograd at awkward sizes, both dtypes, 1 and 2 threads; exact LeakyReLU,
saturation and special values; every entry of the native activation table (csrc/activations.h)
as a layer; argument checks."""
import numpy as np
import pytest

import _reference as ref64
import ranvier as rv
from _assert import assert_within
from _layers import ACTIVATIONS, act_input
from _reference import check_gradient
from conftest import AWKWARD, eps
from ranvier._kernels.activations import ACTIVATIONS as TABLE

# (batch, features); (129, 257) is past the parallel cut-off (32768 elements), so the num_threads
# fixture really runs two threads there
ACT_SHAPES = [(1, 1), (2, 7), (5, 16), (17, 33), (7, 65), (2, 129), (1, 257), (129, 257)]
NEW_SHAPES = [(1, 1), (2, 7), (7, 33), (33, 129), (1, 257), (129, 257)]
assert {d for s in ACT_SHAPES + NEW_SHAPES for d in s} <= set(AWKWARD)
BASIC = ["ReLU", "Sigmoid", "Tanh", "Softmax"]
NEW = ["LeakyReLU", "GELU", "ELU"]
# the first four at every ACT_SHAPES size, the others at NEW_SHAPES
FD_CASES = [(n, s) for n in BASIC for s in ACT_SHAPES] + [(n, s) for n in NEW for s in NEW_SHAPES]
TABLE_NAME = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}


def _shape_id(shape):
    return f"{shape[0]}x{shape[1]}"


# -- finite differences and float64 references ----------------------------------------------------
@pytest.mark.parametrize("name,shape", FD_CASES, ids=[f"{n}-{_shape_id(s)}" for n, s in FD_CASES])
def test_activation_backward_matches_finite_differences(rng, name, shape):
    layer = ACTIVATIONS[name]()
    x = act_input(name, rng, shape)
    r = rng.normal(size=shape)
    layer.forward(x)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    check_gradient(lambda xx: float(np.sum(r * layer.forward(xx))), x.copy(), dx, rng)


@pytest.mark.quick
@pytest.mark.parametrize("name", BASIC)
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=[_shape_id(s) for s in ACT_SHAPES])
def test_activation_forward_backward_match_numpy(rng, dtype, name, shape):
    """Every element (the finite-difference test samples coordinates of large arrays)."""
    x = act_input(name, rng, shape, dtype)
    layer = ACTIVATIONS[name]()
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    x64 = x.astype(np.float64)
    ref = ref64.softmax(x64) if name == "Softmax" else ref64.activation(TABLE_NAME[name], x64)
    np.testing.assert_allclose(y, ref, rtol=8 * eps(dtype), atol=8 * eps(dtype))
    r = rng.normal(size=shape).astype(dtype)
    dx = layer.backward(r)
    r64 = r.astype(np.float64)
    if name == "Softmax":
        ref_dx = ref64.softmax_grad(ref, r64)
    else:
        ref_dx = r64 * ref64.activation_grad(TABLE_NAME[name], x64)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, ref_dx, rtol=32 * eps(dtype), atol=32 * eps(dtype))


# -- torch ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASIC)
def test_activation_forward_backward_match_torch(torch, rng, dtype, name):
    x = act_input(name, rng, (17, 33), dtype)
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


def _torch_act(torch, name):
    return {"LeakyReLU": torch.nn.LeakyReLU(0.07), "GELU": torch.nn.GELU(),
            "ELU": torch.nn.ELU(0.7)}[name]


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("shape", NEW_SHAPES, ids=[_shape_id(s) for s in NEW_SHAPES])
def test_activation_matches_torch(torch, rng, dtype, num_threads, name, shape):
    """Against torch autograd in the same dtype and in float64. Bounds are a few eps of the value
    plus eps * |x|: GELU's 1 + erf(x / sqrt 2) cancels for negative x, in torch too."""
    x = act_input(name, rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    layer = ACTIVATIONS[name]()
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
        assert_within(y, ref_y, tol * (np.abs(ref_y) + x64 + 1), f"{name} forward vs torch")
        assert_within(dx, ref_dx, tol * (np.abs(ref_dx) + np.abs(r) * (x64 + 1)),
                      f"{name} backward vs torch")


# -- values: exactness, saturation, special inputs ------------------------------------------------
@pytest.mark.parametrize("shape", NEW_SHAPES, ids=[_shape_id(s) for s in NEW_SHAPES])
def test_leaky_relu_is_exact(rng, dtype, shape):
    """One multiply per element: the result is the correctly rounded x * slope, bit for bit."""
    x = act_input("LeakyReLU", rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    layer = rv.LeakyReLU(0.07)
    s = dtype.type(0.07)
    np.testing.assert_array_equal(layer.forward(x), np.where(x > 0, x, x * s))
    np.testing.assert_array_equal(layer.backward(r), np.where(x > 0, r, r * s))


def test_leaky_relu_negative_and_zero_slopes_use_the_input_sign(rng):
    x = act_input("LeakyReLU", rng, (7, 33))
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
    np.testing.assert_allclose(y, ref64.softmax(x), atol=20 * eps(dtype))


def test_softmax_is_shift_invariant(rng):
    x = rng.normal(size=(7, 15))
    np.testing.assert_allclose(rv.Softmax().forward(x), rv.Softmax().forward(x + 1e3), rtol=1e-11)


def test_relu_gradient_is_zero_for_negative_inputs(rng):
    x = act_input("ReLU", rng, (5, 16))
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


# -- every entry of the native activation table as a layer ---------------------------------------
# layer factory, torch module factory; the float64 reference is
# _reference.activation(name, x, param)
TABLE_CASES = {
    "relu": (rv.ReLU, lambda t: t.nn.ReLU()),
    "sigmoid": (rv.Sigmoid, lambda t: t.nn.Sigmoid()),
    "tanh": (rv.Tanh, lambda t: t.nn.Tanh()),
    "leaky_relu": (lambda: rv.LeakyReLU(0.2), lambda t: t.nn.LeakyReLU(0.2)),
    "elu": (lambda: rv.ELU(0.7), lambda t: t.nn.ELU(0.7)),
    "gelu": (rv.GELU, lambda t: t.nn.GELU()),
    "silu": (rv.SiLU, lambda t: t.nn.SiLU()),
}
TABLE_PARAM = {"leaky_relu": 0.2, "elu": 0.7}


def test_every_table_entry_has_a_layer():
    assert set(TABLE) - {"none"} == set(TABLE_CASES)
    for name, (make, _) in TABLE_CASES.items():
        assert make().kernel == name


@pytest.mark.quick
@pytest.mark.parametrize("name", list(TABLE_CASES))
@pytest.mark.parametrize("n", [1, 7, 129, 4099])
def test_table_forward_against_float64(rng, dtype, name, n):
    make, _ = TABLE_CASES[name]
    x = (4 * rng.standard_normal(n)).astype(dtype)
    y = make().forward(x)
    expected = ref64.activation(name, x, TABLE_PARAM.get(name, 0.0))
    # a few roundings of the working precision, relative to the value (absolute near zero)
    np.testing.assert_allclose(y, expected, rtol=16 * eps(dtype), atol=16 * eps(dtype))


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_table_backward_against_finite_differences(rng, name):
    make, _ = TABLE_CASES[name]
    layer = make()
    x = rng.standard_normal((6, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of relu / leaky relu / elu
    w = rng.standard_normal((6, 7))
    layer.forward(x)
    analytic = layer.backward(w)

    def objective(v):
        return float(np.sum(make().forward(v) * w))

    check_gradient(objective, x.copy(), analytic, rng)


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_table_forward_and_backward_match_torch(rng, dtype, name, torch):
    make, tmod = TABLE_CASES[name]
    x = (3 * rng.standard_normal((17, 33))).astype(dtype)
    dy = rng.standard_normal((17, 33)).astype(dtype)
    layer = make()
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tmod(torch)(tx)
    ty.backward(torch.tensor(dy))
    tol = 8 * eps(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=4 * tol, atol=4 * tol)


def test_silu_trains_fused_in_a_model(rng):
    X = rng.standard_normal((200, 10)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    rv.manual_seed(0)
    model = rv.Sequential([rv.Dense(10, 32), rv.SiLU(), rv.Dense(32, 2)])
    hist = model.fit(X, y, epochs=30, batch_size=20, optimizer=rv.Adam(model.parameters(),
                                                                       lr=1e-2), verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert type(model._blocks()[0]).__name__ == "DenseRunBlock"


# -- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,arg,name", [(rv.LeakyReLU, "negative_slope", "negative_slope"),
                                          (rv.ELU, "alpha", "alpha")])
def test_activation_bad_arguments(cls, arg, name):
    for bad in ("0.1", None, True, [0.1]):
        with pytest.raises(TypeError, match=f"{name} must be a number"):
            cls(**{arg: bad})
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            cls(**{arg: bad})


