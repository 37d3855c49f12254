"""Activation functions, forward and backward, and dropout's mask.

Elementwise kernels work on flat C-contiguous 1-D views (the layer passes ``x.reshape(-1)``); the
output may be the input (in place). The fused ``bias_<act>_forward`` kernels take the 2-D
(rows, cols) pre-activation and a bias of length cols: y = act(z + b) in one pass.
Backward kernels of ReLU, sigmoid and tanh take the forward *output* y, from which each derivative
follows cheaply: relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2. LeakyReLU, GELU and ELU
take the forward *input* x (their derivatives are not functions of y alone for every slope/alpha,
and GELU's is not invertible). Softmax works row by row. Dropout keeps element i when the uniform
draw u[i] >= p and scales it by 1 / (1 - p); the same kernel masks the gradient.
"""
from cython.parallel cimport prange
from libc.math cimport erf, erff, exp, expf, expm1, expm1f

from ranvier._kernels._elementwise cimport (
    RANVIER_ACT_RELU, RANVIER_ACT_SIGMOID, RANVIER_ACT_TANH, ranvier_elementwise_get_isa,
    ranvier_elementwise_set_isa, ranvier_ew, ranvier_ew_kernels)

ctypedef fused real:
    float
    double


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return expf(x)
    else:
        return exp(x)


cdef enum:
    CHUNK = 16384   # elements per task: whole cache lines per thread, few enough tasks to balance

ranvier_elementwise_get_isa()   # choose now, not racily inside a parallel region


def get_isa():
    """Instruction set of the elementwise kernels in use ('generic', 'avx2', 'avx512')."""
    return ("generic", "avx2", "avx512")[ranvier_elementwise_get_isa()]


def set_isa(name):
    """Force the elementwise kernels (activations and the losses' softmax) onto one ISA."""
    isas = ("generic", "avx2", "avx512")
    if name not in isas or ranvier_elementwise_set_isa(isas.index(name)) != 0:
        raise ValueError(f"elementwise ISA {name!r} is not supported here")


cdef const ranvier_ew_kernels *ew_kernels() noexcept nogil:
    return ranvier_ew()


cdef inline void _fwd_chunk(int act, const real *x, real *y, Py_ssize_t n) noexcept nogil:
    if real is float:
        ranvier_ew().act_forward_f32(act, x, y, n)
    else:
        ranvier_ew().act_forward_f64(act, x, y, n)


cdef inline void _bwd_chunk(int act, const real *y, const real *dy, real *dx,
                            Py_ssize_t n) noexcept nogil:
    if real is float:
        ranvier_ew().act_backward_f32(act, y, dy, dx, n)
    else:
        ranvier_ew().act_backward_f64(act, y, dy, dx, n)


cdef void _forward(int act, const real[::1] x, real[::1] out, int num_threads) except *:
    cdef Py_ssize_t n = x.shape[0], c, nchunks = (n + CHUNK - 1) // CHUNK, lo, m
    if out.shape[0] != n:
        raise ValueError(f"out has {out.shape[0]} elements, x has {n}")
    if n == 0:
        return
    if nchunks == 1 or num_threads == 1:
        with nogil:
            _fwd_chunk(act, &x[0], &out[0], n)
        return
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        lo = c * CHUNK
        m = n - lo if n - lo < CHUNK else CHUNK
        _fwd_chunk(act, &x[lo], &out[lo], m)


cdef void _backward(int act, const real[::1] y, const real[::1] dy, real[::1] dx,
                    int num_threads) except *:
    cdef Py_ssize_t n = y.shape[0], c, nchunks = (n + CHUNK - 1) // CHUNK, lo, m
    if dy.shape[0] != n or dx.shape[0] != n:
        raise ValueError(f"y, dy and dx must have the same length ({n}, {dy.shape[0]}, "
                         f"{dx.shape[0]})")
    if n == 0:
        return
    if nchunks == 1 or num_threads == 1:
        with nogil:
            _bwd_chunk(act, &y[0], &dy[0], &dx[0], n)
        return
    for c in prange(nchunks, nogil=True, schedule="static", num_threads=num_threads):
        lo = c * CHUNK
        m = n - lo if n - lo < CHUNK else CHUNK
        _bwd_chunk(act, &y[lo], &dy[lo], &dx[lo], m)


def relu_forward(const real[::1] x, real[::1] out, int num_threads=1):
    """out = max(x, 0); NaN stays NaN (as torch.relu)."""
    _forward(RANVIER_ACT_RELU, x, out, num_threads)


def relu_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    _backward(RANVIER_ACT_RELU, y, dy, dx, num_threads)


def sigmoid_forward(const real[::1] x, real[::1] out, int num_threads=1):
    _forward(RANVIER_ACT_SIGMOID, x, out, num_threads)


def sigmoid_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    _backward(RANVIER_ACT_SIGMOID, y, dy, dx, num_threads)


def tanh_forward(const real[::1] x, real[::1] out, int num_threads=1):
    _forward(RANVIER_ACT_TANH, x, out, num_threads)


def tanh_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    _backward(RANVIER_ACT_TANH, y, dy, dx, num_threads)


# -- bias + activation in one pass (layers whose GEMM did not fuse them) ---------------------------
cdef inline void _bias_rows(int act, const real *z, const real *b, real *y, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    if real is float:
        ranvier_ew().bias_act_f32(act, z, b, y, rows, cols)
    else:
        ranvier_ew().bias_act_f64(act, z, b, y, rows, cols)


cdef void _bias_forward(int act, const real[:, ::1] z, const real[::1] b, real[:, ::1] y,
                        int num_threads) except *:
    cdef Py_ssize_t rows = z.shape[0], cols = z.shape[1], t, ntasks, per, r0, r1
    if b.shape[0] != cols:
        raise ValueError(f"b has {b.shape[0]} elements, z has {cols} columns")
    if y.shape[0] != rows or y.shape[1] != cols:
        raise ValueError(f"y has shape ({y.shape[0]}, {y.shape[1]}), z has ({rows}, {cols})")
    if rows == 0 or cols == 0:
        return
    # y may be z itself; any other overlap (or b inside y) would read already-written values.
    cdef const char *zp = <const char *>&z[0, 0]
    cdef const char *yp = <const char *>&y[0, 0]
    cdef const char *bp = <const char *>&b[0]
    cdef Py_ssize_t nbytes = rows * cols * sizeof(real)
    if (zp != yp and zp < yp + nbytes and yp < zp + nbytes) or (
            bp < yp + nbytes and yp < bp + cols * <Py_ssize_t>sizeof(real)):
        raise ValueError("y must be z itself or not overlap z and b")
    # whole rows per task, ~CHUNK elements, a multiple of the 4 rows the C loop takes per pass
    per = max(4, (CHUNK // cols) // 4 * 4)
    ntasks = (rows + per - 1) // per
    if ntasks == 1 or num_threads == 1:
        with nogil:
            _bias_rows(act, &z[0, 0], &b[0], &y[0, 0], rows, cols)
        return
    for t in prange(ntasks, nogil=True, schedule="static", num_threads=num_threads):
        r0 = t * per
        r1 = r0 + per if r0 + per < rows else rows
        _bias_rows(act, &z[r0, 0], &b[0], &y[r0, 0], r1 - r0, cols)


def bias_relu_forward(const real[:, ::1] z, const real[::1] b, real[:, ::1] y,
                      int num_threads=1):
    """y = max(z + b, 0) row by row (b broadcast over rows), NaN kept as torch; y may be z."""
    _bias_forward(RANVIER_ACT_RELU, z, b, y, num_threads)


def bias_sigmoid_forward(const real[:, ::1] z, const real[::1] b, real[:, ::1] y,
                         int num_threads=1):
    """y = sigmoid(z + b) row by row; y may be z."""
    _bias_forward(RANVIER_ACT_SIGMOID, z, b, y, num_threads)


def bias_tanh_forward(const real[:, ::1] z, const real[::1] b, real[:, ::1] y,
                      int num_threads=1):
    """y = tanh(z + b) row by row; y may be z."""
    _bias_forward(RANVIER_ACT_TANH, z, b, y, num_threads)


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
    if d == 0:
        return
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        _softmax_backward_row(&y[i, 0], &dy[i, 0], &dx[i, 0], d)


# -- LeakyReLU, GELU, ELU: backward from the input x (as torch's autograd does) --------------------
def leaky_relu_forward(const real[::1] x, real[::1] out, double negative_slope,
                       int num_threads=1):
    """out = x if x > 0 else negative_slope * x."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real s = <real>negative_slope
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = x[i] if x[i] > 0 else x[i] * s


def leaky_relu_backward(const real[::1] x, const real[::1] dy, real[::1] dx,
                        double negative_slope, int num_threads=1):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real s = <real>negative_slope
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * s


cdef inline real _erf(real x) noexcept nogil:
    if real is float:
        return erff(x)
    else:
        return erf(x)


cdef inline real _expm1(real x) noexcept nogil:
    if real is float:
        return expm1f(x)
    else:
        return expm1(x)


def gelu_forward(const real[::1] x, real[::1] out, int num_threads=1):
    """Exact GELU: out = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (torch's approximate='none')."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real half = 0.5, one = 1, rsqrt2 = <real>0.70710678118654752440
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = half * x[i] * (one + _erf(x[i] * rsqrt2))


def gelu_backward(const real[::1] x, const real[::1] dy, real[::1] dx, int num_threads=1):
    """dx = dy * (Phi(x) + x phi(x)), phi the standard normal density."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real half = 0.5, one = 1, rsqrt2 = <real>0.70710678118654752440
    cdef real rsqrt2pi = <real>0.39894228040143267794
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] * (half * (one + _erf(x[i] * rsqrt2))
                         + x[i] * rsqrt2pi * _exp(-half * x[i] * x[i]))


def elu_forward(const real[::1] x, real[::1] out, double alpha, int num_threads=1):
    """out = x if x > 0 else alpha * (exp(x) - 1), with expm1 so small |x| keeps its digits."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real a = <real>alpha
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = x[i] if x[i] > 0 else a * _expm1(x[i])


def elu_backward(const real[::1] x, const real[::1] dy, real[::1] dx, double alpha,
                 int num_threads=1):
    """dx = dy if x > 0 else dy * alpha * exp(x) (at x == 0 the left derivative, as torch)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef real a = <real>alpha
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] if x[i] > 0 else dy[i] * a * _exp(x[i])


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
