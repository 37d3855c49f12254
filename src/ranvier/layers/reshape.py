"""Flatten: (n, d1, d2, ...) -> (n, d1 * d2 * ...); tests in tests/test_layers_reshape.py."""
import math

import numpy as np

from .base import Layer, check_grad_output, register_layer


@register_layer
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
        dy = check_grad_output(grad_output, (self._shape[0], math.prod(self._shape[1:])))
        if not need_input_grad:
            return None
        return dy.reshape(self._shape)

    def output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("Flatten needs samples of at least one dimension")
        return (math.prod(input_shape),)
