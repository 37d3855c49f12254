"""float64 NumPy references shared by the tests: activations and their derivatives, softmax and
log-softmax, the losses, convolution and pooling and their gradients, the optimizer update rules
(PyTorch's documented formulas), bfloat16 rounding and central finite differences. Each is
written once here; tests compare ranvier's kernels and layers with
them."""
import math

import numpy as np

# -- activations ----------------------------------------------------------------------------------
_erf = np.vectorize(math.erf)


def sigmoid(x):
    """Without the cancellation of 1 - e / (1 + e) for very negative x."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _gelu_grad(x):
    return 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _silu_grad(x):
    s = sigmoid(x)
    return s * (1 + x * (1 - s))


# name -> (f(x, param), f'(x, param)); param is the slope of leaky_relu and the alpha of elu
_ACTIVATIONS = {
    "none": (lambda x, a: x, lambda x, a: np.ones_like(x)),
    "relu": (lambda x, a: np.maximum(x, 0), lambda x, a: (x > 0).astype(np.float64)),
    "sigmoid": (lambda x, a: sigmoid(x), lambda x, a: sigmoid(x) * (1 - sigmoid(x))),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: 1 - np.tanh(x) ** 2),
    "leaky_relu": (lambda x, a: np.where(x > 0, x, a * x), lambda x, a: np.where(x > 0, 1.0, a)),
    "elu": (lambda x, a: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
            lambda x, a: np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))),
    "gelu": (lambda x, a: _gelu(x), lambda x, a: _gelu_grad(x)),
    "silu": (lambda x, a: x * sigmoid(x), lambda x, a: _silu_grad(x)),
}
ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def activation(name, x, param=0.0):
    """The table activation ``name`` of x, in float64."""
    return _ACTIVATIONS[name][0](np.asarray(x, np.float64), param)


def activation_grad(name, x, param=0.0):
    """d activation / d x at x, in float64 (0 at the kink of relu, ``param`` for leaky_relu)."""
    return _ACTIVATIONS[name][1](np.asarray(x, np.float64), param)


# the derivative from the output y, for the activations whose backward takes y
_GRAD_FROM_OUTPUT = {
    "none": lambda y: np.ones_like(y),
    "relu": lambda y: (y > 0).astype(np.float64),
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}


def activation_grad_from_output(name, y):
    """d activation / d x expressed through the output y (none, relu, sigmoid, tanh)."""
    return _GRAD_FROM_OUTPUT[name](np.asarray(y, np.float64))


def log_softmax(z):
    """Row-wise, as (z - m) - log(sum exp(z - m)): adding m back into a log-sum-exp would cost
    eps * |m| (2e-12 at |z| ~ 1e4) in the reference itself."""
    z = np.asarray(z, np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_grad(y, dy):
    """The vector-Jacobian product of softmax at output y: y * (dy - sum(dy * y))."""
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    return y * (dy - np.sum(dy * y, axis=1, keepdims=True))


# -- losses ---------------------------------------------------------------------------------------
BCE_GRAD_FLOOR = float(np.float32(1e-12))  # torch's BCELoss gradient floor is the float 1e-12


def onehot(labels, c, dtype=np.float64):
    t = np.zeros((len(labels), c), dtype)
    t[np.arange(len(labels)), labels] = 1
    return t


def elementwise_loss(kind, pred, target, pos_weight=None, delta=1.0):
    """Per-element loss, per-element d loss / d pred (unreduced) and the magnitude of the terms
    in each (the scale of their rounding errors), all float64 from the same (rounded) inputs.
    ``kind``: "bce_with_logits" (``pos_weight`` per column), "bce", "huber", "l1" or "mse"."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if kind == "bce_with_logits":
        w = np.ones(p.shape[1]) if pos_weight is None else np.broadcast_to(
            pos_weight, (p.shape[1],))
        lw = 1 + (w - 1) * t
        softplus_neg = np.log1p(np.exp(-np.abs(p))) + np.maximum(-p, 0)  # -log sigmoid(z)
        val = (1 - t) * p + lw * softplus_neg
        s = sigmoid(p)
        grad = s * lw - w * t
        return val, grad, np.abs((1 - t) * p) + lw * softplus_neg, s * lw + w * t
    if kind == "bce":
        lp, lq = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        val = -(t * lp + (1 - t) * lq)
        grad = (p - t) / np.maximum(p * (1 - p), BCE_GRAD_FLOOR)
        return val, grad, t * np.abs(lp) + (1 - t) * np.abs(lq), np.abs(grad)
    d = p - t
    if kind == "huber":
        small = np.abs(d) < delta
        val = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
        grad = np.clip(d, -delta, delta)
    elif kind == "l1":
        val, grad = np.abs(d), np.sign(d)
    elif kind == "mse":
        val, grad = d * d, 2 * d
    else:
        raise ValueError(f"unknown loss kind {kind!r}")
    return val, grad, val, np.abs(grad)


def cross_entropy(z, t, weight=None, smoothing=0.0, reduction="mean"):
    """torch's definition (class weights, label smoothing) in float64. ``t``: integer labels or
    probability rows. Returns (row losses, gradient of the reduced loss, reduction scale,
    effective target u, softmax p)."""
    n, c = z.shape
    logp = log_softmax(z)
    w64 = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    if t.ndim == 1:
        u = w64 * ((1 - smoothing) * onehot(t, c) + smoothing / c)
        denom = (w64[t].sum() if weight is not None else n) if reduction == "mean" else 1.0
    else:
        u = w64 * ((1 - smoothing) * np.asarray(t, np.float64) + smoothing / c)
        denom = n if reduction == "mean" else 1.0
    rows = -(u * logp).sum(axis=1)
    grad = np.exp(logp) * u.sum(axis=1, keepdims=True) - u
    return rows, grad / denom, 1.0 / denom, u, np.exp(logp)


# -- optimizers: n steps from p with the given gradients; (final p, state) ------------------------
def sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p = p.astype(np.float64)
    buf = None
    for g in grads:
        g = g.astype(np.float64)
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p, {} if buf is None else {"momentum_buffer": buf}


def adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         decoupled=False):
    """Adam, or AdamW with ``decoupled``; AMSGrad divides by the running max of exp_avg_sq."""
    p = p.astype(np.float64)
    b1, b2 = betas
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        denom = np.sqrt((vmax if amsgrad else v) / (1 - b2 ** t)) + eps
        p = p - lr / (1 - b1 ** t) * m / denom
    state = {"exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        state["max_exp_avg_sq"] = vmax
    return p, state


def rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    p = p.astype(np.float64)
    sq, ga, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = g.astype(np.float64) + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            ga = alpha * ga + (1 - alpha) * g
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p, {"square_avg": sq, "grad_avg": ga, "momentum_buffer": buf}


def adagrad(p, grads, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
            eps=1e-10):
    p = p.astype(np.float64)
    s = np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64) + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (np.sqrt(s) + eps)
    return p, {"sum": s}


# -- convolution ----------------------------------------------------------------------------------
def conv_out_size(size, k, s, p, d):
    """Output length of a convolution along one axis (PyTorch's formula)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _taps(x, w, stride, padding, dilation):
    """(i, j, window) for every kernel tap: the padded input each output pixel sees through it,
    shape (n, c, out_h, out_w)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    kh, kw = w.shape[2:]
    oh = conv_out_size(x.shape[2], kh, sh, ph, dh)
    ow = conv_out_size(x.shape[3], kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]


def conv2d(x, w, b, stride, padding, dilation, groups):
    """float64 reference of PyTorch's conv2d."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    out = None
    for i, j, win in _taps(x, w, stride, padding, dilation):
        part = np.concatenate([
            np.einsum("nchw,oc->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j])
            for g in range(groups)], axis=1)
        out = part if out is None else out + part
    return out if b is None else out + b.astype(np.float64)[None, :, None, None]


def conv2d_grads(x, w, dz, stride, padding, dilation, groups):
    """float64 dx, dw, db of conv2d for the output gradient dz (the adjoints of conv2d)."""
    x, w, dz = x.astype(np.float64), w.astype(np.float64), dz.astype(np.float64)
    (sh, sw), (ph, pw), (dh, dw_) = stride, padding, dilation
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    n, _, oh, ow = dz.shape
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw))
    dw = np.zeros_like(w)
    for i, j, win in _taps(x, w, stride, padding, dilation):
        for g in range(groups):
            dzg, cs = dz[:, g * og:(g + 1) * og], slice(g * cg, (g + 1) * cg)
            dw[g * og:(g + 1) * og, :, i, j] = np.einsum("nohw,nchw->oc", dzg, win[:, cs])
            dxp[:, cs, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                j * dw_:j * dw_ + sw * (ow - 1) + 1:sw] += np.einsum(
                    "nohw,oc->nchw", dzg, w[g * og:(g + 1) * og, :, i, j])
    dx = dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    return dx, dw, dz.sum(axis=(0, 2, 3))


# -- pooling --------------------------------------------------------------------------------------
def pool_windows(size, k=None, s=None, p=0, out=None, count_include_pad=True):
    """PyTorch's windows along one axis, (lo, hi, divisor) per output: a kernel k, stride s,
    padding p (ceil_mode=False), or ``out`` adaptive bins (floor/ceil of o * size / out)."""
    if out is not None:
        return [(o * size // out, -(-(o + 1) * size // out), -(-(o + 1) * size // out)
                 - o * size // out) for o in range(out)]
    wins = []
    for o in range((size + 2 * p - k) // s + 1):
        lo, hi = max(o * s - p, 0), min(o * s - p + k, size)
        wins.append((lo, hi, k if count_include_pad else hi - lo))
    return wins


def pool2d(x, kind, wins_h, wins_w):
    """float64 max ("max": returns (y, flat argmax per plane, the first maximum)) or average
    ("avg": y) of NCHW x over the windows of pool_windows."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    y = np.empty((n, c, len(wins_h), len(wins_w)))
    idx = np.empty(y.shape, np.int64)
    for i, (h0, h1, lh) in enumerate(wins_h):
        for j, (w0, w1, lw) in enumerate(wins_w):
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            if kind == "max":
                a = win.argmax(axis=2)
                y[:, :, i, j] = np.take_along_axis(win, a[..., None], 2)[..., 0]
                idx[:, :, i, j] = (h0 + a // (w1 - w0)) * w + w0 + a % (w1 - w0)
            else:
                y[:, :, i, j] = win.sum(axis=2) / (lh * lw)
    return (y, idx) if kind == "max" else y


def pool2d_grad(dy, kind, wins_h, wins_w, in_hw, idx=None):
    """float64 input gradient of pool2d for the output gradient dy (the adjoint: each output's
    gradient back to its maximum, or spread over its window / divisor)."""
    dy = np.asarray(dy, np.float64)
    n, c = dy.shape[:2]
    dx = np.zeros((n, c) + tuple(in_hw))
    flat = dx.reshape(n, c, -1)
    for i, (h0, h1, lh) in enumerate(wins_h):
        for j, (w0, w1, lw) in enumerate(wins_w):
            if kind == "max":
                np.add.at(flat, (np.arange(n)[:, None], np.arange(c)[None, :], idx[:, :, i, j]),
                          dy[:, :, i, j])
            else:
                dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / (lh * lw))[:, :, None, None]
    return dx



# -- bfloat16 -------------------------------------------------------------------------------------
def bf16_bits(x):
    """float32 -> bfloat16 bits (uint16), round to nearest, ties to even, from exact arithmetic
    on the value rather than the bit trick: the two neighbouring bf16 values below and above x
    are compared in float64 (both are exact there). Past the largest bf16 (at or beyond the
    midpoint to the next power of two) it rounds to infinity; NaN keeps its sign and payload with
    the quiet bit set."""
    with np.errstate(over="ignore", invalid="ignore"):  # NaNs and infinities are inputs here
        x = np.ascontiguousarray(x, np.float32)
        u = x.view(np.uint32).astype(np.uint64)
        lo = (u >> 16) << 16                            # truncated: toward zero in magnitude
        hi = lo + (1 << 16)                             # next bf16 away from zero
        v = np.abs(x.astype(np.float64))
        vlo = np.abs(lo.astype(np.uint32).view(np.float32).astype(np.float64))
        vhi = np.abs(hi.astype(np.uint32).view(np.float32).astype(np.float64))
        # hi of the largest finite bf16's neighbourhood is infinity: its value for the midpoint rule
        # is the next power of two, 2^128
        vhi = np.where(np.isinf(vhi), 2.0 ** 128, vhi)
        up = (v - vlo > vhi - v) | ((v - vlo == vhi - v) & ((lo >> 16) % 2 == 1))
        out = np.where(up, hi, lo) >> 16
        nan = np.isnan(x)
        out = np.where(nan, (u >> 16) | 0x40, out)
        return out.astype(np.uint16)


def bf16_value(bits):
    """bfloat16 bits (uint16) -> float32, exactly."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


# -- central finite differences -------------------------------------------------------------------
FD_STEP = 1e-6  # central-difference step (float64)
FD_MAX_COORDS = 120  # coordinates checked one by one; larger arrays: a subset + directions
FD_BIG_SUBSET = 40  # subset size past the parallel cut-off (each evaluation is a full forward)


def _central_difference(objective, x, flat, i):
    old = flat[i]
    flat[i] = old + FD_STEP
    fp = objective(x)
    flat[i] = old - FD_STEP
    fm = objective(x)
    flat[i] = old
    return (fp - fm) / (2 * FD_STEP)


def fd_grad(objective, x):
    """d objective / d x by central differences, every coordinate (``x`` is perturbed in place
    and restored)."""
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(x.size):
        gflat[i] = _central_difference(objective, x, flat, i)
    return g


def check_gradient(objective, x, analytic, rng):
    """Compare ``analytic`` (d objective / d x) with central differences: every coordinate for
    small arrays, else a random subset of coordinates plus random directional derivatives.
    ``x`` is perturbed in place and restored."""
    assert x.dtype == np.float64 and analytic.shape == x.shape
    f0 = objective(x)
    atol = 1e-7 * (1.0 + abs(f0))  # rounding of the difference quotient is ~1e-10 * |f|
    flat, gflat = x.reshape(-1), analytic.reshape(-1)
    if x.size <= FD_MAX_COORDS:
        idx = np.arange(x.size)
    else:
        k = FD_MAX_COORDS if x.size < 32768 else FD_BIG_SUBSET
        idx = rng.choice(x.size, k, replace=False)
    num = np.array([_central_difference(objective, x, flat, i) for i in idx])
    np.testing.assert_allclose(gflat[idx], num, rtol=1e-6, atol=atol)
    if x.size > FD_MAX_COORDS:
        for _ in range(3):
            v = rng.standard_normal(x.shape)
            x0 = x.copy()
            x[...] = x0 + FD_STEP * v
            fp = objective(x)
            x[...] = x0 - FD_STEP * v
            fm = objective(x)
            x[...] = x0
            np.testing.assert_allclose(np.vdot(analytic, v), (fp - fm) / (2 * FD_STEP), rtol=1e-6,
                                       atol=atol * np.sqrt(x.size))
