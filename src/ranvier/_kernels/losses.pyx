"""Loss kernels: loss and gradient in one pass.

Sums that the loss reports are taken in double and in a fixed order (per row or per fixed chunk,
then added serially), so the loss is the same for any thread count.
"""
from libc.math cimport exp, fabs, log, log1p
from libc.stdint cimport int64_t

from ranvier._kernels._tasks cimport run_tasks, task_count, task_len
from ranvier._kernels._checks cimport (
    Span, check_apart, check_at_least, check_in_place_or_apart, check_len, check_shape,
    check_threads, span1, span2, span_of)
from ranvier._kernels._elementwise cimport ranvier_ce_args
from ranvier._kernels._reduce cimport RED_MAX_CHUNKS, red_chunk_len
from ranvier._kernels.activations cimport ew_kernels   # one ISA choice for all elementwise code

ctypedef fused real:
    float
    double

# --------------------------------------------------------------------------------------------
# Fused softmax + cross-entropy (csrc/softmax_ce_template.h: vector exp, double sums)
# --------------------------------------------------------------------------------------------
cdef enum:
    CE_TASK = 16384     # logits per parallel task (whole rows); rows are independent


cdef inline void _ce_rows(const ranvier_ce_args *a, Py_ssize_t r0, Py_ssize_t r1,
                          bint f32) noexcept nogil:
    if f32:
        ew_kernels().softmax_ce_f32(a, r0, r1)
    else:
        ew_kernels().softmax_ce_f64(a, r0, r1)


cdef struct _CeRows:
    const ranvier_ce_args *a
    Py_ssize_t n, per      # rows, rows per task
    bint f32


cdef void _ce_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _CeRows *j = <const _CeRows *>job
    _ce_rows(j.a, t * j.per, t * j.per + task_len(j.n, j.per, t), j.f32)


cdef double _ce_run(const ranvier_ce_args *a, Py_ssize_t n, bint f32, int num_threads) noexcept:
    """Rows [0, n) in tasks of whole rows, then the row losses summed in row order (the same
    total for any thread count: each row is computed by one thread, the sum is serial)."""
    cdef _CeRows j
    j.a, j.n, j.per, j.f32 = a, n, CE_TASK // a.d if a.d < CE_TASK else 1, f32
    cdef double total = 0.0
    cdef Py_ssize_t i
    with nogil:
        run_tasks(_ce_task, &j, task_count(n, j.per), num_threads)
        for i in range(n):
            total += a.row_loss[i]
    return total


cdef int _ce_labels_setup(const char *fn, ranvier_ce_args *a, const int64_t[::1] labels,
                          Py_ssize_t n, signed char[::1] row_hit) except -1:
    # A label outside [0, d) would write outside its gradient row: checked here, not trusted.
    cdef Py_ssize_t i, bad = -1
    check_len(fn, "labels", labels.shape[0], n, "the rows of logits")
    if row_hit is not None:
        check_len(fn, "row_hit", row_hit.shape[0], n, "the rows of logits")
    with nogil:
        for i in range(n):
            if labels[i] < 0 or labels[i] >= a.d:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"{(<bytes>fn).decode()}: label {labels[bad]} at row {bad} is outside "
                         f"[0, {a.d})")
    a.labels = &labels[0] if n > 0 else NULL
    a.hit = &row_hit[0] if row_hit is not None and n > 0 else NULL
    return 0


cdef int _ce_weights_setup(const char *fn, ranvier_ce_args *a, const double[::1] weight,
                           double label_smoothing) except -1:
    cdef Py_ssize_t j
    a.eps_c = label_smoothing / a.d if a.d > 0 else 0.0
    a.keep = 1.0 - label_smoothing
    a.w = NULL
    a.wsum = <double>a.d
    if weight is not None:
        check_len(fn, "weight", weight.shape[0], a.d, "the columns of logits")
        a.w = &weight[0] if a.d > 0 else NULL
        a.wsum = 0.0
        for j in range(a.d):
            a.wsum += weight[j]
    a.plain = a.w == NULL and label_smoothing == 0.0
    return 0


cdef object _ce_labels(ranvier_ce_args *a, Py_ssize_t n, bint f32, int num_threads,
                       signed char[::1] row_hit):
    cdef Py_ssize_t i, hits = 0
    cdef double total = _ce_run(a, n, f32, num_threads) if n > 0 else 0.0
    if row_hit is None:
        return total
    for i in range(n):
        hits += row_hit[i]
    return total, hits


cdef int _ce_arrays(const char *fn, ranvier_ce_args *a, const real[:, ::1] logits,
                    real[:, ::1] grad, double[::1] row_loss, double scale, int num_threads,
                    Span target, Span row_hit, Span weight) except -1:
    """The checks and arguments every cross-entropy kernel shares; target is the labels or the
    probabilities (row_hit and weight empty where not given)."""
    cdef Py_ssize_t n = logits.shape[0], d = logits.shape[1]
    check_threads(fn, num_threads)
    if n > 0:
        check_at_least(fn, "the number of classes", d, 1)
    check_shape(fn, "grad", grad.shape[0], grad.shape[1], n, d, "the shape of logits")
    check_len(fn, "row_loss", row_loss.shape[0], n, "the rows of logits")
    cdef Span outs[3]
    cdef Span ins[3]
    outs[0], outs[1], outs[2] = span2("grad", grad), span1("row_loss", row_loss), row_hit
    ins[0], ins[1], ins[2] = span2("logits", logits), target, weight
    check_apart(fn, outs, 3, ins, 3)
    a.d = d
    a.scale = scale
    a.z = &logits[0, 0] if n > 0 else NULL
    a.g = &grad[0, 0] if n > 0 else NULL
    a.row_loss = &row_loss[0] if n > 0 else NULL
    a.t = NULL
    a.labels = NULL
    a.hit = NULL
    a.w = NULL
    a.eps_c = 0.0
    a.keep = 1.0
    a.wsum = <double>d
    a.plain = 1
    return 0


def softmax_cross_entropy_labels(const real[:, ::1] logits not None,
                                 const int64_t[::1] labels not None, real[:, ::1] grad not None,
                                 double[::1] row_loss not None, double scale, int num_threads=1,
                                 signed char[::1] row_hit=None):
    """Per-row loss -log softmax(z)[label] into row_loss; grad = scale * (softmax(z) - onehot).
    Labels outside [0, n_classes) raise ValueError. Returns the summed loss, or with
    ``row_hit`` (int8, n) the pair (summed loss, rows whose first argmax is the label). The
    outputs (grad, row_loss, row_hit) must not overlap each other or the inputs."""
    cdef const char *fn = "softmax_cross_entropy_labels"
    cdef ranvier_ce_args a
    _ce_arrays(fn, &a, logits, grad, row_loss, scale, num_threads, span1("labels", labels),
               span1("row_hit", row_hit), span_of("weight", NULL, 0))
    _ce_labels_setup(fn, &a, labels, logits.shape[0], row_hit)
    return _ce_labels(&a, logits.shape[0], real is float, num_threads, row_hit)


cdef object _ce_probs(const char *fn, ranvier_ce_args *a, const real[:, ::1] target,
                      Py_ssize_t n, bint f32, int num_threads):
    check_shape(fn, "target", target.shape[0], target.shape[1], n, a.d, "the shape of logits")
    if n == 0:
        return 0.0
    a.t = &target[0, 0]
    return _ce_run(a, n, f32, num_threads)


def softmax_cross_entropy_probs(const real[:, ::1] logits not None,
                                const real[:, ::1] target not None, real[:, ::1] grad not None,
                                double[::1] row_loss not None, double scale, int num_threads=1):
    """Cross-entropy against probability (e.g. one-hot) targets, rows need not sum to one:
    row loss = -sum_j t_j log p_j, grad = scale * (p * sum(t) - t). Returns the summed loss."""
    cdef const char *fn = "softmax_cross_entropy_probs"
    cdef ranvier_ce_args a
    _ce_arrays(fn, &a, logits, grad, row_loss, scale, num_threads, span2("target", target),
               span_of("row_hit", NULL, 0), span_of("weight", NULL, 0))
    return _ce_probs(fn, &a, target, logits.shape[0], real is float, num_threads)


def softmax_cross_entropy_labels_weighted(const real[:, ::1] logits not None,
                                          const int64_t[::1] labels not None,
                                          real[:, ::1] grad not None,
                                          double[::1] row_loss not None, double scale,
                                          const double[::1] weight, double label_smoothing,
                                          int num_threads=1, signed char[::1] row_hit=None):
    """Cross-entropy with integer labels, optional class weights (float64, n_classes; None for
    none) and label smoothing, per torch: row loss = (1 - eps) * w[y] * -log p_y
    + eps / C * sum_j w_j * -log p_j; grad = scale * (p * sum(u) - u) with the effective target
    u_j = w_j (eps / C + (1 - eps) [j == y]). Returns the summed row loss, or with ``row_hit``
    (summed loss, argmax hits)."""
    cdef const char *fn = "softmax_cross_entropy_labels_weighted"
    cdef ranvier_ce_args a
    _ce_arrays(fn, &a, logits, grad, row_loss, scale, num_threads, span1("labels", labels),
               span1("row_hit", row_hit), span1("weight", weight))
    _ce_weights_setup(fn, &a, weight, label_smoothing)
    _ce_labels_setup(fn, &a, labels, logits.shape[0], row_hit)
    return _ce_labels(&a, logits.shape[0], real is float, num_threads, row_hit)


def softmax_cross_entropy_probs_weighted(const real[:, ::1] logits not None,
                                         const real[:, ::1] target not None,
                                         real[:, ::1] grad not None,
                                         double[::1] row_loss not None, double scale,
                                         const double[::1] weight, double label_smoothing,
                                         int num_threads=1):
    """Cross-entropy against probability targets with optional class weights (float64,
    n_classes; None for none) and label smoothing, per torch: u = w * ((1 - eps) t + eps / C),
    row loss = -sum_j u_j log p_j, grad = scale * (p * sum(u) - u). Returns the summed loss."""
    cdef const char *fn = "softmax_cross_entropy_probs_weighted"
    cdef ranvier_ce_args a
    _ce_arrays(fn, &a, logits, grad, row_loss, scale, num_threads, span2("target", target),
               span_of("row_hit", NULL, 0), span1("weight", weight))
    _ce_weights_setup(fn, &a, weight, label_smoothing)
    return _ce_probs(fn, &a, target, logits.shape[0], real is float, num_threads)


# --------------------------------------------------------------------------------------------
# Elementwise losses on flattened arrays: one driver (_elem_loss) cuts the array into chunks
# (_reduce.pxd), runs the loss's chunk function on each and adds the double partial sums in chunk
# order (the same loss for any thread count), with the partials on the stack.
# --------------------------------------------------------------------------------------------

cdef enum:
    K_MSE
    K_BCE_LOGITS
    K_BCE
    K_HUBER
    K_L1


cdef struct _ElemLoss:
    int kind
    double scale       # grad = scale * d loss / d pred
    double delta       # Huber threshold
    const double *pw   # BCE-with-logits pos_weight per column, or NULL
    Py_ssize_t ncols   # its length (element i has column i % ncols)


cdef struct _ElemPass:
    # loss e over prediction, target and grad of n elements, per to a task, and each task's
    # partial sum and hits
    const _ElemLoss *e
    bint f64
    const void *p
    const void *t
    void *g
    Py_ssize_t n, per
    double *part
    int64_t *hits


cdef inline double _diff_chunk(int kind, const real *p, const real *t, real *g, Py_ssize_t n,
                               double delta, double scale) noexcept nogil:
    # The losses of d = p - t, per element (kind is the same for the whole loop):
    #   MSE    d^2, grad 2 d
    #   Huber  0.5 d^2 for |d| < delta, else delta (|d| - delta / 2); grad d clipped to +-delta
    #   L1     |d|, grad sign(d) (0 at d = 0, as torch)
    cdef Py_ssize_t i
    cdef double s = 0.0, d, ad
    for i in range(n):
        d = <double>p[i] - <double>t[i]
        if kind == K_MSE:
            s += d * d
            g[i] = <real>(2.0 * scale * d)
        elif kind == K_HUBER:
            ad = fabs(d)
            if ad < delta:
                s += 0.5 * d * d
                g[i] = <real>(scale * d)
            else:
                s += delta * (ad - 0.5 * delta)
                g[i] = <real>(scale * delta if d > 0 else -scale * delta)
        elif d > 0:
            s += d
            g[i] = <real>scale
        elif d < 0:
            s -= d
            g[i] = <real>(-scale)
        else:
            g[i] = 0
    return s


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


cdef inline void _elem_chunk(const _ElemPass *j, real *g, Py_ssize_t c) noexcept nogil:
    # Task c of loss e: its partial sum and its hits (binary losses).
    cdef const _ElemLoss *e = j.e
    cdef Py_ssize_t lo = c * j.per, m = task_len(j.n, j.per, c)
    cdef const real *p = <const real *>j.p + lo
    cdef const real *t = <const real *>j.t + lo
    g = g + lo
    j.hits[c] = 0
    if e.kind == K_BCE_LOGITS:
        j.part[c] = _bce_logits_chunk(p, t, g, m, e.pw, e.ncols, lo % e.ncols, e.scale,
                                      &j.hits[c])
    elif e.kind == K_BCE:
        j.part[c] = _bce_chunk(p, t, g, m, e.scale, &j.hits[c])
    else:
        j.part[c] = _diff_chunk(e.kind, p, t, g, m, e.delta, e.scale)


cdef void _elem_task(const void *job, Py_ssize_t c) noexcept nogil:
    cdef const _ElemPass *j = <const _ElemPass *>job
    if j.f64:
        _elem_chunk(j, <double *>j.g, c)
    else:
        _elem_chunk(j, <float *>j.g, c)


cdef object _elem_loss(const char *fn, const _ElemLoss *e, const real[::1] p, const real[::1] t,
                       real[::1] g, int num_threads, bint with_hits):
    """Summed loss (and hits) of e over p, t; writes g, which may be p or t (in place)."""
    cdef Py_ssize_t n = p.shape[0], nchunks, c
    cdef _ElemPass job
    cdef double part[RED_MAX_CHUNKS]
    cdef int64_t phit[RED_MAX_CHUNKS]
    cdef double total = 0.0
    cdef int64_t hits = 0
    check_threads(fn, num_threads)
    check_len(fn, "target", t.shape[0], n, "the length of the prediction")
    check_len(fn, "grad", g.shape[0], n, "the length of the prediction")
    cdef Span out = span1("grad", g)
    check_in_place_or_apart(fn, out, span1("prediction", p))
    check_in_place_or_apart(fn, out, span1("target", t))
    if n > 0:
        job.e, job.f64, job.p, job.t, job.g = e, real is double, &p[0], &t[0], &g[0]
        job.n, job.per, job.part, job.hits = n, red_chunk_len(n), part, phit
        nchunks = task_count(n, job.per)
        with nogil:
            run_tasks(_elem_task, &job, nchunks, num_threads)
        for c in range(nchunks):
            total += part[c]
            hits += phit[c]
    if with_hits:
        return total, hits
    return total


def mse(const real[::1] pred not None, const real[::1] target not None,
        real[::1] grad not None, int num_threads=1,
        double scale=1.0):
    """Sum of squared errors (returned, in double); grad = 2 * scale * (pred - target)."""
    cdef _ElemLoss e = _ElemLoss(kind=K_MSE, scale=scale, delta=0.0, pw=NULL, ncols=1)
    return _elem_loss("mse", &e, pred, target, grad, num_threads, False)


def bce_with_logits(const real[::1] logits not None, const real[::1] target not None,
                    real[::1] grad not None, const double[::1] pos_weight=None, int num_threads=1,
                    double scale=1.0):
    """Summed binary cross-entropy on logits (in double) and grad = scale * d loss / d z.

    ``pos_weight`` (float64, one per column, or None): element i has column i % len(pos_weight).
    Returns (summed loss, hits) where hits counts elements with (z > 0) == (target > 0.5)."""
    cdef _ElemLoss e = _ElemLoss(kind=K_BCE_LOGITS, scale=scale, delta=0.0, pw=NULL, ncols=1)
    cdef Span out = span1("grad", grad)
    cdef Span weights = span1("pos_weight", pos_weight)
    if pos_weight is not None:
        e.ncols = pos_weight.shape[0]
        check_at_least("bce_with_logits", "pos_weight's length", e.ncols, 1)
        if logits.shape[0] % e.ncols != 0:
            raise ValueError(f"bce_with_logits: pos_weight has {e.ncols} entries, which does not "
                             f"divide the {logits.shape[0]} elements")
        check_apart("bce_with_logits", &out, 1, &weights, 1)
        e.pw = &pos_weight[0]
    return _elem_loss("bce_with_logits", &e, logits, target, grad, num_threads, True)


def bce(const real[::1] prob not None, const real[::1] target not None,
        real[::1] grad not None, int num_threads=1,
        double scale=1.0):
    """Summed binary cross-entropy on probabilities in [0, 1] (checked by the caller), logs
    clamped at -100 as torch; grad = scale * (p - t) / max(p (1 - p), float32(1e-12)). Returns
    (summed loss, hits) where hits counts elements with (p > 0.5) == (target > 0.5)."""
    cdef _ElemLoss e = _ElemLoss(kind=K_BCE, scale=scale, delta=0.0, pw=NULL, ncols=1)
    return _elem_loss("bce", &e, prob, target, grad, num_threads, True)


def huber(const real[::1] pred not None, const real[::1] target not None,
          real[::1] grad not None, double delta, int num_threads=1, double scale=1.0):
    """Summed Huber loss (in double) with threshold ``delta`` > 0; grad = scale * clip(p - t,
    -delta, delta)."""
    cdef _ElemLoss e = _ElemLoss(kind=K_HUBER, scale=scale, delta=delta, pw=NULL, ncols=1)
    if not delta > 0:   # delta <= 0 (or NaN) would make every loss 0
        raise ValueError(f"huber: delta must be > 0, got {delta}")
    return _elem_loss("huber", &e, pred, target, grad, num_threads, False)


def l1(const real[::1] pred not None, const real[::1] target not None,
       real[::1] grad not None, int num_threads=1,
       double scale=1.0):
    """Summed absolute error (in double); grad = scale * sign(pred - target), 0 where equal."""
    cdef _ElemLoss e = _ElemLoss(kind=K_L1, scale=scale, delta=0.0, pw=NULL, ncols=1)
    return _elem_loss("l1", &e, pred, target, grad, num_threads, False)
