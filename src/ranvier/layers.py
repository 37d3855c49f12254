"""Layers: each a forward and a backward over native kernels, and the parameters it learns.

Conventions (PyTorch's): ``Dense`` keeps its weight as ``(out_features, in_features)``; a layer's
``forward`` remembers what its ``backward`` needs; ``backward(grad_output)`` writes the gradients of
the layer's parameters into ``param.grad`` (overwriting, not accumulating) and returns the gradient
with respect to the layer's input.
"""
import math

import numpy as np

from ._config import get_num_threads, threads_for
from ._kernels import activations as _act
from ._kernels import matmul as _mm
from ._validation import as_dtype, check_positive_int

__all__ = ["Parameter", "Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax"]


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
