"""Losses through the public API: values and gradients against numpy references, finite
differences, torch autograd (Dense + activation + Dense + loss chains), and stability for huge
logits."""
import numpy as np
import pytest

import ranvier as rv
from conftest import AWKWARD, eps, readonly

H = 1e-6
SHAPES = [(1, 2), (2, 5), (7, 16), (17, 33), (65, 7), (129, 257)]  # (batch, classes)
assert {d for s in SHAPES for d in s} <= set(AWKWARD)


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _onehot(labels, c, dtype=np.float64):
    t = np.zeros((len(labels), c), dtype)
    t[np.arange(len(labels)), labels] = 1
    return t


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


# -- values and gradients against numpy ------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", SHAPES)
def test_cross_entropy_labels_matches_reference(rng, dtype, reduction, n, c):
    z = (rng.normal(size=(n, c)) * 3).astype(dtype)
    y = rng.integers(0, c, size=n)
    loss = rv.CrossEntropyLoss(reduction=reduction)
    value = loss(z, y)
    g = loss.backward()
    assert isinstance(value, float) and g.dtype == dtype and g.shape == (n, c)
    logp = _log_softmax(z)
    rows = -logp[np.arange(n), y]
    scale = 1.0 / n if reduction == "mean" else 1.0
    tol = 50 * eps(dtype)
    np.testing.assert_allclose(value, rows.sum() * scale, rtol=tol)
    ref_g = (np.exp(logp) - _onehot(y, c)) * scale
    np.testing.assert_allclose(g, ref_g, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=tol * scale * c)  # softmax - onehot


@pytest.mark.parametrize("n,c", SHAPES)
def test_cross_entropy_onehot_equals_labels(rng, dtype, n, c):
    z = rng.normal(size=(n, c)).astype(dtype)
    y = rng.integers(0, c, size=n)
    a, b = rv.CrossEntropyLoss(), rv.CrossEntropyLoss()
    va, vb = a(z, y), b(z, _onehot(y, c, dtype))
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
    logp = _log_softmax(z)
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
    num = _fd_grad(lambda zz: rv.CrossEntropyLoss()(zz, t), z.copy())
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
    num = _fd_grad(lambda pp: rv.MSELoss()(pp, t), p.copy())
    np.testing.assert_allclose(loss.backward(), num, rtol=1e-6, atol=1e-9)


def test_mse_one_dimensional_target_for_single_output(rng):
    p, t = rng.normal(size=(17, 1)), rng.normal(size=17)
    loss = rv.MSELoss()
    np.testing.assert_allclose(loss(p, t), np.mean((p[:, 0] - t) ** 2), rtol=1e-13)
    assert loss.backward().shape == (17, 1)


def test_loss_value_independent_of_threads(rng, dtype, num_threads):
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
    oh = _onehot(y, 5, dtype)
    for loss, target in ((rv.CrossEntropyLoss(), y), (rv.CrossEntropyLoss(), oh),
                         (rv.MSELoss(), oh)):
        ref = loss(z.copy(), target.copy())
        gref = loss.backward().copy()
        assert loss(readonly(z), readonly(target)) == ref
        np.testing.assert_array_equal(loss.backward(), gref)


@pytest.mark.parametrize("cls", [rv.CrossEntropyLoss, rv.MSELoss])
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
    value_oh = loss(z, _onehot(y, 3, dtype))
    np.testing.assert_allclose(value_oh, 5e3 + np.log(2), rtol=4 * eps(dtype))
    np.testing.assert_allclose(loss.backward(), g, atol=4 * eps(dtype))


def test_cross_entropy_random_huge_logits_finite_and_correct(rng, dtype):
    z = (rng.normal(size=(33, 17)) * 1e4).astype(dtype)
    y = rng.integers(0, 17, size=33)
    loss = rv.CrossEntropyLoss()
    value = loss(z, y)
    g = loss.backward()
    assert np.isfinite(value) and np.all(np.isfinite(g))
    ref = -_log_softmax(z)[np.arange(33), y].mean()
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
        target, loss = _onehot(labels, c, dtype), rv.CrossEntropyLoss(reduction=reduction)
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
