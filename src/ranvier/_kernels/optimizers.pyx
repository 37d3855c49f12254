"""Optimizer updates: one native pass over (param, grad, state), PyTorch's formulas.

Each works on flat C-contiguous 1-D views of one parameter tensor and its state buffers.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt

ctypedef fused real:
    float
    double


def sgd_step(real[::1] param, const real[::1] grad, real[::1] momentum_buf, double lr,
             double momentum=0.0, double dampening=0.0, double weight_decay=0.0,
             bint nesterov=False, bint first_step=False, int num_threads=1):
    """torch.optim.SGD for one tensor:
        g = grad + weight_decay * p
        buf = g (first step) or momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf if nesterov else buf)      (p -= lr * g without momentum)
    """
    cdef Py_ssize_t i, n = param.shape[0]
    cdef real g, b
    cdef real rlr = <real>lr, rmom = <real>momentum, rdamp = <real>(1.0 - dampening)
    cdef real rwd = <real>weight_decay
    cdef bint use_momentum = momentum != 0.0
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        g = grad[i]
        if rwd != 0:
            g = g + rwd * param[i]
        if use_momentum:
            if first_step:
                b = g
            else:
                b = rmom * momentum_buf[i] + rdamp * g
            momentum_buf[i] = b
            if nesterov:
                g = g + rmom * b
            else:
                g = b
        param[i] = param[i] - rlr * g


def adam_step(real[::1] param, const real[::1] grad, real[::1] exp_avg, real[::1] exp_avg_sq,
              double lr, double beta1, double beta2, double eps, double weight_decay, long step,
              bint decoupled=False, int num_threads=1):
    """torch.optim.Adam (decoupled=False: L2 added to the gradient) or AdamW (decoupled=True:
    p *= 1 - lr * weight_decay first), for one tensor at step ``step`` (1-based)."""
    cdef Py_ssize_t i, n = param.shape[0]
    cdef double bc1 = 1.0 - beta1 ** step, bc2 = 1.0 - beta2 ** step
    cdef real step_size = <real>(lr / bc1), inv_sqrt_bc2 = <real>(1.0 / sqrt(bc2))
    # 1 - beta is formed in double, then rounded: 1 - float32(0.999) would be 1.3e-5 off.
    cdef real b1 = <real>beta1, b2 = <real>beta2, reps = <real>eps, rwd = <real>weight_decay
    cdef real omb1 = <real>(1.0 - beta1), omb2 = <real>(1.0 - beta2)
    cdef real decay = <real>(1.0 - lr * weight_decay)
    cdef real g, m, v, denom
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        g = grad[i]
        if rwd != 0:
            if decoupled:
                param[i] = param[i] * decay
            else:
                g = g + rwd * param[i]
        m = b1 * exp_avg[i] + omb1 * g
        v = b2 * exp_avg_sq[i] + omb2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if real is float:
            denom = <real>sqrt(<double>v) * inv_sqrt_bc2 + reps
        else:
            denom = sqrt(v) * inv_sqrt_bc2 + reps
        param[i] = param[i] - step_size * m / denom
