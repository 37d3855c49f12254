"""Optimizers at the Python level: SGD, Adam, AdamW, RMSprop, Adagrad and AMSGrad against
torch.optim and the float64 update rules of _reference.py; parameter groups, zero_grad, threads,
names; clip_grad_norm; state_dict / load_state_dict; bad hyper-parameters.

Two ways of taking steps. Through Dense layers (DENSE_CONFIGS, DENSE_STEPS): gradients from a
Dense backward on an MSE loss, compared with torch after each step to 100 eps. Through a flat
group (a Sequential's parameters after ``_flatten_parameters``: one native call per step) and
through separate arrays (one call per parameter), CONFIGS for STEPS steps with a fresh random
gradient per step, float32 and float64, 1 and 2 threads: the largest parameter (257 x 129) is
past the parallel cut-off, so 2 threads really run 2. Those tolerances are relative to the
largest magnitude of the compared array (_assert.SCALED_RTOL: 1e-12 for float64, 1e-5 for
float32), as in test_kernels_optimizers.py.
"""
import copy
import math

import numpy as np
import pytest

import _reference as ref64
import ranvier as rv
from _assert import SCALED_RTOL, assert_close_to_scale
from conftest import eps
from ranvier.optim import _flat_span, get_optimizer

DENSE_CONFIGS = [
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
DENSE_STEPS = 6

STEPS = 10
SHAPES = [(129, 257), (129,), (3, 129), (3,)]  # Dense(257, 129) -> ReLU -> Dense(129, 3)

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, weight_decay=0.05)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9)),
    ("RMSprop", dict(lr=1e-2, centered=True)),
    ("RMSprop", dict(lr=5e-3, alpha=0.95, eps=1e-6, weight_decay=0.01, momentum=0.8,
                     centered=True)),
    ("RMSprop", dict(lr=1e-2, alpha=0.3, centered=True)),  # lerp weight 0.7: torch's other branch
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
]
CONFIG_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS]


def _grads(rng, shapes, dtype):
    # Gradients of varying scale, so that eps, the accumulators and the corrections all matter.
    return [(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1, s)).astype(dtype)
            for s in shapes]


def _make_params(layout, dtype, seed=0):
    """The four parameters of Dense(257, 129) -> ReLU -> Dense(129, 3), either a flat Sequential's
    (one buffer) or separate arrays."""
    if layout == "flat":
        model = rv.Sequential([rv.Dense(257, 129, dtype=dtype, seed=seed), rv.ReLU(),
                               rv.Dense(129, 3, dtype=dtype, seed=seed + 1)])
        model._flatten_parameters()
        params = model.parameters()
        rng = np.random.default_rng(seed + 100)
        for p in params:  # nonzero biases too
            p.data[...] = rng.standard_normal(p.shape)
        assert _flat_span([p.data for p in params]) is not None
        return params
    rng = np.random.default_rng(seed + 100)
    params = [rv.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    assert _flat_span([p.data for p in params]) is None
    return params


def _step_both(torch, opt, topt, params, tparams, rng, steps, dtype, what, between=None):
    """``steps`` steps of the ranvier optimizer and the torch one on the same random gradients,
    the parameters compared after each; ``between(opt, topt)`` runs after the steps."""
    for step in range(steps):
        for p, tp, g in zip(params, tparams, _grads(rng, SHAPES, dtype)):
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        if between is not None:
            between(opt, topt)
        for p, tp in zip(params, tparams):
            assert_close_to_scale(p.data, tp.detach().numpy(), dtype, f"{what} step {step}")


@pytest.fixture(autouse=True)
def _one_thread_unless_asked():
    """ranvier on one thread in the tests that do not ask for ``num_threads`` (its fixture, set up
    after this one, overrides it): results do not depend on it, and a busy machine makes an idle
    OpenMP team expensive."""
    rv.set_num_threads(1)
    yield
    rv.set_num_threads(None)


@pytest.fixture
def torch(torch):
    """conftest's torch on one thread: the references are small, and torch's idle threads spinning
    against ranvier's OpenMP team on a busy machine made each step 50 times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Against torch.optim, through Dense gradients
# --------------------------------------------------------------------------------------------

def _tol(dtype):
    # Each step reorders a handful of roundings; parameters are O(1).
    return dict(rtol=100 * eps(dtype), atol=100 * eps(dtype))


def _torch_params(torch, layers):
    return [torch.from_numpy(p.data.copy()).requires_grad_(True)
            for layer in layers for p in layer.parameters()]


def _run_both(torch, rng, layers, make_rv, make_torch, dtype, steps=DENSE_STEPS, between=None):
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


@pytest.mark.parametrize("name,kw", DENSE_CONFIGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw in DENSE_CONFIGS])
def test_optimizer_matches_torch_on_dense_gradients(torch, rng, dtype, name, kw):
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


# --------------------------------------------------------------------------------------------
# Against torch.optim, a flat group and separate arrays
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=CONFIG_IDS)
def test_optimizer_matches_torch(torch, dtype, num_threads, name, kw, layout):
    params = _make_params(layout, dtype)
    tparams = [torch.tensor(p.data.copy(), dtype=getattr(torch, dtype.name), requires_grad=True)
               for p in params]
    opt = getattr(rv, name)(params, **kw)
    topt = getattr(torch.optim, name)(tparams, **kw)
    rng = np.random.default_rng(11)
    p0 = [p.data.copy() for p in params]
    for step in range(1, STEPS + 1):
        for p, tp, g in zip(params, tparams, _grads(rng, SHAPES, dtype)):
            p.grad[...] = g  # in place: the flat gradient buffer stays
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        if step == 1 and layout == "flat":
            assert opt._flat_group(0, opt.param_groups[0]) is not None  # one call per step
        for i, (p, tp) in enumerate(zip(params, tparams)):
            what = f"{name} {kw} {layout} {dtype.name} param {i} step {step}"
            assert p.data.dtype == dtype
            assert_close_to_scale(p.data, tp.detach().numpy(), dtype, what)
            tstate = topt.state[tp]
            st = opt.state[id(p)]
            assert st["step"] == step
            for key, tval in tstate.items():
                if key == "step" or tval is None:
                    continue
                assert_close_to_scale(st[key], tval.numpy(), dtype, f"{what} {key}")
    for p, before in zip(params, p0):
        assert not np.array_equal(p.data, before)


def test_param_groups_with_different_options_match_torch(torch, dtype):
    """Two groups of one flat model with different RMSprop options: each group's state is its own
    (momentum buffer only in the group with momentum) and both match torch."""
    params = _make_params("flat", dtype, seed=3)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    groups = lambda ps: [{"params": ps[:2], "momentum": 0.9, "centered": True},  # noqa: E731
                         {"params": ps[2:], "lr": 0.003, "alpha": 0.8}]
    opt = rv.RMSprop(groups(params), lr=0.01)
    topt = torch.optim.RMSprop(groups(tparams), lr=0.01)
    rng = np.random.default_rng(5)
    _step_both(torch, opt, topt, params, tparams, rng, STEPS, dtype, "groups")
    assert set(opt.state[id(params[0])]) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert set(opt.state[id(params[3])]) == {"step", "square_avg"}


def test_adagrad_lr_decay_and_scheduler_lr_change_match_torch(torch):
    params = _make_params("flat", np.float64, seed=4)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = rv.Adagrad(params, lr=0.5, lr_decay=0.3)
    topt = torch.optim.Adagrad(tparams, lr=0.5, lr_decay=0.3)
    rng = np.random.default_rng(6)

    def decay(opt, topt):
        opt.param_groups[0]["lr"] *= 0.9
        topt.param_groups[0]["lr"] *= 0.9

    _step_both(torch, opt, topt, params, tparams, rng, STEPS, np.float64, "lr decay",
               between=decay)


# --------------------------------------------------------------------------------------------
# Against the float64 update rules (no torch)
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
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


REF_CONFIGS = [c for c in CONFIGS if c[0] in ("RMSprop", "Adagrad")] + [
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


def _numpy_reference(name, p0, grads, kw):
    if name == "RMSprop":
        return ref64.rmsprop(p0, grads, **kw)
    if name == "Adagrad":
        return ref64.adagrad(p0, grads, **kw)
    kw = dict(kw)
    if name == "AdamW":
        kw.setdefault("weight_decay", 0.01)
    return ref64.adam(p0, grads, decoupled=name == "AdamW", **kw)


@pytest.mark.quick
@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("name,kw", REF_CONFIGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw in REF_CONFIGS])
def test_optimizer_matches_numpy_reference(dtype, num_threads, name, kw, layout):
    params = _make_params(layout, dtype, seed=7)
    p0 = [p.data.copy() for p in params]
    rng = np.random.default_rng(8)
    grads = [_grads(rng, SHAPES, dtype) for _ in range(STEPS)]
    opt = getattr(rv, name)(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
    for i, p in enumerate(params):
        ref_p, ref_state = _numpy_reference(name, p0[i], [sg[i] for sg in grads], kw)
        what = f"{name} {kw} {layout} {dtype.name} param {i}"
        assert_close_to_scale(p.data, ref_p, dtype, what)
        st = opt.state[id(p)]
        assert st["step"] == STEPS
        for key, ref in ref_state.items():
            if key in st:
                assert_close_to_scale(st[key], ref, dtype, f"{what} {key}")


# --------------------------------------------------------------------------------------------
# Behaviour: zero_grad, threads, groups, defaults, state
# --------------------------------------------------------------------------------------------

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


def test_defaults_match_torch_defaults():
    g = rv.RMSprop(rv.Dense(3, 2).parameters()).param_groups[0]
    assert {k: v for k, v in g.items() if k != "params"} == dict(
        lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)
    g = rv.Adagrad(rv.Dense(3, 2).parameters()).param_groups[0]
    assert {k: v for k, v in g.items() if k != "params"} == dict(
        lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10)
    assert rv.Adam(rv.Dense(3, 2).parameters()).param_groups[0]["amsgrad"] is False
    assert rv.AdamW(rv.Dense(3, 2).parameters()).param_groups[0]["amsgrad"] is False


def test_sgd_without_momentum_keeps_no_buffer():
    params = _make_params("flat", np.float32)
    opt = rv.SGD(params, lr=0.1)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    assert all(set(opt.state[id(p)]) == {"step"} for p in params)
    assert set(opt.state_dict()["state"][0]) == {"step"}


def test_state_follows_model_astype(dtype):
    """model.astype converts the optimizer state (RMSprop centered with momentum: three arrays);
    the next steps run in the new dtype."""
    model = rv.Sequential([rv.Dense(5, 4, seed=0), rv.ReLU(), rv.Dense(4, 2, seed=1)])
    model._flatten_parameters()
    opt = rv.RMSprop(model.parameters(), momentum=0.9, centered=True)
    model.optimizer = opt
    for p in model.parameters():
        p.grad[...] = 0.5
    opt.step()
    model.astype(dtype)
    model._flatten_parameters()
    for p in model.parameters():
        p.grad[...] = 0.5
    opt.step()
    for p in model.parameters():
        st = opt.state[id(p)]
        assert st["step"] == 2
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            assert st[key].dtype == dtype and st[key].shape == p.shape


def test_step_follows_replaced_parameter_arrays():
    """Replacing a parameter's data array (not writing into it) between steps: the next step
    updates the new array; the flat-group cache is not fooled by identity or address reuse."""
    model = rv.Sequential([rv.Dense(5, 4, seed=1), rv.ReLU(), rv.Dense(4, 3, seed=2)])
    opt = rv.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    w = model.parameters()[0]
    for _ in range(3):
        w.data = w.data.copy()  # the old array is freed; a new one may take its address
        before = w.data.copy()
        opt.step()
        np.testing.assert_array_equal(w.data, before - 0.5)


@pytest.mark.parametrize("name,cls", [("sgd", rv.SGD), ("SGD", rv.SGD), ("adam", rv.Adam),
                                      ("AdamW", rv.AdamW), (rv.Adam, rv.Adam)])
def test_get_optimizer_by_name_and_class(name, cls):
    params = rv.Dense(3, 2).parameters()
    opt = get_optimizer(name, params)
    assert type(opt) is cls and opt.param_groups[0]["params"] == params
    assert get_optimizer(opt, params) is opt


# --------------------------------------------------------------------------------------------
# clip_grad_norm
# --------------------------------------------------------------------------------------------

CLIP_NORMS = [2.0, float("inf"), 1.0, 3.0]


@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("norm_type", CLIP_NORMS, ids=["l2", "inf", "l1", "l3"])
@pytest.mark.parametrize("clips", [True, False], ids=["clips", "no_clip"])
def test_clip_grad_norm_matches_torch(torch, dtype, num_threads, layout, norm_type, clips):
    params = _make_params(layout, dtype, seed=12)
    rng = np.random.default_rng(13)
    grads = _grads(rng, SHAPES, dtype)
    tparams = []
    for p, g in zip(params, grads):
        p.grad[...] = g
        tp = torch.tensor(p.data.copy(), requires_grad=True)
        tp.grad = torch.from_numpy(g.copy())
        tparams.append(tp)
    exact = _exact_norm(grads, norm_type)
    max_norm = exact * (0.25 if clips else 4.0)
    total = rv.clip_grad_norm(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    tol = SCALED_RTOL[dtype]
    assert abs(total - float(ttotal)) <= tol * float(ttotal)
    assert abs(total - exact) <= 1e-13 * exact  # reduced in double: float32 input too
    for i, (p, tp, g) in enumerate(zip(params, tparams, grads)):
        assert_close_to_scale(p.grad, tp.grad.numpy(), dtype, f"grad {i}")
        if not clips:
            np.testing.assert_array_equal(p.grad, g)
    if clips:
        after = _exact_norm([p.grad for p in params], norm_type)
        assert after == pytest.approx(max_norm * total / (total + 1e-6), rel=10 * tol)


def _exact_norm(arrays, p):
    """The p-norm from exact sums (math.fsum over float64 values)."""
    vals = np.concatenate([np.abs(a.astype(np.float64)).ravel() for a in arrays])
    if p == math.inf:
        return float(vals.max())
    if p == 1.0:
        return math.fsum(vals)
    if p == 2.0:
        return math.sqrt(math.fsum(vals * vals))
    return math.fsum(vals ** p) ** (1.0 / p)


@pytest.mark.parametrize("norm_type", CLIP_NORMS, ids=["l2", "inf", "l1", "l3"])
def test_clip_grad_norm_same_bits_for_any_thread_count(dtype, norm_type):
    rng = np.random.default_rng(14)
    grads = [(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1, s)).astype(dtype)
             for s in [(301, 333), (100003,), (7,)]]
    results = []
    try:
        for nt in (1, 2):
            rv.set_num_threads(nt)
            params = [rv.Parameter(np.zeros_like(g)) for g in grads]
            for p, g in zip(params, grads):
                p.grad[...] = g
            total = rv.clip_grad_norm(params, 0.5, norm_type)
            results.append((total, b"".join(p.grad.tobytes() for p in params)))
    finally:
        rv.set_num_threads(None)
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1]
    assert abs(results[0][0] - _exact_norm(grads, norm_type)) <= 1e-12 * results[0][0]


@pytest.mark.quick
def test_clip_grad_norm_numpy_reference_and_coefficient(dtype):
    """grads *= max_norm / (norm + 1e-6) when that is below 1; untouched otherwise."""
    params = _make_params("flat", dtype, seed=15)
    rng = np.random.default_rng(16)
    grads = _grads(rng, SHAPES, dtype)
    for p, g in zip(params, grads):
        p.grad[...] = g
    norm = _exact_norm(grads, 2.0)
    total = rv.clip_grad_norm(params, 1.0)
    assert total == pytest.approx(norm, rel=1e-13)
    coef = dtype.type(1.0 / (total + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad, g * coef)
    before = [p.grad.copy() for p in params]
    assert rv.clip_grad_norm(params[0], 1e9) == pytest.approx(_exact_norm([before[0]], 2.0),
                                                              rel=1e-13)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_nonfinite(dtype):
    p = rv.Parameter(np.ones(10, dtype))
    q = rv.Parameter(np.ones(70000, dtype))
    p.grad[...] = 1.0
    q.grad[...] = 2.0
    q.grad[50000] = np.nan
    for norm_type in (2.0, 1.0, float("inf"), 3.0):
        snapshot = q.grad.copy()
        with pytest.raises(RuntimeError, match="non-finite"):
            rv.clip_grad_norm([p, q], 1.0, norm_type, error_if_nonfinite=True)
        np.testing.assert_array_equal(q.grad, snapshot)  # untouched
    assert math.isnan(rv.clip_grad_norm([p, q], 1.0, float("inf")))
    assert np.isnan(p.grad).all() and np.isnan(q.grad).all()  # as torch: scaled by NaN
    r = rv.Parameter(np.ones(4, dtype))
    r.grad[...] = [1.0, -np.inf, 3.0, 0.0]
    assert rv.clip_grad_norm(r, 1.0, float("inf")) == math.inf
    np.testing.assert_array_equal(np.isnan(r.grad), [False, True, False, False])


def test_clip_grad_norm_noncontiguous_grad_and_empty():
    p = rv.Parameter(np.ones((4, 6)))
    p.grad = np.arange(24.0).reshape(6, 4).T  # someone assigned a transposed gradient
    g = p.grad.copy()
    total = rv.clip_grad_norm([p], 1.0)
    assert total == pytest.approx(np.linalg.norm(g), rel=1e-14)
    np.testing.assert_allclose(p.grad, g / (np.linalg.norm(g) + 1e-6), rtol=1e-14)
    assert rv.clip_grad_norm([], 1.0) == 0.0
    assert rv.clip_grad_norm(iter([]), 1.0, "inf") == 0.0


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(max_norm=-1.0), ValueError, "max_norm"),
    (dict(max_norm=float("nan")), ValueError, "max_norm"),
    (dict(max_norm="1"), TypeError, "max_norm"),
    (dict(max_norm=1.0, norm_type=0), ValueError, "norm_type"),
    (dict(max_norm=1.0, norm_type=-2.0), ValueError, "norm_type"),
    (dict(max_norm=1.0, norm_type=float("nan")), ValueError, "norm_type"),
    (dict(max_norm=1.0, norm_type="fro"), ValueError, "norm_type"),
    (dict(max_norm=1.0, norm_type=None), TypeError, "norm_type"),
    (dict(max_norm=1.0, error_if_nonfinite="yes"), TypeError, "error_if_nonfinite"),
])
def test_clip_grad_norm_bad_arguments(kwargs, exc, match):
    p = rv.Parameter(np.ones(3))
    p.grad[...] = 5.0
    with pytest.raises(exc, match=match):
        rv.clip_grad_norm([p], **kwargs)
    np.testing.assert_array_equal(p.grad, 5.0)
    with pytest.raises(TypeError, match="Parameter"):
        rv.clip_grad_norm([np.ones(3)], 1.0)


# --------------------------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------------------------

def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()


@pytest.mark.quick
@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_mid_training_is_bitwise(dtype, name, kw, layout):
    """5 steps, save, a new model and optimizer, load, 5 more == 10 uninterrupted, bit for bit."""
    rng = np.random.default_rng(17)
    grads = [_grads(rng, SHAPES, dtype) for _ in range(STEPS)]
    ref = _make_params(layout, dtype, seed=20)
    _run(getattr(rv, name)(ref, **kw), ref, grads)

    first = _make_params(layout, dtype, seed=20)
    opt = getattr(rv, name)(first, **kw)
    _run(opt, first, grads[:5])
    sd = opt.state_dict()
    weights = [p.data.copy() for p in first]
    _run(opt, first, grads[5:7])  # the saved copy must not follow the optimizer
    resumed = _make_params(layout, dtype, seed=99)
    for p, w in zip(resumed, weights):
        p.data[...] = w
    opt2 = getattr(rv, name)(resumed, **kw)
    opt2.load_state_dict(sd)
    _run(opt2, resumed, grads[5:])
    for p, r in zip(resumed, ref):
        np.testing.assert_array_equal(p.data, r.data)
    for p, r in zip(resumed, ref):
        assert opt2.state[id(p)]["step"] == STEPS


def test_state_dict_layout(dtype):
    params = _make_params("flat", dtype)
    extra = rv.Parameter(np.ones((2, 2), dtype))
    opt = rv.Adam([{"params": params[:3], "lr": 0.1}, {"params": [params[3], extra]}],
                  lr=0.01, amsgrad=True)
    for p in params + [extra]:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1, 2], [3, 4]]
    assert sd["param_groups"][0] == {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8,
                                     "weight_decay": 0.0, "amsgrad": True, "params": [0, 1, 2]}
    assert sorted(sd["state"]) == [0, 1, 2, 3, 4]
    for i, p in enumerate(params + [extra]):
        st = sd["state"][i]
        assert set(st) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
        assert st["step"] == 1 and type(st["step"]) is int
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert type(st[key]) is np.ndarray
            assert st[key].shape == p.shape and st[key].dtype == dtype
            assert not np.shares_memory(st[key], opt.state[id(p)][key])
            np.testing.assert_array_equal(st[key], opt.state[id(p)][key])
    sd["state"][0]["exp_avg"][...] = 123.0
    sd["param_groups"][0]["lr"] = 5.0
    assert not np.any(opt.state[id(params[0])]["exp_avg"] == 123.0)
    assert opt.param_groups[0]["lr"] == 0.1
    assert rv.SGD(params).state_dict() == {
        "state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.0, "dampening": 0.0,
                                       "weight_decay": 0.0, "nesterov": False,
                                       "params": [0, 1, 2, 3]}]}


@pytest.mark.parametrize("name,kw", [c for c in CONFIGS if c[0] != "SGD"],
                         ids=[i for c, i in zip(CONFIGS, CONFIG_IDS) if c[0] != "SGD"])
def test_state_keys_match_torch(torch, name, kw):
    params = _make_params("separate", np.float64)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt, topt = getattr(rv, name)(params, **kw), getattr(torch.optim, name)(tparams, **kw)
    for p, tp in zip(params, tparams):
        p.grad[...] = 1.0
        tp.grad = torch.ones_like(tp)
    opt.step()
    topt.step()
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for i in sd["state"]:
        tkeys = {k for k, v in tsd["state"][i].items() if v is not None}
        assert set(sd["state"][i]) == tkeys
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        assert g["params"] == tg["params"]
        for k, v in g.items():
            assert tg[k] == v, k


@pytest.mark.parametrize("name,kw", [
    ("Adam", dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2)),
])
def test_load_torch_state_dict_then_continue_like_torch(torch, name, kw):
    """A torch optimizer's state_dict (tensors turned into arrays, torch-only group options
    dropped) loads into ranvier's, and both then take the same steps."""
    params = _make_params("flat", np.float64, seed=30)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tparams, **kw)
    rng = np.random.default_rng(31)
    for _ in range(4):
        for tp, g in zip(tparams, _grads(rng, SHAPES, np.float64)):
            tp.grad = torch.from_numpy(g)
        topt.step()
    for p, tp in zip(params, tparams):
        p.data[...] = tp.detach().numpy()
    tsd = topt.state_dict()
    opt = getattr(rv, name)(params, **kw)
    sd = {"state": {i: {k: (int(v.item()) if k == "step" else v.numpy().copy())
                        for k, v in st.items() if v is not None}
                    for i, st in tsd["state"].items()},
          "param_groups": [{k: v for k, v in g.items() if k in opt.defaults or k == "params"}
                           for g in tsd["param_groups"]]}
    opt.load_state_dict(sd)
    _step_both(torch, opt, topt, params, tparams, rng, 4, np.float64, name)


def test_load_copies_into_existing_state_keeping_flat_views(dtype):
    """Loading into an optimizer that already stepped copies into its flat state buffers (the
    per-parameter arrays stay views of them); the continuation matches the saved run."""
    rng = np.random.default_rng(40)
    grads = [_grads(rng, SHAPES, dtype) for _ in range(8)]
    a = _make_params("flat", dtype, seed=41)
    opt_a = rv.Adam(a, lr=0.01, amsgrad=True)
    _run(opt_a, a, grads[:4])
    sd = opt_a.state_dict()
    b = _make_params("flat", dtype, seed=41)
    opt_b = rv.Adam(b, lr=0.01, amsgrad=True)
    _run(opt_b, b, grads[4:7])  # different history
    flat_before = opt_b._flat_group(0, opt_b.param_groups[0])
    arrays_before = {k: [opt_b.state[id(p)][k] for p in b] for k in flat_before[2]}
    for p, q in zip(b, a):
        p.data[...] = q.data
    opt_b.load_state_dict(sd)
    flat_after = opt_b._flat_group(0, opt_b.param_groups[0])
    assert flat_after is flat_before
    for k, arrays in arrays_before.items():
        for p, arr in zip(b, arrays):
            assert opt_b.state[id(p)][k] is arr
            assert np.shares_memory(arr, flat_after[2][k])
    _run(opt_a, a, grads[4:])
    _run(opt_b, b, grads[4:])
    for p, q in zip(b, a):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_restores_hyperparameters_and_fresh_state():
    params = _make_params("separate", np.float64)
    src = rv.RMSprop([{"params": params[:2], "lr": 0.5}, {"params": params[2:]}], alpha=0.8)
    sd = src.state_dict()  # no step yet: no state
    dst = rv.RMSprop([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    for p in params:
        p.grad[...] = 1.0
    dst.step()
    assert dst.state
    dst.load_state_dict(sd)
    assert dst.state == {}  # as PyTorch: parameters without saved state start afresh
    assert dst.param_groups[0]["lr"] == 0.5 and dst.param_groups[1]["lr"] == 0.01
    assert dst.param_groups[0]["alpha"] == 0.8 and dst.param_groups[0]["momentum"] == 0.0
    assert dst.param_groups[0]["params"] == params[:2]
    groups = sd["param_groups"]
    groups[0]["betas"] = None  # not RMSprop's
    with pytest.raises(ValueError, match=r"unknown keys \['betas'\]"):
        dst.load_state_dict(sd)
    # Adam from a JSON-like file: betas as a list, initial_lr from a scheduler
    adam = rv.Adam(params)
    adam.load_state_dict({"state": {}, "param_groups": [
        {"lr": 0.1, "betas": [0.8, 0.9], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
         "initial_lr": 0.2, "params": [0, 1, 2, 3]}]})
    assert adam.param_groups[0]["betas"] == (0.8, 0.9)
    assert adam.param_groups[0]["initial_lr"] == 0.2


def test_load_state_dict_with_parameters_at_different_steps(torch):
    """Parameters of one flat group at different steps (from a torch checkpoint) are updated one
    call each, at their own step."""
    params = _make_params("flat", np.float64, seed=50)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = torch.optim.Adam(tparams, lr=0.01)
    rng = np.random.default_rng(51)
    for k in range(6):
        for i, (tp, g) in enumerate(zip(tparams, _grads(rng, SHAPES, np.float64))):
            tp.grad = torch.from_numpy(g) if k < 3 or i % 2 else None  # params 0, 2 skip 3 steps
        topt.step()
    tsd = topt.state_dict()
    assert [int(tsd["state"][i]["step"]) for i in range(4)] == [3, 6, 3, 6]
    for p, tp in zip(params, tparams):
        p.data[...] = tp.detach().numpy()
    opt = rv.Adam(params, lr=0.01)
    opt.load_state_dict({"state": {i: {k: (int(v.item()) if k == "step" else v.numpy().copy())
                                       for k, v in st.items()} for i, st in tsd["state"].items()},
                         "param_groups": [{"lr": 0.01, "params": [0, 1, 2, 3]}]})
    _step_both(torch, opt, topt, params, tparams, rng, 3, np.float64, "mixed steps")
    assert [opt.state[id(p)]["step"] for p in params] == [6, 9, 6, 9]


def _sample_state_dict():
    params = _make_params("separate", np.float32)
    opt = rv.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.01)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    return params, opt


def _mutated(sd, how):
    sd = copy.deepcopy(sd)
    how(sd)
    return sd


BAD_LOADS = [
    ("not a dict", lambda sd: None, TypeError, "state_dict must be a dict"),
    ("extra top-level key", lambda sd: sd.update(extra=1), ValueError, r"unknown keys \['extra'\]"),
    ("no state", lambda sd: sd.pop("state"), ValueError, "'state'"),
    ("no param_groups", lambda sd: sd.pop("param_groups"), ValueError, "'param_groups'"),
    ("one group", lambda sd: sd["param_groups"].pop(), ValueError, "1 parameter groups.*has 2"),
    ("one param fewer", lambda sd: sd["param_groups"][1]["params"].pop(), ValueError,
     r"param_groups\[1\] has 1 parameters"),
    ("index twice", lambda sd: sd["param_groups"][1]["params"].__setitem__(0, 0), ValueError,
     "more than once"),
    ("bad index", lambda sd: sd["param_groups"][0]["params"].__setitem__(0, "a"), ValueError,
     "integer indices"),
    ("unknown group key", lambda sd: sd["param_groups"][0].update(momentum=0.9), ValueError,
     r"param_groups\[0\] has unknown keys \['momentum'\]"),
    ("bad lr", lambda sd: sd["param_groups"][1].update(lr=-1.0), ValueError,
     r"param_groups\[1\].*lr"),
    ("bad betas", lambda sd: sd["param_groups"][0].update(betas=(0.9, 1.0)), ValueError,
     r"betas\[1\]"),
    ("state for unknown index", lambda sd: sd["state"].update({7: sd["state"][0]}), ValueError,
     "index 7"),
    ("unknown state key",
     lambda sd: sd["state"][1].update(momentum_buffer=sd["state"][1]["exp_avg"]), ValueError,
     r"state\[1\] has unknown keys \['momentum_buffer'\]"),
    ("no step", lambda sd: sd["state"][2].pop("step"), ValueError, r"state\[2\] has no 'step'"),
    ("negative step", lambda sd: sd["state"][2].update(step=-1), ValueError, "int >= 0"),
    ("fractional step", lambda sd: sd["state"][2].update(step=1.5), ValueError, "int >= 0"),
    ("wrong shape", lambda sd: sd["state"][0].update(exp_avg=np.zeros((257, 129), np.float32)),
     ValueError, r"state\[0\]\['exp_avg'\] has shape \(257, 129\).*\(129, 257\)"),
    ("wrong dtype", lambda sd: sd["state"][3].update(exp_avg_sq=np.zeros(3)), ValueError,
     r"state\[3\]\['exp_avg_sq'\] has dtype float64.*float32"),
    ("state entry not a dict", lambda sd: sd["state"].update({0: 5}), ValueError, "dict"),
]


@pytest.mark.parametrize("what,how,exc,match", BAD_LOADS, ids=[b[0] for b in BAD_LOADS])
def test_load_state_dict_rejects_bad_input_and_changes_nothing(what, how, exc, match):
    params, opt = _sample_state_dict()
    sd = opt.state_dict()
    bad = None if what == "not a dict" else _mutated(sd, how)
    before = opt.state_dict()
    flat = {k: v for k, v in opt.state[id(params[0])].items()}
    with pytest.raises(exc, match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for k, v in before["state"][i].items():
            np.testing.assert_array_equal(after["state"][i][k], v)
    assert all(opt.state[id(params[0])][k] is v for k, v in flat.items())
    opt.load_state_dict(sd)  # the good one still loads


def test_state_dict_type_mismatch_between_optimizers():
    params, opt = _sample_state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        rv.RMSprop([{"params": params[:2]}, {"params": params[2:]}]).load_state_dict(
            opt.state_dict())


# --------------------------------------------------------------------------------------------
# Bad hyper-parameters and parameters
# --------------------------------------------------------------------------------------------

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

    (rv.RMSprop, dict(lr=-0.1), ValueError, "lr"),
    (rv.RMSprop, dict(alpha=1.0), ValueError, "alpha"),
    (rv.RMSprop, dict(alpha=-0.1), ValueError, "alpha"),
    (rv.RMSprop, dict(alpha=1.5), ValueError, "alpha"),
    (rv.RMSprop, dict(alpha="0.9"), TypeError, "alpha"),
    (rv.RMSprop, dict(eps=-1e-8), ValueError, "eps"),
    (rv.RMSprop, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (rv.RMSprop, dict(momentum=-0.9), ValueError, "momentum"),
    (rv.RMSprop, dict(momentum=float("nan")), ValueError, "momentum"),
    (rv.RMSprop, dict(centered="yes"), TypeError, "centered"),
    (rv.Adagrad, dict(lr=-0.1), ValueError, "lr"),
    (rv.Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (rv.Adagrad, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (rv.Adagrad, dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    (rv.Adagrad, dict(eps=-1.0), ValueError, "eps"),
    (rv.Adagrad, dict(lr_decay=None), TypeError, "lr_decay"),
    (rv.Adam, dict(amsgrad=1), TypeError, "amsgrad"),
    (rv.AdamW, dict(amsgrad="true"), TypeError, "amsgrad"),
]


@pytest.mark.quick
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


def test_parameter_in_two_groups_raises():
    layer = rv.Dense(3, 2)
    with pytest.raises(ValueError, match="more than one parameter group"):
        rv.Adagrad([{"params": layer.parameters()}, {"params": [layer.weight]}])
    with pytest.raises(ValueError, match="more than once"):
        rv.RMSprop([layer.weight, layer.weight])


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
