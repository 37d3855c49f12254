"""Optimizer update kernels against torch.optim (SGD, Adam, AdamW) and the float64 update rules
of _reference.py (RMSprop, Adagrad and AMSGrad too), the gradient-norm reduction.

Each test runs 10 steps with a fresh random gradient per step and compares parameters and state
after every step. Tolerances are relative to the largest magnitude of the compared array
(_assert.SCALED_RTOL: 1e-12 for float64, 1e-5 for float32; the two implementations round in
different places).
"""
import math

import numpy as np
import pytest

import _reference as ref64
from _assert import assert_close_to_scale
from conftest import AWKWARD, readonly
from ranvier._kernels import optimizers as opt

STEPS = 10
SIZES = [1, 17, 257, 4099]
# Awkward lengths for the NumPy reference: SIMD remainders of every width, one to a few vectors.
# 40001 spans three 16384-element thread chunks (the last one partial).
REF_SIZES = [n for n in AWKWARD if n in (1, 2, 7, 16, 17, 65, 257)] + [4099, 40001]

SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "momentum_weight_decay": dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.05),
    "nesterov_weight_decay": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05),
}
ADAM_CONFIGS = {
    "adam": ("Adam", dict(lr=1e-2)),
    "adam_betas_eps": ("Adam", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6)),
    "adam_weight_decay": ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=1e-2, weight_decay=0.01)),
    "adamw_strong_decay": ("AdamW", dict(lr=3e-2, betas=(0.85, 0.995), weight_decay=0.5)),
}


def _sgd_kernel_args(cfg):
    return (cfg["lr"], cfg.get("momentum", 0.0), cfg.get("dampening", 0.0),
            cfg.get("weight_decay", 0.0), cfg.get("nesterov", False))


def _adam_kernel_args(config):
    """The kernel arguments of ADAM_CONFIGS[config]: lr, beta1, beta2, eps, weight decay and
    whether the decay is decoupled (AdamW)."""
    kind, cfg = ADAM_CONFIGS[config]
    b1, b2 = cfg.get("betas", (0.9, 0.999))
    wd = cfg.get("weight_decay", 0.0)
    return cfg["lr"], b1, b2, cfg.get("eps", 1e-8), wd, kind == "AdamW"


# --------------------------------------------------------------------------------------------
# Against torch.optim
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_torch(torch, dtype, num_threads, config):
    cfg = SGD_CONFIGS[config]
    lr, momentum, dampening, wd, nesterov = _sgd_kernel_args(cfg)
    rng = np.random.default_rng(1)
    for n in SIZES:
        p0 = rng.standard_normal(n).astype(dtype)
        param = p0.copy()
        buf = np.full(n, np.nan, dtype)       # first_step must not read the buffer
        tparam = torch.tensor(p0.copy(), dtype=getattr(torch, dtype.name), requires_grad=True)
        topt = torch.optim.SGD([tparam], **cfg)
        for step in range(STEPS):
            g = rng.standard_normal(n).astype(dtype)
            tparam.grad = torch.from_numpy(g.copy())
            topt.step()
            opt.sgd_step(param, readonly(g), buf, lr, momentum, dampening, wd, nesterov,
                         step == 0, num_threads)
            what = f"SGD {config} {dtype.name} n={n} step {step + 1}"
            assert_close_to_scale(param, tparam.detach().numpy(), dtype, what)
            if momentum != 0.0:
                assert_close_to_scale(buf, topt.state[tparam]["momentum_buffer"].numpy(), dtype,
                                      what + " momentum_buffer")
        assert not np.array_equal(param, p0)


@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_matches_torch(torch, dtype, num_threads, config):
    kind, cfg = ADAM_CONFIGS[config]
    lr, b1, b2, adam_eps, wd, decoupled = _adam_kernel_args(config)
    rng = np.random.default_rng(2)
    for n in SIZES:
        p0 = rng.standard_normal(n).astype(dtype)
        param = p0.copy()
        exp_avg = np.zeros(n, dtype)
        exp_avg_sq = np.zeros(n, dtype)
        tparam = torch.tensor(p0.copy(), dtype=getattr(torch, dtype.name), requires_grad=True)
        topt = getattr(torch.optim, kind)([tparam], **cfg)
        for step in range(1, STEPS + 1):
            # Gradients of varying scale, so that eps and the bias corrections both matter.
            g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(dtype)
            tparam.grad = torch.from_numpy(g.copy())
            topt.step()
            opt.adam_step(param, readonly(g), exp_avg, exp_avg_sq, lr, b1, b2, adam_eps, wd, step,
                          decoupled, num_threads)
            what = f"{config} {dtype.name} n={n} step {step}"
            state = topt.state[tparam]
            assert_close_to_scale(param, tparam.detach().numpy(), dtype, what)
            assert_close_to_scale(exp_avg, state["exp_avg"].numpy(), dtype, what + " exp_avg")
            assert_close_to_scale(exp_avg_sq, state["exp_avg_sq"].numpy(), dtype,
                                  what + " exp_avg_sq")
        assert not np.array_equal(param, p0)


# --------------------------------------------------------------------------------------------
# Against a NumPy reference (no torch needed): PyTorch's documented update rules in float64
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_sgd_matches_numpy_reference(dtype, num_threads, isa, config):
    lr, momentum, dampening, wd, nesterov = _sgd_kernel_args(SGD_CONFIGS[config])
    rng = np.random.default_rng(3)
    for n in REF_SIZES:
        p0 = rng.standard_normal(n).astype(dtype)
        grads = [rng.standard_normal(n).astype(dtype) for _ in range(STEPS)]
        param, buf = p0.copy(), np.full(n, np.nan, dtype)
        for step, g in enumerate(grads):
            opt.sgd_step(param, g, buf, lr, momentum, dampening, wd, nesterov, step == 0,
                         num_threads)
        ref_p, ref_state = ref64.sgd(p0, grads, lr, momentum, dampening, wd, nesterov)
        what = f"SGD {config} {dtype.name} {isa} n={n}"
        assert_close_to_scale(param, ref_p, dtype, what)
        if momentum:
            assert_close_to_scale(buf, ref_state["momentum_buffer"], dtype,
                                  what + " momentum_buffer")


@pytest.mark.quick
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_adam_matches_numpy_reference(dtype, num_threads, isa, config):
    lr, b1, b2, adam_eps, wd, decoupled = _adam_kernel_args(config)
    rng = np.random.default_rng(4)
    for n in REF_SIZES:
        p0 = rng.standard_normal(n).astype(dtype)
        grads = [(rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(dtype)
                 for _ in range(STEPS)]
        param, m, v = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
        for step, g in enumerate(grads, start=1):
            opt.adam_step(param, g, m, v, lr, b1, b2, adam_eps, wd, step, decoupled, num_threads)
        ref_p, ref_state = ref64.adam(p0, grads, lr, (b1, b2), adam_eps, wd, decoupled=decoupled)
        ref_m, ref_v = ref_state["exp_avg"], ref_state["exp_avg_sq"]
        what = f"{config} {dtype.name} {isa} n={n}"
        assert_close_to_scale(param, ref_p, dtype, what)
        assert_close_to_scale(m, ref_m, dtype, what + " exp_avg")
        assert_close_to_scale(v, ref_v, dtype, what + " exp_avg_sq")


@pytest.mark.parametrize("beta2", [0.99, 0.999, 0.9999])
def test_adam_first_step_state_is_accurate(dtype, num_threads, beta2):
    """From zero state, one step gives exp_avg = (1 - beta1) g and exp_avg_sq = (1 - beta2) g^2,
    each a couple of roundings from exact. 1 - beta2 must not be formed in float32 from a beta2
    already rounded to float32: 1 - float32(0.999) is 1.3e-5 (~100 ulps) away from 0.001."""
    rng = np.random.default_rng(8)
    n = 65
    g = rng.standard_normal(n).astype(dtype)
    p = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    opt.adam_step(p, g, m, v, 1e-3, 0.9, beta2, 1e-8, 0.0, 1, False, num_threads)
    g64 = g.astype(np.float64)
    tol = 4 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(m, (1 - 0.9) * g64, rtol=tol, atol=0, err_msg="exp_avg")
    np.testing.assert_allclose(v, (1 - beta2) * g64 * g64, rtol=tol, atol=0,
                               err_msg=f"exp_avg_sq with beta2={beta2}")


def test_adam_late_step_bias_correction(dtype, num_threads):
    """At step 5000 the bias corrections are ~1 (beta2 ** 5000 ~ 0.007): one step from a given
    state against the closed form."""
    rng = np.random.default_rng(5)
    n = 257
    p = rng.standard_normal(n).astype(dtype)
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = (0.01 * rng.random(n) + 1e-4).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    lr, b1, b2, e, step = 1e-3, 0.9, 0.999, 1e-8, 5000
    p64, m64, v64, g64 = (x.astype(np.float64) for x in (p, m, v, g))
    m_ref = b1 * m64 + (1 - b1) * g64
    v_ref = b2 * v64 + (1 - b2) * g64 * g64
    p_ref = p64 - lr * (m_ref / (1 - b1 ** step)) / (np.sqrt(v_ref / (1 - b2 ** step)) + e)
    opt.adam_step(p, g, m, v, lr, b1, b2, e, 0.0, step, False, num_threads)
    assert_close_to_scale(m, m_ref, dtype, "exp_avg")
    assert_close_to_scale(v, v_ref, dtype, "exp_avg_sq")
    assert_close_to_scale(p, p_ref, dtype, "param")
    if dtype == np.float64:
        # The update itself (p - p0, ~1e-3), so the check is not diluted by |p| ~ 1.
        assert_close_to_scale(p - p64, p_ref - p64, dtype, "update")


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

def test_sgd_without_momentum_ignores_buffer(dtype, num_threads):
    rng = np.random.default_rng(6)
    n = 33
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    expected = p.astype(np.float64) - 0.1 * (g + 0.01 * p.astype(np.float64))
    for first_step in (True, False):
        q = p.copy()
        buf = np.full(n, np.nan, dtype)
        opt.sgd_step(q, g, buf, 0.1, 0.0, 0.0, 0.01, False, first_step, num_threads)
        assert_close_to_scale(q, expected, dtype, f"plain SGD first_step={first_step}")


@pytest.mark.parametrize("which", ["sgd", "adam", "adamw", "rmsprop", "adagrad", "amsgrad"])
def test_optimizer_same_bits_for_any_thread_count(dtype, which):
    rng = np.random.default_rng(7)
    n = 100003
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    finals = []
    for nt in (1, 2):
        p = p0.copy()
        a, b, c = (np.zeros(n, dtype) for _ in range(3))
        for t, g in enumerate(grads, start=1):
            if which == "sgd":
                opt.sgd_step(p, g, a, 0.05, 0.9, 0.1, 0.01, False, t == 1, nt)
            elif which in ("adam", "adamw"):
                opt.adam_step(p, g, a, b, 1e-2, 0.9, 0.999, 1e-8, 0.01, t, which == "adamw", nt)
            elif which == "rmsprop":
                opt.rmsprop_step(p, g, a, b, c, 0.01, 0.9, 1e-8, 0.01, 0.9, True, nt)
            elif which == "adagrad":
                opt.adagrad_step(p, g, a, 0.1, 0.01, 1e-10, nt)
            else:
                opt.adam_step(p, g, a, b, 0.01, 0.9, 0.999, 1e-8, 0.01, t, True, nt, c)
        finals.append(b"".join(x.tobytes() for x in (p, a, b, c)))
    assert finals[0] == finals[1]


def test_optimizers_empty(dtype):
    e = np.empty(0, dtype)
    opt.sgd_step(e, e, np.empty(0, dtype), 0.1, 0.9, 0.0, 0.0, False, True, 2)
    opt.adam_step(e, e, np.empty(0, dtype), np.empty(0, dtype), 0.1, 0.9, 0.999, 1e-8, 0.0, 1,
                  False, 2)


# --------------------------------------------------------------------------------------------
# RMSprop, Adagrad, AMSGrad
# --------------------------------------------------------------------------------------------

KERNEL_SIZES = [n for n in AWKWARD if n in (1, 2, 7, 16, 17, 65, 257)] + [4099, 40009]


@pytest.mark.quick
@pytest.mark.parametrize("kernel", ["rmsprop", "rmsprop_centered_momentum", "adagrad", "amsgrad"])
def test_kernels_match_numpy_reference_at_awkward_sizes(dtype, kernel):
    rng = np.random.default_rng(9)
    for n in KERNEL_SIZES:
        p0 = rng.standard_normal(n).astype(dtype)
        grads = [(rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(dtype)
                 for _ in range(STEPS)]
        p = p0.copy()
        a, b, c = (np.zeros(n, dtype) for _ in range(3))
        nt = 2 if n > 4099 else 1
        for t, g in enumerate(grads, start=1):
            if kernel == "rmsprop":
                opt.rmsprop_step(p, readonly(g), a, p[:0], p[:0], 0.01, 0.9, 1e-8, 0.01, 0.0,
                                False, nt)
            elif kernel == "rmsprop_centered_momentum":
                opt.rmsprop_step(p, readonly(g), a, b, c, 0.01, 0.9, 1e-8, 0.0, 0.5, True, nt)
            elif kernel == "adagrad":
                opt.adagrad_step(p, readonly(g), a, 0.1 / (1 + (t - 1) * 0.1), 0.01, 1e-10, nt)
            else:
                opt.adam_step(p, readonly(g), a, b, 0.01, 0.9, 0.999, 1e-8, 0.0, t, False, nt, c)
        if kernel == "rmsprop":
            ref, st = ref64.rmsprop(p0, grads, 0.01, alpha=0.9, weight_decay=0.01)
            refs = {"square_avg": (a, st["square_avg"])}
        elif kernel == "rmsprop_centered_momentum":
            ref, st = ref64.rmsprop(p0, grads, 0.01, alpha=0.9, momentum=0.5, centered=True)
            refs = {"square_avg": (a, st["square_avg"]), "grad_avg": (b, st["grad_avg"]),
                    "momentum_buffer": (c, st["momentum_buffer"])}
        elif kernel == "adagrad":
            ref, st = ref64.adagrad(p0, grads, 0.1, lr_decay=0.1, weight_decay=0.01)
            refs = {"sum": (a, st["sum"])}
        else:
            ref, st = ref64.adam(p0, grads, 0.01, amsgrad=True)
            refs = {k: (arr, st[k]) for k, arr in zip(("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                                                      (a, b, c))}
        assert_close_to_scale(p, ref, dtype, f"{kernel} n={n}")
        for key, (got, r) in refs.items():
            assert_close_to_scale(got, r, dtype, f"{kernel} n={n} {key}")


def test_amsgrad_max_never_decreases_and_uses_the_max(dtype):
    """A large gradient then small ones (beta2 = 0.9): exp_avg_sq decays, max_exp_avg_sq keeps the
    peak, so the late AMSGrad steps are much smaller than Adam's: the denominators are
    sqrt(10 / bc2) against sqrt(10 * 0.9^30 / bc2), a ratio of 0.9^15 ~ 0.21."""
    n = 33
    grads = [np.full(n, 10.0, dtype)] + [np.full(n, 1e-3, dtype)] * 30
    last = {}
    for ams in (False, True):
        p, m, v, vmax = (np.zeros(n, dtype) for _ in range(4))
        prev = np.zeros(n, dtype)
        for t, g in enumerate(grads, start=1):
            before = p.copy()
            opt.adam_step(p, g, m, v, 1e-3, 0.9, 0.9, 1e-8, 0.0, t, False, 1,
                          vmax if ams else None)
            if ams:
                assert np.all(vmax >= prev) and np.all(vmax >= v)
                prev = vmax.copy()
        last[ams] = (p - before).astype(np.float64)
    np.testing.assert_allclose(last[True] / last[False], 0.9 ** 15, rtol=1e-3)


def test_kernels_reject_mismatched_lengths(dtype):
    p, g, s = np.zeros(5, dtype), np.zeros(4, dtype), np.zeros(5, dtype)
    with pytest.raises(ValueError, match="grad"):
        opt.rmsprop_step(p, g, s, p[:0], p[:0], 0.01, 0.99, 1e-8)
    with pytest.raises(ValueError, match="grad_avg"):
        opt.rmsprop_step(p, s, s, p[:0], p[:0], 0.01, 0.99, 1e-8, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="momentum_buf"):
        opt.rmsprop_step(p, s, s, p[:0], p[:0], 0.01, 0.99, 1e-8, 0.0, 0.9)
    with pytest.raises(ValueError, match="state_sum"):
        opt.adagrad_step(p, s, g, 0.1)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        opt.adam_step(p, s, s.copy(), s.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, 1, False, 1, g)


# -- gradient-norm reduction (clip_grad_norm) ----------------------------------------------------
NORM_LENGTHS = [1, 2, 17, 4095, 4096, 4097, 3 * 4096 + 5, 3 * 256 * 4096 + 5]


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, float("inf")])
def test_norm_accumulate_matches_float64_reference(dtype, norm_type):
    """sum |x|^p (max |x| for inf) in double, against math.fsum, the same bits for 1 and 2
    threads; lengths around the 4096-element chunks and past 256 of them (longer chunks)."""
    rng = np.random.default_rng(17)
    for n in NORM_LENGTHS:
        x = rng.standard_normal(n).astype(dtype)
        a = np.abs(x.astype(np.float64))
        got = [opt.norm_accumulate(readonly(x), norm_type, nt) for nt in (1, 2)]
        assert got[0] == got[1], f"n={n}: {got}"
        if norm_type == float("inf"):
            assert got[0] == a.max()
            continue
        ref = math.fsum(a ** norm_type)
        # each term's own rounding (pow: a few ulp) plus the double sums over a chunk and over
        # the chunks
        assert abs(got[0] - ref) <= (8 + n / 256 + 256) * np.finfo(np.float64).eps * ref, n


def test_norm_accumulate_nan_and_bad_norm_type(dtype):
    x = np.ones(3 * 4096 + 5, dtype)
    x[5000] = np.nan
    for p in (1.0, 2.0, 3.0, float("inf")):
        assert np.isnan(opt.norm_accumulate(x, p, 2))
    assert opt.norm_accumulate(np.empty(0, dtype), 2.0, 2) == 0.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="norm_type"):
            opt.norm_accumulate(x, bad, 1)
