"""One cache of reusable arrays per model: the buffers its plan's native runs write into, and the
mini-batch buffers ``fit`` gathers into. A training step asks for the same (key, shape, dtype)
every time and gets the same array back, so it allocates nothing once the first batch has run."""
import numpy as np


class Workspace:
    """Arrays by (key, shape, dtype). ``key`` names the owner and role (e.g. ``(block, layer,
    "out")``). When more than ``limit`` arrays are held (batch sizes come and go with partial
    batches and evaluation), everything is dropped and reallocated on demand: a caller that still
    holds an array keeps it alive, so nothing it uses is freed under it."""

    def __init__(self, limit=256):
        self._arrays = {}
        self._limit = limit

    def get(self, key, shape, dtype):
        k = (key, tuple(shape), np.dtype(dtype))
        a = self._arrays.get(k)
        if a is None:
            if len(self._arrays) >= self._limit:
                self._arrays.clear()
            a = self._arrays[k] = np.empty(shape, dtype)
        return a

    def clear(self):
        self._arrays.clear()

    def __len__(self):
        return len(self._arrays)
