"""Optimizers with PyTorch's semantics; each ``step()`` is one native pass per parameter.

``SGD(model.parameters(), lr=0.01, momentum=0.9)``; parameter groups as in PyTorch:
``SGD([{"params": a, "lr": 0.1}, {"params": b}], lr=0.01)``.
"""
import numpy as np

from ._config import threads_for
from ._kernels import optimizers as _ko
from ._validation import check_float
from .layers import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get_optimizer"]


class Optimizer:
    """Base class: holds parameter groups (each a dict with "params" and hyper-parameters)."""

    defaults = {}

    def __init__(self, params, **defaults):
        self.defaults = dict(defaults)
        groups = list(params) if not isinstance(params, dict) else [params]
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        for g in groups:
            self.add_param_group(g)
        self.state = {}  # id(param) -> dict of state arrays / counters

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer params must be ranvier Parameters (model.parameters()), "
                                f"got {type(p).__name__}")
        full = {**self.defaults, **group, "params": params}
        self._check_group(full)
        self.param_groups.append(full)

    def _check_group(self, group):
        check_float(group["lr"], "lr", minimum=0.0)

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.fill(0)

    # -- one kernel call per group when the group's parameters are adjacent in one buffer --------
    _state_arrays = ()  # names of per-parameter state arrays (same shape as the parameter)

    def _param_state(self, p):
        st = self.state.get(id(p))
        if st is None:
            st = self.state[id(p)] = self._new_state(p)
        return st

    def _new_state(self, p):
        return {name: np.zeros_like(p.data) for name in self._state_arrays}

    def _flat_group(self, gi, group):
        """(data, grad, {state name: array}) 1-D views spanning the whole group, or None.

        A Sequential keeps its parameters and gradients in one buffer each, so an optimizer over
        ``model.parameters()`` updates everything in one native pass. The state arrays are then
        allocated flat too, and each parameter's state is a view into them."""
        params = group["params"]
        key = tuple(id(p.data) for p in params) + tuple(id(p.grad) for p in params)
        cache = self.__dict__.setdefault("_flat_cache", {})
        hit = cache.get(gi)
        if hit is not None and hit[0] == key:
            return hit[1]
        data = _flat_span([p.data for p in params])
        grad = _flat_span([p.grad for p in params])
        flat = None
        if data is not None and grad is not None and data.dtype == grad.dtype:
            states = {}
            for name in self._state_arrays:
                buf = np.zeros_like(data)
                off = 0
                for p in params:
                    view = buf[off:off + p.data.size].reshape(p.data.shape)
                    st = self.state.setdefault(id(p), self._new_state(p))
                    if st[name].shape == view.shape:
                        view[...] = st[name]
                    st[name] = view
                    off += p.data.size
                states[name] = buf
            for p in params:
                self.state.setdefault(id(p), self._new_state(p))
            flat = (data, grad, states)
        cache[gi] = (key, flat)
        return flat

    def _cast_state(self, dtype):
        """Convert the state to ``dtype`` (after ``model.astype``)."""
        for st in self.state.values():
            for name in self._state_arrays:
                st[name] = st[name].astype(dtype)
        self.__dict__.pop("_flat_cache", None)

    def step(self):
        """Update every parameter from its ``.grad``."""
        for gi, group in enumerate(self.param_groups):
            flat = self._flat_group(gi, group)
            if flat is not None:
                counters = [self.state[id(p)] for p in group["params"]]
                self._update(group, flat[0], flat[1], flat[2], counters)
            else:
                for p in group["params"]:
                    st = self._param_state(p)
                    if st and any(st[n].dtype != p.data.dtype for n in self._state_arrays):
                        self._cast_state(p.data.dtype)
                        st = self._param_state(p)
                    self._update(group, p.data.reshape(-1), p.grad.reshape(-1),
                                 {n: st[n].reshape(-1) for n in self._state_arrays}, [st])

    def _update(self, group, data, grad, state, counters):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        hp = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({hp})"


def _flat_span(arrays):
    """A 1-D view covering ``arrays`` when they lie back to back, in order, in one contiguous
    buffer (as a Sequential's parameters do); else None."""
    first = arrays[0]
    root = first
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not root.flags.c_contiguous or root.dtype != first.dtype:
        return None
    root_ptr = root.__array_interface__["data"][0]
    ptr = first.__array_interface__["data"][0]
    start = ptr - root_ptr
    total = 0
    for a in arrays:
        if a.dtype != first.dtype or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != ptr:
            return None
        ptr += a.nbytes
        total += a.size
    if start % first.itemsize or start + total * first.itemsize > root.nbytes:
        return None
    off = start // first.itemsize
    return root.reshape(-1)[off:off + total]


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``: momentum, dampening, Nesterov, L2 weight
    decay."""

    _state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _check_group(self, group):
        super()._check_group(group)
        check_float(group["momentum"], "momentum", minimum=0.0)
        check_float(group["dampening"], "dampening", minimum=0.0)
        check_float(group["weight_decay"], "weight_decay", minimum=0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _new_state(self, p):
        return {"momentum_buffer": np.zeros_like(p.data), "steps": 0}

    def _update(self, g, data, grad, state, counters):
        first = counters[0]["steps"] == 0
        _ko.sgd_step(data, grad, state["momentum_buffer"], g["lr"], g["momentum"], g["dampening"],
                     g["weight_decay"], g["nesterov"], first, threads_for(data.size))
        for st in counters:
            st["steps"] += 1


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam`` (weight decay as L2 added to the gradient)."""

    _decoupled = False
    _state_arrays = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        for i, b in enumerate(betas):
            check_float(b, f"betas[{i}]", minimum=0.0)
            if b >= 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b}")
        check_float(group["eps"], "eps", minimum=0.0)
        check_float(group["weight_decay"], "weight_decay", minimum=0.0)

    def _new_state(self, p):
        return {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}

    def _update(self, g, data, grad, state, counters):
        step = counters[0]["step"] + 1
        for st in counters:
            st["step"] = step
        b1, b2 = g["betas"]
        _ko.adam_step(data, grad, state["exp_avg"], state["exp_avg_sq"], g["lr"], b1, b2, g["eps"],
                      g["weight_decay"], step, self._decoupled, threads_for(data.size))


class AdamW(Adam):
    """AdamW, ``torch.optim.AdamW``: decoupled weight decay (default 0.01)."""

    _decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get_optimizer(optimizer, params):
    """An Optimizer bound to ``params`` from an instance, a class or a name ('sgd', 'adam')."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        return optimizer(params)
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()](params)
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(_BY_NAME)}, "
                     f"got {optimizer!r}")
