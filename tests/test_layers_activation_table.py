"""Every activation of the native table (csrc/activations.h) as a layer: forward against a float64
reference and torch, backward against finite differences. SiLU entered the library through the
table alone (one line and two per-element functions per dtype) plus its layer class."""
import math

import numpy as np
import pytest
from conftest import check_gradient, eps

import ranvier as rv
from ranvier._kernels.activations import ACTIVATIONS

_erf = np.vectorize(math.erf)

# layer factory, float64 reference, torch module factory
CASES = {
    "relu": (rv.ReLU, lambda x: np.maximum(x, 0), lambda t: t.nn.ReLU()),
    "sigmoid": (rv.Sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda t: t.nn.Sigmoid()),
    "tanh": (rv.Tanh, np.tanh, lambda t: t.nn.Tanh()),
    "leaky_relu": (lambda: rv.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda t: t.nn.LeakyReLU(0.2)),
    "elu": (lambda: rv.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
            lambda t: t.nn.ELU(0.7)),
    "gelu": (rv.GELU, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), lambda t: t.nn.GELU()),
    "silu": (rv.SiLU, lambda x: x / (1 + np.exp(-x)), lambda t: t.nn.SiLU()),
}


def test_every_table_entry_has_a_layer():
    assert set(ACTIVATIONS) - {"none"} == set(CASES)
    for name, (make, _, _) in CASES.items():
        assert make().kernel == name


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n", [1, 7, 129, 4099])
def test_forward_against_float64(rng, dtype, name, n):
    make, ref, _ = CASES[name]
    x = (4 * rng.standard_normal(n)).astype(dtype)
    y = make().forward(x)
    expected = ref(x.astype(np.float64))
    # a few roundings of the working precision, relative to the value (absolute near zero)
    np.testing.assert_allclose(y, expected, rtol=16 * eps(dtype), atol=16 * eps(dtype))


@pytest.mark.parametrize("name", list(CASES))
def test_backward_against_finite_differences(rng, name):
    make, _, _ = CASES[name]
    layer = make()
    x = rng.standard_normal((6, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks of relu / leaky relu / elu
    w = rng.standard_normal((6, 7))
    layer.forward(x)
    analytic = layer.backward(w)

    def objective(v):
        return float(np.sum(make().forward(v) * w))

    check_gradient(objective, x.copy(), analytic, rng)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_backward_match_torch(rng, dtype, name, torch):
    make, _, tmod = CASES[name]
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
