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

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        hp = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``: momentum, dampening, Nesterov, L2 weight
    decay."""

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

    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state.get(id(p))
                first = st is None
                if first:
                    buf = np.empty_like(p.data) if g["momentum"] != 0 else p.data[:0]
                    st = self.state[id(p)] = {"momentum_buffer": buf}
                _ko.sgd_step(p.data.reshape(-1), p.grad.reshape(-1),
                             st["momentum_buffer"].reshape(-1), g["lr"], g["momentum"],
                             g["dampening"], g["weight_decay"], g["nesterov"], first,
                             threads_for(p.data.size))


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam`` (weight decay as L2 added to the gradient)."""

    _decoupled = False

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

    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                st = self.state.get(id(p))
                if st is None:
                    st = self.state[id(p)] = {"step": 0, "exp_avg": np.zeros_like(p.data),
                                              "exp_avg_sq": np.zeros_like(p.data)}
                st["step"] += 1
                _ko.adam_step(p.data.reshape(-1), p.grad.reshape(-1), st["exp_avg"].reshape(-1),
                              st["exp_avg_sq"].reshape(-1), g["lr"], b1, b2, g["eps"],
                              g["weight_decay"], st["step"], self._decoupled,
                              threads_for(p.data.size))


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
