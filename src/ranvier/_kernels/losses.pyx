"""Loss kernels: loss and gradient in one pass.

Sums that the loss reports are taken in double and in a fixed order (per row or per fixed chunk,
then added serially), so the loss is the same for any thread count.
"""
from cython.parallel cimport prange
from libc.math cimport exp, log
from libc.stdint cimport int64_t

ctypedef fused real:
    float
    double

cdef enum:
    MSE_CHUNK = 4096    # elements per partial sum; fixed, so the sum order does not follow threads


cdef inline double _logsumexp_row(const real *z, Py_ssize_t d, real *m_out) noexcept nogil:
    # log(sum(exp(z - max))) in double; the max keeps exp in range even for |z| ~ 1e4.
    cdef Py_ssize_t j
    cdef real m = z[0]
    cdef double s = 0.0
    for j in range(1, d):
        if z[j] > m:
            m = z[j]
    for j in range(d):
        s += exp(<double>(z[j] - m))
    m_out[0] = m
    return log(s)


cdef inline double _ce_label_row(const real *z, int64_t label, real *g, Py_ssize_t d,
                                 double scale, signed char *hit) noexcept nogil:
    cdef Py_ssize_t j, arg = 0
    cdef real m
    cdef double lse = _logsumexp_row(z, d, &m)
    for j in range(d):
        g[j] = <real>(scale * exp(<double>(z[j] - m) - lse))
        if z[j] > z[arg]:
            arg = j
    g[label] = <real>(g[label] - scale)
    if hit != NULL:
        hit[0] = arg == label
    return lse - <double>(z[label] - m)


def softmax_cross_entropy_labels(const real[:, ::1] logits, const int64_t[::1] labels,
                                 real[:, ::1] grad, double[::1] row_loss, double scale,
                                 int num_threads=1, signed char[::1] row_hit=None):
    """Per-row loss -log softmax(z)[label] into row_loss; grad = scale * (softmax(z) - onehot).
    Labels must already be checked to lie in [0, n_classes). Returns the summed loss, or with
    ``row_hit`` (int8, n) the pair (summed loss, rows whose argmax is the label)."""
    cdef Py_ssize_t i, n = logits.shape[0], d = logits.shape[1], hits = 0
    cdef double total = 0.0
    if n == 0:
        if row_hit is None:
            return 0.0
        return 0.0, 0
    if row_hit is None:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            row_loss[i] = _ce_label_row(&logits[i, 0], labels[i], &grad[i, 0], d, scale, NULL)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            row_loss[i] = _ce_label_row(&logits[i, 0], labels[i], &grad[i, 0], d, scale,
                                        &row_hit[i])
    for i in range(n):
        total += row_loss[i]
    if row_hit is None:
        return total
    for i in range(n):
        hits += row_hit[i]
    return total, hits


cdef inline double _ce_prob_row(const real *z, const real *t, real *g, Py_ssize_t d,
                                double scale) noexcept nogil:
    # loss = -sum_j t_j log p_j; d/dz_j = p_j * sum(t) - t_j (targets need not sum to one).
    cdef Py_ssize_t j
    cdef real m
    cdef double lse = _logsumexp_row(z, d, &m), tsum = 0.0, loss = 0.0
    for j in range(d):
        tsum += t[j]
        loss -= t[j] * (<double>(z[j] - m) - lse)
    for j in range(d):
        g[j] = <real>(scale * (exp(<double>(z[j] - m) - lse) * tsum - t[j]))
    return loss


def softmax_cross_entropy_probs(const real[:, ::1] logits, const real[:, ::1] target,
                                real[:, ::1] grad, double[::1] row_loss, double scale,
                                int num_threads=1):
    """Cross-entropy against probability (e.g. one-hot) targets; see the label version."""
    cdef Py_ssize_t i, n = logits.shape[0], d = logits.shape[1]
    cdef double total = 0.0
    if n == 0:
        return 0.0
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        row_loss[i] = _ce_prob_row(&logits[i, 0], &target[i, 0], &grad[i, 0], d, scale)
    for i in range(n):
        total += row_loss[i]
    return total


cdef inline double _mse_chunk(const real *p, const real *t, real *g, Py_ssize_t n,
                              double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0, diff
    for i in range(n):
        diff = <double>p[i] - <double>t[i]
        s += diff * diff
        g[i] = <real>(2.0 * scale * diff)
    return s


def mse(const real[::1] pred, const real[::1] target, real[::1] grad, int num_threads=1,
        double scale=1.0):
    """Sum of squared errors (returned, in double); grad = 2 * scale * (pred - target)."""
    cdef Py_ssize_t n = pred.shape[0], nchunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, c1
    cdef double total = 0.0
    cdef double[::1] partial
    if n == 0:
        return 0.0
    import numpy as np
    partial = np.empty(nchunks)
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        c1 = (c + 1) * MSE_CHUNK
        if c1 > n:
            c1 = n
        partial[c] = _mse_chunk(&pred[c * MSE_CHUNK], &target[c * MSE_CHUNK],
                                &grad[c * MSE_CHUNK], c1 - c * MSE_CHUNK, scale)
    for c in range(nchunks):
        total += partial[c]
    return total
