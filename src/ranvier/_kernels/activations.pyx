"""Activation functions, forward and backward.

Elementwise kernels work on flat C-contiguous 1-D views (the layer passes ``x.reshape(-1)``).
Backward kernels take the forward *output* y, from which each derivative follows cheaply:
relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2. Softmax works row by row.
"""
from cython.parallel cimport prange
from libc.math cimport exp, expf, tanh, tanhf

ctypedef fused real:
    float
    double


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return expf(x)
    else:
        return exp(x)


cdef inline real _sigmoid(real x) noexcept nogil:
    # Two branches so exp never overflows: for x < 0 use e^x / (1 + e^x).
    cdef real e
    if x >= 0:
        return 1 / (1 + _exp(-x))
    e = _exp(x)
    return e / (1 + e)


def relu_forward(const real[::1] x, real[::1] out, int num_threads=1):
    cdef Py_ssize_t i, n = x.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = x[i] if x[i] > 0 else 0


def relu_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    cdef Py_ssize_t i, n = y.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] if y[i] > 0 else 0


def sigmoid_forward(const real[::1] x, real[::1] out, int num_threads=1):
    cdef Py_ssize_t i, n = x.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        out[i] = _sigmoid(x[i])


def sigmoid_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    cdef Py_ssize_t i, n = y.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] * y[i] * (1 - y[i])


def tanh_forward(const real[::1] x, real[::1] out, int num_threads=1):
    cdef Py_ssize_t i, n = x.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        if real is float:
            out[i] = tanhf(x[i])
        else:
            out[i] = tanh(x[i])


def tanh_backward(const real[::1] y, const real[::1] dy, real[::1] dx, int num_threads=1):
    cdef Py_ssize_t i, n = y.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        dx[i] = dy[i] * (1 - y[i] * y[i])


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
