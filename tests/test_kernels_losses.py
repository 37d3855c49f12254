"""Loss kernels (fused softmax cross-entropy with labels or probability targets, MSE) against
float64 NumPy references.

Cross-entropy tolerances follow the kernel's error sources: the exponent z - max(z) is rounded in
the working precision (an absolute error of eps * |z - max| in each log-probability), everything
after it is double. So the bounds scale with R = max(z) - min(z) of the row, which is what makes
them meaningful for logits of magnitude 1e4 too.
"""
import math

import numpy as np
import pytest

import _reference as ref64
from _assert import assert_within, guarded
from _losses import KINDS, make_case
from _losses import reference as case_reference
from conftest import AWKWARD, eps, readonly
import ranvier as rv
from ranvier._kernels import losses

EPS64 = float(np.finfo(np.float64).eps)
# Classes around the vector widths (8 and 16 floats, 4 and 8 doubles) and past them; rows around
# the parallel task size (whole rows of ~16384 logits per task).
CE_SHAPES = [(n, d) for n in (1, 2, 7, 33, 257) for d in (1, 2, 5, 8, 9, 10, 16, 17, 63, 129, 257)]
CE_SHAPES += [(1000, 10), (65, 1025), (3, 1000), (33, 4099)]
MSE_LENGTHS = sorted(set(AWKWARD) | {255, 4095, 4096, 4097, 3 * 4096 + 5, 100003})


def _spread(z):
    z = np.asarray(z, np.float64)
    return z.max(axis=1, keepdims=True) - z.min(axis=1, keepdims=True)


def _labels_reference(z, labels, scale):
    z64 = np.asarray(z, np.float64)
    n, d = z64.shape
    logp = ref64.log_softmax(z64)
    p = np.exp(logp)
    onehot = np.zeros((n, d))
    onehot[np.arange(n), labels] = 1.0
    loss = -logp[np.arange(n), labels]
    return loss, scale * (p - onehot), p, onehot


def _check_labels(z, labels, scale, grad, row_loss, total, dtype, what):
    n, d = z.shape
    loss_ref, grad_ref, p, onehot = _labels_reference(z, labels, scale)
    r = _spread(z)
    loss_bound = (2 * eps(dtype) * (r[:, 0] + 1)
                  + 8 * (d + 2) * EPS64 * (1 + np.abs(loss_ref)))
    assert_within(row_loss, loss_ref, loss_bound, f"{what} row_loss")
    grad_bound = 2 * eps(dtype) * abs(scale) * ((r + 2) * p + onehot) + np.finfo(dtype).tiny
    assert_within(grad, grad_ref, grad_bound, f"{what} grad")
    # The returned total is the (double) sum of the per-row losses.
    assert math.isclose(total, math.fsum(row_loss), rel_tol=(n + 2) * EPS64, abs_tol=1e-300), what
    assert abs(total - loss_ref.sum()) <= loss_bound.sum() + (n + 2) * EPS64 * np.abs(
        loss_ref).sum(), f"{what} total"


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy with integer labels
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
def test_ce_labels_matches_reference(dtype, num_threads, isa):
    rng = np.random.default_rng(1)
    for n, d in CE_SHAPES:
        z = (3 * rng.standard_normal((n, d))).astype(dtype)
        labels = rng.integers(0, d, n).astype(np.int64)
        for scale in (1.0 / n, 1.0):
            bufg, grad = guarded((n, d), dtype)
            row_loss = np.full(n, np.nan)
            total = losses.softmax_cross_entropy_labels(readonly(z), readonly(labels), grad,
                                                        row_loss, scale, num_threads)
            _check_labels(z, labels, scale, grad, row_loss, total, dtype,
                          f"labels {n}x{d} scale={scale}")
            assert np.isnan(bufg[0]) and np.isnan(bufg[-1]), "grad written out of bounds"


@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_ce_labels_large_logits_stable(dtype, num_threads, magnitude, isa):
    """|logits| ~ 1e4: exp(z) overflows in any precision, the kernel must stay finite and match
    a float64 log-sum-exp."""
    rng = np.random.default_rng(2)
    n, d = 67, 17
    z = (magnitude * rng.standard_normal((n, d))).astype(dtype)
    labels = rng.integers(0, d, n).astype(np.int64)
    z[0] = magnitude                               # constant row: loss = log d
    z[1] = -magnitude
    labels[2] = int(np.argmax(z[2]))               # label on the max: loss ~ 0
    z[3, :] = magnitude
    z[3, 4] = magnitude - 1                        # a near tie
    labels[3] = 4
    labels[4] = int(np.argmin(z[4]))               # label on the min: loss ~ 2 magnitude
    scale = 1.0 / n
    grad = np.empty((n, d), dtype)
    row_loss = np.empty(n)
    total = losses.softmax_cross_entropy_labels(z, labels, grad, row_loss, scale, num_threads)
    assert np.isfinite(total) and np.isfinite(row_loss).all() and np.isfinite(grad).all()
    _check_labels(z, labels, scale, grad, row_loss, total, dtype, f"labels |z|~{magnitude}")
    tol = 8 * eps(dtype) * math.log(d)
    assert abs(row_loss[0] - math.log(d)) <= tol and abs(row_loss[1] - math.log(d)) <= tol
    assert row_loss[4] > magnitude / 10
    # Gradient rows of softmax - onehot sum to zero.
    assert np.all(np.abs(grad.astype(np.float64).sum(axis=1)) <= 4 * (d + 2) * eps(dtype) * scale)


def test_ce_labels_row_hits_are_first_argmax(dtype, num_threads, isa):
    """row_hit: 1 where the row's first argmax (numpy's, torch's) is the label; ties included."""
    rng = np.random.default_rng(11)
    for n, d in [(33, 1), (33, 2), (64, 10), (40, 17), (9, 300)]:
        z = rng.integers(-3, 4, (n, d)).astype(dtype)     # small integers: many tied maxima
        labels = rng.integers(0, d, n).astype(np.int64)
        labels[::3] = z[::3].argmax(axis=1)               # label on the first max
        ties = np.nonzero((z == z.max(axis=1, keepdims=True)).sum(axis=1) > 1)[0]
        for i in ties[::2]:                               # label on a later copy of the max
            labels[i] = np.nonzero(z[i] == z[i].max())[0][-1]
        grad, row_loss, hit = np.empty((n, d), dtype), np.empty(n), np.full(n, 7, np.int8)
        total, hits = losses.softmax_cross_entropy_labels(z, labels, grad, row_loss, 1.0 / n,
                                                          num_threads, hit)
        expected = z.argmax(axis=1) == labels
        np.testing.assert_array_equal(hit, expected.astype(np.int8), err_msg=f"{n}x{d}")
        assert hits == int(expected.sum())
        _check_labels(z, labels, 1.0 / n, grad, row_loss, total, dtype, f"hits {n}x{d}")


def test_ce_labels_nonfinite_logits(dtype, isa):
    """A NaN logit makes its row's loss and gradient NaN (not silently dropped by the max or the
    exp); -inf logits have probability 0 and a label on one costs inf, as torch; other rows are
    untouched by either."""
    rng = np.random.default_rng(12)
    n, d = 6, 37
    z = rng.standard_normal((n, d)).astype(dtype)
    labels = rng.integers(0, d, n).astype(np.int64)
    z[1, 5] = np.nan                   # NaN inside a row
    z[2, 0] = np.nan                   # NaN first (where a scalar max would start)
    z[3, 36] = np.nan                  # NaN in the vector tail
    z[4, 2:30] = -np.inf
    labels[4] = 31
    z[5, 7] = -np.inf
    labels[5] = 7
    grad, row_loss = np.empty((n, d), dtype), np.empty(n)
    losses.softmax_cross_entropy_labels(z, labels, grad, row_loss, 1.0, 1)
    for i in (1, 2, 3):
        assert np.isnan(row_loss[i]) and np.isnan(grad[i]).all(), f"row {i}"
    assert row_loss[5] == np.inf
    # The finite rows match the reference; row 4 is the softmax over its finite entries.
    _check_labels(z[:1], labels[:1], 1.0, grad[:1], row_loss[:1], row_loss[0], dtype, "row 0")
    fin = np.isfinite(z[4])
    lab4 = np.array([np.count_nonzero(fin[:labels[4]])])
    _check_labels(z[4:5, fin], lab4, 1.0, grad[4:5, fin], row_loss[4:5], row_loss[4], dtype,
                  "row 4")
    assert (grad[4, ~fin] == 0).all()
    assert grad[5, 7] == -1 and np.isfinite(grad[5]).all()


def test_ce_labels_bad_arguments_raise(dtype):
    z = np.zeros((4, 5), dtype)
    g, rl = np.empty((4, 5), dtype), np.empty(4)
    good = np.array([0, 1, 2, 4])
    for bad in ([0, 1, 2, 5], [0, -1, 2, 3]):
        with pytest.raises(ValueError, match="label"):
            losses.softmax_cross_entropy_labels(z, np.array(bad), g, rl, 1.0, 1)
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy_labels(z, good[:3], g, rl, 1.0, 1)
    with pytest.raises(ValueError, match="grad"):
        losses.softmax_cross_entropy_labels(z, good, np.empty((4, 4), dtype), rl, 1.0, 1)
    with pytest.raises(ValueError, match="row_loss"):
        losses.softmax_cross_entropy_labels(z, good, g, np.empty(3), 1.0, 1)
    with pytest.raises(ValueError, match="row_hit"):
        losses.softmax_cross_entropy_labels(z, good, g, rl, 1.0, 1, np.empty(3, np.int8))
    with pytest.raises(ValueError, match="target"):
        losses.softmax_cross_entropy_probs(z, np.zeros((4, 4), dtype), g, rl, 1.0, 1)
    with pytest.raises(ValueError, match="number of classes must be >= 1, got 0"):
        losses.softmax_cross_entropy_probs(np.zeros((4, 0), dtype), np.zeros((4, 0), dtype),
                                           np.empty((4, 0), dtype), rl, 1.0, 1)
    with pytest.raises((TypeError, ValueError)):       # dtype mismatch: no matching kernel
        losses.softmax_cross_entropy_labels(z, good, np.empty((4, 5), np.float16), rl, 1.0, 1)
    with pytest.raises(ValueError, match="contiguous"):
        losses.softmax_cross_entropy_labels(np.zeros((4, 10), dtype)[:, ::2], good, g, rl, 1.0,
                                            1)


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy with probability targets
# --------------------------------------------------------------------------------------------

def _probs_reference(z, t, scale):
    z64, t64 = np.asarray(z, np.float64), np.asarray(t, np.float64)
    logp = ref64.log_softmax(z64)
    p = np.exp(logp)
    tsum = t64.sum(axis=1, keepdims=True)
    loss = -(t64 * logp).sum(axis=1)
    return loss, scale * (p * tsum - t64), p, tsum, logp


def _check_probs(z, t, scale, grad, row_loss, total, dtype, what):
    n, d = z.shape
    loss_ref, grad_ref, p, tsum, logp = _probs_reference(z, t, scale)
    r = _spread(z)
    t64 = np.asarray(t, np.float64)
    loss_bound = (2 * eps(dtype) * (r[:, 0] + 1) * tsum[:, 0]
                  + 8 * (d + 2) * EPS64 * (1 + (t64 * np.abs(logp)).sum(axis=1)))
    assert_within(row_loss, loss_ref, loss_bound, f"{what} row_loss")
    grad_bound = (2 * eps(dtype) * abs(scale) * ((r + 2) * p * tsum + t64)
                  + np.finfo(dtype).tiny)
    assert_within(grad, grad_ref, grad_bound, f"{what} grad")
    assert math.isclose(total, math.fsum(row_loss), rel_tol=(n + 2) * EPS64, abs_tol=1e-300), what


@pytest.mark.parametrize("targets", ["normalised", "unnormalised", "onehot"])
def test_ce_probs_matches_reference(dtype, num_threads, targets, isa):
    rng = np.random.default_rng(4)
    for n, d in CE_SHAPES:
        z = (3 * rng.standard_normal((n, d))).astype(dtype)
        if targets == "onehot":
            t = np.zeros((n, d), dtype)
            t[np.arange(n), rng.integers(0, d, n)] = 1
        else:
            t = rng.random((n, d)) + 0.01
            if targets == "normalised":
                t /= t.sum(axis=1, keepdims=True)
            else:
                t *= rng.uniform(0.2, 3.0, (n, 1))    # rows sum to anything: grad = p sum(t) - t
            t = t.astype(dtype)
        scale = 1.0 / n
        bufg, grad = guarded((n, d), dtype)
        row_loss = np.full(n, np.nan)
        total = losses.softmax_cross_entropy_probs(readonly(z), readonly(t), grad, row_loss,
                                                   scale, num_threads)
        _check_probs(z, t, scale, grad, row_loss, total, dtype, f"probs {targets} {n}x{d}")
        assert np.isnan(bufg[0]) and np.isnan(bufg[-1]), "grad written out of bounds"


def test_ce_probs_onehot_agrees_with_labels(dtype, num_threads):
    rng = np.random.default_rng(5)
    n, d = 129, 33
    z = (3 * rng.standard_normal((n, d))).astype(dtype)
    labels = rng.integers(0, d, n).astype(np.int64)
    t = np.zeros((n, d), dtype)
    t[np.arange(n), labels] = 1
    g1, g2 = np.empty((n, d), dtype), np.empty((n, d), dtype)
    l1, l2 = np.empty(n), np.empty(n)
    s1 = losses.softmax_cross_entropy_labels(z, labels, g1, l1, 0.5, num_threads)
    s2 = losses.softmax_cross_entropy_probs(z, t, g2, l2, 0.5, num_threads)
    np.testing.assert_allclose(l2, l1, rtol=4 * EPS64, atol=4 * EPS64)
    assert math.isclose(s1, s2, rel_tol=(n + 4) * EPS64)
    np.testing.assert_allclose(g2, g1, rtol=0, atol=2 * eps(dtype) * 0.5)


@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_ce_probs_large_logits_stable(dtype, num_threads, magnitude, isa):
    rng = np.random.default_rng(6)
    n, d = 67, 17
    z = (magnitude * rng.standard_normal((n, d))).astype(dtype)
    z[0] = magnitude
    t = (rng.random((n, d)) + 0.01)
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    grad = np.empty((n, d), dtype)
    row_loss = np.empty(n)
    total = losses.softmax_cross_entropy_probs(z, t, grad, row_loss, 1.0 / n, num_threads)
    assert np.isfinite(total) and np.isfinite(row_loss).all() and np.isfinite(grad).all()
    _check_probs(z, t, 1.0 / n, grad, row_loss, total, dtype, f"probs |z|~{magnitude}")


@pytest.mark.parametrize("targets", ["labels", "probs"])
def test_ce_same_result_for_any_thread_count(dtype, isa, targets):
    rng = np.random.default_rng(3 if targets == "labels" else 7)
    n, d = 3001, 17
    z = (3 * rng.standard_normal((n, d))).astype(dtype)
    if targets == "labels":
        t = rng.integers(0, d, n).astype(np.int64)
        kernel = losses.softmax_cross_entropy_labels
    else:
        t = rng.random((n, d)).astype(dtype)
        kernel = losses.softmax_cross_entropy_probs
    results = []
    for nt in (1, 2):
        grad = np.empty((n, d), dtype)
        row_loss = np.empty(n)
        total = kernel(z, t, grad, row_loss, 1.0 / n, nt)
        results.append((total, row_loss.tobytes(), grad.tobytes()))
    assert results[0][0] == results[1][0], "summed loss differs between 1 and 2 threads"
    assert results[0][1:] == results[1][1:]


def test_ce_empty_batch(dtype):
    z = np.empty((0, 5), dtype)
    assert losses.softmax_cross_entropy_labels(z, np.empty(0, np.int64), np.empty((0, 5), dtype),
                                               np.empty(0), 1.0, 2) == 0.0
    assert losses.softmax_cross_entropy_probs(z, z, np.empty((0, 5), dtype), np.empty(0),
                                              1.0, 2) == 0.0


# --------------------------------------------------------------------------------------------
# MSE
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
def test_mse_matches_reference(dtype, num_threads):
    rng = np.random.default_rng(8)
    for n in MSE_LENGTHS:
        pred = rng.standard_normal(n).astype(dtype)
        target = rng.standard_normal(n).astype(dtype)
        diff = pred.astype(np.float64) - target.astype(np.float64)
        sq = diff * diff
        ref_sum = math.fsum(sq)
        for scale in (1.0, 1.0 / n):
            buf, grad = guarded(n, dtype)
            total = losses.mse(readonly(pred), readonly(target), grad, num_threads, scale)
            # Summed in double: for float32 inputs the differences are exact, so only the n
            # double additions (and, for float64, the rounded difference) contribute.
            assert abs(total - ref_sum) <= (n + 4) * EPS64 * ref_sum, (
                f"mse n={n}: sum {total!r}, expected {ref_sum!r}")
            ref_grad = 2 * scale * diff
            assert_within(grad, ref_grad, 2 * eps(dtype) * np.abs(ref_grad) + np.finfo(dtype).tiny,
                          f"mse grad n={n}")
            assert np.isnan(buf[0]) and np.isnan(buf[-1]), "grad written out of bounds"


def test_mse_sums_in_double():
    """A float32 accumulator over 100k terms is off by ~1e-4 relative; double is not."""
    rng = np.random.default_rng(9)
    n = 100003
    pred = (rng.standard_normal(n) + 3).astype(np.float32)
    target = np.zeros(n, np.float32)
    total = losses.mse(pred, target, np.empty(n, np.float32), 2, 1.0)
    exact = math.fsum(pred.astype(np.float64) ** 2)
    assert abs(total - exact) <= 4 * n * EPS64 * exact


def test_mse_same_result_for_any_thread_count(dtype):
    rng = np.random.default_rng(10)
    n = 5 * 4096 + 17
    pred = rng.standard_normal(n).astype(dtype)
    target = rng.standard_normal(n).astype(dtype)
    out = []
    for nt in (1, 2):
        grad = np.empty(n, dtype)
        total = losses.mse(pred, target, grad, nt, 0.25)
        out.append((total, grad.tobytes()))
    assert out[0][0] == out[1][0], f"mse sum {out[0][0]!r} (1 thread) vs {out[1][0]!r}"
    assert out[0][1] == out[1][1]


def test_mse_empty(dtype):
    e = np.empty(0, dtype)
    assert losses.mse(e, e, np.empty(0, dtype), 2, 1.0) == 0.0


# --------------------------------------------------------------------------------------------
# Weighted, smoothed cross-entropy kernels
# --------------------------------------------------------------------------------------------

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
    a = losses.softmax_cross_entropy_labels(z, labels, g1, r1, 0.5, num_threads, h1)
    b = losses.softmax_cross_entropy_labels_weighted(z, labels, g2, r2, 0.5, None, 0.0,
                                                     num_threads, h2)
    assert a[1] == b[1]
    np.testing.assert_allclose(r2, r1, rtol=4 * EPS64)
    # Same exponents (z - max in the dtype); the old kernel rounds scale * p to the dtype before
    # subtracting the label's scale, the new one rounds once: they differ by eps * scale * p.
    p = np.exp(ref64.log_softmax(z))
    onehot = np.eye(c)[labels]
    assert_within(g2, g1, 2 * eps(dtype) * 0.5 * (p + onehot) + np.finfo(dtype).tiny, "labels")
    a = losses.softmax_cross_entropy_probs(z, t, g1, r1, 0.5, num_threads)
    b = losses.softmax_cross_entropy_probs_weighted(z, t, g2, r2, 0.5, None, 0.0, num_threads)
    assert math.isclose(a, b, rel_tol=(n + 4) * EPS64)
    tsum = t.astype(np.float64).sum(axis=1, keepdims=True)
    assert_within(g2, g1, 2 * eps(dtype) * 0.5 * (p * tsum + t) + np.finfo(dtype).tiny, "probs")


def test_ce_weighted_kernels_check_weight_length():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="weight has 2 entries, expected 3"):
        losses.softmax_cross_entropy_labels_weighted(z, np.zeros(2, np.int64), np.empty((2, 3)),
                                                 np.empty(2), 1.0, np.ones(2), 0.0)
    with pytest.raises(ValueError, match="weight has 4 entries, expected 3"):
        losses.softmax_cross_entropy_probs_weighted(z, z, np.empty((2, 3)), np.empty(2), 1.0,
                                                np.ones(4), 0.0)
    with pytest.raises(ValueError, match="pos_weight has 2 entries"):
        losses.bce_with_logits(np.zeros(3), np.zeros(3), np.empty(3), np.ones(2))


# --------------------------------------------------------------------------------------------
# BCE with logits, BCE, Huber, L1
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
@pytest.mark.parametrize("kind", KINDS)
def test_elementwise_kernels_match_reference_across_chunks(kind, dtype, num_threads):
    """The kernels called directly with 1 or 2 threads on lengths around the 4096-element
    chunks."""
    rng = np.random.default_rng(7)
    for n in (1, 4095, 4097, 3 * 4096 + 5):
        c = 5 if n > 1 else 1
        loss, pred, target = make_case(kind, rng, (n, c), dtype)
        buf = np.full(n * c + 2, np.nan, dtype)
        grad = buf[1:-1]
        p, t = readonly(pred.reshape(-1)), readonly(target.reshape(-1))
        scale = 1.0 / (n * c)
        if isinstance(loss, rv.BCEWithLogitsLoss):
            pw = None if loss.pos_weight is None else loss._pos_weight_for(c)
            total, hits = losses.bce_with_logits(p, t, grad, pw, num_threads, scale)
            assert hits == np.count_nonzero((pred > 0) == (target > 0.5))
        elif isinstance(loss, rv.BCELoss):
            total, hits = losses.bce(p, t, grad, num_threads, scale)
            assert hits == np.count_nonzero((pred > 0.5) == (target > 0.5))
        elif isinstance(loss, rv.HuberLoss):
            total = losses.huber(p, t, grad, loss.delta, num_threads, scale)
        else:
            total = losses.l1(p, t, grad, num_threads, scale)
        val, gref, val_mag, grad_mag = case_reference(loss, pred, target)
        assert abs(total - math.fsum(val.reshape(-1))) <= 8 * (n * c + 4) * EPS64 * val_mag.sum()
        gref = gref.reshape(-1) * scale
        assert_within(grad, gref, eps(dtype) * np.abs(gref)
                      + 4 * EPS64 * grad_mag.reshape(-1) * scale + np.finfo(dtype).tiny,
                      f"{kind} n={n}")
        assert np.isnan(buf[0]) and np.isnan(buf[-1]), "grad written out of bounds"


def test_elementwise_kernels_empty(dtype):
    e = np.empty(0, dtype)
    assert losses.bce_with_logits(e, e, np.empty(0, dtype), None, 2, 1.0) == (0.0, 0)
    assert losses.bce(e, e, np.empty(0, dtype), 2, 1.0) == (0.0, 0)
    assert losses.huber(e, e, np.empty(0, dtype), 1.0, 2, 1.0) == 0.0
    assert losses.l1(e, e, np.empty(0, dtype), 2, 1.0) == 0.0


ELEMENTWISE = {
    "mse": lambda p, t, g, nt: losses.mse(p, t, g, nt, 0.5),
    "bce_with_logits": lambda p, t, g, nt: losses.bce_with_logits(p, t, g, None, nt, 0.5),
    "bce": lambda p, t, g, nt: losses.bce(p, t, g, nt, 0.5),
    "huber": lambda p, t, g, nt: losses.huber(p, t, g, 0.3, nt, 0.5),
    "l1": lambda p, t, g, nt: losses.l1(p, t, g, nt, 0.5),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_losses_past_a_million_elements(name):
    """Past 256 chunks of 4096 the chunks grow (the partials stay on the stack): still the same
    bits for 1 and 2 threads, and the same sum as a float64 reference."""
    rng = np.random.default_rng(16)
    n = 3 * 256 * 4096 + 77
    p = rng.uniform(0.01, 0.99, n).astype(np.float32)
    t = rng.uniform(0, 1, n).astype(np.float32)
    out = []
    for nt in (1, 2):
        g = np.empty_like(p)
        out.append((ELEMENTWISE[name](p, t, g, nt), g.tobytes()))
    assert out[0] == out[1]
    if name == "mse":
        d = p.astype(np.float64) - t.astype(np.float64)
        ref = math.fsum(d * d)
        assert abs(out[0][0] - ref) <= 8 * EPS64 * 4096 * 3 * ref


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_losses_check_lengths(name):
    p = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=f"{name}: target has 9 entries, expected 10"):
        ELEMENTWISE[name](p, p[:9], np.empty(10, np.float32), 1)
    with pytest.raises(ValueError, match=f"{name}: grad has 11 entries, expected 10"):
        ELEMENTWISE[name](p, p, np.empty(11, np.float32), 1)
