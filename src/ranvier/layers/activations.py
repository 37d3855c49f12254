"""Activation layers. Each is one entry of the native activation table (csrc/activations.h, its
kernels in _kernels/activations.pyx, tests in tests/test_layers_activations.py): a class names its
entry (``kernel``) and, if it has one, its scalar parameter (``param``); forward, backward and the
fusion into a preceding Dense all follow from that. Softmax is a row-wise layer of its own."""
import numpy as np

from .._config import threads_for
from .._kernels import activations as _act
from .._validation import check_float
from .base import Layer, as_float, check_grad_output, register_layer


class Activation(Layer):
    """An activation computed element by element by the table entry ``kernel``. Any shape;
    float32/float64 kept, other numeric inputs become float32. Backward uses the saved output for
    the entries whose derivative is written in it (relu, sigmoid, tanh), else the saved input."""

    kernel = None  # the activation table's name for it

    def __init__(self):
        self._saved = None  # y or x, what backward needs

    @property
    def param(self):
        """The scalar the kernel takes (0 for activations without one)."""
        return 0.0

    @property
    def fused_activation(self):
        """(code, param) of this activation in the native table, for fusing into a Dense."""
        return _act.ACTIVATIONS[self.kernel], self.param

    def forward(self, x):
        x = as_float(x)
        y = np.empty_like(x)
        code, param = self.fused_activation
        _act.forward(code, x.reshape(-1), y.reshape(-1), param, threads_for(x.size))
        self._saved = y if self.kernel in _act.NEEDS_OUTPUT else x
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        v = self._saved
        dy = check_grad_output(grad_output, v.shape, v.dtype)
        if not need_input_grad:
            return None
        dx = np.empty_like(v)
        code, param = self.fused_activation
        _act.backward(code, v.reshape(-1), dy.reshape(-1), dx.reshape(-1), param,
                      threads_for(v.size))
        return dx


@register_layer
class ReLU(Activation):
    """max(x, 0); NaN stays NaN (as torch)."""

    kernel = "relu"


@register_layer
class Sigmoid(Activation):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""

    kernel = "sigmoid"


@register_layer
class Tanh(Activation):
    kernel = "tanh"


@register_layer
class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x (torch.nn.LeakyReLU)."""

    kernel = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_float(negative_slope, "negative_slope")

    @property
    def param(self):
        return self.negative_slope

    def config(self):
        return {"negative_slope": self.negative_slope}


@register_layer
class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1) (torch.nn.ELU)."""

    kernel = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_float(alpha, "alpha")

    @property
    def param(self):
        return self.alpha

    def config(self):
        return {"alpha": self.alpha}


@register_layer
class GELU(Activation):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), as torch.nn.GELU()
    (approximate='none')."""

    kernel = "gelu"


@register_layer
class SiLU(Activation):
    """SiLU (swish): x * sigmoid(x), as torch.nn.SiLU."""

    kernel = "silu"


@register_layer
class Softmax(Layer):
    """Row-wise softmax over the last axis. Before ``CrossEntropyLoss`` the model skips it during
    training and feeds the logits to the fused softmax + cross-entropy kernel instead."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        x = as_float(x)
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
        dy = check_grad_output(grad_output, y.shape, y.dtype)
        dx = np.empty_like(y)
        _act.softmax_backward(y, dy, dx, threads_for(y.size))
        return dx

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Softmax takes samples of shape (classes,), got {tuple(input_shape)}")
        return tuple(input_shape)
