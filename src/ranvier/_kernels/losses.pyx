"""Loss kernels: loss and gradient in one pass.

Sums that the loss reports are taken in double and in a fixed order (per row or per fixed chunk,
then added serially), so the loss is the same for any thread count.
"""
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, log1p
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


# --------------------------------------------------------------------------------------------
# Cross-entropy with class weights and label smoothing (torch.nn.CrossEntropyLoss semantics)
# --------------------------------------------------------------------------------------------
# Both kernels use the effective target u (row-wise) with loss = -sum_j u_j log p_j and
# d loss / d z_j = p_j * sum(u) - u_j:
#   labels:        u_j = w_j * (eps / C + (1 - eps) * [j == label])
#   probabilities: u_j = w_j * ((1 - eps) * t_j + eps / C)
# (w_j = 1 without weights). How the row sum is normalised (scale) is the caller's choice.

cdef inline double _ce_label_ext_row(const real *z, int64_t label, const double *w,
                                     double wsum, double eps_c, double keep, real *g,
                                     Py_ssize_t d, double scale, signed char *hit) noexcept nogil:
    cdef Py_ssize_t j, arg = 0
    cdef real m
    cdef double lse = _logsumexp_row(z, d, &m)
    cdef double wl = 1.0 if w == NULL else w[label]
    cdef double usum = eps_c * wsum + keep * wl, wj, nlp, smooth = 0.0
    for j in range(d):
        wj = 1.0 if w == NULL else w[j]
        nlp = lse - <double>(z[j] - m)          # -log p_j, >= 0
        smooth += wj * nlp
        g[j] = <real>(scale * (exp(-nlp) * usum - eps_c * wj))
        if z[j] > z[arg]:
            arg = j
    nlp = lse - <double>(z[label] - m)
    g[label] = <real>(scale * (exp(-nlp) * usum - (eps_c + keep) * wl))
    if hit != NULL:
        hit[0] = arg == label
    return eps_c * smooth + keep * wl * nlp


def softmax_cross_entropy_labels_weighted(const real[:, ::1] logits, const int64_t[::1] labels,
                                          real[:, ::1] grad, double[::1] row_loss, double scale,
                                          const double[::1] weight, double label_smoothing,
                                          int num_threads=1, signed char[::1] row_hit=None):
    """Cross-entropy with integer labels, optional class weights (float64, n_classes; None for
    none) and label smoothing, per torch: row loss = (1 - eps) * w[y] * -log p_y
    + eps / C * sum_j w_j * -log p_j; grad = scale * (p * sum(u) - u). Labels must already be in
    [0, n_classes). Returns the summed row loss, or with ``row_hit`` (summed loss, argmax hits)."""
    cdef Py_ssize_t i, j, n = logits.shape[0], d = logits.shape[1], hits = 0
    cdef double total = 0.0, wsum = 0.0
    cdef double eps_c = label_smoothing / d if d > 0 else 0.0, keep = 1.0 - label_smoothing
    cdef const double *w = NULL
    if weight is not None:
        if weight.shape[0] != d:
            raise ValueError(f"weight has {weight.shape[0]} entries, expected {d}")
        w = &weight[0]
        for j in range(d):
            wsum += weight[j]
    else:
        wsum = <double>d
    if n == 0:
        if row_hit is None:
            return 0.0
        return 0.0, 0
    if row_hit is None:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            row_loss[i] = _ce_label_ext_row(&logits[i, 0], labels[i], w, wsum, eps_c, keep,
                                            &grad[i, 0], d, scale, NULL)
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
            row_loss[i] = _ce_label_ext_row(&logits[i, 0], labels[i], w, wsum, eps_c, keep,
                                            &grad[i, 0], d, scale, &row_hit[i])
    for i in range(n):
        total += row_loss[i]
    if row_hit is None:
        return total
    for i in range(n):
        hits += row_hit[i]
    return total, hits


cdef inline double _ce_prob_ext_row(const real *z, const real *t, const double *w,
                                    double eps_c, double keep, real *g, Py_ssize_t d,
                                    double scale) noexcept nogil:
    cdef Py_ssize_t j
    cdef real m
    cdef double lse = _logsumexp_row(z, d, &m), usum = 0.0, loss = 0.0, u, nlp
    for j in range(d):
        u = keep * <double>t[j] + eps_c
        if w != NULL:
            u = u * w[j]
        usum += u
        loss += u * (lse - <double>(z[j] - m))
    for j in range(d):
        u = keep * <double>t[j] + eps_c
        if w != NULL:
            u = u * w[j]
        g[j] = <real>(scale * (exp(<double>(z[j] - m) - lse) * usum - u))
    return loss


def softmax_cross_entropy_probs_weighted(const real[:, ::1] logits, const real[:, ::1] target,
                                         real[:, ::1] grad, double[::1] row_loss, double scale,
                                         const double[::1] weight, double label_smoothing,
                                         int num_threads=1):
    """Cross-entropy against probability targets with optional class weights (float64,
    n_classes; None for none) and label smoothing, per torch: u = w * ((1 - eps) t + eps / C),
    row loss = -sum_j u_j log p_j, grad = scale * (p * sum(u) - u). Returns the summed loss."""
    cdef Py_ssize_t i, n = logits.shape[0], d = logits.shape[1]
    cdef double total = 0.0
    cdef double eps_c = label_smoothing / d if d > 0 else 0.0, keep = 1.0 - label_smoothing
    cdef const double *w = NULL
    if weight is not None:
        if weight.shape[0] != d:
            raise ValueError(f"weight has {weight.shape[0]} entries, expected {d}")
        w = &weight[0]
    if n == 0:
        return 0.0
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        row_loss[i] = _ce_prob_ext_row(&logits[i, 0], &target[i, 0], w, eps_c, keep,
                                       &grad[i, 0], d, scale)
    for i in range(n):
        total += row_loss[i]
    return total


# --------------------------------------------------------------------------------------------
# Elementwise losses on flattened arrays: fixed chunks of MSE_CHUNK elements, partial sums in
# double added in chunk order (the same loss for any thread count).
# --------------------------------------------------------------------------------------------

cdef inline double _bce_logits_chunk(const real *z, const real *t, real *g, Py_ssize_t n,
                                     const double *pw, Py_ssize_t ncols, Py_ssize_t col,
                                     double scale, int64_t *hits) noexcept nogil:
    # loss = max(z, 0) - z t + log1p(exp(-|z|)); with pos_weight w (per column) torch's
    # (1 - t) z + (1 + (w - 1) t) (log1p(exp(-|z|)) + max(-z, 0)).
    # grad = sigmoid(z) (1 + (w - 1) t) - w t   (sigmoid(z) - t without pos_weight).
    cdef Py_ssize_t i
    cdef double s = 0.0, zi, ti, e, sp, sig, lw, wc
    cdef int64_t h = 0
    for i in range(n):
        zi = z[i]
        ti = t[i]
        e = exp(-fabs(zi))
        sp = log1p(e)
        if zi >= 0:
            sig = 1.0 / (1.0 + e)
        else:
            sig = e / (1.0 + e)
        if pw == NULL:
            s += (zi if zi > 0 else 0.0) - zi * ti + sp
            g[i] = <real>(scale * (sig - ti))
        else:
            wc = pw[col]
            lw = 1.0 + (wc - 1.0) * ti
            s += (1.0 - ti) * zi + lw * (sp + (-zi if zi < 0 else 0.0))
            g[i] = <real>(scale * (sig * lw - wc * ti))
            col += 1
            if col == ncols:
                col = 0
        h += (zi > 0) == (ti > 0.5)
    hits[0] = h
    return s


def bce_with_logits(const real[::1] logits, const real[::1] target, real[::1] grad,
                    const double[::1] pos_weight=None, int num_threads=1, double scale=1.0):
    """Summed binary cross-entropy on logits (in double) and grad = scale * d loss / d z.

    ``pos_weight`` (float64, one per column, or None): element i has column i % len(pos_weight).
    Returns (summed loss, hits) where hits counts elements with (z > 0) == (target > 0.5)."""
    cdef Py_ssize_t n = logits.shape[0], nchunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, c0, c1
    cdef Py_ssize_t ncols = 1
    cdef double total = 0.0
    cdef int64_t hits = 0
    cdef const double *pw = NULL
    cdef double[::1] partial
    cdef int64_t[::1] phits
    if pos_weight is not None:
        ncols = pos_weight.shape[0]
        if ncols == 0 or n % ncols != 0:
            raise ValueError(f"pos_weight has {ncols} entries, which does not divide the "
                             f"{n} elements")
        pw = &pos_weight[0]
    if n == 0:
        return 0.0, 0
    import numpy as np
    partial = np.empty(nchunks)
    phits = np.empty(nchunks, np.int64)
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        c0 = c * MSE_CHUNK
        c1 = c0 + MSE_CHUNK
        if c1 > n:
            c1 = n
        partial[c] = _bce_logits_chunk(&logits[c0], &target[c0], &grad[c0], c1 - c0, pw, ncols,
                                       c0 % ncols, scale, &phits[c])
    for c in range(nchunks):
        total += partial[c]
        hits += phits[c]
    return total, hits


cdef inline double _bce_chunk(const real *p, const real *t, real *g, Py_ssize_t n, double scale,
                              int64_t *hits) noexcept nogil:
    # torch.nn.BCELoss: -(t max(log p, -100) + (1 - t) max(log(1 - p), -100));
    # its gradient (p - t) / max(p (1 - p), EPS), torch's EPS being the float 1e-12.
    cdef Py_ssize_t i
    cdef double s = 0.0, pi, ti, lp, lq, den
    cdef double floor = 9.999999960041972e-13   # float32(1e-12) exactly, torch's EPSILON
    cdef int64_t h = 0
    for i in range(n):
        pi = p[i]
        ti = t[i]
        lp = log(pi)
        if lp < -100.0:
            lp = -100.0
        lq = log1p(-pi)
        if lq < -100.0:
            lq = -100.0
        s -= ti * lp + (1.0 - ti) * lq
        den = pi * (1.0 - pi)
        if den < floor:
            den = floor
        g[i] = <real>(scale * (pi - ti) / den)
        h += (pi > 0.5) == (ti > 0.5)
    hits[0] = h
    return s


def bce(const real[::1] prob, const real[::1] target, real[::1] grad, int num_threads=1,
        double scale=1.0):
    """Summed binary cross-entropy on probabilities in [0, 1] (checked by the caller), logs
    clamped at -100 as torch; grad = scale * (p - t) / max(p (1 - p), float32(1e-12)). Returns
    (summed loss, hits) where hits counts elements with (p > 0.5) == (target > 0.5)."""
    cdef Py_ssize_t n = prob.shape[0], nchunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, c0, c1
    cdef double total = 0.0
    cdef int64_t hits = 0
    cdef double[::1] partial
    cdef int64_t[::1] phits
    if n == 0:
        return 0.0, 0
    import numpy as np
    partial = np.empty(nchunks)
    phits = np.empty(nchunks, np.int64)
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        c0 = c * MSE_CHUNK
        c1 = c0 + MSE_CHUNK
        if c1 > n:
            c1 = n
        partial[c] = _bce_chunk(&prob[c0], &target[c0], &grad[c0], c1 - c0, scale, &phits[c])
    for c in range(nchunks):
        total += partial[c]
        hits += phits[c]
    return total, hits


cdef inline double _huber_chunk(const real *p, const real *t, real *g, Py_ssize_t n,
                                double delta, double scale) noexcept nogil:
    # 0.5 d^2 for |d| < delta, else delta (|d| - delta / 2); grad d clipped to [-delta, delta].
    cdef Py_ssize_t i
    cdef double s = 0.0, d, ad
    for i in range(n):
        d = <double>p[i] - <double>t[i]
        ad = fabs(d)
        if ad < delta:
            s += 0.5 * d * d
            g[i] = <real>(scale * d)
        else:
            s += delta * (ad - 0.5 * delta)
            g[i] = <real>(scale * delta if d > 0 else -scale * delta)
    return s


def huber(const real[::1] pred, const real[::1] target, real[::1] grad, double delta,
          int num_threads=1, double scale=1.0):
    """Summed Huber loss (in double) with threshold ``delta`` > 0; grad = scale * clip(p - t,
    -delta, delta)."""
    cdef Py_ssize_t n = pred.shape[0], nchunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, c0, c1
    cdef double total = 0.0
    cdef double[::1] partial
    if n == 0:
        return 0.0
    import numpy as np
    partial = np.empty(nchunks)
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        c0 = c * MSE_CHUNK
        c1 = c0 + MSE_CHUNK
        if c1 > n:
            c1 = n
        partial[c] = _huber_chunk(&pred[c0], &target[c0], &grad[c0], c1 - c0, delta, scale)
    for c in range(nchunks):
        total += partial[c]
    return total


cdef inline double _l1_chunk(const real *p, const real *t, real *g, Py_ssize_t n,
                             double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0, d
    for i in range(n):
        d = <double>p[i] - <double>t[i]
        if d > 0:
            s += d
            g[i] = <real>scale
        elif d < 0:
            s -= d
            g[i] = <real>(-scale)
        else:
            g[i] = 0    # sign(0) = 0, as torch
    return s


def l1(const real[::1] pred, const real[::1] target, real[::1] grad, int num_threads=1,
       double scale=1.0):
    """Summed absolute error (in double); grad = scale * sign(pred - target), 0 where equal."""
    cdef Py_ssize_t n = pred.shape[0], nchunks = (n + MSE_CHUNK - 1) // MSE_CHUNK, c, c0, c1
    cdef double total = 0.0
    cdef double[::1] partial
    if n == 0:
        return 0.0
    import numpy as np
    partial = np.empty(nchunks)
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        c0 = c * MSE_CHUNK
        c1 = c0 + MSE_CHUNK
        if c1 > n:
            c1 = n
        partial[c] = _l1_chunk(&pred[c0], &target[c0], &grad[c0], c1 - c0, scale)
    for c in range(nchunks):
        total += partial[c]
    return total
