"""How a Sequential runs while it trains: a list of blocks over reused buffers.

Consecutive ``Dense`` layers, each optionally followed by ``ReLU``/``Sigmoid``/``Tanh``, become one
block backed by a native ``DenseRun``: its forward is one call that runs each layer as a single
GEMM whose epilogue adds the bias and applies the activation, and its backward is one call that
folds each activation gradient and bias gradient into one pass before the two GEMMs. The run keeps
its output and gradient buffers per batch size, so a training step allocates nothing once the
first batch has run, and a small network pays two native calls per step instead of two per layer.
Other layers run through their own ``forward``/``backward``.

Buffers returned by a block are overwritten by the next step: this path is internal to ``fit``.
"""
import numpy as np

from ._config import get_num_threads
from ._kernels import matmul as _mm
from .layers import Dense, ReLU, Sigmoid, Tanh

_ACT_CODES = {ReLU: _mm.ACT_RELU, Sigmoid: _mm.ACT_SIGMOID, Tanh: _mm.ACT_TANH}


class DenseRunBlock:
    """Dense layers (each + an optional fused activation) as one native forward/backward."""

    __slots__ = ("dense", "run", "_dtype")

    def __init__(self, pairs):
        self.dense = [d for d, _ in pairs]
        self.run = _mm.DenseRun(self.dense, [_ACT_CODES[type(a)] if a is not None else
                                             _mm.ACT_NONE for _, a in pairs])
        self._dtype = self.dense[0].dtype

    def forward(self, x, nt):
        if x.dtype != self._dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=self._dtype)
        return self.run.forward(x, nt)

    def backward(self, dy, need_input_grad, nt):
        if dy.dtype != self._dtype or not dy.flags.c_contiguous:
            dy = np.ascontiguousarray(dy, dtype=self._dtype)
        return self.run.backward(dy, need_input_grad, nt)


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
    """Blocks for ``layers``: each maximal run of Dense (+ activation) layers of one dtype becomes
    one DenseRunBlock."""
    blocks, run, i = [], [], 0

    def close_run():
        if run:
            blocks.append(DenseRunBlock(list(run)))
            run.clear()

    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Dense):
            if run and run[0][0].dtype != layer.dtype:
                close_run()
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            act = nxt if type(nxt) in _ACT_CODES else None
            run.append((layer, act))
            i += 2 if act is not None else 1
        else:
            close_run()
            blocks.append(LayerBlock(layer))
            i += 1
    close_run()
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
