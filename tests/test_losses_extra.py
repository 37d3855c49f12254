"""BCEWithLogitsLoss, BCELoss, HuberLoss, L1Loss and CrossEntropyLoss with class weights and label
smoothing: values and gradients against float64 NumPy references, torch, central finite
differences; stability at huge logits; thread-count independence; input validation; training
through Sequential.fit.

Tolerances follow the kernels' error sources. The elementwise kernels read the inputs and do all
arithmetic in double, rounding only the gradient to the working dtype, so against a float64
reference the loss is held to a few double ulps and the gradient to one dtype ulp. Torch computes
in the working dtype, so there the bounds are K * eps(dtype) times the magnitude of the terms that
make up each value. Cross-entropy forms z - max(z) in the working dtype (see
test_kernels_losses.py), so its bounds scale with the row spread R = max(z) - min(z).
"""
import math

import numpy as np
import pytest

import ranvier as rv
from conftest import AWKWARD, eps, readonly
from ranvier._kernels import losses as kl
from ranvier.losses import get_loss

EPS64 = float(np.finfo(np.float64).eps)
ROWS = [1, 7, 33, 129]
COLS = [1, 3, 10]
assert set(ROWS) <= set(AWKWARD)
KINDS = ["bce_logits", "bce_logits_pw", "bce", "huber", "huber_d03", "l1"]
H = 1e-6
TORCH_BCE_EPS = float(np.float32(1e-12))  # torch's BCELoss gradient floor is the float 1e-12


# -- data and float64 references ------------------------------------------------------------------
def _sigmoid64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _pos_weight(c):
    return np.linspace(0.5, 3.0, c)  # one per column, never 1 everywhere


def _make(kind, rng, shape, dtype):
    """(loss, pred, target) with random, nonzero data of ``dtype``."""
    if kind.startswith("bce_logits"):
        pred = rng.normal(scale=3.0, size=shape)
        target = rng.random(shape)                       # soft targets in (0, 1) ...
        hard = rng.random(shape) < 0.3
        target[hard] = rng.integers(0, 2, shape)[hard]   # ... and some 0/1 labels
        loss = rv.BCEWithLogitsLoss(pos_weight=_pos_weight(shape[1])
                                    if kind == "bce_logits_pw" else None)
    elif kind == "bce":
        pred = rng.uniform(0.02, 0.98, shape)
        target = rng.random(shape)
        loss = rv.BCELoss()
    elif kind.startswith("huber"):
        pred = rng.normal(scale=1.5, size=shape)
        target = rng.normal(size=shape)
        loss = rv.HuberLoss(delta=0.3 if kind == "huber_d03" else 1.0)
    else:
        pred = rng.normal(size=shape)
        target = rng.normal(size=shape)
        loss = rv.L1Loss()
    return loss, pred.astype(dtype), target.astype(dtype)


def _elementwise_ref(loss, pred, target):
    """Per-element loss, per-element d loss / d pred (unscaled) and the magnitude of the terms in
    each (for torch tolerances), all float64 from the same (rounded) inputs."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if isinstance(loss, rv.BCEWithLogitsLoss):
        w = np.ones(p.shape[1]) if loss.pos_weight is None else np.broadcast_to(
            loss.pos_weight, (p.shape[1],))
        lw = 1 + (w - 1) * t
        softplus_neg = np.log1p(np.exp(-np.abs(p))) + np.maximum(-p, 0)  # -log sigmoid(z)
        val = (1 - t) * p + lw * softplus_neg
        s = _sigmoid64(p)
        grad = s * lw - w * t
        return val, grad, np.abs((1 - t) * p) + lw * softplus_neg, s * lw + w * t
    if isinstance(loss, rv.BCELoss):
        lp, lq = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        val = -(t * lp + (1 - t) * lq)
        grad = (p - t) / np.maximum(p * (1 - p), TORCH_BCE_EPS)
        return val, grad, t * np.abs(lp) + (1 - t) * np.abs(lq), np.abs(grad)
    d = p - t
    if isinstance(loss, rv.HuberLoss):
        delta = loss.delta
        small = np.abs(d) < delta
        val = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
        grad = np.clip(d, -delta, delta)
        return val, grad, val, np.abs(grad)
    val, grad = np.abs(d), np.sign(d)
    return val, grad, val, np.abs(grad)


def _scale(reduction, size):
    return 1.0 / size if reduction == "mean" else 1.0


def _check(got, ref, bound, what):
    got64 = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    bound = np.broadcast_to(np.asarray(bound, np.float64), ref.shape)
    assert got64.shape == ref.shape, f"{what}: shape {got64.shape} vs {ref.shape}"
    assert np.isfinite(got64).all(), f"{what}: non-finite values"
    err = np.abs(got64 - ref)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0)),
                             err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} off; worst at {i}: got "
                             f"{got64[i]!r}, expected {ref[i]!r}, bound {bound[i]:.3e}")


def _fd_grad(f, x):
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(x.size):
        old = flat[i]
        flat[i] = old + H
        fp = f(x)
        flat[i] = old - H
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * H)
    return g


# -- elementwise losses: float64 NumPy reference --------------------------------------------------
@pytest.mark.parametrize("c", COLS)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_matches_float64_reference(kind, reduction, n, c, dtype, num_threads):
    rng = np.random.default_rng(1000 * n + c)
    loss, pred, target = _make(kind, rng, (n, c), dtype)
    loss.reduction = reduction
    value = loss(readonly(pred), readonly(target))
    g = loss.backward()
    assert isinstance(value, float) and g.dtype == dtype and g.shape == (n, c)
    val, grad, val_mag, grad_mag = _elementwise_ref(loss, pred, target)
    scale = _scale(reduction, n * c)
    # Everything in double: the loss to a few double ulps of the summed term magnitudes.
    assert abs(value - val.sum() * scale) <= 8 * (n * c + 4) * EPS64 * val_mag.sum() * scale, (
        value, val.sum() * scale)
    # The gradient is a double (a few ulps of its terms, e.g. sigmoid(z) and t) rounded once to
    # the dtype.
    gref = grad * scale
    _check(g, gref, eps(dtype) * np.abs(gref) + 4 * EPS64 * grad_mag * scale
           + np.finfo(dtype).tiny, f"{kind} grad")


@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_kernels_match_reference_across_chunks(kind, dtype, num_threads):
    """The kernels called directly with 1 or 2 threads on lengths around the 4096-element chunks."""
    rng = np.random.default_rng(7)
    for n in (1, 4095, 4097, 3 * 4096 + 5):
        c = 5 if n > 1 else 1
        loss, pred, target = _make(kind, rng, (n, c), dtype)
        buf = np.full(n * c + 2, np.nan, dtype)
        grad = buf[1:-1]
        p, t = readonly(pred.reshape(-1)), readonly(target.reshape(-1))
        scale = 1.0 / (n * c)
        if isinstance(loss, rv.BCEWithLogitsLoss):
            pw = None if loss.pos_weight is None else loss._pos_weight_for(c)
            total, hits = kl.bce_with_logits(p, t, grad, pw, num_threads, scale)
            assert hits == np.count_nonzero((pred > 0) == (target > 0.5))
        elif isinstance(loss, rv.BCELoss):
            total, hits = kl.bce(p, t, grad, num_threads, scale)
            assert hits == np.count_nonzero((pred > 0.5) == (target > 0.5))
        elif isinstance(loss, rv.HuberLoss):
            total = kl.huber(p, t, grad, loss.delta, num_threads, scale)
        else:
            total = kl.l1(p, t, grad, num_threads, scale)
        val, gref, val_mag, grad_mag = _elementwise_ref(loss, pred, target)
        assert abs(total - math.fsum(val.reshape(-1))) <= 8 * (n * c + 4) * EPS64 * val_mag.sum()
        gref = gref.reshape(-1) * scale
        _check(grad, gref, eps(dtype) * np.abs(gref) + 4 * EPS64 * grad_mag.reshape(-1) * scale
               + np.finfo(dtype).tiny, f"{kind} n={n}")
        assert np.isnan(buf[0]) and np.isnan(buf[-1]), "grad written out of bounds"


def test_elementwise_kernels_empty(dtype):
    e = np.empty(0, dtype)
    assert kl.bce_with_logits(e, e, np.empty(0, dtype), None, 2, 1.0) == (0.0, 0)
    assert kl.bce(e, e, np.empty(0, dtype), 2, 1.0) == (0.0, 0)
    assert kl.huber(e, e, np.empty(0, dtype), 1.0, 2, 1.0) == 0.0
    assert kl.l1(e, e, np.empty(0, dtype), 2, 1.0) == 0.0


# -- elementwise losses against torch --------------------------------------------------------------
def _torch_loss(torch, loss, reduction):
    F = torch.nn.functional
    if isinstance(loss, rv.BCEWithLogitsLoss):
        pw = None if loss.pos_weight is None else torch.from_numpy(loss.pos_weight.copy())
        return lambda p, t: F.binary_cross_entropy_with_logits(
            p, t, reduction=reduction, pos_weight=None if pw is None else pw.to(p.dtype))
    if isinstance(loss, rv.BCELoss):
        return lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction)
    if isinstance(loss, rv.HuberLoss):
        return lambda p, t: F.huber_loss(p, t, reduction=reduction, delta=loss.delta)
    return lambda p, t: F.l1_loss(p, t, reduction=reduction)


@pytest.mark.parametrize("c", COLS)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_matches_torch(torch, kind, reduction, n, c, dtype, num_threads):
    rng = np.random.default_rng(2000 * n + c)
    loss, pred, target = _make(kind, rng, (n, c), dtype)
    loss.reduction = reduction
    value = loss(pred, target)
    g = loss.backward()
    tp = torch.from_numpy(pred.copy()).requires_grad_(True)
    tl = _torch_loss(torch, loss, reduction)(tp, torch.from_numpy(target.copy()))
    tl.backward()
    _, _, val_mag, grad_mag = _elementwise_ref(loss, pred, target)
    scale = _scale(reduction, n * c)
    e = eps(dtype)
    # torch: a few roundings per element in the dtype, then a dtype sum (and the 1/N factor).
    bound = 8 * e * val_mag.sum() * scale + 4 * e * math.log2(n * c + 1) * abs(tl.item())
    assert abs(value - tl.item()) <= bound, (value, tl.item())
    _check(g, tp.grad.numpy(), 8 * e * grad_mag * scale + np.finfo(dtype).tiny, f"{kind} grad")


def test_one_dimensional_target_for_single_output(rng, dtype):
    p = rng.normal(size=(17, 1)).astype(dtype)
    t = rng.random(17).astype(dtype)
    for loss in (rv.BCEWithLogitsLoss(), rv.HuberLoss(), rv.L1Loss()):
        a = loss(p, t)
        ga = loss.backward().copy()
        assert ga.shape == (17, 1)
        assert a == loss(p, t.reshape(-1, 1))
        np.testing.assert_array_equal(ga, loss.backward())
    loss = rv.BCELoss()
    q = _sigmoid64(p).astype(dtype)
    assert loss(q, t) == loss(q, t.reshape(-1, 1)) and loss.backward().shape == (17, 1)


# -- finite differences ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_gradient_matches_finite_differences(kind, reduction):
    rng = np.random.default_rng(3)
    loss, pred, target = _make(kind, rng, (7, 3), np.float64)
    if kind.startswith("huber"):  # keep clear of the kink at |d| = delta (FD step 1e-6)
        d = pred - target
        near = np.abs(np.abs(d) - loss.delta) < 1e-3
        pred[near] += 0.01
    if kind == "l1":               # and of the kink at d = 0
        assert np.abs(pred - target).min() > 1e-3
    loss.reduction = reduction
    loss(pred, target)
    g = loss.backward().copy()
    fresh = type(loss)(reduction=reduction, **(
        {"pos_weight": loss.pos_weight} if kind == "bce_logits_pw" else
        {"delta": loss.delta} if kind.startswith("huber") else {}))
    num = _fd_grad(lambda x: fresh(x, target), pred.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


# -- stability and exact values -------------------------------------------------------------------
def test_bce_with_logits_huge_logits_finite_and_exact(dtype):
    z = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, 1e4, -1e4, 30.0]], dtype)
    t = np.array([[0.3, 0.3, 0.3, 1.0], [0.0, 0.0, 1.0, 0.75]], dtype)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    for pos_weight in (None, 2.5):
        w = 1.0 if pos_weight is None else pos_weight
        loss = rv.BCEWithLogitsLoss(reduction="sum", pos_weight=pos_weight)
        with np.errstate(all="raise"):
            value = loss(z, t)
        g = loss.backward()
        assert np.isfinite(value) and np.isfinite(g).all()
        # exp(-1e4) is 0 in double: each term is exactly (1 - t) z + lw max(-z, 0), except the
        # z = 0 term (lw log 2) and z = 30 (lw log1p(exp(-30))).
        lw = 1 + (w - 1) * t64
        exact = (1 - t64) * z64 + lw * (np.maximum(-z64, 0) + np.log1p(np.exp(-np.abs(z64))))
        assert abs(value - math.fsum(exact.reshape(-1))) <= 16 * EPS64 * np.abs(exact).sum()
        sig = np.where(z64 > 0, 1.0, 0.0)
        sig[0, 2], sig[1, 3] = 0.5, 1 / (1 + math.exp(-30.0))
        np.testing.assert_allclose(g, sig * lw - w * t64, rtol=eps(dtype), atol=0)


def test_bce_with_logits_huge_logits_matches_torch(torch, rng, dtype):
    z = (rng.normal(size=(33, 3)) * 1e4).astype(dtype)
    t = rng.random((33, 3)).astype(dtype)
    for pw in (None, np.array([0.5, 1.0, 4.0])):
        loss = rv.BCEWithLogitsLoss(pos_weight=pw)
        value = loss(z, t)
        g = loss.backward()
        assert np.isfinite(value) and np.isfinite(g).all()
        tz = torch.from_numpy(z.copy()).requires_grad_(True)
        tl = torch.nn.functional.binary_cross_entropy_with_logits(
            tz, torch.from_numpy(t.copy()),
            pos_weight=None if pw is None else torch.from_numpy(pw).to(tz.dtype))
        tl.backward()
        _, _, val_mag, grad_mag = _elementwise_ref(loss, z, t)
        assert abs(value - tl.item()) <= 8 * eps(dtype) * val_mag.mean()
        # sigmoid(z) lw - w t cancels when t is near 1: bound by the terms, not the result.
        _check(g, tz.grad.numpy(), 8 * eps(dtype) * grad_mag / z.size + np.finfo(dtype).tiny,
               "huge logits grad")


def test_bce_clamps_log_at_minus_100_as_torch(torch, dtype):
    p = np.array([[0.0, 1.0, 1e-30, 0.5, 1.0, 0.0]], dtype)
    t = np.array([[1.0, 0.0, 0.0, 0.5, 1.0, 0.0]], dtype)
    loss = rv.BCELoss(reduction="sum")
    with np.errstate(all="raise"):
        value = loss(p, t)
    g = loss.backward()
    # 100 + 100 + (tiny) + log 2 + 0 + 0; gradient (p - t) / max(p (1 - p), 1e-12)
    p64 = p.astype(np.float64)
    assert abs(value - (200 - math.log1p(-float(p[0, 2])) + math.log(2))) <= 1e-13
    ref_g = (p64 - t) / np.maximum(p64 * (1 - p64), TORCH_BCE_EPS)
    np.testing.assert_allclose(g, ref_g, rtol=eps(dtype))
    tp = torch.from_numpy(p.copy()).requires_grad_(True)
    tl = torch.nn.functional.binary_cross_entropy(tp, torch.from_numpy(t.copy()), reduction="sum")
    tl.backward()
    np.testing.assert_allclose(value, tl.item(), rtol=4 * eps(dtype))
    np.testing.assert_allclose(g, tp.grad.numpy(), rtol=4 * eps(dtype))


def test_l1_and_huber_gradient_at_ties_and_threshold(torch):
    p = np.array([[0.5, -1.0, 2.0, 3.0, 1.0]])
    t = np.array([[0.5, 0.0, 0.0, 1.0, 0.0]])      # d = 0, -1, 2, 2, 1 (|d| = delta = 1)
    l1, hub = rv.L1Loss(reduction="sum"), rv.HuberLoss(reduction="sum", delta=1.0)
    assert l1(p, t) == 6.0
    np.testing.assert_array_equal(l1.backward(), [[0.0, -1.0, 1.0, 1.0, 1.0]])
    assert hub(p, t) == 0.0 + 0.5 + 1.5 + 1.5 + 0.5
    np.testing.assert_array_equal(hub.backward(), [[0.0, -1.0, 1.0, 1.0, 1.0]])
    for ours, fn in ((l1, torch.nn.functional.l1_loss), (hub, torch.nn.functional.huber_loss)):
        tp = torch.from_numpy(p.copy()).requires_grad_(True)
        tl = fn(tp, torch.from_numpy(t), reduction="sum")
        tl.backward()
        assert ours(p, t) == tl.item()
        np.testing.assert_array_equal(ours.backward(), tp.grad.numpy())


# -- cross-entropy with class weights and label smoothing -----------------------------------------
CE_SHAPES = [(1, 3), (7, 10), (33, 3), (129, 10)]
CE_CONFIGS = [(None, 0.0), (None, 0.2), ("w", 0.0), ("w", 0.2), ("w", 1.0)]


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _ce_case(rng, n, c, dtype, target_kind, weight):
    z = (3 * rng.standard_normal((n, c))).astype(dtype)
    w = None if weight is None else rng.uniform(0.2, 3.0, c)
    if target_kind == "labels":
        t = rng.integers(0, c, n)
    else:
        t = rng.random((n, c)) + 0.01
        t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    return z, t, w


def _ce_ref(z, t, w, smoothing, reduction):
    """torch's definition in float64: (row losses, gradient, scale, effective target u)."""
    n, c = z.shape
    logp = _log_softmax64(z)
    w64 = np.ones(c) if w is None else np.asarray(w, np.float64)
    if t.ndim == 1:
        onehot = np.zeros((n, c))
        onehot[np.arange(n), t] = 1
        u = w64 * ((1 - smoothing) * onehot + smoothing / c)
        denom = (w64[t].sum() if w is not None else n) if reduction == "mean" else 1.0
    else:
        u = w64 * ((1 - smoothing) * np.asarray(t, np.float64) + smoothing / c)
        denom = n if reduction == "mean" else 1.0
    rows = -(u * logp).sum(axis=1)
    grad = np.exp(logp) * u.sum(axis=1, keepdims=True) - u
    return rows, grad / denom, 1.0 / denom, u, np.exp(logp)


def _ce_bounds(z, u, p, scale, dtype, k):
    r = np.asarray(z, np.float64).max(axis=1, keepdims=True) - np.asarray(z, np.float64).min(
        axis=1, keepdims=True)
    usum = u.sum(axis=1, keepdims=True)
    e = eps(dtype)
    value_bound = k * e * ((r[:, 0] + 2) * usum[:, 0]).sum() * scale
    grad_bound = k * e * scale * ((r + 2) * p * usum + u) + np.finfo(dtype).tiny
    return value_bound, grad_bound


@pytest.mark.parametrize("weight,smoothing", CE_CONFIGS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", CE_SHAPES)
def test_ce_weights_smoothing_match_float64_reference(n, c, reduction, target_kind, weight,
                                                      smoothing, dtype, num_threads):
    rng = np.random.default_rng(10 * n + c)
    z, t, w = _ce_case(rng, n, c, dtype, target_kind, weight)
    loss = rv.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing, weight=w)
    value = loss(readonly(z), readonly(t))
    g = loss.backward()
    assert g.dtype == dtype and g.shape == (n, c)
    rows, gref, scale, u, p = _ce_ref(z, t, w, smoothing, reduction)
    vb, gb = _ce_bounds(z, u, p, scale, dtype, 4)
    assert abs(value - rows.sum() * scale) <= vb + 8 * n * c * EPS64 * abs(rows.sum() * scale), (
        value, rows.sum() * scale)
    _check(g, gref, gb, f"ce {target_kind} w={weight} eps={smoothing}")


@pytest.mark.parametrize("weight,smoothing", CE_CONFIGS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", CE_SHAPES)
def test_ce_weights_smoothing_match_torch(torch, n, c, reduction, target_kind, weight, smoothing,
                                          dtype, num_threads):
    rng = np.random.default_rng(20 * n + c)
    z, t, w = _ce_case(rng, n, c, dtype, target_kind, weight)
    loss = rv.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing, weight=w)
    value = loss(z, t)
    g = loss.backward()
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tw = None if w is None else torch.from_numpy(w.astype(dtype))
    tl = torch.nn.functional.cross_entropy(tz, torch.from_numpy(np.asarray(t).copy()), weight=tw,
                                           reduction=reduction, label_smoothing=smoothing)
    tl.backward()
    _, _, scale, u, p = _ce_ref(z, t, w, smoothing, reduction)
    vb, gb = _ce_bounds(z, u, p, scale, dtype, 16)
    assert abs(value - tl.item()) <= vb, (value, tl.item())
    _check(g, tz.grad.numpy(), gb, f"ce vs torch {target_kind} w={weight} eps={smoothing}")


@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_ce_weights_smoothing_gradient_matches_finite_differences(rng, target_kind):
    z, t, w = _ce_case(rng, 7, 5, np.float64, target_kind, "w")
    for reduction in ("mean", "sum"):
        loss = rv.CrossEntropyLoss(reduction=reduction, label_smoothing=0.15, weight=w)
        loss(z, t)
        num = _fd_grad(lambda x: rv.CrossEntropyLoss(reduction=reduction, label_smoothing=0.15,
                                                     weight=w)(x, t), z.copy())
        np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-8)


def test_ce_weighted_kernels_match_plain_kernels_without_weights(dtype, num_threads):
    """weight=None, label_smoothing=0 through the new kernels gives the old kernels' bits."""
    rng = np.random.default_rng(5)
    n, c = 257, 17
    z = (3 * rng.standard_normal((n, c))).astype(dtype)
    labels = rng.integers(0, c, n).astype(np.int64)
    t = rng.random((n, c)).astype(dtype)
    g1, g2 = np.empty((n, c), dtype), np.empty((n, c), dtype)
    r1, r2 = np.empty(n), np.empty(n)
    h1, h2 = np.empty(n, np.int8), np.empty(n, np.int8)
    a = kl.softmax_cross_entropy_labels(z, labels, g1, r1, 0.5, num_threads, h1)
    b = kl.softmax_cross_entropy_labels_weighted(z, labels, g2, r2, 0.5, None, 0.0, num_threads,
                                                 h2)
    assert a[1] == b[1]
    np.testing.assert_allclose(r2, r1, rtol=4 * EPS64)
    # Same exponents (z - max in the dtype); the old kernel rounds scale * p to the dtype before
    # subtracting the label's scale, the new one rounds once: they differ by eps * scale * p.
    p = np.exp(_log_softmax64(z))
    onehot = np.eye(c)[labels]
    _check(g2, g1, 2 * eps(dtype) * 0.5 * (p + onehot) + np.finfo(dtype).tiny, "labels")
    a = kl.softmax_cross_entropy_probs(z, t, g1, r1, 0.5, num_threads)
    b = kl.softmax_cross_entropy_probs_weighted(z, t, g2, r2, 0.5, None, 0.0, num_threads)
    assert math.isclose(a, b, rel_tol=(n + 4) * EPS64)
    tsum = t.astype(np.float64).sum(axis=1, keepdims=True)
    _check(g2, g1, 2 * eps(dtype) * 0.5 * (p * tsum + t) + np.finfo(dtype).tiny, "probs")


def test_ce_weighted_kernels_check_weight_length():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="weight has 2 entries, expected 3"):
        kl.softmax_cross_entropy_labels_weighted(z, np.zeros(2, np.int64), np.empty((2, 3)),
                                                 np.empty(2), 1.0, np.ones(2), 0.0)
    with pytest.raises(ValueError, match="weight has 4 entries, expected 3"):
        kl.softmax_cross_entropy_probs_weighted(z, z, np.empty((2, 3)), np.empty(2), 1.0,
                                                np.ones(4), 0.0)
    with pytest.raises(ValueError, match="pos_weight has 2 entries"):
        kl.bce_with_logits(np.zeros(3), np.zeros(3), np.empty(3), np.ones(2))


def test_ce_huge_logits_with_weights_and_smoothing_match_torch(torch, rng, dtype):
    z = (rng.normal(size=(17, 7)) * 1e4).astype(dtype)
    y = rng.integers(0, 7, size=17)
    w = rng.uniform(0.5, 2.0, 7)
    loss = rv.CrossEntropyLoss(label_smoothing=0.1, weight=w)
    value = loss(z, y)
    g = loss.backward()
    assert np.isfinite(value) and np.isfinite(g).all()
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y),
                                           weight=torch.from_numpy(w.astype(dtype)),
                                           label_smoothing=0.1)
    tl.backward()
    np.testing.assert_allclose(value, tl.item(), rtol=16 * eps(dtype))
    np.testing.assert_allclose(g, tz.grad.numpy(), atol=16 * eps(dtype))


def test_ce_zero_weight_sum_gives_nan_as_torch(torch):
    z = np.array([[1.0, 2.0, 0.5]])
    loss = rv.CrossEntropyLoss(weight=[0.0, 1.0, 1.0])
    value = loss(z, [0])
    tw = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    tl = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.tensor([0]), weight=tw)
    assert math.isnan(value) and math.isnan(tl.item())


# -- thread-count independence ---------------------------------------------------------------------
def _all_losses(c):
    return [rv.BCEWithLogitsLoss(), rv.BCEWithLogitsLoss(pos_weight=_pos_weight(c)), rv.BCELoss(),
            rv.HuberLoss(delta=0.5), rv.L1Loss(),
            rv.CrossEntropyLoss(label_smoothing=0.1, weight=np.linspace(0.5, 2, c))]


def _inputs_for(loss, z, t01, labels):
    if isinstance(loss, rv.BCELoss):
        return _sigmoid64(z).astype(z.dtype), t01
    if isinstance(loss, rv.CrossEntropyLoss):
        return z, labels
    return z, t01


def test_loss_value_independent_of_threads(rng, dtype, num_threads):
    """Above the parallel threshold (129 x 300 elements): the same float for any thread count."""
    n, c = 129, 300
    z = rng.normal(scale=2.0, size=(n, c)).astype(dtype)
    t01 = rng.random((n, c)).astype(dtype)
    labels = rng.integers(0, c, n)
    for loss in _all_losses(c):
        p, t = _inputs_for(loss, z, t01, labels)
        rv.set_num_threads(num_threads)
        got = (loss(p, t), loss.backward().copy())
        rv.set_num_threads(1)
        ref = (loss(p, t), loss.backward().copy())
        assert got[0] == ref[0], f"{loss!r}: {got[0]!r} vs {ref[0]!r}"
        np.testing.assert_array_equal(got[1], ref[1])


def test_train_forward_equals_forward(rng, dtype):
    """fit's fast path (converted target, reused buffers) gives forward's value and gradient."""
    n, c = 33, 3
    z = rng.normal(size=(n, c)).astype(dtype)
    t01 = rng.random((n, c)).astype(dtype)
    labels = rng.integers(0, c, n)
    onehot = np.eye(c, dtype=dtype)[labels]
    for loss in _all_losses(c) + [rv.CrossEntropyLoss(label_smoothing=0.3, weight=[1, 2, 3])]:
        p, t = _inputs_for(loss, z, t01, labels)
        if isinstance(loss, rv.CrossEntropyLoss):
            cases = [(np.ascontiguousarray(labels, np.int64), labels), (onehot, onehot)]
        else:
            cases = [(t, t)]
        for fast_t, slow_t in cases:
            value = loss(p, slow_t)
            g = loss.backward().copy()
            fast, hits = loss._train_forward(p, fast_t)
            assert fast == value
            np.testing.assert_array_equal(loss.backward(), g)
            if isinstance(loss, (rv.BCEWithLogitsLoss, rv.BCELoss)):
                thr = 0.0 if isinstance(loss, rv.BCEWithLogitsLoss) else 0.5
                assert math.isclose(hits, np.count_nonzero((p > thr) == (t > 0.5)) / c)
            elif isinstance(loss, rv.CrossEntropyLoss):
                assert hits == np.count_nonzero(p.argmax(axis=1) == labels)
            else:
                assert hits is None


# -- validation ------------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument(rng):
    p = rng.normal(size=(5, 3))
    t = rng.random((5, 3))
    for loss in (rv.BCEWithLogitsLoss(), rv.BCELoss(), rv.HuberLoss(), rv.L1Loss()):
        q = _sigmoid64(p) if isinstance(loss, rv.BCELoss) else p
        with pytest.raises(ValueError, match=r"target shape \(5, 2\) does not match pred"):
            loss(q, t[:, :2])
        with pytest.raises(ValueError, match=r"target shape \(4, 3\) does not match pred"):
            loss(q, t[:4])
        with pytest.raises(TypeError, match="target must be numeric"):
            loss(q, np.full((5, 3), "a"))
        with pytest.raises(TypeError, match="target must be a numeric array"):
            loss(q, "abc")
        with pytest.raises(TypeError, match="pred must be a float32 or float64"):
            loss(np.ones((5, 3), np.int64), t)
        with pytest.raises(ValueError, match="pred must be 2-D"):
            loss(q[:, 0], t[:, 0])
    for loss in (rv.BCEWithLogitsLoss(), rv.BCELoss()):
        q = _sigmoid64(p) if isinstance(loss, rv.BCELoss) else p
        for bad in (1.5, -0.25, np.nan):
            tb = t.copy()
            tb[2, 1] = bad
            with pytest.raises(ValueError, match=r"target must hold values in \[0, 1\]"):
                loss(q, tb)
    for bad in (1.0 + 1e-9, -1e-9, np.nan):
        q = _sigmoid64(p)
        q[4, 2] = bad
        with pytest.raises(ValueError, match=r"pred must hold values in \[0, 1\]"):
            rv.BCELoss()(q, t)
        if not np.isnan(bad):  # fit's unchecked path still names pred instead of "diverged"
            with pytest.raises(ValueError, match=r"pred must hold values in \[0, 1\]"):
                rv.BCELoss()._train_forward(q, t)
    with pytest.raises(ValueError, match="target has labels out of range"):
        rv.CrossEntropyLoss(weight=[1, 2, 3])(p, [0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="weight has 2 entries but pred has 3 classes"):
        rv.CrossEntropyLoss(weight=[1.0, 2.0])(p, [0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="pos_weight has 2 entries but pred has 3 columns"):
        rv.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])(p, t)


@pytest.mark.parametrize("make,match,exc", [
    (lambda: rv.CrossEntropyLoss(weight=[1.0, -0.5]), "weight must be non-negative", ValueError),
    (lambda: rv.CrossEntropyLoss(weight=[1.0, np.nan]), "weight contains NaN", ValueError),
    (lambda: rv.CrossEntropyLoss(weight=[[1.0, 2.0]]), "weight must be a non-empty 1-D",
     ValueError),
    (lambda: rv.CrossEntropyLoss(weight=["a", "b"]), "weight must be numeric", TypeError),
    (lambda: rv.BCEWithLogitsLoss(pos_weight=-1.0), "pos_weight must be non-negative",
     ValueError),
    (lambda: rv.BCEWithLogitsLoss(pos_weight=[2.0, np.inf]), "pos_weight contains NaN",
     ValueError),
    (lambda: rv.CrossEntropyLoss(label_smoothing=1.5), "label_smoothing must be <= 1",
     ValueError),
    (lambda: rv.CrossEntropyLoss(label_smoothing=-0.1), "label_smoothing must be >= 0",
     ValueError),
    (lambda: rv.CrossEntropyLoss(label_smoothing="0.1"), "label_smoothing must be a number",
     TypeError),
    (lambda: rv.HuberLoss(delta=0.0), "delta must be > 0", ValueError),
    (lambda: rv.HuberLoss(delta=-1.0), "delta must be > 0", ValueError),
    (lambda: rv.HuberLoss(delta=np.inf), "delta must be finite", ValueError),
    (lambda: rv.L1Loss(reduction="none"), "reduction must be one of", ValueError),
    (lambda: rv.BCELoss(reduction="avg"), "reduction must be one of", ValueError),
])
def test_bad_hyperparameters_raise(make, match, exc):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("cls", [rv.BCEWithLogitsLoss, rv.BCELoss, rv.HuberLoss, rv.L1Loss])
def test_backward_before_forward_raises(cls):
    with pytest.raises(RuntimeError, match="before forward"):
        cls().backward()


def test_get_loss_names():
    for name, cls in (("bce_with_logits", rv.BCEWithLogitsLoss), ("BCE", rv.BCELoss),
                      ("binary_crossentropy", rv.BCELoss), ("huber", rv.HuberLoss),
                      ("l1", rv.L1Loss), ("mae", rv.L1Loss),
                      ("cross_entropy", rv.CrossEntropyLoss)):
        assert type(get_loss(name)) is cls
    inst = rv.HuberLoss(delta=2.0)
    assert get_loss(inst) is inst and type(get_loss(rv.L1Loss)) is rv.L1Loss
    with pytest.raises(ValueError, match="bce_with_logits"):
        get_loss("hinge")
    assert repr(rv.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0)"
    assert "pos_weight=[2.0]" in repr(rv.BCEWithLogitsLoss(pos_weight=2))
    assert "label_smoothing=0.1" in repr(rv.CrossEntropyLoss(label_smoothing=0.1))


# -- training through Sequential.fit ---------------------------------------------------------------
def _separable(rng, n=400, d=5):
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (X.astype(np.float64) @ w > 0).astype(np.int64)
    return X, y


def test_fit_binary_classifier_with_bce_with_logits(rng):
    X, y = _separable(rng)
    model = rv.Sequential([rv.Dense(5, 16, seed=0), rv.ReLU(), rv.Dense(16, 1, seed=1)])
    hist = model.fit(X, y, loss=rv.BCEWithLogitsLoss(), optimizer=rv.Adam(model.parameters(),
                                                                           lr=0.02),
                     epochs=30, batch_size=32, seed=0, verbose=0, validation_data=(X, y))
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    acc = hist["accuracy"]
    assert all(0.0 <= a <= 1.0 for a in acc)
    assert acc[-1] > 0.95 and hist["loss"][-1] < 0.5 * hist["loss"][0]
    pred = model.predict(X)
    assert pred.shape == (400,) and set(np.unique(pred)) <= {0, 1}
    assert np.mean(pred == y) > 0.95
    logits = model.forward(X)
    np.testing.assert_array_equal(pred, (logits[:, 0] > 0).astype(np.int64))
    result = model.evaluate(X, y)
    assert result["accuracy"] == np.mean(pred == y) == hist["val_accuracy"][-1]
    assert math.isclose(result["loss"], rv.BCEWithLogitsLoss()(logits, y), rel_tol=1e-12)
    # Labels outside [0, 1] are refused before training.
    with pytest.raises(ValueError, match=r"y must hold values in \[0, 1\]"):
        model.fit(X, y * 2, loss=rv.BCEWithLogitsLoss(), epochs=1, verbose=0)


def test_fit_history_accuracy_is_the_thresholded_accuracy(rng):
    """lr = 0, no shuffle: the recorded accuracy is predict's accuracy on the training set, for
    one output (BCEWithLogits on logits, BCELoss after Sigmoid) and for three outputs."""
    X, y = _separable(rng, n=100)
    Y3 = np.stack([y, 1 - y, (X[:, 0] > 0).astype(np.int64)], axis=1)
    for loss, layers, target in (
            (rv.BCEWithLogitsLoss(), [rv.Dense(5, 1, seed=2)], y),
            (rv.BCELoss(), [rv.Dense(5, 1, seed=3), rv.Sigmoid()], y),
            (rv.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0]), [rv.Dense(5, 3, seed=4)], Y3)):
        model = rv.Sequential(layers)
        hist = model.fit(X, target, loss=loss, optimizer=rv.SGD(model.parameters(), lr=0.0),
                         epochs=1, batch_size=32, shuffle=False, verbose=0)
        pred = model.predict(X)
        assert pred.shape == target.shape and pred.dtype == np.int64
        acc = np.mean(pred == target)
        assert 0.0 < acc < 1.0
        assert math.isclose(hist["accuracy"][0], acc, rel_tol=1e-12)
        assert math.isclose(model.evaluate(X, target)["accuracy"], acc, rel_tol=1e-12)
        ref = type(loss)(pos_weight=loss.pos_weight) if isinstance(
            loss, rv.BCEWithLogitsLoss) else type(loss)()
        assert math.isclose(hist["loss"][0], ref(model.forward(X), target), rel_tol=1e-6)


def test_fit_bce_after_sigmoid_trains(rng):
    X, y = _separable(rng)
    model = rv.Sequential([rv.Dense(5, 16, seed=0), rv.Tanh(), rv.Dense(16, 1, seed=1),
                           rv.Sigmoid()])
    hist = model.fit(X, y.astype(np.float64), loss="bce",
                     optimizer=rv.Adam(model.parameters(), lr=0.02), epochs=30, seed=0,
                     verbose=0)
    assert hist["accuracy"][-1] > 0.95 and np.mean(model.predict(X) == y) > 0.95


@pytest.mark.parametrize("loss", [rv.HuberLoss(delta=0.5), rv.L1Loss()], ids=["huber", "l1"])
def test_fit_regression_reduces_loss(rng, dtype, loss):
    w_true = np.array([1.5, -2.0, 0.5])
    X = rng.normal(size=(256, 3)).astype(dtype)
    y = X.astype(np.float64) @ w_true + 0.3
    y[::17] += rng.normal(scale=20.0, size=y[::17].shape)   # outliers
    model = rv.Sequential([rv.Dense(3, 1, dtype=dtype, seed=0)])
    hist = model.fit(X, y, loss=loss, optimizer=rv.Adam(model.parameters(), lr=0.05),
                     epochs=40, batch_size=32, seed=0, verbose=0)
    assert set(hist.history) == {"loss"}
    fresh = type(loss)(**({"delta": 0.5} if isinstance(loss, rv.HuberLoss) else {}))
    # The outliers' share of the loss cannot be trained away: compare with the true line's loss.
    floor = fresh((X.astype(np.float64) @ w_true + 0.3).reshape(-1, 1), y)
    assert hist["loss"][0] > 2 * floor
    assert hist["loss"][-1] < 1.1 * floor, (hist["loss"], floor)
    # Robust losses fit the inliers despite the outliers.
    np.testing.assert_allclose(model[0].weight.data[0], w_true, atol=0.1)
    pred = model.predict(X)
    assert pred.shape == (256, 1) and pred.dtype == dtype
    assert math.isclose(model.evaluate(X, y)["loss"], fresh(pred, y), rel_tol=1e-12)


def test_cross_entropy_weight_is_the_first_argument_as_in_torch():
    w = np.array([1.0, 2.0, 0.5])
    loss = rv.CrossEntropyLoss(w)
    np.testing.assert_array_equal(loss.weight, w)
    with pytest.raises(TypeError):
        rv.CrossEntropyLoss(w, "sum")  # reduction is keyword-only, as torch's is in practice


def test_predict_proba_for_binary_losses(rng):
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    logit_model = rv.Sequential([rv.Dense(3, 1, seed=0)])
    logit_model.fit(X, y, loss=rv.BCEWithLogitsLoss(), epochs=2, verbose=0)
    z = logit_model.forward(X)
    p = logit_model.predict_proba(X)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6)
    np.testing.assert_array_equal(logit_model.predict(X), (p[:, 0] > 0.5).astype(np.int64))
    prob_model = rv.Sequential([rv.Dense(3, 1, seed=0), rv.Sigmoid()])
    prob_model.fit(X, y, loss=rv.BCELoss(), epochs=2, verbose=0)
    np.testing.assert_array_equal(prob_model.predict_proba(X), prob_model.forward(X))
