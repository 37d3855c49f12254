"""Conv2d: PyTorch's 2-D convolution over NCHW images on the native kernels (_kernels/conv.pxi,
csrc/conv_template.h; tests: tests/test_layers_conv.py). In a model, a Conv2d and the activation
after it run as one block (the kernel's epilogue adds the bias and applies it: see _plan.py)."""
import numpy as np

from .._config import get_num_threads
from .._kernels import matmul as _mm
from .._random import generator_from
from .._validation import as_dtype, check_bool, check_int, is_int
from .base import (Parameter, WeightBiasLayer, as_float, check_grad_output, register_layer,
                   torch_uniform)


def _pair(value, name, minimum):
    """An int or a pair of ints (a tuple or list: a saved file's JSON gives lists) as a tuple."""
    if is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"Conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(check_int(v, f"Conv2d: {name}", minimum) for v in value)


@register_layer
class Conv2d(WeightBiasLayer):
    """2-D convolution as ``torch.nn.Conv2d``: input (n, in_channels, H, W), output
    (n, out_channels, H_out, W_out), weight (out_channels, in_channels / groups, kh, kw), bias
    (out_channels,), so a state_dict interchanges with PyTorch's.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride (default 1), dilation (default 1) : int or pair (height, width)
    padding : int, pair, "valid" (no padding) or "same" (output as large as the input; stride 1,
        and a kernel whose dilated extent is odd, as the padding is then the same on both sides)
    groups : int dividing both channel counts (in_channels: a depthwise convolution)
    bias : bool, default True
    dtype : float32 (default) or float64
    seed : int or numpy.random.Generator, optional (default: ranvier.manual_seed's generator)

    Weight and bias start as PyTorch's do: uniform in +-1 / sqrt(fan_in), fan_in =
    in_channels / groups * kh * kw (kaiming_uniform with a = sqrt(5)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=np.float32, seed=None):
        self.in_channels = check_int(in_channels, "Conv2d: in_channels")
        self.out_channels = check_int(out_channels, "Conv2d: out_channels")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        self.groups = check_int(groups, "Conv2d: groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        self.padding_mode = padding if isinstance(padding, str) else None
        self.padding = self._resolve_padding(padding)
        self.use_bias = check_bool(bias, "Conv2d: bias")
        dt = as_dtype(dtype)
        rng = generator_from(seed)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self.weight = Parameter(torch_uniform(rng, shape, fan_in, dt), "weight")
        self.bias = (Parameter(torch_uniform(rng, self.out_channels, fan_in, dt), "bias")
                     if self.use_bias else None)
        self._x = None

    def _resolve_padding(self, padding):
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0)
            if padding != "same":
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', "
                                 f"got {padding!r}")
            if self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride "
                                 f"{self.stride} (as in PyTorch)")
            spans = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            if any(s % 2 for s in spans):
                raise ValueError(f"Conv2d: padding='same' with kernel_size {self.kernel_size} "
                                 f"and dilation {self.dilation} needs more padding on one side "
                                 "than the other, which Conv2d does not do; use an odd kernel")
            return tuple(s // 2 for s in spans)
        return _pair(padding, "padding", 0)

    def output_shape(self, input_shape):
        """(out_channels, H_out, W_out) for samples of shape (in_channels, H, W); ValueError for
        another rank or channel count, or a kernel larger than the padded input."""
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"Conv2d takes samples of shape (channels, height, width) = "
                             f"({self.in_channels}, H, W), got {shape}")
        if shape[0] != self.in_channels:
            raise ValueError(f"Conv2d takes {self.in_channels} input channels, got samples of "
                             f"shape {shape}")
        out = [self.out_channels]
        for size, k, s, p, d in zip(shape[1:], self.kernel_size, self.stride, self.padding,
                                    self.dilation):
            span = d * (k - 1) + 1
            if size + 2 * p < span:
                raise ValueError(f"Conv2d: kernel {self.kernel_size} with dilation "
                                 f"{self.dilation} is larger than the padded input "
                                 f"({shape[1] + 2 * self.padding[0]}, "
                                 f"{shape[2] + 2 * self.padding[1]}) of samples of shape {shape}")
            out.append((size + 2 * p - span) // s + 1)
        return tuple(out)

    # -- the kernel calls: the layer's own forward/backward and the model's conv block ---------
    def _input(self, x):
        """x as a C-contiguous (n, in_channels, H, W) array of the layer's dtype, checked."""
        x = as_float(x)
        if x.ndim != 4:
            raise ValueError(f"Conv2d expects input of shape (batch, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        self.output_shape(x.shape[1:])
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _run_forward(self, x, out, act, param, num_threads):
        """out := act(conv(x) + bias), the activation (code, param) of the native table."""
        _mm.conv2d_forward(x, self.weight.data, self.bias.data if self.bias is not None else None,
                           out, self.stride, self.padding, self.dilation, self.groups, act, param,
                           num_threads)

    def _run_backward(self, x, dz, dx, num_threads):
        """The weight and bias gradients into .grad and dx (None: not wanted) from dz, the
        gradient of the convolution's output before any activation."""
        _mm.conv2d_backward(x, self.weight.data, dz, dx, self.weight.grad,
                            self.bias.grad if self.bias is not None else None, self.stride,
                            self.padding, self.dilation, self.groups, num_threads)

    def forward(self, x):
        x = self._input(x)
        out = np.empty((x.shape[0],) + self.output_shape(x.shape[1:]), self.dtype)
        self._run_forward(x, out, 0, 0.0, get_num_threads())
        self._x = x
        return out

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError("Conv2d.backward called before forward")
        x = self._x
        dy = check_grad_output(grad_output, (x.shape[0],) + self.output_shape(x.shape[1:]),
                               self.dtype)
        dx = np.empty_like(x) if need_input_grad else None
        self._run_backward(x, dy, dx, get_num_threads())
        return dx

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding_mode if self.padding_mode is not None else self.padding,
                "dilation": self.dilation, "groups": self.groups, "bias": self.use_bias}
