"""BatchNorm1d on native kernels (_kernels/norm.pyx); tests in tests/test_layers_normalization.py."""
import numpy as np

from .._config import threads_for
from .._kernels import norm as _norm
from .._validation import as_dtype, check_bool, check_float, check_positive_int
from .base import (Layer, Parameter, as_input, check_features_shape, check_grad_output,
                   register_layer)


@register_layer
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
        x = as_input(x, self.dtype)
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
        dy = check_grad_output(grad_output, x.shape, x.dtype)
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

    @property
    def input_shape(self):
        return (self.num_features,)

    def output_shape(self, input_shape):
        return check_features_shape(self, input_shape, self.num_features)
