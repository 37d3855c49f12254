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
from cython.parallel cimport prange
from libc.math cimport exp, expf

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


cdef ranvier_act make_act(int code, double param) except *:
    if code < 0 or code >= RANVIER_ACT_COUNT:
        raise ValueError(f"unknown activation code {code}; the table has {dict(ACTIVATIONS)}")
    cdef ranvier_act a
    a.code = code
    a.param = param
    return a


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


def forward(int code, const real[::1] x, real[::1] out, double param=0.0, int num_threads=1):
    """out = act(x) for the activation ``code``; out may be x."""
    cdef ranvier_act a = make_act(code, param)
    cdef Py_ssize_t n = x.shape[0], c, nchunks = (n + CHUNK - 1) // CHUNK, lo, m
    if out.shape[0] != n:
        raise ValueError(f"forward: out has {out.shape[0]} elements, x has {n}")
    if n == 0:
        return
    if nchunks == 1 or num_threads <= 1:
        with nogil:
            _fwd_chunk(a, &x[0], &out[0], n)
        return
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        lo = c * CHUNK
        m = n - lo if n - lo < CHUNK else CHUNK
        _fwd_chunk(a, &x[lo], &out[lo], m)


def backward(int code, const real[::1] v, const real[::1] dy, real[::1] dx, double param=0.0,
             int num_threads=1):
    """dx = dy * act'(v), v the forward output (NEEDS_OUTPUT) or input; dx may be dy."""
    cdef ranvier_act a = make_act(code, param)
    cdef Py_ssize_t n = v.shape[0], c, nchunks = (n + CHUNK - 1) // CHUNK, lo, m
    if dy.shape[0] != n or dx.shape[0] != n:
        raise ValueError(f"backward: v, dy and dx must have the same length, got ({n}, "
                         f"{dy.shape[0]}, {dx.shape[0]})")
    if n == 0:
        return
    if nchunks == 1 or num_threads <= 1:
        with nogil:
            _bwd_chunk(a, &v[0], &dy[0], &dx[0], n)
        return
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        lo = c * CHUNK
        m = n - lo if n - lo < CHUNK else CHUNK
        _bwd_chunk(a, &v[lo], &dy[lo], &dx[lo], m)


# -- bias + activation in one pass (layers whose GEMM did not fuse them) ---------------------------
cdef inline void _bias_rows(ranvier_act a, const real *z, const real *b, real *y, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    if real is float:
        ew_kernels().bias_act_f32(a, z, b, y, rows, cols)
    else:
        ew_kernels().bias_act_f64(a, z, b, y, rows, cols)


def bias_forward(int code, const real[:, ::1] z, const real[::1] b, real[:, ::1] y,
                 double param=0.0, int num_threads=1):
    """y = act(z + b) row by row (b broadcast over rows); y may be z."""
    cdef ranvier_act a = make_act(code, param)
    cdef Py_ssize_t rows = z.shape[0], cols = z.shape[1], t, ntasks, per, r0, r1
    if b.shape[0] != cols:
        raise ValueError(f"bias_forward: b has {b.shape[0]} elements, z has {cols} columns")
    if y.shape[0] != rows or y.shape[1] != cols:
        raise ValueError(f"bias_forward: y has shape ({y.shape[0]}, {y.shape[1]}), z has "
                         f"({rows}, {cols})")
    if rows == 0 or cols == 0:
        return
    # y may be z itself; any other overlap (or b inside y) would read already-written values.
    cdef const char *zp = <const char *>&z[0, 0]
    cdef const char *yp = <const char *>&y[0, 0]
    cdef const char *bp = <const char *>&b[0]
    cdef Py_ssize_t nbytes = rows * cols * sizeof(real)
    if (zp != yp and zp < yp + nbytes and yp < zp + nbytes) or (
            bp < yp + nbytes and yp < bp + cols * <Py_ssize_t>sizeof(real)):
        raise ValueError("bias_forward: y must be z itself or not overlap z and b")
    # whole rows per task, ~CHUNK elements, a multiple of the 4 rows the C loop takes per pass
    per = max(4, (CHUNK // cols) // 4 * 4)
    ntasks = (rows + per - 1) // per
    if ntasks == 1 or num_threads <= 1:
        with nogil:
            _bias_rows(a, &z[0, 0], &b[0], &y[0, 0], rows, cols)
        return
    for t in prange(ntasks, nogil=True, schedule="static", num_threads=num_threads):
        r0 = t * per
        r1 = r0 + per if r0 + per < rows else rows
        _bias_rows(a, &z[r0, 0], &b[0], &y[r0, 0], r1 - r0, cols)


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


def softmax_forward(const real[:, ::1] x, real[:, ::1] out, int num_threads=1):
    cdef Py_ssize_t i, n = x.shape[0], d = x.shape[1]
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError(f"softmax_forward: out has shape ({out.shape[0]}, {out.shape[1]}), x has "
                         f"({n}, {d})")
    if d == 0:
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        _softmax_row(&x[i, 0], &out[i, 0], d)


cdef inline void _softmax_backward_row(const real *y, const real *dy, real *dx,
                                       Py_ssize_t d) noexcept nogil:
    # dx = y * (dy - <dy, y>): the softmax Jacobian-vector product without forming the Jacobian.
    cdef Py_ssize_t j
    cdef double dot = 0.0
    for j in range(d):
        dot += dy[j] * y[j]
    for j in range(d):
        dx[j] = <real>(y[j] * (dy[j] - dot))


def softmax_backward(const real[:, ::1] y, const real[:, ::1] dy, real[:, ::1] dx,
                     int num_threads=1):
    cdef Py_ssize_t i, n = y.shape[0], d = y.shape[1]
    if dy.shape[0] != n or dy.shape[1] != d or dx.shape[0] != n or dx.shape[1] != d:
        raise ValueError("softmax_backward: y, dy and dx must have the same shape")
    if d == 0:
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        _softmax_backward_row(&y[i, 0], &dy[i, 0], &dx[i, 0], d)


# -- Dropout ---------------------------------------------------------------------------------------
def dropout_apply(const real[::1] x, const float[::1] u, double p, double scale, real[::1] out,
                  int num_threads=1):
    """out[i] = x[i] * scale where u[i] >= p, else 0. ``u`` holds uniform [0, 1) draws (float32
    for both dtypes, so a seed gives the same mask in float32 and float64). Used for the forward
    pass (x = input) and the backward pass (x = grad_output) with the same u."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef float pf = <float>p
    cdef real s = <real>scale, zero = 0
    if u.shape[0] != n or out.shape[0] != n:
        raise ValueError(f"dropout_apply: x, u and out must have the same length, got "
                         f"{n}, {u.shape[0]}, {out.shape[0]}")
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = x[i] * s if u[i] >= pf else zero
