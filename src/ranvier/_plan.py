"""How a Sequential runs while it trains: a list of blocks over reused buffers.

A ``Dense`` followed by ``ReLU``/``Sigmoid``/``Tanh`` becomes one block: its forward is a single GEMM
whose epilogue adds the bias and applies the activation, and its backward folds the activation
gradient and the bias gradient into one pass before the two GEMMs. Every block keeps its output and
gradient buffers per batch size, so a training step allocates nothing once the first batch has run.
Other layers run through their own ``forward``/``backward``.

Buffers returned by a block are overwritten by the next step: this path is internal to ``fit``.
"""
import numpy as np

from ._config import get_num_threads
from ._kernels import matmul as _mm
from .layers import Dense, ReLU, Sigmoid, Tanh

_ACT_CODES = {ReLU: _mm.ACT_RELU, Sigmoid: _mm.ACT_SIGMOID, Tanh: _mm.ACT_TANH}
_SPECIALISED = {
    np.dtype(np.float32): (_mm.dense_forward["float"], _mm.dense_backward["float"]),
    np.dtype(np.float64): (_mm.dense_forward["double"], _mm.dense_backward["double"]),
}


class DenseBlock:
    """Dense (+ an optional fused activation)."""

    __slots__ = ("dense", "act", "_fwd", "_bwd", "_ws", "_x", "_y")

    def __init__(self, dense, act_layer=None):
        self.dense = dense
        self.act = _ACT_CODES[type(act_layer)] if act_layer is not None else _mm.ACT_NONE
        self._fwd, self._bwd = _SPECIALISED[dense.dtype]
        self._ws = {}
        self._x = self._y = None

    def _buffers(self, n):
        ws = self._ws.get(n)
        if ws is None:
            d = self.dense
            dt = d.dtype
            ws = (np.empty((n, d.out_features), dt),
                  np.empty((n, d.out_features), dt) if self.act != _mm.ACT_NONE else None,
                  np.empty((n, d.in_features), dt))
            if len(self._ws) > 4:  # batch sizes come and go only with partial last batches
                self._ws.clear()
            self._ws[n] = ws
        return ws

    def forward(self, x, nt):
        d = self.dense
        if x.dtype != d.weight.data.dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=d.weight.data.dtype)
        out = self._buffers(x.shape[0])[0]
        self._fwd(x, d.weight.data, d.bias.data if d.bias is not None else None, out, self.act, nt)
        self._x, self._y = x, out
        return out

    def backward(self, dy, need_input_grad, nt):
        _, dz, dx = self._buffers(dy.shape[0])
        d = self.dense
        self._bwd(self._x, d.weight.data, self._y, dy, dz, d.weight.grad,
                  d.bias.grad if d.bias is not None else None, dx if need_input_grad else None,
                  self.act, nt)
        return dx if need_input_grad else None


class LayerBlock:
    """Any other layer, through its own forward/backward."""

    __slots__ = ("layer",)

    def __init__(self, layer):
        self.layer = layer

    def forward(self, x, nt):
        return self.layer.forward(x)

    def backward(self, dy, need_input_grad, nt):
        return self.layer.backward(dy, need_input_grad=need_input_grad)


def build_plan(layers):
    """Blocks for ``layers``, fusing each Dense with the activation that follows it."""
    blocks, i = [], 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Dense) and type(nxt) in _ACT_CODES:
            blocks.append(DenseBlock(layer, nxt))
            i += 2
        elif isinstance(layer, Dense):
            blocks.append(DenseBlock(layer))
            i += 1
        else:
            blocks.append(LayerBlock(layer))
            i += 1
    return blocks


def run_forward(blocks, x):
    nt = get_num_threads()
    for b in blocks:
        x = b.forward(x, nt)
    return x


def run_backward(blocks, grad):
    nt = get_num_threads()
    for i in range(len(blocks) - 1, -1, -1):
        grad = blocks[i].backward(grad, i > 0, nt)
    return grad
