"""How a Sequential runs, in training and in inference alike: a plan of blocks.

The block protocol. A block runs one or more consecutive layers:
    ``forward(x, nt)``                      -> the output; may be a workspace buffer, valid until
                                               the block's next forward
    ``backward(dy, need_input_grad, nt)``   -> dL/dx of the last forward (None when not needed),
                                               with every parameter's ``.grad`` written
``nt`` is the thread count. Layers keep their own mode (``layer.training``): in eval mode a block
runs the inference form of its layers (Dropout passes through, BatchNorm uses running
statistics), so ``fit``, ``evaluate``, ``predict`` and ``model.forward`` all run this same code and
give bitwise-equal outputs for the same input and mode.

The fusion table, ``FUSIONS``, lists the patterns the plan is built from, tried in order at each
position; a layer no pattern takes runs through its own forward/backward (``LayerBlock``):
    dense+activation   maximal runs of Dense layers of one dtype, each optionally followed by an
                       ``Activation`` (any entry of the native activation table): one native
                       DenseRun (GEMM + bias + activation epilogue per layer; one fused
                       activation/bias-gradient pass and two GEMMs per layer backward).
    conv+activation    a Conv2d, optionally followed by an ``Activation``: one ConvBlock (the
                       convolution kernel's epilogue adds the bias and applies the activation;
                       backward: the activation's gradient, then the convolution's three).
A new family adds its pattern and block class here.
"""
import os
import threading

import numpy as np

from ._config import get_num_threads
from ._kernels import activations as _act
from ._kernels import matmul as _mm
from .layers import Activation, Conv2d, Dense


class LayerBlock:
    """Any layer, through its own forward/backward."""

    __slots__ = ("layers",)

    def __init__(self, layers, workspace, key):
        self.layers = tuple(layers)

    def forward(self, x, nt):
        return self.layers[0].forward(x)

    def backward(self, dy, need_input_grad, nt):
        return self.layers[0].backward(dy, need_input_grad=need_input_grad)


class DenseRunBlock:
    """Dense layers (each + an optional fused activation) as one native forward/backward over
    arrays: the layers' parameter arrays (rebound when one is replaced, e.g. by ``astype`` or the
    model's flat parameter buffer) and buffers from the model's workspace, per batch size."""

    __slots__ = ("layers", "dense", "run", "dtype", "_params", "_bound", "_ws", "_key")

    def __init__(self, layers, workspace, key):
        self.layers = tuple(layers)
        self.dense = [l for l in layers if isinstance(l, Dense)]
        acts = []
        for d, nxt in zip(layers, list(layers[1:]) + [None]):
            if isinstance(d, Dense):
                acts.append(nxt.fused_activation if isinstance(nxt, Activation) else (0, 0.0))
        self.dtype = self.dense[0].dtype
        self.run = _mm.DenseRun([(d.in_features, d.out_features, d.bias is not None)
                                 for d in self.dense], acts, self.dtype)
        self._params = [(d.weight, d.bias) for d in self.dense]
        self._bound = None
        self._ws, self._key = workspace, key

    def _bind_params(self):
        """Hands the native run the parameter arrays again when one was replaced (a user's
        ``param.data = ...``, load_state_dict); per step it only compares identities."""
        bound = self._bound
        if bound is not None:
            for (w, b), (wd, bd, wg, bg) in zip(self._params, bound):
                if w.data is not wd or w.grad is not wg or (
                        b is not None and (b.data is not bd or b.grad is not bg)):
                    break
            else:
                return
        arrays = [(w.data, b.data if b is not None else None, w.grad,
                   b.grad if b is not None else None) for w, b in self._params]
        self.run.bind_params(arrays)
        self._bound = arrays

    def forward(self, x, nt):
        if x.dtype != self.dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=self.dtype)
        self._bind_params()
        n = x.shape[0]
        if n != self.run.rows:
            ws, key, dt = self._ws, self._key, self.dtype
            self.run.bind_buffers(n, [
                tuple(None if shape is None else ws.get((key, i, role), shape, dt)
                      for role, shape in zip(("out", "pre", "dz", "dx"), shapes))
                for i, shapes in enumerate(self.run.buffer_shapes(n))])
        return self.run.forward(x, nt)

    def backward(self, dy, need_input_grad, nt):
        if dy.dtype != self.dtype or not dy.flags.c_contiguous:
            dy = np.ascontiguousarray(dy, dtype=self.dtype)
        return self.run.backward(dy, need_input_grad, nt)


class ConvBlock:
    """A Conv2d and an optional activation after it, on buffers from the model's workspace (one
    set per input shape): forward writes act(conv(x) + bias) straight from the kernel's epilogue
    (an activation whose derivative needs its input keeps the pre-activation and is applied
    after, as in DenseRun); backward takes the activation's gradient, then the convolution's."""

    __slots__ = ("layers", "conv", "act", "param", "v_is_pre", "_ws", "_key", "_x", "_v")

    def __init__(self, layers, workspace, key):
        self.layers = tuple(layers)
        self.conv = layers[0]
        self.act, self.param = layers[1].fused_activation if len(layers) > 1 else (0, 0.0)
        self.v_is_pre = len(layers) > 1 and layers[1].kernel not in _act.NEEDS_OUTPUT
        self._ws, self._key = workspace, key
        self._x = self._v = None

    def forward(self, x, nt):
        conv = self.conv
        x = conv._input(x)
        shape = (x.shape[0],) + conv.output_shape(x.shape[1:])
        out = self._ws.get((self._key, "out"), shape, conv.dtype)
        if self.v_is_pre:
            pre = self._ws.get((self._key, "pre"), shape, conv.dtype)
            conv._run_forward(x, pre, 0, 0.0, nt)
            _act.forward(self.act, pre.reshape(-1), out.reshape(-1), self.param, nt)
            self._v = pre
        else:
            conv._run_forward(x, out, self.act, self.param, nt)
            self._v = out
        self._x = x
        return out

    def backward(self, dy, need_input_grad, nt):
        if self._x is None:
            raise RuntimeError("Conv2d.backward called before forward")
        x, v, ws, key = self._x, self._v, self._ws, self._key
        if dy.shape != v.shape:
            raise ValueError(f"grad_output must have shape {v.shape}, got {dy.shape}")
        dz = np.ascontiguousarray(dy, dtype=v.dtype)
        if self.act:
            g = ws.get((key, "dz"), v.shape, v.dtype)
            _act.backward(self.act, v.reshape(-1), dz.reshape(-1), g.reshape(-1), self.param, nt)
            dz = g
        dx = ws.get((key, "dx"), x.shape, x.dtype) if need_input_grad else None
        self.conv._run_backward(x, dz, dx, nt)
        return dx


def _match_conv(layers, i):
    """A Conv2d (1) and the Activation after it (2); 0 when layers[i] is no Conv2d."""
    if not isinstance(layers[i], Conv2d):
        return 0
    return 2 if i + 1 < len(layers) and isinstance(layers[i + 1], Activation) else 1


def _match_dense_run(layers, i):
    """How many layers from i form a run of Dense (+ Activation) layers of one dtype (0: none)."""
    j = i
    while j < len(layers) and isinstance(layers[j], Dense) and layers[j].dtype == layers[i].dtype:
        j += 2 if j + 1 < len(layers) and isinstance(layers[j + 1], Activation) else 1
    return j - i


# Blocks write into buffers they own, so two threads must not run plans at once: the model's
# inference entry points (predict, evaluate, forward) hold this lock while they run one and copy
# its output out. (Training a model while another thread predicts with it is not supported.)
RUN_LOCK = threading.RLock()


def _new_run_lock_in_child():
    """fork copies RUN_LOCK as it is: held by another thread at that moment, it would stay held
    for ever in the child, where that thread does not exist."""
    global RUN_LOCK
    RUN_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_run_lock_in_child)

# (name, matcher(layers, i) -> number of layers taken, block class)
FUSIONS = [
    ("dense+activation", _match_dense_run, DenseRunBlock),
    ("conv+activation", _match_conv, ConvBlock),
]


def build_plan(layers, workspace):
    """The blocks that run ``layers``, from the fusion table."""
    blocks, i = [], 0
    while i < len(layers):
        for _, match, block_cls in FUSIONS:
            taken = match(layers, i)
            if taken:
                break
        else:
            taken, block_cls = 1, LayerBlock
        blocks.append(block_cls(layers[i:i + taken], workspace, len(blocks)))
        i += taken
    return blocks


def run_forward(blocks, x):
    nt = get_num_threads()
    for b in blocks:
        x = b.forward(x, nt)
    return x


def run_backward(blocks, grad, need_input_grad=False):
    nt = get_num_threads()
    for i in range(len(blocks) - 1, -1, -1):
        grad = blocks[i].backward(grad, i > 0 or need_input_grad, nt)
    return grad
