"""Dense (fully connected) layer: ``y = x @ weight.T + bias`` on the native GEMM
(_kernels/matmul.pyx; tests: tests/test_layers_dense.py). In a model, a Dense and the activation
after it run fused (the GEMM's epilogue adds the bias and applies it: see _plan.py)."""
import math

import numpy as np

from .._config import get_num_threads
from .._kernels import matmul as _mm
from .._random import generator_from
from .._validation import as_dtype, check_positive_int
from .base import (Parameter, WeightBiasLayer, as_input, check_features_shape,
                   check_grad_output, register_layer, torch_uniform)

_INITS = ("he_uniform", "he_normal", "xavier_uniform", "xavier_normal", "torch")


@register_layer
class Dense(WeightBiasLayer):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    init : {"he_uniform", "he_normal", "xavier_uniform", "xavier_normal", "torch"} or "he"/"xavier"
        He (Kaiming) suits ReLU, Xavier (Glorot) suits tanh/sigmoid/softmax; their biases start at
        zero. "torch" starts as ``torch.nn.Linear`` does: weight and bias uniform in
        +-1 / sqrt(in_features), as Conv2d always does.
    dtype : float32 (default) or float64
    seed : int or numpy.random.Generator, optional (default: ranvier.manual_seed's generator)
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
        rng = generator_from(seed)
        shape, fan_in = (self.out_features, self.in_features), self.in_features
        if init == "torch":
            self.weight = Parameter(torch_uniform(rng, shape, fan_in, dt), "weight")
            bias = torch_uniform(rng, self.out_features, fan_in, dt)
        else:
            self.weight = Parameter(_init_weight(rng, init, self.out_features, self.in_features,
                                                 dt), "weight")
            bias = np.zeros(self.out_features, dt)
        self.bias = Parameter(bias, "bias") if self.use_bias else None
        self._x = None

    @property
    def input_shape(self):
        return (self.in_features,)

    def output_shape(self, input_shape):
        check_features_shape(self, input_shape, self.in_features)
        return (self.out_features,)

    def forward(self, x):
        x = as_input(x, self.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got shape {x.shape}")
        out = np.empty((x.shape[0], self.out_features), self.dtype)
        _mm.dense_forward(x, self.weight.data, self.bias.data if self.bias is not None else None,
                          out, 0, 0.0, get_num_threads())
        self._x = x
        return out

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError("Dense.backward called before forward")
        x = self._x
        dy = check_grad_output(grad_output, (x.shape[0], self.out_features), self.dtype)
        dx = np.empty_like(x) if need_input_grad else None
        _mm.dense_backward(x, self.weight.data, dy, dy, None, self.weight.grad,
                           self.bias.grad if self.bias is not None else None, dx, 0, 0.0,
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
