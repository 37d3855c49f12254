"""Optimizer updates: one native pass over (param, grad, state), PyTorch's formulas.

Each works on flat C-contiguous 1-D views of one parameter tensor (or of a whole flat parameter
group) and its state buffers. Constants such as ``1 - beta`` are formed in double, then rounded to
the parameter's type. Also: the gradient-norm reduction and in-place scale behind
``clip_grad_norm``.
"""
from libc.math cimport fabs, pow, sqrt

from ranvier._kernels._tasks cimport run_tasks, task_count, task_len
from ranvier._kernels._checks cimport (
    Span, check_apart, check_at_least, check_len, check_threads, span1, span_of)
from ranvier._kernels._reduce cimport RED_MAX_CHUNKS, red_chunk_len
from ranvier._kernels._runtime cimport active_isa

ctypedef fused real:
    float
    double

cdef extern from "optim.h":
    # C loops compiled once per instruction set (generic / AVX2 / AVX-512), picked at run time.
    ctypedef struct ranvier_sgd_params:
        double lr, momentum, dampening, weight_decay
        int nesterov, first_step
    ctypedef struct ranvier_adam_params:
        double beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, step_size
        double inv_sqrt_bc2, decay
        int decoupled
    ctypedef struct ranvier_optim_kernels:
        void (*sgd_f32)(const ranvier_sgd_params *h, float *p, const float *g, float *buf,
                        Py_ssize_t n) noexcept nogil
        void (*sgd_f64)(const ranvier_sgd_params *h, double *p, const double *g, double *buf,
                        Py_ssize_t n) noexcept nogil
        void (*adam_f32)(const ranvier_adam_params *h, float *p, const float *g, float *m,
                         float *v, float *vmax, Py_ssize_t n) noexcept nogil
        void (*adam_f64)(const ranvier_adam_params *h, double *p, const double *g, double *m,
                         double *v, double *vmax, Py_ssize_t n) noexcept nogil
    const ranvier_optim_kernels *ranvier_optim_kernels_for(int isa) nogil

cdef enum:
    UPDATE_CHUNK = 16384  # elements per thread task of an elementwise update


# Every update's contract: the gradient and each state array used have the parameter's length,
# and the arrays written (the parameter, the state) overlap nothing else: the C loops take them
# as restrict pointers. A state array not used (e.g. no momentum) may be anything, even empty.
cdef inline Span _state(const char *fn, const char *name, const real[::1] a, Py_ssize_t n,
                        bint used) except *:
    if not used:
        return span_of(name, NULL, 0)
    check_len(fn, name, a.shape[0], n, "the length of param")
    return span1(name, a)


cdef inline real _sqrt(real v) noexcept nogil:
    # float: the double square root rounded once more is still the correctly rounded float one.
    if real is float:
        return <real>sqrt(<double>v)
    else:
        return sqrt(v)


cdef inline real _decayed(real g, real p, real wd) noexcept nogil:
    # g itself without weight decay (wd * p would turn an infinite p into a NaN gradient), else
    # g + wd * p with one rounding for float (as PyTorch's fused multiply-add): the float product
    # is exact in double. Where g and wd * p nearly cancel, rounding wd * p first would leave
    # ~1e-3 relative error in the sum, which RMSprop and Adagrad pass on through g / sqrt(...).
    if wd == 0:
        return g
    if real is float:
        return <float>(<double>g + <double>wd * <double>p)
    else:
        return g + wd * p


# -- one task runner for every update -------------------------------------------------------------
cdef enum:
    SGD = 0
    ADAM = 1
    RMSPROP = 2
    ADAGRAD = 3
    SCALE = 4


ctypedef struct _RmspropParams:
    double lr, alpha, eps, weight_decay, momentum
    bint centered


ctypedef struct _AdagradParams:
    double clr, weight_decay, eps


cdef struct _Update:
    # An update over n elements: the kind, its hyperparameters (a ranvier_sgd_params,
    # ranvier_adam_params, _RmspropParams, _AdagradParams or the SCALE factor as a double), the
    # parameter, the gradient and up to three state arrays in the kind's order (NULL if unused).
    int kind
    bint f64
    Py_ssize_t n
    const void *h
    void *p
    const void *g
    void *s0
    void *s1
    void *s2


cdef inline real *_at(void *a, Py_ssize_t lo, real *like) noexcept nogil:
    # element lo of an optional array (NULL stays NULL); `like` only names the type
    return <real *>a + lo if a != NULL else NULL


cdef void _rmsprop_chunk(const _RmspropParams *h, real *p, const real *grad, real *square_avg,
                         real *grad_avg, real *momentum_buf, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef real rlr = <real>h.lr, ralpha = <real>h.alpha, reps = <real>h.eps
    cdef real rwd = <real>h.weight_decay, oma = <real>(1.0 - h.alpha), rmom = <real>h.momentum
    # torch's lerp: self + w * (end - self) for |w| < 0.5, else end - (end - self) * (1 - w)
    cdef bint lerp_small = (1.0 - h.alpha) < 0.5
    cdef real lerp_w = <real>(1.0 - h.alpha), lerp_1mw = <real>h.alpha
    cdef bint use_momentum = h.momentum > 0.0
    cdef real g, sa, ga, avg, b
    for i in range(n):
        g = _decayed(grad[i], p[i], rwd)
        sa = ralpha * square_avg[i]
        sa = sa + oma * g * g
        square_avg[i] = sa
        if h.centered:
            ga = grad_avg[i]
            if lerp_small:
                ga = ga + lerp_w * (g - ga)
            else:
                ga = g - (g - ga) * lerp_1mw
            grad_avg[i] = ga
            avg = _sqrt(sa - ga * ga) + reps
        else:
            avg = _sqrt(sa) + reps
        if use_momentum:
            b = rmom * momentum_buf[i]
            b = b + g / avg
            momentum_buf[i] = b
            p[i] = p[i] - rlr * b
        else:
            p[i] = p[i] - rlr * (g / avg)


cdef void _adagrad_chunk(const _AdagradParams *h, real *p, const real *grad, real *state_sum,
                         Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef real rclr = <real>h.clr, rwd = <real>h.weight_decay, reps = <real>h.eps
    cdef real g, s
    for i in range(n):
        g = _decayed(grad[i], p[i], rwd)
        s = state_sum[i] + g * g
        state_sum[i] = s
        p[i] = p[i] - rclr * (g / (_sqrt(s) + reps))


cdef inline void _scale_chunk(double factor, real *x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef real f = <real>factor
    for i in range(n):
        x[i] = x[i] * f


cdef inline void _update_chunk(const _Update *u, real *p, Py_ssize_t t) noexcept nogil:
    # Task t: elements [t * UPDATE_CHUNK, ...) of every array, by the kernel of u.kind. The
    # SGD and Adam loops are C, compiled once per instruction set (optim.h).
    cdef Py_ssize_t lo = t * UPDATE_CHUNK, m = task_len(u.n, UPDATE_CHUNK, t)
    cdef const real *g = _at(<void *>u.g, lo, p)
    cdef real *s0 = _at(u.s0, lo, p)
    cdef real *s1 = _at(u.s1, lo, p)
    cdef real *s2 = _at(u.s2, lo, p)
    cdef const ranvier_optim_kernels *k = ranvier_optim_kernels_for(active_isa())
    p = p + lo
    if u.kind == SGD:
        if real is float:
            k.sgd_f32(<const ranvier_sgd_params *>u.h, p, g, s0, m)
        else:
            k.sgd_f64(<const ranvier_sgd_params *>u.h, p, g, s0, m)
    elif u.kind == ADAM:
        if real is float:
            k.adam_f32(<const ranvier_adam_params *>u.h, p, g, s0, s1, s2, m)
        else:
            k.adam_f64(<const ranvier_adam_params *>u.h, p, g, s0, s1, s2, m)
    elif u.kind == RMSPROP:
        _rmsprop_chunk(<const _RmspropParams *>u.h, p, g, s0, s1, s2, m)
    elif u.kind == ADAGRAD:
        _adagrad_chunk(<const _AdagradParams *>u.h, p, g, s0, m)
    else:
        _scale_chunk((<const double *>u.h)[0], p, m)


cdef void _update_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _Update *u = <const _Update *>job
    if u.f64:
        _update_chunk(u, <double *>u.p, t)
    else:
        _update_chunk(u, <float *>u.p, t)


cdef inline void _run_update(int kind, const void *h, real *p, const real *g, real *s0, real *s1,
                             real *s2, Py_ssize_t n, int num_threads) noexcept nogil:
    cdef _Update u
    u.kind, u.f64, u.n, u.h = kind, real is double, n, h
    u.p, u.g, u.s0, u.s1, u.s2 = p, g, s0, s1, s2
    run_tasks(_update_task, &u, task_count(n, UPDATE_CHUNK), num_threads)


cdef inline real *_ptr(real[::1] a, bint used) noexcept:
    # the first element of a state array in use (NULL when unused or empty)
    return &a[0] if used and a is not None and a.shape[0] > 0 else NULL


def sgd_step(real[::1] param not None, const real[::1] grad not None, real[::1] momentum_buf,
             double lr,
             double momentum=0.0, double dampening=0.0, double weight_decay=0.0,
             bint nesterov=False, bint first_step=False, int num_threads=1):
    """torch.optim.SGD for one tensor:
        g = grad + weight_decay * p
        buf = g (first step) or momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf if nesterov else buf)      (p -= lr * g without momentum)
    Without momentum ``momentum_buf`` is not touched (it may be empty)."""
    cdef Py_ssize_t n = param.shape[0]
    cdef ranvier_sgd_params h
    h.lr, h.momentum, h.dampening, h.weight_decay = lr, momentum, dampening, weight_decay
    h.nesterov, h.first_step = nesterov, first_step
    cdef const char *fn = "sgd_step"
    cdef Span outs[2]
    check_threads(fn, num_threads)
    cdef Span g = _state(fn, "grad", grad, n, True)
    outs[0], outs[1] = span1("param", param), _state(fn, "momentum_buf", momentum_buf, n,
                                                     momentum != 0.0)
    check_apart(fn, outs, 2, &g, 1)
    if n == 0:
        return
    cdef real *pbuf = _ptr(momentum_buf, momentum != 0.0)
    with nogil:
        _run_update(SGD, &h, &param[0], &grad[0], pbuf, NULL, NULL, n, num_threads)


def adam_step(real[::1] param not None, const real[::1] grad not None,
              real[::1] exp_avg not None, real[::1] exp_avg_sq not None, double lr,
              double beta1, double beta2, double eps, double weight_decay, long step,
              bint decoupled=False, int num_threads=1, real[::1] max_exp_avg_sq=None):
    """torch.optim.Adam (decoupled=False: L2 added to the gradient) or AdamW (decoupled=True:
    p *= 1 - lr * weight_decay first), for one tensor at step ``step`` (1-based).

    With ``max_exp_avg_sq`` (AMSGrad): max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq) and the
    denominator uses it instead of exp_avg_sq."""
    cdef Py_ssize_t n = param.shape[0]
    cdef double bc1 = 1.0 - beta1 ** step, bc2 = 1.0 - beta2 ** step
    cdef ranvier_adam_params h
    # 1 - beta is formed in double, then rounded: 1 - float32(0.999) would be 1.3e-5 off.
    h.beta1, h.beta2, h.one_minus_beta1, h.one_minus_beta2 = beta1, beta2, 1.0 - beta1, 1.0 - beta2
    h.eps, h.weight_decay, h.decoupled = eps, weight_decay, decoupled
    h.step_size, h.inv_sqrt_bc2, h.decay = lr / bc1, 1.0 / sqrt(bc2), 1.0 - lr * weight_decay
    cdef bint amsgrad = max_exp_avg_sq is not None
    cdef const char *fn = "adam_step"
    cdef Span outs[4]
    check_threads(fn, num_threads)
    check_at_least(fn, "step", step, 1)    # step 0 divides by 1 - beta1^0 = 0
    cdef Span g = _state(fn, "grad", grad, n, True)
    outs[0], outs[1] = span1("param", param), _state(fn, "exp_avg", exp_avg, n, True)
    outs[2] = _state(fn, "exp_avg_sq", exp_avg_sq, n, True)
    outs[3] = _state(fn, "max_exp_avg_sq", max_exp_avg_sq, n, amsgrad)
    check_apart(fn, outs, 4, &g, 1)
    if n == 0:
        return
    cdef real *pvmax = _ptr(max_exp_avg_sq, amsgrad)
    with nogil:
        _run_update(ADAM, &h, &param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], pvmax, n,
                    num_threads)


def rmsprop_step(real[::1] param not None, const real[::1] grad not None,
                 real[::1] square_avg not None, real[::1] grad_avg, real[::1] momentum_buf,
                 double lr, double alpha, double eps,
                 double weight_decay=0.0, double momentum=0.0, bint centered=False,
                 int num_threads=1):
    """torch.optim.RMSprop for one tensor:
        g = grad + weight_decay * p
        square_avg = alpha * square_avg + (1 - alpha) * g^2
        centered:  grad_avg = lerp(grad_avg, g, 1 - alpha)
                   avg = sqrt(square_avg - grad_avg^2) + eps
        else:      avg = sqrt(square_avg) + eps
        momentum > 0:  buf = momentum * buf + g / avg;  p -= lr * buf
        else:          p -= lr * g / avg
    ``grad_avg`` is only touched when centered, ``momentum_buf`` only with momentum (else they may
    be empty)."""
    cdef Py_ssize_t n = param.shape[0]
    cdef _RmspropParams h
    h.lr, h.alpha, h.eps, h.weight_decay, h.momentum = lr, alpha, eps, weight_decay, momentum
    h.centered = centered
    cdef const char *fn = "rmsprop_step"
    cdef Span outs[4]
    check_threads(fn, num_threads)
    cdef Span gs = _state(fn, "grad", grad, n, True)
    outs[0], outs[1] = span1("param", param), _state(fn, "square_avg", square_avg, n, True)
    outs[2] = _state(fn, "grad_avg", grad_avg, n, centered)
    outs[3] = _state(fn, "momentum_buf", momentum_buf, n, momentum > 0.0)
    check_apart(fn, outs, 4, &gs, 1)
    if n == 0:
        return
    cdef real *pga = _ptr(grad_avg, centered)
    cdef real *pbuf = _ptr(momentum_buf, momentum > 0.0)
    with nogil:
        _run_update(RMSPROP, &h, &param[0], &grad[0], &square_avg[0], pga, pbuf, n, num_threads)


def adagrad_step(real[::1] param not None, const real[::1] grad not None,
                 real[::1] state_sum not None, double clr,
                 double weight_decay=0.0, double eps=1e-10, int num_threads=1):
    """torch.optim.Adagrad for one tensor, with the step's decayed rate
    ``clr = lr / (1 + (step - 1) * lr_decay)`` already formed:
        g = grad + weight_decay * p;  sum += g^2;  p -= clr * g / (sqrt(sum) + eps)"""
    cdef Py_ssize_t n = param.shape[0]
    cdef _AdagradParams h
    h.clr, h.weight_decay, h.eps = clr, weight_decay, eps
    cdef const char *fn = "adagrad_step"
    cdef Span outs[2]
    check_threads(fn, num_threads)
    cdef Span gs = _state(fn, "grad", grad, n, True)
    outs[0], outs[1] = span1("param", param), _state(fn, "state_sum", state_sum, n, True)
    check_apart(fn, outs, 2, &gs, 1)
    if n == 0:
        return
    with nogil:
        _run_update(ADAGRAD, &h, &param[0], &grad[0], &state_sum[0], NULL, NULL, n, num_threads)


# -- gradient norm (clip_grad_norm) ------------------------------------------------------------
cdef enum:
    NORM_L2 = 0
    NORM_L1 = 1
    NORM_INF = 2
    NORM_P = 3


cdef inline double _norm_chunk(const real *x, Py_ssize_t n, int kind, double p) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s = 0.0, a
    if kind == NORM_L2:
        for j in range(n):
            a = <double>x[j]
            s += a * a
    elif kind == NORM_L1:
        for j in range(n):
            s += fabs(<double>x[j])
    elif kind == NORM_INF:
        for j in range(n):
            a = fabs(<double>x[j])
            if a > s or a != a:     # a NaN is kept: later comparisons with it are false
                s = a
                if a != a:
                    break
    else:
        for j in range(n):
            s += pow(fabs(<double>x[j]), p)
    return s


cdef struct _NormJob:
    bint f64
    const void *x
    Py_ssize_t n, per
    int kind
    double p
    double *part      # one partial per task, added in order by the caller


cdef void _norm_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _NormJob *j = <const _NormJob *>job
    cdef Py_ssize_t m = task_len(j.n, j.per, t)
    if j.f64:
        j.part[t] = _norm_chunk(<const double *>j.x + t * j.per, m, j.kind, j.p)
    else:
        j.part[t] = _norm_chunk(<const float *>j.x + t * j.per, m, j.kind, j.p)


def norm_accumulate(const real[::1] x not None, double norm_type, int num_threads=1):
    """The reduction behind a p-norm, in double: sum(x^2) for p = 2, sum|x| for p = 1, max|x| for
    p = inf, sum|x|^p otherwise (the caller combines arrays and takes the root). Partial sums over
    chunks whose length depends on n alone (_reduce.pxd) are added serially, so the result is the
    same for any thread count; the partials live on the stack. A NaN element gives NaN."""
    cdef Py_ssize_t n = x.shape[0], nchunks, c
    cdef double part[RED_MAX_CHUNKS]
    cdef double total = 0.0, v
    cdef int kind
    check_threads("norm_accumulate", num_threads)
    if norm_type == 2.0:
        kind = NORM_L2
    elif norm_type == 1.0:
        kind = NORM_L1
    elif norm_type == float("inf"):
        kind = NORM_INF
    elif norm_type > 0.0 and norm_type == norm_type:
        kind = NORM_P
    else:
        raise ValueError(f"norm_accumulate: norm_type must be > 0 (or inf), got {norm_type}")
    if n == 0:
        return 0.0
    cdef _NormJob job
    job.f64, job.x, job.n, job.per = real is double, &x[0], n, red_chunk_len(n)
    job.kind, job.p, job.part = kind, norm_type, part
    nchunks = task_count(n, job.per)
    with nogil:
        run_tasks(_norm_task, &job, nchunks, num_threads)
    if kind == NORM_INF:
        for c in range(nchunks):
            v = part[c]
            if v > total or v != v:
                total = v
                if v != v:
                    break
    else:
        for c in range(nchunks):
            total += part[c]
    return total


def scale_inplace(real[::1] x not None, double factor, int num_threads=1):
    """x *= factor (factor rounded once to x's type)."""
    cdef Py_ssize_t n = x.shape[0]
    check_threads("scale_inplace", num_threads)
    if n == 0:
        return
    with nogil:
        _run_update(SCALE, &factor, &x[0], NULL, NULL, NULL, NULL, n, num_threads)
