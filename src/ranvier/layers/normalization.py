"""BatchNorm1d and BatchNorm2d on the native kernels of _kernels/norm.pyx, which see both inputs as
(batch, channels, spatial): (n, c) as (n, c, 1), (n, c, h, w) as (n, c, h * w); tests in
tests/test_layers_normalization.py."""
import numpy as np

from .._config import threads_for
from .._kernels import norm as _norm
from .._validation import as_dtype, check_bool, check_float, check_positive_int
from .base import (Layer, Parameter, as_float, as_input, check_features_shape,
                   check_grad_output, register_layer)


class _BatchNorm(Layer):
    """Batch normalisation per channel, as torch.nn.BatchNorm1d/2d; subclasses say which inputs
    they take (``_as_3d``: the checked input as a (batch, channels, spatial) view).

    Training: each channel is normalised with the mean and biased variance of its values over the
    batch (and the spatial positions), then scaled by ``weight`` and shifted by ``bias``
    (``affine``); the running statistics are updated with the batch mean and the *unbiased*
    variance: ``running = (1 - momentum) * running + momentum * batch`` (``momentum=None``: a
    cumulative average over ``num_batches_tracked`` batches). Evaluation: the running statistics
    are used (the batch's own when ``track_running_stats=False``). Statistics are accumulated in
    double by native kernels.

    Parameters: ``weight`` (ones) and ``bias`` (zeros). Buffers, from ``named_buffers()``:
    ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (int64 scalar).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = check_float(eps, "eps", minimum=0.0, min_inclusive=False)
        self.momentum = None if momentum is None else check_float(momentum, "momentum",
                                                                  minimum=0.0, maximum=1.0)
        self.affine = check_bool(affine, "affine")
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats")
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
        self._x = self._mean = self._invstd = self._shape = None
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
        shape = np.shape(x)
        x = self._as_3d(x)
        n, c, s = x.shape
        use_batch = bool(self.training) or not self.track_running_stats
        out = np.empty_like(x)
        nt = threads_for(x.size)
        w = self.weight.data if self.affine else None
        if use_batch:
            if n * s < 2:
                raise ValueError(f"{type(self).__name__} needs more than 1 value per channel to "
                                 f"compute batch statistics (training mode), got input of shape "
                                 f"{shape}")
            mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
            _norm.batchnorm_forward_train(x, w, self.bias.data if self.affine else None,
                                          self.eps, mean, var, invstd, out, nt)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n * s)
        else:
            mean = self.running_mean.astype(np.float64)
            invstd = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
            scale = invstd * w if self.affine else invstd
            shift = self.bias.data.astype(np.float64) if self.affine else np.zeros(c)
            _norm.batchnorm_forward_apply(x, mean, scale, shift, out, nt)
        self._x, self._mean, self._invstd, self._batch_stats = x, mean, invstd, use_batch
        self._shape = shape
        return out.reshape(shape)

    def _update_running(self, mean, var, n):
        self.num_batches_tracked += 1
        f = (1.0 / float(self.num_batches_tracked) if self.momentum is None
             else self.momentum)
        rm, rv = self.running_mean, self.running_var
        rm[...] = (1.0 - f) * rm.astype(np.float64) + f * mean
        rv[...] = (1.0 - f) * rv.astype(np.float64) + f * (var * (n / (n - 1.0)))

    def backward(self, grad_output, need_input_grad=True):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x = self._x
        dy = check_grad_output(grad_output, self._shape, x.dtype).reshape(x.shape)
        dx = np.empty_like(x) if need_input_grad else None
        if self.affine:
            w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
            if w.dtype != x.dtype:
                raise TypeError(f"{type(self).__name__} was converted to {w.dtype} between "
                                "forward and backward; run forward again")
        else:
            w = dw = db = None
        _norm.batchnorm_backward(x, dy, self._mean, self._invstd, w, self._batch_stats, dw, db,
                                 dx, threads_for(x.size))
        return None if dx is None else dx.reshape(self._shape)

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}


@register_layer
class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (batch, num_features) inputs, as torch.nn.BatchNorm1d: statistics
    per feature over the batch."""

    def _as_3d(self, x):
        x = as_input(x, self.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d expects {self.num_features} features (num_features), "
                             f"got input of shape {x.shape}")
        return x.reshape(x.shape + (1,))

    @property
    def input_shape(self):
        return (self.num_features,)

    def output_shape(self, input_shape):
        return check_features_shape(self, input_shape, self.num_features)


@register_layer
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (batch, num_features, height, width) inputs, as
    torch.nn.BatchNorm2d: statistics per channel over the batch and the plane (the running
    variance's unbiased correction counts batch * height * width values)."""

    def _as_3d(self, x):
        x = as_float(x)
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expects 4-D input (batch, {self.num_features} "
                             f"channels (num_features), height, width), got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm2d takes samples of shape ({self.num_features}, height, "
                             f"width), got {input_shape}")
        return input_shape
