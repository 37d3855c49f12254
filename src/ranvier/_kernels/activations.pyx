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
from cython.parallel cimport parallel, prange
from libc.math cimport exp, expf

from ranvier._kernels._fpenv cimport (
    fp_enter, fp_mode, ranvier_fp_adopt, ranvier_fp_leave, ranvier_fpstate)
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


cdef void _run_chunks(ranvier_act a, const real *v, const real *dy, real *out, Py_ssize_t n,
                      int num_threads) noexcept nogil:
    """The forward pass (dy NULL) or the backward pass over n elements, in CHUNK-sized pieces
    shared out to the threads (one piece, or one thread: on the calling thread)."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t c, nchunks = (n + CHUNK - 1) // CHUNK, lo, m
    if nchunks == 1 or num_threads <= 1:
        fp = fp_enter()
        if dy == NULL:
            _fwd_chunk(a, v, out, n)
        else:
            _bwd_chunk(a, v, dy, out, n)
        ranvier_fp_leave(fp)
        return
    bits = fp_mode()
    with parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for c in prange(nchunks, schedule="static"):
            lo = c * CHUNK
            m = n - lo if n - lo < CHUNK else CHUNK
            if dy == NULL:
                _fwd_chunk(a, &v[lo], &out[lo], m)
            else:
                _bwd_chunk(a, &v[lo], &dy[lo], &out[lo], m)
        ranvier_fp_leave(fp)


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
        _run_chunks(a, &x[0], <const real *>NULL, &out[0], n, num_threads)


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
        _run_chunks(a, &v[0], &dy[0], &dx[0], n, num_threads)


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
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef ranvier_act a = make_act("bias_forward", code, param)
    cdef Py_ssize_t rows = z.shape[0], cols = z.shape[1], t, ntasks, per, r0, r1
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
    per = max(4, (CHUNK // cols) // 4 * 4)
    ntasks = (rows + per - 1) // per
    if ntasks == 1 or num_threads <= 1:
        with nogil:
            fp = fp_enter()
            _bias_rows(a, &z[0, 0], &b[0], &y[0, 0], rows, cols)
            ranvier_fp_leave(fp)
        return
    bits = fp_mode()
    with nogil, parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for t in prange(ntasks, schedule="static"):
            r0 = t * per
            r1 = r0 + per if r0 + per < rows else rows
            _bias_rows(a, &z[r0, 0], &b[0], &y[r0, 0], r1 - r0, cols)
        ranvier_fp_leave(fp)


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
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t i, n = x.shape[0], d = x.shape[1]
    check_threads("softmax_forward", num_threads)
    check_shape("softmax_forward", "out", out.shape[0], out.shape[1], n, d, "the shape of x")
    check_in_place_or_apart("softmax_forward", span2("out", out), span2("x", x))
    if d == 0:
        return
    bits = fp_mode()
    with nogil, parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for i in prange(n, schedule="static"):
            _softmax_row(&x[i, 0], &out[i, 0], d)
        ranvier_fp_leave(fp)


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
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t i, n = y.shape[0], d = y.shape[1]
    check_threads("softmax_backward", num_threads)
    check_shape("softmax_backward", "dy", dy.shape[0], dy.shape[1], n, d, "the shape of y")
    check_shape("softmax_backward", "dx", dx.shape[0], dx.shape[1], n, d, "the shape of y")
    cdef Span out = span2("dx", dx)
    check_in_place_or_apart("softmax_backward", out, span2("dy", dy))
    check_in_place_or_apart("softmax_backward", out, span2("y", y))
    if d == 0:
        return
    bits = fp_mode()
    with nogil, parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for i in prange(n, schedule="static"):
            _softmax_backward_row(&y[i, 0], &dy[i, 0], &dx[i, 0], d)
        ranvier_fp_leave(fp)


# -- Dropout ---------------------------------------------------------------------------------------
def dropout_apply(const real[::1] x not None, const float[::1] u not None, double p, double scale,
                  real[::1] out not None, int num_threads=1, Py_ssize_t group=1):
    """out[i] = x[i] * scale where u[i // group] >= p, else 0. ``u`` holds uniform [0, 1) draws
    (float32 for both dtypes, so a seed gives the same mask in float32 and float64), one per
    ``group`` consecutive elements (1: Dropout; a channel's height * width: Dropout2d). Used for
    the forward pass (x = input) and the backward pass (x = grad_output) with the same u."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t i, j, g, n = x.shape[0]
    cdef float pf = <float>p
    cdef real s = <real>scale, zero = 0
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
    bits = fp_mode()
    with nogil, parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for g in prange(u.shape[0], schedule="static"):
            if u[g] >= pf:
                for j in range(g * group, (g + 1) * group):
                    out[j] = x[j] * s
            else:
                for j in range(g * group, (g + 1) * group):
                    out[j] = zero
        ranvier_fp_leave(fp)
