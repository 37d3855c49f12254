"""Export a Sequential to ONNX, for onnxruntime and every other ONNX runtime.

Each layer type has one writer below (``_WRITERS``) that appends its nodes to the graph; the
model's outputs are ``output`` (what ``model.forward`` returns) and, for a classifier,
``probabilities`` (what ``model.predict_proba`` returns). The batch dimension is symbolic
(``batch``), every tensor keeps the model's dtype (float32 or float64), and layers that only act
while training (Dropout, Dropout2d) are left out, as ``predict`` leaves them out.

The protobuf is written by the ``onnx`` package (``pip install ranvier[onnx]``), imported only
when an export is asked for: ``import ranvier`` stays NumPy-only.
"""
import math
import os

import numpy as np

from ._validation import check_bool, check_path
from .io import _atomic_write
from .layers import (ELU, GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d,
                     Dense, Dropout, Dropout2d, Flatten, LeakyReLU, MaxPool2d, ReLU, Sigmoid,
                     SiLU, Softmax, Tanh)

__all__ = ["to_onnx", "DEFAULT_OPSET", "MIN_OPSET"]

# 17 is read by every current runtime (onnxruntime >= 1.11, onnxruntime-web, TensorRT, OpenVINO);
# 13 is the first opset whose Softmax normalises one axis, as ranvier's does.
DEFAULT_OPSET = 17
MIN_OPSET = 13
_GELU_OPSET = 20  # Gelu became an operator in opset 20; before it, x/2 (1 + erf(x / sqrt 2))


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'ranvier[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """Nodes and initializers being collected, with fresh tensor names."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.helper, self.opset = onnx, onnx.helper, opset
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers, self._count = [], [], 0
        self._scalars = {}  # (hint, value) -> name: one initializer per scalar constant

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint, array):
        """An initializer holding ``array`` (in the model's dtype unless it is integer)."""
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        key = (hint, array.item()) if array.ndim == 0 else None
        if key in self._scalars:
            return self._scalars[key]
        name = self.name(hint)
        if key is not None:
            self._scalars[key] = name
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array),
                                                                  name))
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


# -- one writer per layer type: (graph, layer, input tensor name, index) -> output tensor name --

def _dense(g, layer, x, i):
    inputs = [x, g.constant(f"{i}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.constant(f"{i}.bias", layer.bias.data))
    return g.node("Gemm", inputs, f"dense{i}", transB=1)


def _conv2d(g, layer, x, i):
    """ONNX's Conv takes PyTorch's weight layout (OIHW); pads are [top, left, bottom, right]."""
    inputs = [x, g.constant(f"{i}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.constant(f"{i}.bias", layer.bias.data))
    return g.node("Conv", inputs, f"conv{i}", kernel_shape=list(layer.kernel_size),
                  strides=list(layer.stride), pads=list(layer.padding) * 2,
                  dilations=list(layer.dilation), group=layer.groups)


def _unary(op):
    return lambda g, layer, x, i: g.node(op, [x], f"{op.lower()}{i}")


# ONNX attributes are float32: LeakyRelu/Elu's alpha would be rounded to float32 for a float64
# model (0.1 -> 0.10000000149). There the two are written with a constant of the model's dtype:
# max(x, 0) + alpha * min(x, 0), and max(x, 0) + alpha * (exp(min(x, 0)) - 1).

def _leaky_relu(g, layer, x, i):
    if g.dtype == np.float32:
        return g.node("LeakyRelu", [x], f"leakyrelu{i}", alpha=float(layer.negative_slope))
    neg = g.node("Min", [x, g.constant("zero", 0.0)], f"leakyrelu{i}_neg")
    return _positive_plus(g, x, g.node("Mul", [neg, g.constant(f"{i}.negative_slope",
                                                                 layer.negative_slope)],
                                       f"leakyrelu{i}_scaled"), f"leakyrelu{i}")


def _elu(g, layer, x, i):
    if g.dtype == np.float32:
        return g.node("Elu", [x], f"elu{i}", alpha=float(layer.alpha))
    neg = g.node("Min", [x, g.constant("zero", 0.0)], f"elu{i}_neg")
    expm1 = g.node("Sub", [g.node("Exp", [neg], f"elu{i}_exp"), g.constant("one", 1.0)],
                   f"elu{i}_expm1")
    return _positive_plus(g, x, g.node("Mul", [expm1, g.constant(f"{i}.alpha", layer.alpha)],
                                       f"elu{i}_scaled"), f"elu{i}")


def _positive_plus(g, x, negative_part, hint):
    """max(x, 0) + negative_part: x where x > 0, the negative part elsewhere (NaN stays NaN)."""
    return g.node("Add", [g.node("Max", [x, g.constant("zero", 0.0)], f"{hint}_pos"),
                          negative_part], hint)


def _gelu(g, layer, x, i):
    # onnxruntime 1.32 implements Erf (and the Gelu function built on it) for float32 only: a
    # float64 model's file is valid ONNX that runtimes with a float64 Erf run (onnx's reference
    # evaluator does); cast the model to float32 for onnxruntime.
    if g.opset >= _GELU_OPSET:
        return g.node("Gelu", [x], f"gelu{i}")
    scaled = g.node("Mul", [x, g.constant("inv_sqrt2", 1.0 / math.sqrt(2.0))], f"gelu{i}_scaled")
    erf = g.node("Erf", [scaled], f"gelu{i}_erf")
    one_plus = g.node("Add", [erf, g.constant("one", 1.0)], f"gelu{i}_1p")
    half_x = g.node("Mul", [x, g.constant("half", 0.5)], f"gelu{i}_halfx")
    return g.node("Mul", [half_x, one_plus], f"gelu{i}")


def _silu(g, layer, x, i):
    return g.node("Mul", [x, g.node("Sigmoid", [x], f"silu{i}_sigmoid")], f"silu{i}")


def _softmax(g, layer, x, i):
    return g.node("Softmax", [x], f"softmax{i}", axis=-1)


def _batchnorm(g, layer, x, i):
    """Inference form folded into one multiply-add per channel, from the running statistics (in
    the model's dtype: BatchNormalization's epsilon attribute is float32, which would round a
    float64 model's). BatchNorm2d's constants are (C, 1, 1), broadcast over each plane."""
    name = type(layer).__name__
    if not layer.track_running_stats:
        raise ValueError(f"layer {i} ({name}) has track_running_stats=False: it normalises "
                         "every batch by that batch's own statistics, which an exported graph "
                         "cannot reproduce; train it with running statistics to export it")
    scale = 1.0 / np.sqrt(layer.running_var.astype(np.float64) + layer.eps)
    if layer.affine:
        scale = scale * layer.weight.data.astype(np.float64)
    shift = -layer.running_mean.astype(np.float64) * scale
    if layer.affine:
        shift = shift + layer.bias.data.astype(np.float64)
    if isinstance(layer, BatchNorm2d):
        scale, shift = scale[:, None, None], shift[:, None, None]
    scaled = g.node("Mul", [x, g.constant(f"{i}.scale", scale)], f"batchnorm{i}_scale")
    return g.node("Add", [scaled, g.constant(f"{i}.shift", shift)], f"batchnorm{i}")


def _pool(op):
    """MaxPool / AveragePool with the layer's kernel, strides and padding (ceil_mode 0)."""
    def write(g, layer, x, i):
        attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
                 "pads": list(layer.padding) * 2}
        if op == "AveragePool":
            attrs["count_include_pad"] = int(layer.count_include_pad)
        return g.node(op, [x], f"{op.lower()}{i}", **attrs)
    return write


def _adaptive_avgpool(g, layer, x, i):
    if layer.output_size != (1, 1):
        raise ValueError(f"layer {i} (AdaptiveAvgPool2d) has output_size {layer.output_size}: "
                         "only (1, 1), global average pooling, has an ONNX form")
    return g.node("GlobalAveragePool", [x], f"globalaveragepool{i}")


def _flatten(g, layer, x, i):
    return g.node("Flatten", [x], f"flatten{i}", axis=1)


def _dropped(g, layer, x, i):
    return x  # inference: Dropout and Dropout2d pass their input through


_WRITERS = {
    Dense: _dense, Conv2d: _conv2d, ReLU: _unary("Relu"), Sigmoid: _unary("Sigmoid"),
    Tanh: _unary("Tanh"),
    LeakyReLU: _leaky_relu, ELU: _elu, GELU: _gelu, SiLU: _silu, Softmax: _softmax,
    BatchNorm1d: _batchnorm, BatchNorm2d: _batchnorm, Flatten: _flatten, Dropout: _dropped,
    Dropout2d: _dropped, MaxPool2d: _pool("MaxPool"), AvgPool2d: _pool("AveragePool"),
    AdaptiveAvgPool2d: _adaptive_avgpool,
}


def _writer(layer, i):
    writer = _WRITERS.get(type(layer))
    if writer is None:
        known = ", ".join(sorted(cls.__name__ for cls in _WRITERS))
        raise ValueError(f"layer {i} ({type(layer).__name__}) has no ONNX form; exportable "
                         f"layers: {known}")
    return writer


def _probabilities(g, model, out):
    """The tensor predict_proba returns: the model's probability layer applied to the outputs."""
    head = model._probability_layer()
    if head is None:
        return g.node("Identity", [out], "probabilities")
    return _writer(head, len(model.layers))(g, head, out, len(model.layers))


def _check_opset(onnx, opset):
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int, got {type(opset).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (the newest this onnx "
                         f"package {onnx.__version__} knows), got {opset}")
    return int(opset)


def build_onnx(model, *, opset=DEFAULT_OPSET, input_shape=None, probabilities=None):
    """The ``onnx.ModelProto`` of ``model`` (see :func:`to_onnx`), checked by onnx's checker."""
    onnx = _onnx()
    opset = _check_opset(onnx, opset)
    if not model.layers:
        raise ValueError("cannot export an empty model: add layers first")
    writers = [_writer(layer, i) for i, layer in enumerate(model.layers)]
    model._check_dtypes()
    shape = model.input_shape if input_shape is None else tuple(int(d) for d in input_shape)
    if shape is None:
        raise ValueError("the model's input shape is not fixed by its first layers (it starts "
                         "with Flatten or Conv2d): pass input_shape, e.g. (28, 28) or (1, 28, 28)")
    out_shape = model.output_shape(shape)  # ValueError naming a layer that cannot take the shape
    if probabilities is None:
        probabilities = model._is_classifier()
    probabilities = check_bool(probabilities, "probabilities")

    dtype = model.dtype
    g = _Graph(onnx, dtype, opset)
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    x = "input"
    for i, (layer, write) in enumerate(zip(model.layers, writers)):
        x = write(g, layer, x, i)
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["output"], name="output"))
    outputs = [onnx.helper.make_tensor_value_info("output", elem, ["batch", *out_shape])]
    if probabilities:
        p = _probabilities(g, model, "output")
        g.nodes.append(onnx.helper.make_node("Identity", [p], ["probabilities"],
                                             name="probabilities_out"))
        outputs.append(onnx.helper.make_tensor_value_info("probabilities", elem,
                                                          ["batch", *out_shape]))
    graph = onnx.helper.make_graph(
        g.nodes, "ranvier_sequential",
        [onnx.helper.make_tensor_value_info("input", elem, ["batch", *shape])], outputs,
        initializer=g.initializers)
    from . import __version__

    proto = onnx.helper.make_model(graph, producer_name="ranvier", producer_version=__version__,
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    # The IR version the opset was released with, so older runtimes read the file.
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, opset))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _ir_version_for(onnx, opset):
    for entry in onnx.helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ...)
        if entry[2] == opset:
            return entry[1]
    return onnx.IR_VERSION


def to_onnx(model, path, *, opset=DEFAULT_OPSET, input_shape=None, probabilities=None):
    """Write ``model`` to the ONNX file ``path`` and return the path.

    ``opset``: the ONNX operator set (13 to the newest the installed onnx knows; default 17).
    ``input_shape``: the per-sample input shape, needed only when the model starts with Flatten or
    Conv2d (e.g. (1, 28, 28)).
    ``probabilities``: add a ``probabilities`` output equal to ``predict_proba``'s (default: when
    the model is a classifier by its loss or a final Softmax). The file is written atomically, as
    model saves are: a reader sees the old file or the new one."""
    path = check_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: folder {folder!r} does not exist")
    proto = build_onnx(model, opset=opset, input_shape=input_shape, probabilities=probabilities)
    _atomic_write(path, proto.SerializeToString())
    return path
