"""Optimizers at the Python level: several steps through Dense parameters against torch.optim
(parameter groups too), zero_grad, threads, names, and bad hyper-parameters."""
import numpy as np
import pytest

import ranvier as rv
from conftest import eps
from ranvier.optim import get_optimizer

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.05)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, betas=(0.85, 0.95))),
]
STEPS = 6


def _tol(dtype):
    # Each step reorders a handful of roundings; parameters are O(1).
    return dict(rtol=100 * eps(dtype), atol=100 * eps(dtype))


def _torch_params(torch, layers):
    return [torch.from_numpy(p.data.copy()).requires_grad_(True)
            for layer in layers for p in layer.parameters()]


def _run_both(torch, rng, layers, make_rv, make_torch, dtype, steps=STEPS, between=None):
    """Take ``steps`` steps with the ranvier optimizer and the torch one from the same start and the
    same gradients (computed by ranvier's Dense backward on an MSE loss); compare after each."""
    params = [p for layer in layers for p in layer.parameters()]
    tparams = _torch_params(torch, layers)
    opt, topt = make_rv(), make_torch(tparams)
    x = rng.normal(size=(8, layers[0].in_features)).astype(dtype)
    loss = rv.MSELoss()
    for step in range(steps):
        target = rng.normal(size=(8, layers[-1].out_features)).astype(dtype)
        h = x
        for layer in layers:
            h = layer.forward(h)
        loss(h, target)
        g = loss.backward()
        for layer in reversed(layers):
            g = layer.backward(g)
        for p, tp in zip(params, tparams):
            assert np.any(p.grad != 0)
            tp.grad = torch.from_numpy(p.grad.copy())
        before = [p.data.copy() for p in params]
        opt.step()
        topt.step()
        for p, tp, b in zip(params, tparams, before):
            assert p.data.dtype == dtype
            assert not np.array_equal(p.data, b)  # the step moved the parameter
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **_tol(dtype),
                                       err_msg=f"step {step}")
        if between is not None:
            between(opt, topt, step)


@pytest.mark.parametrize("name,kw", CONFIGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw in CONFIGS])
def test_optimizer_matches_torch(torch, rng, dtype, name, kw):
    layers = [rv.Dense(17, 7, dtype=dtype, seed=1)]
    layers[0].bias.data[:] = rng.normal(size=7)
    params = layers[0].parameters()
    _run_both(torch, rng, layers, lambda: getattr(rv, name)(params, **kw),
              lambda tp: getattr(torch.optim, name)(tp, **kw), dtype)


def test_sgd_param_groups_match_torch(torch, rng, dtype):
    layers = [rv.Dense(15, 16, dtype=dtype, seed=2), rv.Dense(16, 5, dtype=dtype, seed=3)]
    a, b = layers

    def make_rv():
        opt = rv.SGD([{"params": a.parameters(), "lr": 0.1, "momentum": 0.9},
                      {"params": b.parameters(), "weight_decay": 0.05}], lr=0.02, momentum=0.5)
        assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.02
        assert opt.param_groups[1]["momentum"] == 0.5
        assert opt.param_groups[0]["weight_decay"] == 0.0
        return opt

    def make_torch(tp):
        return torch.optim.SGD([{"params": tp[:2], "lr": 0.1, "momentum": 0.9},
                                {"params": tp[2:], "weight_decay": 0.05}], lr=0.02, momentum=0.5)

    _run_both(torch, rng, layers, make_rv, make_torch, dtype)


def test_adam_param_groups_match_torch(torch, rng, dtype):
    layers = [rv.Dense(15, 16, dtype=dtype, seed=4), rv.Dense(16, 5, dtype=dtype, seed=5)]
    a, b = layers

    def make_rv():
        return rv.Adam([{"params": a.parameters(), "betas": (0.8, 0.9), "weight_decay": 0.1},
                        {"params": b.parameters(), "lr": 0.003}], lr=0.01)

    def make_torch(tp):
        return torch.optim.Adam([{"params": tp[:2], "betas": (0.8, 0.9), "weight_decay": 0.1},
                                 {"params": tp[2:], "lr": 0.003}], lr=0.01)

    _run_both(torch, rng, layers, make_rv, make_torch, dtype)


def test_lr_change_in_param_group_is_honoured_like_torch(torch, rng):
    """Schedulers change ``param_groups[i]["lr"]`` between steps."""
    layers = [rv.Dense(7, 5, dtype=np.float64, seed=6)]

    def decay(opt, topt, step):
        for g, tg in zip(opt.param_groups, topt.param_groups):
            g["lr"] *= 0.5
            tg["lr"] *= 0.5

    _run_both(torch, rng, layers, lambda: rv.SGD(layers[0].parameters(), lr=0.2, momentum=0.9),
              lambda tp: torch.optim.SGD(tp, lr=0.2, momentum=0.9), np.float64, between=decay)


# -- reference formulas without torch ------------------------------------------------------------
def test_sgd_plain_step_formula(rng, dtype):
    layer = rv.Dense(5, 3, dtype=dtype, seed=0)
    g = rng.normal(size=(3, 5)).astype(dtype)
    w0 = layer.weight.data.copy()
    layer.weight.grad[...] = g
    layer.bias.grad[...] = rng.normal(size=3).astype(dtype)
    rv.SGD(layer.parameters(), lr=0.25).step()
    np.testing.assert_allclose(layer.weight.data, w0 - dtype.type(0.25) * g, rtol=2 * eps(dtype),
                               atol=2 * eps(dtype))


def test_adam_first_step_moves_each_weight_by_lr(rng, dtype):
    """With bias correction the first Adam step is lr * g / (|g| + eps) ~= lr * sign(g)."""
    layer = rv.Dense(7, 5, dtype=dtype, seed=0)
    w0 = layer.weight.data.astype(np.float64)
    g = rng.normal(size=(5, 7))
    layer.weight.grad[...] = g
    layer.bias.grad[...] = 1.0
    rv.Adam(layer.parameters(), lr=0.01, eps=0.0).step()
    np.testing.assert_allclose(layer.weight.data, w0 - 0.01 * np.sign(g), rtol=0,
                               atol=20 * eps(dtype))


def test_zero_grad_zeroes_every_grad(rng):
    layers = [rv.Dense(5, 4, seed=0), rv.Dense(4, 3, seed=1)]
    params = [p for layer in layers for p in layer.parameters()]
    for p in params:
        p.grad[...] = rng.normal(size=p.shape)
    data = [p.data.copy() for p in params]
    rv.Adam(params).zero_grad()
    for p, d in zip(params, data):
        assert p.grad.shape == p.shape and not np.any(p.grad)
        np.testing.assert_array_equal(p.data, d)


def test_optimizer_step_bitwise_identical_for_1_and_2_threads(rng, dtype):
    """A parameter past the parallel cut-off (33153 elements)."""
    results = []
    g = rng.normal(size=(129, 257)).astype(dtype)
    try:
        for t in (1, 2):
            rv.set_num_threads(t)
            out = []
            for make in (lambda ps: rv.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                           weight_decay=0.01),
                         lambda ps: rv.Adam(ps, lr=0.01, weight_decay=0.01),
                         lambda ps: rv.AdamW(ps, lr=0.01)):
                layer = rv.Dense(257, 129, dtype=dtype, seed=7)
                opt = make(layer.parameters())
                for k in range(3):
                    layer.weight.grad[...] = g * (k + 1)
                    layer.bias.grad[...] = g[:, 0]
                    opt.step()
                out.append(layer.weight.data.copy())
            results.append(out)
    finally:
        rv.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_optimizer_accepts_generator_single_parameter_and_group_dict(rng):
    layer = rv.Dense(3, 2, seed=0)
    assert len(rv.SGD(p for p in layer.parameters()).param_groups[0]["params"]) == 2
    assert rv.SGD([layer.weight]).param_groups[0]["params"] == [layer.weight]
    opt = rv.SGD({"params": layer.weight, "lr": 0.5})
    assert opt.param_groups[0]["params"] == [layer.weight] and opt.param_groups[0]["lr"] == 0.5


def test_add_param_group_takes_defaults():
    a, b = rv.Dense(3, 2, seed=0), rv.Dense(2, 2, seed=1)
    opt = rv.Adam(a.parameters(), lr=0.005, betas=(0.8, 0.9))
    opt.add_param_group({"params": b.parameters(), "eps": 1e-5})
    g = opt.param_groups[1]
    assert g["lr"] == 0.005 and g["betas"] == (0.8, 0.9) and g["eps"] == 1e-5


def test_adamw_defaults_match_torch_defaults():
    opt = rv.AdamW(rv.Dense(3, 2).parameters())
    g = opt.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (0.001, (0.9, 0.999), 1e-8, 0.01)
    g = rv.Adam(rv.Dense(3, 2).parameters()).param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (0.001, (0.9, 0.999), 1e-8, 0.0)


@pytest.mark.parametrize("name,cls", [("sgd", rv.SGD), ("SGD", rv.SGD), ("adam", rv.Adam),
                                      ("AdamW", rv.AdamW), (rv.Adam, rv.Adam)])
def test_get_optimizer_by_name_and_class(name, cls):
    params = rv.Dense(3, 2).parameters()
    opt = get_optimizer(name, params)
    assert type(opt) is cls and opt.param_groups[0]["params"] == params
    assert get_optimizer(opt, params) is opt


# -- bad hyper-parameters --------------------------------------------------------------------------
BAD = [
    (rv.SGD, dict(lr=-0.1), ValueError, "lr"),
    (rv.Adam, dict(lr=-1e-3), ValueError, "lr"),
    (rv.AdamW, dict(lr=-1e-3), ValueError, "lr"),
    (rv.SGD, dict(lr=float("nan")), ValueError, "lr"),
    (rv.SGD, dict(lr=float("inf")), ValueError, "lr"),
    (rv.SGD, dict(lr="0.1"), TypeError, "lr"),
    (rv.SGD, dict(lr=None), TypeError, "lr"),
    (rv.SGD, dict(lr=True), TypeError, "lr"),
    (rv.SGD, dict(momentum=-0.5), ValueError, "momentum"),
    (rv.SGD, dict(dampening=-0.1), ValueError, "dampening"),
    (rv.SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (rv.SGD, dict(nesterov=True), ValueError, "[Nn]esterov"),
    (rv.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "[Nn]esterov"),
    (rv.Adam, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (rv.Adam, dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (rv.Adam, dict(betas=(0.9, 1.5)), ValueError, r"betas\[1\]"),
    (rv.AdamW, dict(betas=(1.2, 0.999)), ValueError, r"betas\[0\]"),
    (rv.Adam, dict(betas=(-0.1, 0.999)), ValueError, r"betas\[0\]"),
    (rv.Adam, dict(betas=(0.9,)), ValueError, "betas"),
    (rv.Adam, dict(betas=(0.9, 0.99, 0.9)), ValueError, "betas"),
    (rv.Adam, dict(eps=-1e-8), ValueError, "eps"),
    (rv.Adam, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (rv.AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
]


@pytest.mark.parametrize("cls,kw,exc,match", BAD,
                         ids=[f"{c.__name__}-{kw}" for c, kw, _, _ in BAD])
def test_bad_hyperparameters_raise(cls, kw, exc, match):
    with pytest.raises(exc, match=match):
        cls(rv.Dense(3, 2).parameters(), **kw)


def test_bad_hyperparameter_in_param_group_raises():
    a, b = rv.Dense(3, 2), rv.Dense(2, 2)
    with pytest.raises(ValueError, match="lr"):
        rv.SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        rv.Adam([{"params": a.parameters(), "betas": (0.9, 1.0)}])
    opt = rv.SGD(a.parameters())
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": b.parameters(), "momentum": -1})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("params,exc,match", [
    ([], ValueError, "empty parameter list"),
    ([np.ones(3)], TypeError, "Parameter"),
    ([{"lr": 0.1}], TypeError, "params"),
])
def test_bad_params_raise(params, exc, match):
    with pytest.raises(exc, match=match):
        rv.SGD(params)


@pytest.mark.parametrize("name", ["lbfgs", "", 42, None, rv.Dense])
def test_get_optimizer_bad_name(name):
    with pytest.raises(ValueError, match="optimizer"):
        get_optimizer(name, rv.Dense(3, 2).parameters())
