"""Pooling layers over NCHW images, as torch.nn's (ceil_mode=False): MaxPool2d, AvgPool2d and
AdaptiveAvgPool2d on the native kernels of _kernels/pool.pyx; tests in
tests/test_layers_pooling.py. Samples are (channels, height, width)."""
import numpy as np

from .._config import threads_for
from .._kernels import pool as _pool
from .._validation import check_bool, check_int_pair
from .base import Layer, as_float, check_grad_output, register_layer


def _image_batch(layer, x):
    """forward's input as a C-contiguous float (N, C, H, W) array; ValueError naming the layer."""
    x = as_float(x)
    if x.ndim != 4:
        raise ValueError(f"{type(layer).__name__} expects 4-D input (batch, channels, height, "
                         f"width), got shape {x.shape}")
    return x


def _sample_shape(layer, input_shape):
    """output_shape's check: a (channels, height, width) sample with a non-empty plane."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or min(input_shape[1:]) < 1:
        raise ValueError(f"{type(layer).__name__} takes samples of shape (channels, height, "
                         f"width) with height and width >= 1, got {input_shape}")
    return input_shape


class _Pool2d(Layer):
    """Windows of ``kernel_size`` every ``stride`` (default: the kernel size) over the input padded
    by ``padding`` on each side (at most half the kernel, as torch requires); ints or pairs."""

    def __init__(self, kernel_size, stride=None, padding=0):
        name = type(self).__name__
        self.kernel_size = check_int_pair(kernel_size, f"{name}: kernel_size")
        self.stride = (self.kernel_size if stride is None
                       else check_int_pair(stride, f"{name}: stride"))
        self.padding = check_int_pair(padding, f"{name}: padding", minimum=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")
        self._x_shape = self._dtype = None

    def output_shape(self, input_shape):
        c, h, w = _sample_shape(self, input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(f"{type(self).__name__}: kernel {self.kernel_size} is larger than "
                             f"the padded input ({h + 2 * ph}, {w + 2 * pw}) of samples of shape "
                             f"{(c, h, w)}")
        return c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def _begin(self, x):
        """The checked input and an empty output for it; remembers what backward needs."""
        x = _image_batch(self, x)
        out = np.empty(x.shape[:1] + self.output_shape(x.shape[1:]), x.dtype)
        self._x_shape, self._dtype = x.shape, x.dtype
        return x, out

    def _grad(self, grad_output):
        if self._x_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        n = self._x_shape[0]
        dy = check_grad_output(grad_output, (n,) + self.output_shape(self._x_shape[1:]),
                               self._dtype)
        return dy, np.empty(self._x_shape, self._dtype)

    def _geometry(self):
        return self.kernel_size, self.stride, self.padding

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}


@register_layer
class MaxPool2d(_Pool2d):
    """The maximum of each window (torch.nn.MaxPool2d; a NaN in a window gives NaN). The forward
    pass keeps where each maximum was, and backward sends the gradient there."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self._indices = None

    def forward(self, x):
        x, out = self._begin(x)
        self._indices = np.empty(out.shape, np.int64)
        _pool.maxpool2d_forward(x, out, self._indices, *self._geometry(),
                                threads_for(x.size))
        return out

    def backward(self, grad_output, need_input_grad=True):
        dy, dx = self._grad(grad_output)
        if not need_input_grad:
            return None
        _pool.maxpool2d_backward(dy, self._indices, dx, threads_for(dx.size))
        return dx


@register_layer
class AvgPool2d(_Pool2d):
    """The mean of each window (torch.nn.AvgPool2d); the divisor is the kernel's area, padding
    included (``count_include_pad=True``, torch's default), or the inputs the window covers."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = check_bool(count_include_pad, "AvgPool2d: count_include_pad")

    def _geometry(self):
        return super()._geometry() + (self.count_include_pad,)

    def forward(self, x):
        x, out = self._begin(x)
        _pool.avgpool2d_forward(x, out, *self._geometry(), threads_for(x.size))
        return out

    def backward(self, grad_output, need_input_grad=True):
        dy, dx = self._grad(grad_output)
        if not need_input_grad:
            return None
        _pool.avgpool2d_backward(dy, dx, *self._geometry(), threads_for(dx.size))
        return dx

    def config(self):
        return {**super().config(), "count_include_pad": self.count_include_pad}


@register_layer
class AdaptiveAvgPool2d(_Pool2d):
    """The mean over ``output_size`` bins of each plane, as torch computes them (output o of n
    over an axis of length L covers [floor(o L / n), ceil((o + 1) L / n))); ``output_size=1``
    (or (1, 1)) is global average pooling. An int or a pair."""

    def __init__(self, output_size):
        self.output_size = check_int_pair(output_size, "AdaptiveAvgPool2d: output_size")
        self._x_shape = self._dtype = None

    def output_shape(self, input_shape):
        return (_sample_shape(self, input_shape)[0],) + self.output_size

    def forward(self, x):
        x, out = self._begin(x)
        _pool.adaptive_avgpool2d_forward(x, out, threads_for(x.size))
        return out

    def backward(self, grad_output, need_input_grad=True):
        dy, dx = self._grad(grad_output)
        if not need_input_grad:
            return None
        _pool.adaptive_avgpool2d_backward(dy, dx, threads_for(dx.size))
        return dx

    def config(self):
        return {"output_size": self.output_size}
