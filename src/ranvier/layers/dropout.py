"""Dropout and Dropout2d (inverted): their mask kernel is _kernels/activations.pyx's dropout_apply
(one draw per element, or per channel of an image); tests in tests/test_layers_dropout.py."""
import numbers

import numpy as np

from .._config import threads_for
from .._kernels import activations as _act
from .._random import generator_from
from .._validation import check_float
from .base import Layer, as_float, check_grad_output, register_layer


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the kept
    ones are scaled by 1 / (1 - p), so evaluation (``training`` False, set by
    ``Sequential.eval()``) is the identity.

    The mask comes from a numpy Generator seeded by ``seed`` (an int, a Generator, or None for a
    draw from ranvier.manual_seed's generator): two layers with the same int seed draw the same sequence of masks. Uniform draws
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
        self._rng = generator_from(seed)
        self._scale = 1.0 / (1.0 - p)
        self._u = np.empty(0, np.float32)  # uniform draws of the last training forward
        self._masked = False               # whether the last forward applied a mask
        self._shape = self._dtype = None

    def _group(self, x):
        """Elements per draw: one draw per element."""
        return 1

    def forward(self, x):
        x = as_float(x)
        group = self._group(x)
        self._shape, self._dtype = x.shape, x.dtype
        self._masked = bool(self.training) and self.p > 0.0
        if not self._masked:
            return x.copy()
        n = x.size // group
        if self._u.size < n:
            self._u = np.empty(n, np.float32)
        u = self._u[:n]
        self._rng.random(dtype=np.float32, out=u)
        y = np.empty_like(x)
        _act.dropout_apply(x.reshape(-1), u, self.p, self._scale, y.reshape(-1),
                           threads_for(x.size), group)
        return y

    def backward(self, grad_output, need_input_grad=True):
        if self._shape is None:
            raise RuntimeError("Dropout.backward called before forward")
        dy = check_grad_output(grad_output, self._shape, self._dtype)
        if not need_input_grad:
            return None
        if not self._masked:
            return dy.copy()
        group = self._group(dy)
        dx = np.empty_like(dy)
        _act.dropout_apply(dy.reshape(-1), self._u[:dy.size // group], self.p, self._scale,
                           dx.reshape(-1), threads_for(dy.size), group)
        return dx

    def config(self):
        return {"p": self.p, "seed": self.seed}


@register_layer
class Dropout2d(Dropout):
    """Channel dropout for (batch, channels, height, width) inputs, as torch.nn.Dropout2d: in
    training each channel of each sample is zeroed whole with probability ``p`` and the kept ones
    are scaled by 1 / (1 - p); evaluation is the identity. One float32 draw per (sample,
    channel), from the layer's generator (``seed`` as for Dropout)."""

    def _group(self, x):
        if x.ndim != 4:
            raise ValueError(f"Dropout2d expects 4-D input (batch, channels, height, width), got "
                             f"shape {x.shape}")
        return max(x.shape[2] * x.shape[3], 1)
