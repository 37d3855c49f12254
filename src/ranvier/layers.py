"""Layers: each a forward and a backward over native kernels, and the parameters it learns.

Conventions (PyTorch's): ``Dense`` keeps its weight as ``(out_features, in_features)``; a layer's
``forward`` remembers what its ``backward`` needs; ``backward(grad_output)`` writes the gradients of
the layer's parameters into ``param.grad`` (overwriting, not accumulating) and returns the gradient
with respect to the layer's input.
"""
import math
import numbers

import numpy as np

from ._config import get_num_threads, threads_for
from ._kernels import activations as _act
from ._kernels import matmul as _mm
from ._kernels import norm as _norm
from ._validation import as_dtype, check_float, check_positive_int

__all__ = ["Parameter", "Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax",
           "LeakyReLU", "GELU", "ELU", "Dropout", "BatchNorm1d", "Flatten"]


class Parameter:
    """A learnable array and its gradient (same shape and dtype)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class. Subclasses implement ``forward`` and ``backward``; layers with weights override
    ``parameters`` and ``named_parameters``."""

    training = True

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output, need_input_grad=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def named_parameters(self):
        return []

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def astype(self, dtype):
        """Convert this layer's parameters to ``dtype`` in place; returns self."""
        dt = as_dtype(dtype)
        for _, p in self.named_parameters():
            p.data = p.data.astype(dt)
            p.grad = np.zeros_like(p.data)
        return self

    def config(self):
        """Constructor arguments that rebuild this layer (used by summaries and saved files)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _as_input(x, dtype, name="x"):
    """The layer's input as a C-contiguous 2-D array of ``dtype`` (no copy when it already is)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


def _as_float(x, name="x"):
    """C-contiguous float32/float64 (other numeric types become float32), any shape."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


_INITS = ("he_uniform", "he_normal", "xavier_uniform", "xavier_normal")


class Dense(Layer):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    init : {"he_uniform", "he_normal", "xavier_uniform", "xavier_normal"} or "he"/"xavier"
        He (Kaiming) suits ReLU, Xavier (Glorot) suits tanh/sigmoid/softmax. Biases start at zero.
    dtype : float32 (default) or float64
    seed : int or numpy.random.Generator, optional
    """

    def __init__(self, in_features, out_features, *, bias=True, init="he_uniform",
                 dtype=np.float32, seed=None):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        init = {"he": "he_uniform", "xavier": "xavier_uniform"}.get(init, init)
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS} (or 'he', 'xavier'), got {init!r}")
        self.init = init
        self.use_bias = bool(bias)
        dt = as_dtype(dtype)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.weight = Parameter(_init_weight(rng, init, self.out_features, self.in_features, dt),
                                "weight")
        self.bias = Parameter(np.zeros(self.out_features, dt), "bias") if self.use_bias else None
        self._x = None

    @property
    def dtype(self):
        return self.weight.data.dtype

    def named_parameters(self):
        params = [("weight", self.weight)]
        if self.bias is not None:
            params.append(("bias", self.bias))
        return params

    def forward(self, x):
        x = _as_input(x, self.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got shape {x.shape}")
        out = np.empty((x.shape[0], self.out_features), self.dtype)
        _mm.dense_forward(x, self.weight.data, self.bias.data if self.bias is not None else None,
                          out, _mm.ACT_NONE, get_num_threads())
        self._x = x
        return out

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError("Dense.backward called before forward")
        x = self._x
        dy = _as_input(grad_output, self.dtype, "grad_output")
        if dy.shape != (x.shape[0], self.out_features):
            raise ValueError(f"grad_output must have shape {(x.shape[0], self.out_features)}, "
                             f"got {dy.shape}")
        dx = np.empty_like(x) if need_input_grad else None
        _mm.dense_backward(x, self.weight.data, dy, dy, None, self.weight.grad,
                           self.bias.grad if self.bias is not None else None, dx, _mm.ACT_NONE,
                           get_num_threads())
        return dx

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.use_bias, "init": self.init}


def _init_weight(rng, init, fan_out, fan_in, dtype):
    if init.startswith("he"):
        std = math.sqrt(2.0 / fan_in)
    else:
        std = math.sqrt(2.0 / (fan_in + fan_out))
    shape = (fan_out, fan_in)
    if init.endswith("uniform"):
        bound = math.sqrt(3.0) * std  # U(-b, b) has standard deviation b / sqrt(3)
        w = rng.uniform(-bound, bound, size=shape)
    else:
        w = rng.normal(0.0, std, size=shape)
    return w.astype(dtype)


class _Elementwise(Layer):
    """An activation computed element by element; backward uses the saved output."""

    _fwd = None
    _bwd = None

    def __init__(self):
        self._y = None

    def forward(self, x):
        x = _as_float(x)
        y = np.empty_like(x)
        type(self)._fwd(x.reshape(-1), y.reshape(-1), threads_for(x.size))
        self._y = y
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._y is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        y = self._y
        dy = np.ascontiguousarray(grad_output, dtype=y.dtype)
        if dy.shape != y.shape:
            raise ValueError(f"grad_output must have shape {y.shape}, got {dy.shape}")
        dx = np.empty_like(y)
        type(self)._bwd(y.reshape(-1), dy.reshape(-1), dx.reshape(-1), threads_for(y.size))
        return dx


class ReLU(_Elementwise):
    """max(x, 0)."""

    _fwd = _act.relu_forward
    _bwd = _act.relu_backward


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""

    _fwd = _act.sigmoid_forward
    _bwd = _act.sigmoid_backward


class Tanh(_Elementwise):
    _fwd = _act.tanh_forward
    _bwd = _act.tanh_backward


class Softmax(Layer):
    """Row-wise softmax over the last axis. Before ``CrossEntropyLoss`` the model skips it during
    training and feeds the logits to the fused softmax + cross-entropy kernel instead."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        x = _as_float(x)
        if x.ndim != 2:
            raise ValueError(f"Softmax expects 2-D input (batch, classes), got shape {x.shape}")
        y = np.empty_like(x)
        _act.softmax_forward(x, y, threads_for(x.size))
        self._y = y
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._y is None:
            raise RuntimeError("Softmax.backward called before forward")
        y = self._y
        dy = np.ascontiguousarray(grad_output, dtype=y.dtype)
        if dy.shape != y.shape:
            raise ValueError(f"grad_output must have shape {y.shape}, got {dy.shape}")
        dx = np.empty_like(y)
        _act.softmax_backward(y, dy, dx, threads_for(y.size))
        return dx


# -- activations whose backward needs the input ----------------------------------------------------
class _ElementwiseFromInput(Layer):
    """An activation computed element by element whose backward uses the saved *input* x (its
    derivative is not a function of the output alone). Any shape; float32/float64 kept, other
    numeric inputs become float32. ``_args()`` are the extra scalars the kernels take."""

    _fwd = None
    _bwd = None

    def __init__(self):
        self._x = None

    def _args(self):
        return ()

    def forward(self, x):
        x = _as_float(x)
        y = np.empty_like(x)
        type(self)._fwd(x.reshape(-1), y.reshape(-1), *self._args(), threads_for(x.size))
        self._x = x
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x = self._x
        dy = _as_float(grad_output, "grad_output")
        if dy.shape != x.shape:
            raise ValueError(f"grad_output must have shape {x.shape}, got {dy.shape}")
        if not need_input_grad:
            return None
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        dx = np.empty_like(x)
        type(self)._bwd(x.reshape(-1), dy.reshape(-1), dx.reshape(-1), *self._args(),
                        threads_for(x.size))
        return dx


class LeakyReLU(_ElementwiseFromInput):
    """x if x > 0 else negative_slope * x (torch.nn.LeakyReLU)."""

    _fwd = _act.leaky_relu_forward
    _bwd = _act.leaky_relu_backward

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_float(negative_slope, "negative_slope")

    def _args(self):
        return (self.negative_slope,)

    def config(self):
        return {"negative_slope": self.negative_slope}


class GELU(_ElementwiseFromInput):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), as torch.nn.GELU()
    (approximate='none')."""

    _fwd = _act.gelu_forward
    _bwd = _act.gelu_backward


class ELU(_ElementwiseFromInput):
    """x if x > 0 else alpha * (exp(x) - 1) (torch.nn.ELU)."""

    _fwd = _act.elu_forward
    _bwd = _act.elu_backward

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_float(alpha, "alpha")

    def _args(self):
        return (self.alpha,)

    def config(self):
        return {"alpha": self.alpha}


# -- Dropout ---------------------------------------------------------------------------------------
def _check_seed(seed, name="seed"):
    """A numpy Generator from ``seed``: None, a non-negative int, or a Generator (used as is)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed) if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, "
                        f"got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the kept
    ones are scaled by 1 / (1 - p), so evaluation (``training`` False, set by
    ``Sequential.eval()``) is the identity.

    The mask comes from a numpy Generator seeded by ``seed`` (an int, a Generator, or None for a
    fresh one): two layers with the same int seed draw the same sequence of masks. Uniform draws
    are float32 whatever the data's dtype, into a buffer reused from batch to batch; a native
    kernel applies them (element kept where draw >= p). ``config()`` records an int seed (None
    when the seed was None or a Generator).
    """

    def __init__(self, p=0.5, seed=None):
        p = check_float(p, "p", minimum=0.0)
        if p >= 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p = p
        self.seed = int(seed) if isinstance(seed, numbers.Integral) and not isinstance(
            seed, bool) else None
        self._rng = _check_seed(seed)
        self._scale = 1.0 / (1.0 - p)
        self._u = np.empty(0, np.float32)  # uniform draws of the last training forward
        self._masked = False               # whether the last forward applied a mask
        self._shape = self._dtype = None

    def forward(self, x):
        x = _as_float(x)
        self._shape, self._dtype = x.shape, x.dtype
        self._masked = bool(self.training) and self.p > 0.0
        if not self._masked:
            return x.copy()
        n = x.size
        if self._u.size < n:
            self._u = np.empty(n, np.float32)
        u = self._u[:n]
        self._rng.random(dtype=np.float32, out=u)
        y = np.empty_like(x)
        _act.dropout_apply(x.reshape(-1), u, self.p, self._scale, y.reshape(-1), threads_for(n))
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._shape is None:
            raise RuntimeError("Dropout.backward called before forward")
        dy = _as_float(grad_output, "grad_output")
        if dy.shape != self._shape:
            raise ValueError(f"grad_output must have shape {self._shape}, got {dy.shape}")
        if not need_input_grad:
            return None
        dy = np.ascontiguousarray(dy, dtype=self._dtype)
        if not self._masked:
            return dy.copy()
        n = dy.size
        dx = np.empty_like(dy)
        _act.dropout_apply(dy.reshape(-1), self._u[:n], self.p, self._scale, dx.reshape(-1),
                           threads_for(n))
        return dx

    def config(self):
        return {"p": self.p, "seed": self.seed}


# -- Flatten ---------------------------------------------------------------------------------------
class Flatten(Layer):
    """(n, d1, d2, ...) -> (n, d1 * d2 * ...), so images go straight into a Dense layer. A view
    when the input is C-contiguous (as numpy's reshape and torch.nn.Flatten); the dtype is kept.
    Backward reshapes the gradient back to the input's shape."""

    def __init__(self):
        self._shape = None

    def forward(self, x):
        if isinstance(x, (str, bytes)):
            raise TypeError(f"x must be a numeric array, got {type(x).__name__}")
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"Flatten expects at least 2-D input (batch, ...), "
                             f"got shape {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_output, need_input_grad=True):
        if self._shape is None:
            raise RuntimeError("Flatten.backward called before forward")
        dy = _as_float(grad_output, "grad_output")
        expected = (self._shape[0], math.prod(self._shape[1:]))
        if dy.shape != expected:
            raise ValueError(f"grad_output must have shape {expected}, got {dy.shape}")
        if not need_input_grad:
            return None
        return dy.reshape(self._shape)


# -- BatchNorm1d -----------------------------------------------------------------------------------
def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


class BatchNorm1d(Layer):
    """Batch normalisation over (batch, num_features) inputs, as torch.nn.BatchNorm1d.

    Training: each feature is normalised with the batch's mean and biased variance, then scaled by
    ``weight`` and shifted by ``bias`` (``affine``); the running statistics are updated with the
    batch mean and the *unbiased* variance: ``running = (1 - momentum) * running + momentum *
    batch`` (``momentum=None``: a cumulative average over ``num_batches_tracked`` batches).
    Evaluation: the running statistics are used (the batch's own when
    ``track_running_stats=False``). Statistics are accumulated in double by native kernels.

    Parameters: ``weight`` (ones) and ``bias`` (zeros). Buffers, from ``named_buffers()``:
    ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (int64 scalar).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = check_float(eps, "eps", minimum=0.0, min_inclusive=False)
        self.momentum = None if momentum is None else check_float(momentum, "momentum",
                                                                  minimum=0.0, maximum=1.0)
        self.affine = _check_bool(affine, "affine")
        self.track_running_stats = _check_bool(track_running_stats, "track_running_stats")
        dt = as_dtype(dtype)
        self._dtype = dt
        c = self.num_features
        self.weight = Parameter(np.ones(c, dt), "weight") if self.affine else None
        self.bias = Parameter(np.zeros(c, dt), "bias") if self.affine else None
        if self.track_running_stats:
            self.running_mean = np.zeros(c, dt)
            self.running_var = np.ones(c, dt)
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._x = self._mean = self._invstd = None
        self._batch_stats = True

    @property
    def dtype(self):
        return self.weight.data.dtype if self.weight is not None else self._dtype

    def named_parameters(self):
        if not self.affine:
            return []
        return [("weight", self.weight), ("bias", self.bias)]

    def named_buffers(self):
        """(name, array) pairs of the state that is not learned: the running statistics."""
        if not self.track_running_stats:
            return []
        return [("running_mean", self.running_mean), ("running_var", self.running_var),
                ("num_batches_tracked", self.num_batches_tracked)]

    def astype(self, dtype):
        dt = as_dtype(dtype)
        super().astype(dt)
        self._dtype = dt
        if self.track_running_stats:
            self.running_mean = self.running_mean.astype(dt)
            self.running_var = self.running_var.astype(dt)
        return self

    def forward(self, x):
        x = _as_input(x, self.dtype)
        c = self.num_features
        if x.shape[1] != c:
            raise ValueError(f"BatchNorm1d expects {c} features (num_features), got input of "
                             f"shape {x.shape}")
        n = x.shape[0]
        use_batch = bool(self.training) or not self.track_running_stats
        out = np.empty_like(x)
        nt = threads_for(x.size)
        w = self.weight.data if self.affine else None
        if use_batch:
            if n < 2:
                raise ValueError(f"BatchNorm1d needs more than 1 sample per batch to compute "
                                 f"batch statistics (training mode), got input of shape {x.shape}")
            mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
            _norm.batchnorm_forward_train(x, w, self.bias.data if self.affine else None,
                                          self.eps, mean, var, invstd, out, nt)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n)
        else:
            mean = self.running_mean.astype(np.float64)
            invstd = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
            scale = invstd * w if self.affine else invstd
            shift = self.bias.data.astype(np.float64) if self.affine else np.zeros(c)
            _norm.batchnorm_forward_apply(x, mean, scale, shift, out, nt)
        self._x, self._mean, self._invstd, self._batch_stats = x, mean, invstd, use_batch
        return out

    def _update_running(self, mean, var, n):
        self.num_batches_tracked += 1
        f = (1.0 / float(self.num_batches_tracked) if self.momentum is None
             else self.momentum)
        rm, rv = self.running_mean, self.running_var
        rm[...] = (1.0 - f) * rm.astype(np.float64) + f * mean
        rv[...] = (1.0 - f) * rv.astype(np.float64) + f * (var * (n / (n - 1.0)))

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError("BatchNorm1d.backward called before forward")
        x = self._x
        dy = _as_input(grad_output, x.dtype, "grad_output")
        if dy.shape != x.shape:
            raise ValueError(f"grad_output must have shape {x.shape}, got {dy.shape}")
        dx = np.empty_like(x) if need_input_grad else None
        if self.affine:
            w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
            if w.dtype != x.dtype:
                raise TypeError(f"BatchNorm1d was converted to {w.dtype} between forward and "
                                "backward; run forward again")
        else:
            w = dw = db = None
        _norm.batchnorm_backward(x, dy, self._mean, self._invstd, w, self._batch_stats, dw, db,
                                 dx, threads_for(x.size))
        return dx

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}
