"""The activation table's kernels (csrc/activations.h), forward and backward, plus softmax and
dropout's mask.

Every activation is one entry of the table, named by its code (``ACTIVATIONS[name]``) and applied
by the same three kernels: ``forward(code, x, out, param)``, ``backward(code, v, dy, dx, param)``
and the fused ``bias_forward(code, z, b, y, param)`` (y = act(z + b) row by row). ``param`` is the
activation's scalar (LeakyReLU's slope, ELU's alpha). ``backward`` takes v = the forward *output*
for the activations in ``NEEDS_OUTPUT`` (relu, sigmoid, tanh: their derivative is a function of
y) and the forward *input* for the others. Elementwise kernels work on flat C-contiguous 1-D
views (the layer passes ``x.reshape(-1)``); the output may be the input (in place). Softmax works
row by row. Dropout keeps element i when the uniform draw u[i] >= p and scales it by 1 / (1 - p);
the same kernel masks the gradient.
"""
from libc.math cimport exp, expf

from ranvier._kernels._tasks cimport run_tasks, task_count, task_len
from ranvier._kernels._checks cimport (
    Span, check_apart, check_at_least, check_in_place_or_apart, check_len, check_shape,
    check_threads, span1, span2)
from ranvier._kernels._elementwise cimport (
    RANVIER_ACT_COUNT, RANVIER_ACT_NEEDS_INPUT, ranvier_act, ranvier_act_table,
    ranvier_ew_kernels, ranvier_ew_kernels_for)
from ranvier._kernels._runtime cimport active_isa

ctypedef fused real:
    float
    double

# name -> code, in code order, read from the C table (the one list of activations).
ACTIVATIONS = {ranvier_act_table[i].name.decode(): ranvier_act_table[i].code
               for i in range(RANVIER_ACT_COUNT)}
NEEDS_OUTPUT = frozenset(ranvier_act_table[i].name.decode() for i in range(RANVIER_ACT_COUNT)
                         if ranvier_act_table[i].needs != RANVIER_ACT_NEEDS_INPUT)


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return expf(x)
    else:
        return exp(x)


cdef enum:
    CHUNK = 16384   # elements per task: whole cache lines per thread, few enough tasks to balance


cdef const ranvier_ew_kernels *ew_kernels() noexcept nogil:
    return ranvier_ew_kernels_for(active_isa())


cdef inline void _fwd_chunk(ranvier_act a, const real *x, real *y, Py_ssize_t n) noexcept nogil:
    if real is float:
        ew_kernels().act_forward_f32(a, x, y, n)
    else:
        ew_kernels().act_forward_f64(a, x, y, n)


cdef inline void _bwd_chunk(ranvier_act a, const real *v, const real *dy, real *dx,
                            Py_ssize_t n) noexcept nogil:
    if real is float:
        ew_kernels().act_backward_f32(a, v, dy, dx, n)
    else:
        ew_kernels().act_backward_f64(a, v, dy, dx, n)


cdef enum:
    FORWARD = 0
    BACKWARD = 1
    BIAS_ROWS = 2
    SOFTMAX = 3
    SOFTMAX_BACKWARD = 4
    DROPOUT = 5


cdef inline ranvier_act _no_act() noexcept nogil:
    # for the passes that apply no activation of the table (softmax, dropout)
    cdef ranvier_act a
    a.code, a.param = 0, 0.0
    return a


cdef struct _Pass:
    # One of this module's passes over n items (elements, rows or dropout groups), ``per`` items
    # to a task: the activation, the inputs ``a`` and ``b`` (x or v and dy; z and the bias; y and
    # dy; x and the draws u), the output, the row length and dropout's p, scale and group.
    int op
    bint f64
    ranvier_act act
    Py_ssize_t n, per, cols
    const void *a
    const void *b
    void *out
    double p, scale


cdef inline void _pass_chunk(const _Pass *j, real *out, Py_ssize_t t) noexcept nogil:
    cdef Py_ssize_t lo = t * j.per, m = task_len(j.n, j.per, t), c = j.cols
    cdef const real *a = <const real *>j.a
    cdef const real *b = <const real *>j.b
    if j.op == FORWARD:
        _fwd_chunk(j.act, a + lo, out + lo, m)
    elif j.op == BACKWARD:
        _bwd_chunk(j.act, a + lo, b + lo, out + lo, m)
    elif j.op == BIAS_ROWS:
        _bias_rows(j.act, a + lo * c, b, out + lo * c, m, c)
    elif j.op == SOFTMAX:
        _softmax_row(a + lo * c, out + lo * c, c)
    elif j.op == SOFTMAX_BACKWARD:
        _softmax_backward_row(a + lo * c, b + lo * c, out + lo * c, c)
    else:
        _dropout_groups(a, <const float *>j.b, out, j.p, j.scale, c, lo, lo + m)


cdef void _pass_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _Pass *j = <const _Pass *>job
    if j.f64:
        _pass_chunk(j, <double *>j.out, t)
    else:
        _pass_chunk(j, <float *>j.out, t)


cdef inline void _run(int op, ranvier_act act, const real *a, const void *b, real *out,
                      Py_ssize_t n, Py_ssize_t per, Py_ssize_t cols, int num_threads,
                      double p=0.0, double scale=0.0) noexcept nogil:
    cdef _Pass j
    j.op, j.f64, j.act, j.n, j.per, j.cols = op, real is double, act, n, per, cols
    j.a, j.b, j.out, j.p, j.scale = a, b, out, p, scale
    run_tasks(_pass_task, &j, task_count(n, per), num_threads)


def forward(int code, const real[::1] x not None, real[::1] out not None, double param=0.0,
            int num_threads=1):
    """out = act(x) for the activation ``code``; out may be x."""
    cdef ranvier_act a = make_act("forward", code, param)
    cdef Py_ssize_t n = x.shape[0]
    check_threads("forward", num_threads)
    check_len("forward", "out", out.shape[0], n, "the length of x")
    check_in_place_or_apart("forward", span1("out", out), span1("x", x))
    if n == 0:
        return
    with nogil:
        _run(FORWARD, a, &x[0], NULL, &out[0], n, CHUNK, 0, num_threads)


def backward(int code, const real[::1] v not None, const real[::1] dy not None,
             real[::1] dx not None, double param=0.0, int num_threads=1):
    """dx = dy * act'(v), v the forward output (NEEDS_OUTPUT) or input; dx may be dy or v."""
    cdef ranvier_act a = make_act("backward", code, param)
    cdef Py_ssize_t n = v.shape[0]
    check_threads("backward", num_threads)
    check_len("backward", "dy", dy.shape[0], n, "the length of v")
    check_len("backward", "dx", dx.shape[0], n, "the length of v")
    cdef Span out = span1("dx", dx)
    check_in_place_or_apart("backward", out, span1("dy", dy))
    check_in_place_or_apart("backward", out, span1("v", v))
    if n == 0:
        return
    with nogil:
        _run(BACKWARD, a, &v[0], &dy[0], &dx[0], n, CHUNK, 0, num_threads)


# -- bias + activation in one pass (layers whose GEMM did not fuse them) ---------------------------
cdef inline void _bias_rows(ranvier_act a, const real *z, const real *b, real *y, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    if real is float:
        ew_kernels().bias_act_f32(a, z, b, y, rows, cols)
    else:
        ew_kernels().bias_act_f64(a, z, b, y, rows, cols)


def bias_forward(int code, const real[:, ::1] z not None, const real[::1] b not None,
                 real[:, ::1] y not None, double param=0.0, int num_threads=1):
    """y = act(z + b) row by row (b broadcast over rows); y may be z."""
    cdef ranvier_act a = make_act("bias_forward", code, param)
    cdef Py_ssize_t rows = z.shape[0], cols = z.shape[1]
    check_threads("bias_forward", num_threads)
    check_len("bias_forward", "b", b.shape[0], cols, "the columns of z")
    check_shape("bias_forward", "y", y.shape[0], y.shape[1], rows, cols, "the shape of z")
    # y may be z itself; any other overlap (or b inside y) would read already-written values.
    cdef Span out = span2("y", y)
    cdef Span bias = span1("b", b)
    check_in_place_or_apart("bias_forward", out, span2("z", z))
    check_apart("bias_forward", &out, 1, &bias, 1)
    if rows == 0 or cols == 0:
        return
    # whole rows per task, ~CHUNK elements, a multiple of the 4 rows the C loop takes per pass
    cdef Py_ssize_t per = max(4, (CHUNK // cols) // 4 * 4)
    with nogil:
        _run(BIAS_ROWS, a, &z[0, 0], &b[0], &y[0, 0], rows, per, cols, num_threads)


cdef inline void _softmax_row(const real *x, real *out, Py_ssize_t d) noexcept nogil:
    # Subtract the row max so exp never overflows; sum in double.
    cdef Py_ssize_t j
    cdef real m = x[0]
    cdef double s = 0.0
    for j in range(1, d):
        if x[j] > m:
            m = x[j]
    for j in range(d):
        out[j] = _exp(x[j] - m)
        s += out[j]
    for j in range(d):
        out[j] = <real>(out[j] / s)


def softmax_forward(const real[:, ::1] x not None, real[:, ::1] out not None, int num_threads=1):
    """out = softmax of each row of x; out may be x."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    check_threads("softmax_forward", num_threads)
    check_shape("softmax_forward", "out", out.shape[0], out.shape[1], n, d, "the shape of x")
    check_in_place_or_apart("softmax_forward", span2("out", out), span2("x", x))
    if n == 0 or d == 0:
        return
    with nogil:
        _run(SOFTMAX, _no_act(), &x[0, 0], NULL, &out[0, 0], n, 1, d, num_threads)


cdef inline void _softmax_backward_row(const real *y, const real *dy, real *dx,
                                       Py_ssize_t d) noexcept nogil:
    # dx = y * (dy - <dy, y>): the softmax Jacobian-vector product without forming the Jacobian.
    cdef Py_ssize_t j
    cdef double dot = 0.0
    for j in range(d):
        dot += dy[j] * y[j]
    for j in range(d):
        dx[j] = <real>(y[j] * (dy[j] - dot))


def softmax_backward(const real[:, ::1] y not None, const real[:, ::1] dy not None,
                     real[:, ::1] dx not None, int num_threads=1):
    """dx = the softmax Jacobian (at output y) times dy, row by row; dx may be dy or y."""
    cdef Py_ssize_t n = y.shape[0], d = y.shape[1]
    check_threads("softmax_backward", num_threads)
    check_shape("softmax_backward", "dy", dy.shape[0], dy.shape[1], n, d, "the shape of y")
    check_shape("softmax_backward", "dx", dx.shape[0], dx.shape[1], n, d, "the shape of y")
    cdef Span out = span2("dx", dx)
    check_in_place_or_apart("softmax_backward", out, span2("dy", dy))
    check_in_place_or_apart("softmax_backward", out, span2("y", y))
    if n == 0 or d == 0:
        return
    with nogil:
        _run(SOFTMAX_BACKWARD, _no_act(), &y[0, 0], &dy[0, 0], &dx[0, 0], n, 1, d, num_threads)


# -- Dropout ---------------------------------------------------------------------------------------
def dropout_apply(const real[::1] x not None, const float[::1] u not None, double p, double scale,
                  real[::1] out not None, int num_threads=1, Py_ssize_t group=1):
    """out[i] = x[i] * scale where u[i // group] >= p, else 0. ``u`` holds uniform [0, 1) draws
    (float32 for both dtypes, so a seed gives the same mask in float32 and float64), one per
    ``group`` consecutive elements (1: Dropout; a channel's height * width: Dropout2d). Used for
    the forward pass (x = input) and the backward pass (x = grad_output) with the same u."""
    cdef Py_ssize_t n = x.shape[0]
    check_threads("dropout_apply", num_threads)
    check_at_least("dropout_apply", "group", group, 1)
    if n % group != 0 or u.shape[0] != n // group:
        raise ValueError(f"dropout_apply: u has {u.shape[0]} entries, expected one per group of "
                         f"{group} elements of x (length {n})")
    check_len("dropout_apply", "out", out.shape[0], n, "the length of x")
    cdef Span dst = span1("out", out)
    cdef Span draws = span1("u", u)
    check_in_place_or_apart("dropout_apply", dst, span1("x", x))
    check_apart("dropout_apply", &dst, 1, &draws, 1)
    if n == 0:
        return
    with nogil:
        _run(DROPOUT, _no_act(), &x[0], &u[0], &out[0], u.shape[0], max(1, CHUNK // group), group,
             num_threads, p, scale)


cdef inline void _dropout_groups(const real *x, const float *u, real *out, double p, double scale,
                                 Py_ssize_t group, Py_ssize_t g0, Py_ssize_t g1) noexcept nogil:
    # groups g0..g1-1: kept (u >= p) scaled by `scale`, dropped set to zero
    cdef Py_ssize_t g, j
    cdef float pf = <float>p
    cdef real s = <real>scale, zero = 0
    for g in range(g0, g1):
        if u[g] >= pf:
            for j in range(g * group, (g + 1) * group):
                out[j] = x[j] * s
        else:
            for j in range(g * group, (g + 1) * group):
                out[j] = zero
