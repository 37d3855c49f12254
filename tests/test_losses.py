"""Losses through the public API (CrossEntropyLoss with class weights and label smoothing, MSELoss,
BCEWithLogitsLoss, BCELoss, HuberLoss, L1Loss): values and gradients against the float64
references of _reference.py, central finite differences and torch autograd (Dense + activation +
Dense + loss chains too); stability at huge logits; thread-count independence; input validation;
training through Sequential.fit.

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

import _reference as ref64
import ranvier as rv
from _assert import assert_within
from _losses import KINDS, column_pos_weight, make_case
from _losses import reference as case_reference
from _reference import fd_grad
from conftest import AWKWARD, eps, readonly
from ranvier.losses import get_loss

EPS64 = float(np.finfo(np.float64).eps)
SHAPES = [(1, 2), (2, 5), (7, 16), (17, 33), (65, 7), (129, 257)]  # (batch, classes)
ROWS = [1, 7, 33, 129]
COLS = [1, 3, 10]
assert {d for s in SHAPES for d in s} <= set(AWKWARD) and set(ROWS) <= set(AWKWARD)


# -- values and gradients against numpy -----------------------------------------------------------
@pytest.mark.quick
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", SHAPES)
def test_cross_entropy_labels_matches_reference(rng, dtype, reduction, n, c):
    z = (rng.normal(size=(n, c)) * 3).astype(dtype)
    y = rng.integers(0, c, size=n)
    loss = rv.CrossEntropyLoss(reduction=reduction)
    value = loss(z, y)
    g = loss.backward()
    assert isinstance(value, float) and g.dtype == dtype and g.shape == (n, c)
    logp = ref64.log_softmax(z)
    rows = -logp[np.arange(n), y]
    scale = 1.0 / n if reduction == "mean" else 1.0
    tol = 50 * eps(dtype)
    np.testing.assert_allclose(value, rows.sum() * scale, rtol=tol)
    ref_g = (np.exp(logp) - ref64.onehot(y, c)) * scale
    np.testing.assert_allclose(g, ref_g, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=tol * scale * c)  # softmax - onehot


@pytest.mark.parametrize("n,c", SHAPES)
def test_cross_entropy_onehot_equals_labels(rng, dtype, n, c):
    z = rng.normal(size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    a, b = rv.CrossEntropyLoss(), rv.CrossEntropyLoss()
    va, vb = a(z, y), b(z, ref64.onehot(y, c, dtype))
    tol = 20 * eps(dtype)
    np.testing.assert_allclose(va, vb, rtol=tol)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=tol, atol=tol / n)


def test_cross_entropy_soft_targets_match_reference(rng, dtype):
    n, c = 17, 7
    z = rng.normal(size=(n, c)).astype(dtype)
    t = rng.random(size=(n, c))
    t /= t.sum(axis=1, keepdims=True)
    loss = rv.CrossEntropyLoss()
    value = loss(z, t.astype(dtype))
    logp = ref64.log_softmax(z)
    tol = 50 * eps(dtype)
    np.testing.assert_allclose(value, -(t * logp).sum() / n, rtol=tol)
    np.testing.assert_allclose(loss.backward(), (np.exp(logp) - t) / n, rtol=tol, atol=tol / n)


@pytest.mark.parametrize("target_kind", ["labels", "soft"])
def test_cross_entropy_gradient_matches_finite_differences(rng, target_kind):
    n, c = 7, 5
    z = rng.normal(size=(n, c)) * 2
    if target_kind == "labels":
        t = rng.integers(0, c, size=n)
    else:
        t = rng.random(size=(n, c))
        t /= t.sum(axis=1, keepdims=True)
    loss = rv.CrossEntropyLoss()
    loss(z, t)
    g = loss.backward().copy()
    num = fd_grad(lambda zz: rv.CrossEntropyLoss()(zz, t), z.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", SHAPES)
def test_mse_matches_reference(rng, dtype, reduction, n, c):
    p = rng.normal(size=(n, c)).astype(dtype)
    t = rng.normal(size=(n, c)).astype(dtype)
    loss = rv.MSELoss(reduction=reduction)
    value = loss(p, t)
    g = loss.backward()
    assert isinstance(value, float) and g.dtype == dtype and g.shape == (n, c)
    d = p.astype(np.float64) - t
    scale = 1.0 / d.size if reduction == "mean" else 1.0
    tol = 20 * eps(dtype)
    np.testing.assert_allclose(value, (d ** 2).sum() * scale, rtol=tol)
    np.testing.assert_allclose(g, 2 * d * scale, rtol=tol, atol=tol * scale)


def test_mse_gradient_matches_finite_differences(rng):
    p, t = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    loss = rv.MSELoss()
    loss(p, t)
    num = fd_grad(lambda pp: rv.MSELoss()(pp, t), p.copy())
    np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)


def test_mse_one_dimensional_target_for_single_output(rng):
    p, t = rng.normal(size=(17, 1)), rng.normal(size=17)
    loss = rv.MSELoss()
    np.testing.assert_allclose(loss(p, t), np.mean((p[:, 0] - t) ** 2), rtol=1e-13)
    assert loss.backward().shape == (17, 1)


def test_ce_and_mse_value_independent_of_threads(rng, dtype, num_threads):
    """Losses are summed in a fixed order: the same float for any thread count."""
    z = rng.normal(size=(129, 257)).astype(dtype)
    y = rng.integers(0, 257, size=129)
    ce, mse = rv.CrossEntropyLoss(), rv.MSELoss()
    got = (ce(z, y), ce.backward().copy(), mse(z, z[::-1].copy()), mse.backward().copy())
    rv.set_num_threads(1)
    ref = (ce(z, y), ce.backward().copy(), mse(z, z[::-1].copy()), mse.backward().copy())
    assert got[0] == ref[0] and got[2] == ref[2]
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[3], ref[3])


def test_losses_accept_readonly_inputs(rng, dtype):
    z = rng.normal(size=(17, 5)).astype(dtype)
    y = rng.integers(0, 5, size=17)
    oh = ref64.onehot(y, 5, dtype)
    for loss, target in ((rv.CrossEntropyLoss(), y), (rv.CrossEntropyLoss(), oh),
                         (rv.MSELoss(), oh)):
        ref = loss(z.copy(), target.copy())
        gref = loss.backward().copy()
        assert loss(readonly(z), readonly(target)) == ref
        np.testing.assert_array_equal(loss.backward(), gref)


@pytest.mark.parametrize("cls", [rv.CrossEntropyLoss, rv.MSELoss, rv.BCEWithLogitsLoss, rv.BCELoss,
                                 rv.HuberLoss, rv.L1Loss])
def test_loss_backward_before_forward_raises(cls):
    with pytest.raises(RuntimeError, match="before forward"):
        cls().backward()


def test_get_loss_by_name_class_and_instance():
    from ranvier.losses import get_loss

    assert isinstance(get_loss("cross_entropy"), rv.CrossEntropyLoss)
    assert isinstance(get_loss("CrossEntropy"), rv.CrossEntropyLoss)
    assert isinstance(get_loss("sparse_categorical_crossentropy"), rv.CrossEntropyLoss)
    assert isinstance(get_loss("mse"), rv.MSELoss)
    assert isinstance(get_loss(rv.MSELoss), rv.MSELoss)
    inst = rv.CrossEntropyLoss(reduction="sum")
    assert get_loss(inst) is inst


# -- stability ------------------------------------------------------------------------------------
def test_cross_entropy_stable_for_logits_of_magnitude_1e4(dtype):
    z = np.array([[1e4, -1e4, 0.0],
                  [-1e4, 1e4, 5e3],
                  [1e4, 1e4, -1e4]], dtype)
    y = np.array([0, 2, 1])
    loss = rv.CrossEntropyLoss(reduction="sum")
    with np.errstate(all="raise"):
        value = loss(z, y)
    g = loss.backward()
    # exact: row 0 -> 0, row 1 -> 1e4 - 5e3, row 2 -> log 2
    np.testing.assert_allclose(value, 5e3 + np.log(2), rtol=4 * eps(dtype))
    np.testing.assert_allclose(g, [[0, 0, 0], [0, 1, -1], [0.5, -0.5, 0]], atol=4 * eps(dtype))
    # one-hot targets take the other kernel: the same answers
    value_oh = loss(z, ref64.onehot(y, 3, dtype))
    np.testing.assert_allclose(value_oh, 5e3 + np.log(2), rtol=4 * eps(dtype))
    np.testing.assert_allclose(loss.backward(), g, atol=4 * eps(dtype))


def test_cross_entropy_random_huge_logits_finite_and_correct(rng, dtype):
    z = (rng.normal(size=(33, 17)) * 1e4).astype(dtype)
    y = rng.integers(0, 17, size=33)
    loss = rv.CrossEntropyLoss()
    value = loss(z, y)
    g = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(g))
    ref = -ref64.log_softmax(z)[np.arange(33), y].mean()
    np.testing.assert_allclose(value, ref, rtol=10 * eps(dtype))
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=10 * eps(dtype))


# -- Dense + activation + Dense + loss against torch autograd ------------------------------------
ACTS = {"relu": rv.ReLU, "sigmoid": rv.Sigmoid, "tanh": rv.Tanh}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss_kind", ["ce_labels", "ce_onehot", "mse"])
@pytest.mark.parametrize("act", list(ACTS))
def test_dense_activation_loss_chain_matches_torch(torch, rng, dtype, act, loss_kind, reduction):
    n, fin, hidden, c = 17, 33, 16, 7
    d1 = rv.Dense(fin, hidden, dtype=dtype, seed=11)
    d2 = rv.Dense(hidden, c, dtype=dtype, seed=12, init="xavier")
    d1.bias.data[:] = rng.normal(scale=0.1, size=hidden)
    d2.bias.data[:] = rng.normal(scale=0.1, size=c)
    a = ACTS[act]()
    x = rng.normal(size=(n, fin)).astype(dtype)
    labels = rng.integers(0, c, size=n)
    if loss_kind == "ce_labels":
        target, loss = labels, rv.CrossEntropyLoss(reduction=reduction)
    elif loss_kind == "ce_onehot":
        target, loss = ref64.onehot(labels, c, dtype), rv.CrossEntropyLoss(reduction=reduction)
    else:
        target, loss = rng.normal(size=(n, c)).astype(dtype), rv.MSELoss(reduction=reduction)

    # ranvier
    out = d2.forward(a.forward(d1.forward(x)))
    value = loss(out, target)
    dx = d1.backward(a.backward(d2.backward(loss.backward())))

    # torch on the same weights
    tdt = getattr(torch, dtype.name)
    l1, l2 = torch.nn.Linear(fin, hidden, dtype=tdt), torch.nn.Linear(hidden, c, dtype=tdt)
    with torch.no_grad():
        for lin, d in ((l1, d1), (l2, d2)):
            lin.weight.copy_(torch.from_numpy(d.weight.data.copy()))
            lin.bias.copy_(torch.from_numpy(d.bias.data.copy()))
    tact = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[act]
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = l2(tact(l1(tx)))
    if loss_kind == "mse":
        tloss = torch.nn.functional.mse_loss(tout, torch.from_numpy(target.copy()),
                                             reduction=reduction)
    else:
        tt = torch.from_numpy(target.copy())
        tloss = torch.nn.functional.cross_entropy(tout, tt, reduction=reduction)
    tloss.backward()

    tol = 200 * eps(dtype)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(value, tloss.item(), rtol=tol)
    gscale = np.abs(tx.grad.numpy()).max()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * gscale)
    for d, lin in ((d1, l1), (d2, l2)):
        for p, tp in ((d.weight, lin.weight), (d.bias, lin.bias)):
            ref = tp.grad.numpy()
            assert p.grad.dtype == dtype
            np.testing.assert_allclose(p.grad, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_cross_entropy_huge_logits_matches_torch(torch, rng, dtype):
    z = (rng.normal(size=(17, 7)) * 1e4).astype(dtype)
    y = rng.integers(0, 7, size=17)
    loss = rv.CrossEntropyLoss()
    value = loss(z, y)
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y))
    tl.backward()
    np.testing.assert_allclose(value, tl.item(), rtol=10 * eps(dtype))
    np.testing.assert_allclose(loss.backward(), tz.grad.numpy(), atol=10 * eps(dtype))


# -- elementwise losses: float64 NumPy reference --------------------------------------------------
def _scale(reduction, size):
    return 1.0 / size if reduction == "mean" else 1.0


@pytest.mark.quick
@pytest.mark.parametrize("c", COLS)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_matches_float64_reference(kind, reduction, n, c, dtype, num_threads):
    rng = np.random.default_rng(1000 * n + c)
    loss, pred, target = make_case(kind, rng, (n, c), dtype)
    loss.reduction = reduction
    value = loss(readonly(pred), readonly(target))
    g = loss.backward()
    assert isinstance(value, float) and g.dtype == dtype and g.shape == (n, c)
    val, grad, val_mag, grad_mag = case_reference(loss, pred, target)
    scale = _scale(reduction, n * c)
    # Everything in double: the loss to a few double ulps of the summed term magnitudes.
    assert abs(value - val.sum() * scale) <= 8 * (n * c + 4) * EPS64 * val_mag.sum() * scale, (
        value, val.sum() * scale)
    # The gradient is a double (a few ulps of its terms, e.g. sigmoid(z) and t) rounded once to
    # the dtype.
    gref = grad * scale
    assert_within(g, gref, eps(dtype) * np.abs(gref) + 4 * EPS64 * grad_mag * scale
                  + np.finfo(dtype).tiny, f"{kind} grad")


# -- elementwise losses against torch -------------------------------------------------------------
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
    loss, pred, target = make_case(kind, rng, (n, c), dtype)
    loss.reduction = reduction
    value = loss(pred, target)
    g = loss.backward()
    tp = torch.from_numpy(pred.copy()).requires_grad_(True)
    tl = _torch_loss(torch, loss, reduction)(tp, torch.from_numpy(target.copy()))
    tl.backward()
    _, _, val_mag, grad_mag = case_reference(loss, pred, target)
    scale = _scale(reduction, n * c)
    e = eps(dtype)
    # torch: a few roundings per element in the dtype, then a dtype sum (and the 1/N factor).
    bound = 8 * e * val_mag.sum() * scale + 4 * e * math.log2(n * c + 1) * abs(tl.item())
    assert abs(value - tl.item()) <= bound, (value, tl.item())
    assert_within(g, tp.grad.numpy(), 8 * e * grad_mag * scale + np.finfo(dtype).tiny,
                  f"{kind} grad")


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
    q = ref64.sigmoid(p).astype(dtype)
    assert loss(q, t) == loss(q, t.reshape(-1, 1)) and loss.backward().shape == (17, 1)


# -- elementwise losses: finite differences -------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_gradient_matches_finite_differences(kind, reduction):
    rng = np.random.default_rng(3)
    loss, pred, target = make_case(kind, rng, (7, 3), np.float64)
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
    num = fd_grad(lambda x: fresh(x, target), pred.copy())
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


# -- elementwise losses: stability and exact values -----------------------------------------------
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
        _, _, val_mag, grad_mag = case_reference(loss, z, t)
        assert abs(value - tl.item()) <= 8 * eps(dtype) * val_mag.mean()
        # sigmoid(z) lw - w t cancels when t is near 1: bound by the terms, not the result.
        assert_within(g, tz.grad.numpy(),
                      8 * eps(dtype) * grad_mag / z.size + np.finfo(dtype).tiny,
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
    ref_g = (p64 - t) / np.maximum(p64 * (1 - p64), ref64.BCE_GRAD_FLOOR)
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


def _ce_case(rng, n, c, dtype, target_kind, weight):
    z = (3 * rng.standard_normal((n, c))).astype(dtype)
    w = None if weight is None else rng.uniform(0.2, 3.0, c)
    if target_kind == "labels":
        t = rng.integers(0, c, n)
    else:
        t = rng.random((n, c)) + 0.01
        t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    return z, t, w


def _ce_bounds(z, u, p, scale, dtype, k):
    r = np.asarray(z, np.float64).max(axis=1, keepdims=True) - np.asarray(z, np.float64).min(
        axis=1, keepdims=True)
    usum = u.sum(axis=1, keepdims=True)
    e = eps(dtype)
    value_bound = k * e * ((r[:, 0] + 2) * usum[:, 0]).sum() * scale
    grad_bound = k * e * scale * ((r + 2) * p * usum + u) + np.finfo(dtype).tiny
    return value_bound, grad_bound


@pytest.mark.quick
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
    rows, gref, scale, u, p = ref64.cross_entropy(z, t, w, smoothing, reduction)
    vb, gb = _ce_bounds(z, u, p, scale, dtype, 4)
    assert abs(value - rows.sum() * scale) <= vb + 8 * n * c * EPS64 * abs(rows.sum() * scale), (
        value, rows.sum() * scale)
    assert_within(g, gref, gb, f"ce {target_kind} w={weight} eps={smoothing}")


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
    _, _, scale, u, p = ref64.cross_entropy(z, t, w, smoothing, reduction)
    vb, gb = _ce_bounds(z, u, p, scale, dtype, 16)
    assert abs(value - tl.item()) <= vb, (value, tl.item())
    assert_within(g, tz.grad.numpy(), gb, f"ce vs torch {target_kind} w={weight} eps={smoothing}")


@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_ce_weights_smoothing_gradient_matches_finite_differences(rng, target_kind):
    z, t, w = _ce_case(rng, 7, 5, np.float64, target_kind, "w")
    for reduction in ("mean", "sum"):
        loss = rv.CrossEntropyLoss(reduction=reduction, label_smoothing=0.15, weight=w)
        loss(z, t)
        num = fd_grad(lambda x: rv.CrossEntropyLoss(reduction=reduction, label_smoothing=0.15,
                                                     weight=w)(x, t), z.copy())
        np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-8)


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


# -- every loss: thread-count independence, fit's fast path ---------------------------------------
def _all_losses(c):
    return [rv.BCEWithLogitsLoss(), rv.BCEWithLogitsLoss(pos_weight=column_pos_weight(c)),
            rv.BCELoss(), rv.HuberLoss(delta=0.5), rv.L1Loss(),
            rv.CrossEntropyLoss(label_smoothing=0.1, weight=np.linspace(0.5, 2, c))]


def _inputs_for(loss, z, t01, labels):
    if isinstance(loss, rv.BCELoss):
        return ref64.sigmoid(z).astype(z.dtype), t01
    if isinstance(loss, rv.CrossEntropyLoss):
        return z, labels
    return z, t01


def test_other_losses_value_independent_of_threads(rng, dtype, num_threads):
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


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.quick
def test_bad_inputs_raise_naming_the_argument(rng):
    p = rng.normal(size=(5, 3))
    t = rng.random((5, 3))
    for loss in (rv.BCEWithLogitsLoss(), rv.BCELoss(), rv.HuberLoss(), rv.L1Loss()):
        q = ref64.sigmoid(p) if isinstance(loss, rv.BCELoss) else p
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
        q = ref64.sigmoid(p) if isinstance(loss, rv.BCELoss) else p
        for bad in (1.5, -0.25, np.nan):
            tb = t.copy()
            tb[2, 1] = bad
            with pytest.raises(ValueError, match=r"target must hold values in \[0, 1\]"):
                loss(q, tb)
    for bad in (1.0 + 1e-9, -1e-9, np.nan):
        q = ref64.sigmoid(p)
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


# -- training through Sequential.fit --------------------------------------------------------------
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
