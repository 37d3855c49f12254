"""What every layer is: the Layer protocol, Parameter, and the registry that saved files use.

Conventions (PyTorch's): a layer's ``forward`` remembers what its ``backward`` needs;
``backward(grad_output)`` writes the gradients of the layer's parameters into ``param.grad``
(overwriting, not accumulating) and returns the gradient with respect to the layer's input.
Shapes are per sample (no batch dimension) in ``output_shape``.
"""
import math

import numpy as np

from .._validation import as_dtype


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
    ``named_parameters``, layers with state that is not learned ``named_buffers``, layers that
    change the shape ``output_shape``, and layers with constructor arguments ``config`` (which
    must rebuild the layer: ``type(layer)(**layer.config())``). Register a subclass with
    ``ranvier.register_layer`` to save and load models that contain it."""

    training = True
    input_shape = None  # per-sample shape the layer requires; None: any (it adapts)

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

    def named_buffers(self):
        """(name, array) pairs of state that is saved but not learned (running statistics)."""
        return []

    def output_shape(self, input_shape):
        """The per-sample output shape for a per-sample ``input_shape`` (a tuple); ValueError
        when this layer cannot take that input. Shape-preserving layers keep the default."""
        return tuple(input_shape)

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


class WeightBiasLayer(Layer):
    """A layer with a ``weight`` Parameter and a ``bias`` one (None without a bias), named as
    PyTorch names them; its dtype is the weight's (Dense, Conv2d)."""

    weight = bias = None

    @property
    def dtype(self):
        return self.weight.data.dtype

    def named_parameters(self):
        params = [("weight", self.weight)]
        if self.bias is not None:
            params.append(("bias", self.bias))
        return params


# -- registry: the layer classes a saved file may name -------------------------------------------
_REGISTRY = {}


def register_layer(cls=None, *, name=None):
    """Make a Layer subclass loadable from saved files under ``name`` (default: the class name).
    Use as a decorator: ``@ranvier.register_layer`` or ``@ranvier.register_layer(name="Mine")``.
    A file names its layers' classes and their ``config()``; loading looks the names up here and
    calls ``cls(**config)``: nothing in a file is executed."""
    def add(c):
        if not (isinstance(c, type) and issubclass(c, Layer)):
            raise TypeError(f"register_layer takes a Layer subclass, got {c!r}")
        key = c.__name__ if name is None else name
        if not isinstance(key, str) or not key:
            raise TypeError(f"register_layer: name must be a non-empty str, got {key!r}")
        held = _REGISTRY.get(key)
        if held is not None and held is not c and held.__module__.startswith("ranvier."):
            raise ValueError(f"register_layer: {key!r} is ranvier's own {held.__name__}; "
                             "register yours under another name")
        _REGISTRY[key] = c
        return c

    return add if cls is None else add(cls)


def layer_class(name):
    """The registered class for ``name``; ValueError naming the known ones otherwise."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown layer type {name!r}: register it with "
                         f"ranvier.register_layer before loading (known: {sorted(_REGISTRY)})")
    return cls


def registered_name(layer):
    """The name ``layer``'s class is registered under; TypeError when it is not registered."""
    cls = type(layer)
    for key, c in _REGISTRY.items():
        if c is cls:
            return key
    raise TypeError(f"cannot save a model containing {cls.__name__}: register the class with "
                    "@ranvier.register_layer so that load() can rebuild it (or save its weights "
                    "with state_dict)")


def as_input(x, dtype, name="x"):
    """The layer's input as a C-contiguous 2-D array of ``dtype`` (no copy when it already is)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


def as_float(x, name="x"):
    """C-contiguous float32/float64 (other numeric types become float32), any shape."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def check_grad_output(grad_output, shape, dtype=None):
    """backward's ``grad_output`` as a C-contiguous float array of ``shape`` (and ``dtype`` when
    given); ValueError naming the expected shape otherwise."""
    dy = as_float(grad_output, "grad_output")
    if dy.shape != tuple(shape):
        raise ValueError(f"grad_output must have shape {tuple(shape)}, got {dy.shape}")
    return dy if dtype is None else np.ascontiguousarray(dy, dtype=dtype)


def check_features_shape(layer, input_shape, n_features):
    """output_shape's check for layers that take (features,) samples."""
    if tuple(input_shape) != (n_features,):
        raise ValueError(f"{type(layer).__name__} takes samples of shape ({n_features},), got "
                         f"{tuple(input_shape)}")
    return (n_features,)


def torch_uniform(rng, shape, fan_in, dtype):
    """PyTorch's default start for Linear and Conv2d weights and biases: uniform in
    +-1 / sqrt(fan_in) (kaiming_uniform with a = sqrt(5) gives this bound for the weight)."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
