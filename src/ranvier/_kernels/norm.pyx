"""Batch normalisation of (batch, channels, spatial) arrays, forward and backward: BatchNorm1d's
(n, c) input as (n, c, 1), BatchNorm2d's (n, c, h, w) as (n, c, h * w).

Statistics are per channel, over the batch and the spatial positions. The work is split into
blocks of adjacent channels (``BN_BLOCK`` of them when the spatial size is 1, else one), and each
block is done start to finish by one thread, walking the samples in order and accumulating in
double: a (n, c) block one sum per column, a spatial block its channel's values in BN_BLOCK
lanes (position t of a sample's run in lane t mod BN_BLOCK), added in lane order at the end. A
channel's sums are therefore computed in the same order whatever the thread count, so results
are bit-for-bit identical for 1, 2 or more threads. Either way a block reads contiguous runs
(a row's few columns, a channel's plane), so the input streams through the cache.

Training forward (biased variance, as torch normalises):
    mean = sum(x) / n,  var = sum((x - mean)^2) / n   (corrected two-pass: no cancellation)
    out  = (x - mean) * invstd * weight + bias,        invstd = 1 / sqrt(var + eps)
Backward with xhat = (x - mean) * invstd, both sums per column in double:
    dbias = sum(dy),  dweight = sum(dy * xhat)
    dx    = weight * invstd * (dy - dbias / n - xhat * dweight / n)     (batch statistics)
    dx    = weight * invstd * dy                                         (fixed statistics)
"""
from libc.math cimport sqrt

from ranvier._kernels._tasks cimport run_tasks
from ranvier._kernels._checks cimport (
    Span, check_apart, check_at_least, check_counts, check_in_place_or_apart, check_len,
    check_threads, span1, span3)

ctypedef fused real:
    float
    double

cdef enum:
    # Columns per block of a (n, c) array; lanes of a spatial block's channel (its values at
    # positions t, t + BN_BLOCK, ... of each sample's run are summed in lane t, then the lanes in
    # order). A fixed split, so sums never depend on the thread count.
    BN_BLOCK = 16


cdef inline Py_ssize_t _block_channels(Py_ssize_t s) noexcept nogil:
    """Channels per block: BN_BLOCK columns of a (n, c) array, one channel of a spatial one."""
    return BN_BLOCK if s == 1 else 1


cdef inline Py_ssize_t _block_width(Py_ssize_t blk, Py_ssize_t c, Py_ssize_t s) noexcept nogil:
    """Channels in block blk of c (_block_channels, fewer in the last)."""
    cdef Py_ssize_t bw = _block_channels(s), left = c - blk * bw
    return left if left < bw else bw


cdef inline Py_ssize_t _blocks(Py_ssize_t c, Py_ssize_t s) noexcept nogil:
    cdef Py_ssize_t bw = _block_channels(s)
    return (c + bw - 1) // bw


cdef inline Py_ssize_t _run(Py_ssize_t w, Py_ssize_t s) noexcept nogil:
    """Contiguous values a block reads per sample: its w columns (s == 1), its channel's s."""
    return w if s == 1 else s


cdef inline Py_ssize_t _chunk(Py_ssize_t run, Py_ssize_t k0) noexcept nogil:
    """Values from k0 on in a run, at most BN_BLOCK: one per slot (column or lane)."""
    return run - k0 if run - k0 < BN_BLOCK else BN_BLOCK


cdef inline void _fold(double *a, Py_ssize_t s) noexcept nogil:
    """A spatial block's lane sums added into a[0] in lane order (columns: nothing to do)."""
    cdef Py_ssize_t t
    if s > 1:
        for t in range(1, BN_BLOCK):
            a[0] += a[t]


cdef inline void _zero(double *a) noexcept nogil:
    """Every slot (column or lane) of a block's sum set to 0."""
    cdef Py_ssize_t t
    for t in range(BN_BLOCK):
        a[t] = 0.0


cdef inline void _spread(double *a, Py_ssize_t s) noexcept nogil:
    """A spatial block's channel value a[0] given to every lane (columns: nothing to do)."""
    cdef Py_ssize_t t
    if s > 1:
        for t in range(1, BN_BLOCK):
            a[t] = a[0]


cdef inline void _lane_sums(const real *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t s,
                            Py_ssize_t j0, Py_ssize_t run, const double *m, double *acc,
                            double *acc2) noexcept nogil:
    """Over the runs of the block starting at channel j0 in every sample, per slot: acc += x
    (m NULL), or acc += x - m and acc2 += (x - m)^2."""
    cdef Py_ssize_t i, kc, k0, t, wk
    cdef const real *row
    cdef double d
    for i in range(n):
        for kc in range((run + BN_BLOCK - 1) // BN_BLOCK):
            k0 = kc * BN_BLOCK
            row, wk = x + (i * c + j0) * s + k0, _chunk(run, k0)
            if m == NULL:
                for t in range(wk):
                    acc[t] += row[t]
            else:
                for t in range(wk):
                    d = row[t] - m[t]
                    acc[t] += d
                    acc2[t] += d * d


cdef inline void _output_pass(const real *x, const real *dy, Py_ssize_t n, Py_ssize_t c,
                              Py_ssize_t s, Py_ssize_t j0, Py_ssize_t run, const double *m,
                              double *k, double *b, double *c2, real *out) noexcept nogil:
    """The block's output from its per-channel factors (k, b, c2 are spread to the lanes here,
    m already is): forward (dy NULL) out = (x - m) * k + b; backward out = dx =
    k * (dy - b - (x - m) * c2), with b = dbias / n and c2 = dweight * invstd / n."""
    cdef Py_ssize_t i, kc, k0, t, wk, o
    _spread(k, s)
    _spread(b, s)
    if dy != NULL:
        _spread(c2, s)
    for i in range(n):
        for kc in range((run + BN_BLOCK - 1) // BN_BLOCK):
            k0 = kc * BN_BLOCK
            o, wk = (i * c + j0) * s + k0, _chunk(run, k0)
            if dy == NULL:
                for t in range(wk):
                    out[o + t] = <real>((x[o + t] - m[t]) * k[t] + b[t])
            else:
                for t in range(wk):
                    out[o + t] = <real>(k[t] * (dy[o + t] - b[t] - (x[o + t] - m[t]) * c2[t]))


cdef inline void _forward_train_block(const real *x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t s,
                                      Py_ssize_t blk, const real *weight, const real *bias,
                                      double eps, double *mean, double *var, double *invstd,
                                      real *out) noexcept nogil:
    cdef double acc[BN_BLOCK]
    cdef double acc2[BN_BLOCK]
    cdef double m[BN_BLOCK]
    cdef double k[BN_BLOCK]
    cdef double b[BN_BLOCK]
    cdef double v, cnt = <double>(n * s)
    cdef Py_ssize_t j, j0 = blk * _block_channels(s), w = _block_width(blk, c, s)
    cdef Py_ssize_t run = _run(w, s)
    _zero(acc)
    _zero(acc2)
    _lane_sums(x, n, c, s, j0, run, NULL, acc, NULL)
    _fold(acc, s)
    for j in range(w):
        m[j] = acc[j] / cnt
    _spread(m, s)
    _zero(acc)
    # Second pass about the first estimate m0: the corrected two-pass algorithm. sum(x - m0) is
    # the rounding error of the first pass (tiny), so mean = m0 + sum(x - m0) / n is accurate to
    # a few ulps of |mean| even when |mean| >> std, and var = (sum(d^2) - sum(d)^2 / n) / n.
    _lane_sums(x, n, c, s, j0, run, m, acc, acc2)
    _fold(acc, s)
    _fold(acc2, s)
    for j in range(w):
        v = (acc2[j] - acc[j] * acc[j] / cnt) / cnt
        if v < 0.0:
            v = 0.0
        m[j] = m[j] + acc[j] / cnt
        mean[j0 + j] = m[j]
        var[j0 + j] = v
        invstd[j0 + j] = 1.0 / sqrt(v + eps)
        k[j] = invstd[j0 + j] * (weight[j0 + j] if weight != NULL else 1.0)
        b[j] = bias[j0 + j] if bias != NULL else 0.0
    _spread(m, s)
    _output_pass(x, NULL, n, c, s, j0, run, m, k, b, NULL, out)


cdef int _check_like_x(const char *fn, const char *what, const Py_ssize_t *shape,
                       Py_ssize_t n, Py_ssize_t c, Py_ssize_t s) except -1:
    if shape[0] != n or shape[1] != c or shape[2] != s:
        raise ValueError(f"{fn.decode()}: {what.decode()} has shape ({shape[0]}, {shape[1]}, "
                         f"{shape[2]}), expected ({n}, {c}, {s}) (the shape of x)")
    return 0


cdef int _check_columns_and_rows(const char *fn, Span *cols, int nwritten, Span *mat, int nmat,
                                 Py_ssize_t c) except -1:
    """The argument checks of a batch-norm pass: ``cols`` are 5 per-channel arrays of length c
    (the first ``nwritten`` written, the rest read), ``mat`` the (n, c, s) arrays (the first
    written: it may be any of the others itself, never part of one). No written array overlaps
    anything else."""
    cdef int i
    check_counts(fn, cols, 5, c, "the channels of x")
    for i in range(1, nmat):
        check_in_place_or_apart(fn, mat[0], mat[i])
    check_apart(fn, cols, nwritten, mat, nmat)
    check_apart(fn, cols, nwritten, cols + nwritten, 5 - nwritten)
    check_apart(fn, mat, 1, cols + nwritten, 5 - nwritten)
    return 0


def batchnorm_forward_train(const real[:, :, ::1] x not None, const real[::1] weight,
                            const real[::1] bias, double eps, double[::1] mean not None,
                            double[::1] var not None, double[::1] invstd not None,
                            real[:, :, ::1] out not None, int num_threads=1):
    """Normalise x (n, c, s) with the batch's statistics. Writes the per-channel mean, biased
    variance and 1 / sqrt(var + eps) (double, length c) and out (n, c, s; may be x).
    weight/bias may be None (affine=False)."""
    cdef const char *fn = "batchnorm_forward_train"
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], s = x.shape[2]
    check_threads(fn, num_threads)
    # statistics of no values are undefined
    check_at_least(fn, "the batch size times the spatial size", n * s, 1)
    _check_like_x(fn, "out", out.shape, n, c, s)
    cdef Span cols[5]     # per column: the statistics written, weight and bias read
    cdef Span mat[2]      # out (may be x), x
    cols[0], cols[1], cols[2] = span1("mean", mean), span1("var", var), span1("invstd", invstd)
    cols[3], cols[4] = span1("weight", weight), span1("bias", bias)
    mat[0], mat[1] = span3("out", out), span3("x", x)
    _check_columns_and_rows(fn, cols, 3, mat, 2, c)
    if c == 0:
        return
    cdef _BnPass j = _bn_pass(FORWARD_TRAIN, real is double, n, c, s, &x[0, 0, 0], &out[0, 0, 0])
    j.weight = &weight[0] if weight is not None else NULL
    j.bias = &bias[0] if bias is not None else NULL
    j.eps, j.mean, j.var, j.invstd = eps, &mean[0], &var[0], &invstd[0]
    with nogil:
        run_tasks(_bn_task, &j, _blocks(c, s), num_threads)


def batchnorm_forward_apply(const real[:, :, ::1] x not None, const double[::1] mean not None,
                            const double[::1] scale not None, const double[::1] shift not None,
                            real[:, :, ::1] out not None, int num_threads=1):
    """out = (x - mean) * scale + shift per channel of x (n, c, s), in double (fixed statistics:
    evaluation mode, where scale = weight / sqrt(running_var + eps) and shift = bias); out may
    be x."""
    cdef const char *fn = "batchnorm_forward_apply"
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], s = x.shape[2]
    check_threads(fn, num_threads)
    _check_like_x(fn, "out", out.shape, n, c, s)
    check_len(fn, "mean", mean.shape[0], c, "the channels of x")
    check_len(fn, "scale", scale.shape[0], c, "the channels of x")
    check_len(fn, "shift", shift.shape[0], c, "the channels of x")
    cdef Span dst = span3("out", out)
    cdef Span ins[3]
    ins[0], ins[1], ins[2] = span1("mean", mean), span1("scale", scale), span1("shift", shift)
    check_in_place_or_apart(fn, dst, span3("x", x))
    check_apart(fn, &dst, 1, ins, 3)
    if n == 0 or c == 0 or s == 0:
        return
    cdef _BnPass j = _bn_pass(FORWARD_APPLY, real is double, n, c, s, &x[0, 0, 0], &out[0, 0, 0])
    j.mean, j.scale, j.shift = <double *>&mean[0], &scale[0], &shift[0]   # mean: read only
    with nogil:
        run_tasks(_bn_task, &j, n, num_threads)


cdef inline void _apply_sample(const real *x, Py_ssize_t c, Py_ssize_t s, const double *mean,
                               const double *scale, const double *shift, real *out) noexcept nogil:
    cdef Py_ssize_t j, q
    for j in range(c):
        for q in range(s):
            out[j * s + q] = <real>((x[j * s + q] - mean[j]) * scale[j] + shift[j])


cdef inline void _backward_block(const real *x, const real *dy, Py_ssize_t n, Py_ssize_t c,
                                 Py_ssize_t s, Py_ssize_t blk, const double *mean,
                                 const double *invstd, const real *weight, bint batch_stats,
                                 real *dweight, real *dbias, real *dx) noexcept nogil:
    cdef double sdy[BN_BLOCK]
    cdef double sdyx[BN_BLOCK]
    cdef double m[BN_BLOCK]
    cdef double k[BN_BLOCK]
    cdef double c1[BN_BLOCK]
    cdef double c2[BN_BLOCK]
    cdef Py_ssize_t i, k0, t, o, j, j0 = blk * _block_channels(s), w = _block_width(blk, c, s)
    cdef Py_ssize_t run = _run(w, s), wk, kc
    cdef double cnt = <double>(n * s)
    cdef const real *row
    cdef const real *drow
    _zero(sdy)
    _zero(sdyx)
    for j in range(w):
        m[j] = mean[j0 + j]
    _spread(m, s)
    for i in range(n):
        for kc in range((run + BN_BLOCK - 1) // BN_BLOCK):
            k0 = kc * BN_BLOCK
            o, wk = (i * c + j0) * s + k0, _chunk(run, k0)
            row, drow = x + o, dy + o
            for t in range(wk):
                sdy[t] += drow[t]
                sdyx[t] += drow[t] * (row[t] - m[t])
    _fold(sdy, s)
    _fold(sdyx, s)
    for j in range(w):
        sdyx[j] = sdyx[j] * invstd[j0 + j]          # sum(dy * xhat)
        if dbias != NULL:
            dbias[j0 + j] = <real>sdy[j]
        if dweight != NULL:
            dweight[j0 + j] = <real>sdyx[j]
        k[j] = invstd[j0 + j] * (weight[j0 + j] if weight != NULL else 1.0)
        if batch_stats:
            c1[j] = sdy[j] / cnt
            c2[j] = sdyx[j] * invstd[j0 + j] / cnt
        else:
            c1[j] = 0.0
            c2[j] = 0.0
    if dx == NULL:
        return
    _output_pass(x, dy, n, c, s, j0, run, m, k, c1, c2, dx)


def batchnorm_backward(const real[:, :, ::1] x not None, const real[:, :, ::1] dy not None,
                       const double[::1] mean not None, const double[::1] invstd not None,
                       const real[::1] weight, bint batch_stats, real[::1] dweight,
                       real[::1] dbias, real[:, :, ::1] dx, int num_threads=1):
    """Gradients of batch norm given the forward's input x, the statistics it used (mean,
    invstd: double, length c) and dy. ``batch_stats``: the statistics were the batch's own
    (training), so they depend on x; otherwise they were fixed (running statistics).
    weight, dweight, dbias and dx may each be None (no affine parameters / no input gradient);
    dx may be dy or x, the other outputs overlap nothing. An empty batch gives zero dweight and
    dbias."""
    cdef const char *fn = "batchnorm_backward"
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], s = x.shape[2]
    check_threads(fn, num_threads)
    _check_like_x(fn, "dy", dy.shape, n, c, s)
    if dx is not None:
        _check_like_x(fn, "dx", dx.shape, n, c, s)
    cdef Span cols[5]     # per column: dweight, dbias written; mean, invstd, weight read
    cdef Span mat[3]      # dx (may be x or dy), x, dy
    cols[0], cols[1] = span1("dweight", dweight), span1("dbias", dbias)
    cols[2], cols[3] = span1("mean", mean), span1("invstd", invstd)
    cols[4] = span1("weight", weight)
    mat[0], mat[1], mat[2] = span3("dx", dx), span3("x", x), span3("dy", dy)
    _check_columns_and_rows(fn, cols, 2, mat, 3, c)
    if c == 0:
        return
    cdef _BnPass j = _bn_pass(BACKWARD, real is double, n, c, s, &x[0, 0, 0],
                              &dx[0, 0, 0] if dx is not None else NULL)
    j.dy, j.batch_stats = &dy[0, 0, 0], batch_stats
    j.mean, j.invstd = <double *>&mean[0], <double *>&invstd[0]   # read only
    j.weight = &weight[0] if weight is not None else NULL
    j.dweight = &dweight[0] if dweight is not None else NULL
    j.dbias = &dbias[0] if dbias is not None else NULL
    with nogil:
        run_tasks(_bn_task, &j, _blocks(c, s), num_threads)


# -- the passes over the threads: blocks of channels (train, backward) or samples (apply) ---------
cdef enum:
    FORWARD_TRAIN = 0
    FORWARD_APPLY = 1
    BACKWARD = 2


cdef struct _BnPass:
    int op
    bint f64
    Py_ssize_t n, c, s
    const void *x
    const void *dy
    const void *weight
    const void *bias
    void *out            # out, or dx (NULL: no input gradient)
    void *dweight
    void *dbias
    double eps
    bint batch_stats
    # per channel, double: written by FORWARD_TRAIN (mean, var, invstd), read by the others
    # (mean and invstd backward; mean, scale and shift by FORWARD_APPLY)
    double *mean
    double *var
    double *invstd
    const double *scale
    const double *shift


cdef inline _BnPass _bn_pass(int op, bint f64, Py_ssize_t n, Py_ssize_t c, Py_ssize_t s,
                             const void *x, void *out) noexcept:
    cdef _BnPass j
    j.op, j.f64, j.n, j.c, j.s, j.x, j.out = op, f64, n, c, s, x, out
    j.dy = j.weight = j.bias = NULL
    j.dweight = j.dbias = NULL
    j.mean = j.var = j.invstd = NULL
    j.scale = j.shift = NULL
    j.eps, j.batch_stats = 0.0, False
    return j


cdef inline void _bn_chunk(const _BnPass *j, const real *x, Py_ssize_t t) noexcept nogil:
    cdef Py_ssize_t s = j.s
    cdef const real *w = <const real *>j.weight
    cdef real *out = <real *>j.out
    if j.op == FORWARD_APPLY:     # t: a sample
        _apply_sample(x + t * j.c * s, j.c, s, j.mean, j.scale, j.shift, out + t * j.c * s)
    elif j.op == FORWARD_TRAIN:   # t: a block; s == 1 inlined with s known keeps the loops vectorised
        if s == 1:
            _forward_train_block(x, j.n, j.c, 1, t, w, <const real *>j.bias, j.eps, j.mean, j.var,
                                 j.invstd, out)
        else:
            _forward_train_block(x, j.n, j.c, s, t, w, <const real *>j.bias, j.eps, j.mean, j.var,
                                 j.invstd, out)
    elif s == 1:
        _backward_block(x, <const real *>j.dy, j.n, j.c, 1, t, j.mean, j.invstd, w, j.batch_stats,
                        <real *>j.dweight, <real *>j.dbias, out)
    else:
        _backward_block(x, <const real *>j.dy, j.n, j.c, s, t, j.mean, j.invstd, w, j.batch_stats,
                        <real *>j.dweight, <real *>j.dbias, out)


cdef void _bn_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _BnPass *j = <const _BnPass *>job
    if j.f64:
        _bn_chunk(j, <const double *>j.x, t)
    else:
        _bn_chunk(j, <const float *>j.x, t)
