"""Optimizers with PyTorch's semantics; each ``step()`` is one native pass per parameter group
(per parameter when a group's parameters do not lie back to back in one buffer).

``SGD(model.parameters(), lr=0.01, momentum=0.9)``; parameter groups as in PyTorch:
``SGD([{"params": a, "lr": 0.1}, {"params": b}], lr=0.01)``. ``state_dict()`` and
``load_state_dict()`` use PyTorch's layout; ``clip_grad_norm`` is
``torch.nn.utils.clip_grad_norm_``.
"""
import numpy as np

from ._config import threads_for
from ._kernels import optimizers as _ko
from ._validation import (check_bool, check_float, check_instance, check_keys, is_int,
                          is_real)
from .layers import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm",
           "get_optimizer"]


class Optimizer:
    """Base class: holds parameter groups (each a dict with "params" and hyper-parameters).

    Subclasses name their per-parameter state arrays in ``_state_arrays`` (the ones a group's step
    uses come from ``_state_names(group)``), count steps in ``state["step"]`` and implement
    ``_update(group, data, grad, state, counters)``: one kernel call on 1-D views."""

    defaults = {}
    _nonnegative = ()  # hyper-parameters (besides lr) that must be numbers >= 0
    _flags = ()  # hyper-parameters that must be True or False
    _state_arrays = ()  # every per-parameter state array (same shape as the parameter) it may keep
    _step_key = "step"

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
        self.state = {}  # id(param) -> {"step": int, state name: array}

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        for p in params:
            check_instance(p, Parameter, "optimizer params",
                           "ranvier Parameters (model.parameters())")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("a parameter appears more than once in the parameter group")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen.intersection(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        full = {**self.defaults, **group, "params": params}
        self._check_group(full)
        self.param_groups.append(full)

    def _check_group(self, group):
        for name in ("lr", *self._nonnegative):
            check_float(group[name], name, minimum=0.0)
        for name in self._flags:
            check_bool(group[name], name)

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.fill(0)

    # -- per-parameter state ------------------------------------------------------------------
    def _state_names(self, group):
        """The state arrays a step of ``group`` uses."""
        return self._state_arrays

    def _new_array(self, name, p, group):
        return np.zeros_like(p.data)

    def _new_state(self, p, group):
        st = {self._step_key: 0}
        for name in self._state_names(group):
            st[name] = self._new_array(name, p, group)
        return st

    def _param_state(self, p, group):
        """``p``'s state with every array ``group`` needs, in ``p``'s dtype (created or converted
        here when missing or stale)."""
        st = self.state.get(id(p))
        if st is None:
            st = self.state[id(p)] = self._new_state(p, group)
            return st
        for name in self._state_names(group):
            arr = st.get(name)
            if arr is None:
                st[name] = self._new_array(name, p, group)
            elif arr.dtype != p.data.dtype or arr.shape != p.data.shape:
                st[name] = np.ascontiguousarray(arr.astype(p.data.dtype).reshape(p.data.shape))
                self.__dict__.pop("_flat_cache", None)
        return st

    # -- one kernel call per group when the group's parameters are adjacent in one buffer --------
    def _flat_group(self, gi, group):
        """(data, grad, {state name: array}, [state dict per parameter]) where data, grad and the
        state arrays are 1-D views spanning the whole group, or None.

        A Sequential keeps its parameters and gradients in one buffer each, so an optimizer over
        ``model.parameters()`` updates everything in one native pass. The state arrays are then
        allocated flat too, and each parameter's state is a view into them. The result is cached
        while every parameter keeps the same data and grad arrays (held here, so a replaced array
        is never mistaken for a new one at the same address)."""
        params = group["params"]
        names = tuple(self._state_names(group))
        cache = self.__dict__.setdefault("_flat_cache", {})
        hit = cache.get(gi)
        if hit is not None and hit[0] == names and len(hit[1]) == len(params):
            for p, d, g in zip(params, hit[1], hit[2]):
                if p.data is not d or p.grad is not g:
                    break
            else:
                return hit[3]
        data = _flat_span([p.data for p in params])
        grad = _flat_span([p.grad for p in params])
        flat = None
        if data is not None and grad is not None and data.dtype == grad.dtype:
            sts = [self._param_state(p, group) for p in params]
            states = {}
            for name in names:
                buf = np.empty_like(data)
                off = 0
                for p, st in zip(params, sts):
                    view = buf[off:off + p.data.size].reshape(p.data.shape)
                    view[...] = st[name]
                    st[name] = view
                    off += p.data.size
                states[name] = buf
            flat = (data, grad, states, sts)
        cache = self.__dict__.setdefault("_flat_cache", {})  # _param_state may have reset it
        cache[gi] = (names, [p.data for p in params], [p.grad for p in params], flat)
        return flat

    def _cast_state(self, dtype):
        """Convert the state to ``dtype`` (after ``model.astype``)."""
        for st in self.state.values():
            for name, value in st.items():
                if isinstance(value, np.ndarray):
                    st[name] = value.astype(dtype)
        self.__dict__.pop("_flat_cache", None)

    def step(self):
        """Update every parameter from its ``.grad``."""
        key = self._step_key
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            if not params:
                continue
            flat = self._flat_group(gi, group)
            if flat is not None:
                counters = flat[3]
                first = counters[0][key]
                for st in counters:
                    if st[key] != first:
                        break
                else:
                    self._update(group, flat[0], flat[1], flat[2], counters)
                    continue
                # parameters at different steps (a loaded state): one call per parameter
            names = self._state_names(group)
            for p in params:
                st = self._param_state(p, group)
                self._update(group, p.data.reshape(-1), p.grad.reshape(-1),
                             {n: st[n].reshape(-1) for n in names}, [st])

    def _update(self, group, data, grad, state, counters):  # pragma: no cover - abstract
        raise NotImplementedError

    def _next_step(self, counters):
        step = counters[0][self._step_key] + 1
        for st in counters:
            st[self._step_key] = step
        return step

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self):
        """PyTorch's layout: ``{"state": {index: {"step": int, name: array}}, "param_groups":
        [{hyper-parameters..., "params": [index, ...]}]}``, parameters numbered in group order.
        Arrays are copies."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(id(p))
                if st is not None:
                    state[index[id(p)]] = {k: (np.array(v, copy=True, order="C")
                                               if isinstance(v, np.ndarray) else v)
                                           for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by ``state_dict`` (of an optimizer of this type
        over parameters of the same shapes, in the same groups). Everything is checked before
        anything changes; arrays are copied into the existing state where there is one, so the
        flat-group views stay valid."""
        check_instance(state_dict, dict, "state_dict", "a dict")
        check_keys(state_dict, ("state", "param_groups"), "state_dict", type(self).__name__)
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise ValueError(f"state_dict['param_groups'] must be a list, got "
                             f"{type(saved_groups).__name__}")
        if not isinstance(saved_state, dict):
            raise ValueError(f"state_dict['state'] must be a dict, got "
                             f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, this optimizer "
                             f"has {len(self.param_groups)}")
        allowed = set(self.defaults) | {"params", "initial_lr"}
        by_index = {}
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"param_groups[{gi}] must be a dict with a 'params' entry")
            unknown = sorted(map(str, set(saved) - allowed))
            if unknown:
                raise ValueError(f"param_groups[{gi}] has unknown keys {unknown} for "
                                 f"{type(self).__name__}")
            indices = list(saved["params"])
            if len(indices) != len(group["params"]):
                raise ValueError(f"param_groups[{gi}] has {len(indices)} parameters in the "
                                 f"state_dict, {len(group['params'])} in this optimizer")
            for idx, p in zip(indices, group["params"]):
                if not is_int(idx):
                    raise ValueError(f"param_groups[{gi}]['params'] must hold integer indices, "
                                     f"got {idx!r}")
                if int(idx) in by_index:
                    raise ValueError(f"parameter index {int(idx)} appears more than once in "
                                     "param_groups")
                by_index[int(idx)] = p
            new = {k: v for k, v in group.items() if k != "params"}
            new.update({k: v for k, v in saved.items() if k != "params"})
            if isinstance(new.get("betas"), list):
                new["betas"] = tuple(new["betas"])
            new["params"] = group["params"]
            try:
                self._check_group(new)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{gi}]: {exc}") from None
            new_groups.append(new)
        known = {self._step_key, *self._state_arrays}
        loaded = []
        for idx, entry in saved_state.items():
            if not is_int(idx):
                raise ValueError(f"state keys must be parameter indices, got {idx!r}")
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"state has an entry for parameter index {idx}, which no "
                                 "parameter group lists")
            if not isinstance(entry, dict):
                raise ValueError(f"state[{idx}] must be a dict, got {type(entry).__name__}")
            unknown = sorted(map(str, set(entry) - known))
            if unknown:
                raise ValueError(f"state[{idx}] has unknown keys {unknown} for "
                                 f"{type(self).__name__} (expected some of {sorted(known)})")
            if self._step_key not in entry:
                raise ValueError(f"state[{idx}] has no {self._step_key!r} entry")
            step = entry[self._step_key]
            if isinstance(step, np.ndarray) and step.ndim == 0:
                step = step.item()
            if isinstance(step, float) and step.is_integer():
                step = int(step)
            if not is_int(step) or step < 0:
                raise ValueError(f"state[{idx}][{self._step_key!r}] must be an int >= 0, "
                                 f"got {step!r}")
            arrays = {}
            for name, value in entry.items():
                if name == self._step_key:
                    continue
                arr = np.asarray(value)
                if arr.shape != p.data.shape:
                    raise ValueError(f"state[{idx}][{name!r}] has shape {arr.shape}, the parameter "
                                     f"has shape {p.data.shape}")
                if arr.dtype != p.data.dtype:
                    raise ValueError(f"state[{idx}][{name!r}] has dtype {arr.dtype}, the parameter "
                                     f"has dtype {p.data.dtype}")
                arrays[name] = arr
            loaded.append((p, int(step), arrays))
        # -- everything checked: apply ----------------------------------------------------------
        for group, new in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        # Each parameter's state dict is updated in place and arrays are copied into the existing
        # ones: the flat-group cache (which holds both) stays valid when nothing changes shape.
        keep_views = True
        old_state, self.state = self.state, {}
        for p, step, arrays in loaded:
            st = old_state.pop(id(p), None)
            if st is None:
                st, keep_views = {}, False
            if set(k for k, v in st.items() if isinstance(v, np.ndarray)) != set(arrays):
                keep_views = False
            new_arrays = {}
            for name, arr in arrays.items():
                cur = st.get(name)
                if (isinstance(cur, np.ndarray) and cur.shape == arr.shape
                        and cur.dtype == arr.dtype):
                    cur[...] = arr
                    new_arrays[name] = cur
                else:
                    new_arrays[name] = np.array(arr, copy=True, order="C")
                    keep_views = False
            st.clear()
            st[self._step_key] = step
            st.update(new_arrays)
            self.state[id(p)] = st
        if old_state:  # parameters without saved state start afresh, as in PyTorch
            keep_views = False
        if not keep_views:
            self.__dict__.pop("_flat_cache", None)

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


def _check_betas(betas):
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair, got {betas!r}")
    for i, b in enumerate(betas):
        check_float(b, f"betas[{i}]", minimum=0.0, maximum=1.0, max_inclusive=False)


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``: momentum, dampening, Nesterov, L2 weight
    decay. The momentum buffer exists only with momentum > 0."""

    _nonnegative = ("momentum", "dampening", "weight_decay")
    _state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _check_group(self, group):
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _state_names(self, group):
        return self._state_arrays if group["momentum"] != 0 else ()

    def _update(self, g, data, grad, state, counters):
        first = counters[0]["step"] == 0
        self._next_step(counters)
        buf = state.get("momentum_buffer", data[:0])
        _ko.sgd_step(data, grad, buf, g["lr"], g["momentum"], g["dampening"], g["weight_decay"],
                     g["nesterov"], first, threads_for(data.size))


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam`` (weight decay as L2 added to the gradient); ``amsgrad=True``
    normalises by the running maximum of the second moment."""

    _decoupled = False
    _nonnegative = ("eps", "weight_decay")
    _flags = ("amsgrad",)
    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)

    def _check_group(self, group):
        super()._check_group(group)
        _check_betas(group["betas"])

    def _state_names(self, group):
        return self._state_arrays if group["amsgrad"] else self._state_arrays[:2]

    def _update(self, g, data, grad, state, counters):
        step = self._next_step(counters)
        b1, b2 = g["betas"]
        _ko.adam_step(data, grad, state["exp_avg"], state["exp_avg_sq"], g["lr"], b1, b2, g["eps"],
                      g["weight_decay"], step, self._decoupled, threads_for(data.size),
                      state.get("max_exp_avg_sq"))


class AdamW(Adam):
    """AdamW, ``torch.optim.AdamW``: decoupled weight decay (default 0.01)."""

    _decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop, ``torch.optim.RMSprop``: ``square_avg`` is a running mean of g^2 (decay ``alpha``);
    ``centered`` subtracts the squared running mean of g; optional momentum and L2 weight decay."""

    _nonnegative = ("eps", "weight_decay", "momentum")
    _flags = ("centered",)
    _state_arrays = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _check_group(self, group):
        super()._check_group(group)
        check_float(group["alpha"], "alpha", minimum=0.0, maximum=1.0, max_inclusive=False)

    def _state_names(self, group):
        names = ("square_avg",)
        if group["momentum"] > 0:
            names += ("momentum_buffer",)
        if group["centered"]:
            names += ("grad_avg",)
        return names

    def _update(self, g, data, grad, state, counters):
        self._next_step(counters)
        empty = data[:0]
        _ko.rmsprop_step(data, grad, state["square_avg"], state.get("grad_avg", empty),
                         state.get("momentum_buffer", empty), g["lr"], g["alpha"], g["eps"],
                         g["weight_decay"], g["momentum"], g["centered"], threads_for(data.size))


class Adagrad(Optimizer):
    """Adagrad, ``torch.optim.Adagrad``: per-element rates ``lr / (sqrt(sum of g^2) + eps)``, the
    base rate decayed as ``lr / (1 + (step - 1) * lr_decay)``; the sum starts at
    ``initial_accumulator_value``."""

    _nonnegative = ("lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    _state_arrays = ("sum",)

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _new_array(self, name, p, group):
        return np.full_like(p.data, group["initial_accumulator_value"])

    def _update(self, g, data, grad, state, counters):
        step = self._next_step(counters)
        clr = g["lr"] / (1 + (step - 1) * g["lr_decay"])
        _ko.adagrad_step(data, grad, state["sum"], clr, g["weight_decay"], g["eps"],
                         threads_for(data.size))


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of ``parameters`` in place so that their joint norm is at most
    ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``: every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``. Returns the total norm (before clipping) as a
    float.

    ``norm_type``: any p > 0, or ``inf`` (largest absolute value). The norm is reduced in double,
    in a fixed order, so it is the same for any thread count. ``error_if_nonfinite=True`` raises
    RuntimeError (before touching the gradients) when the norm is NaN or infinite; otherwise such a
    norm makes the gradients NaN/zero, as in PyTorch."""
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        check_instance(p, Parameter, "clip_grad_norm: parameters", "ranvier Parameters")
    max_norm = check_float(max_norm, "max_norm", minimum=0.0)
    if isinstance(norm_type, str):
        try:
            norm_type = float(norm_type)
        except ValueError:
            raise ValueError(f"norm_type must be a number > 0 or 'inf', "
                             f"got {norm_type!r}") from None
    if not is_real(norm_type):
        raise TypeError(f"norm_type must be a number, got {type(norm_type).__name__}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type}")
    check_bool(error_if_nonfinite, "error_if_nonfinite")
    if not params:
        return 0.0
    grads = [p.grad for p in params]
    flat = _flat_span(grads)
    if flat is not None:
        arrays = [flat]
    else:
        arrays = [g.reshape(-1) if g.flags.c_contiguous else g for g in grads]
    is_inf = norm_type == float("inf")
    acc = 0.0
    for a in arrays:
        if a.flags.c_contiguous and a.ndim == 1 and a.dtype in (np.float32, np.float64):
            part = _ko.norm_accumulate(a, norm_type, threads_for(a.size))
        else:  # a non-contiguous gradient someone assigned: NumPy, same meaning
            a64 = np.abs(a.astype(np.float64).reshape(-1))
            part = (float(a64.max(initial=0.0)) if is_inf else float(np.sum(a64 ** norm_type)))
        if is_inf:
            if part > acc or part != part:
                acc = part
        else:
            acc += part
    if is_inf or norm_type == 1.0:
        total = acc
    elif norm_type == 2.0:
        total = float(np.sqrt(acc))
    else:
        total = acc ** (1.0 / norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` "
                           "is non-finite, so it cannot be clipped. To disable this error and "
                           "scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    coef = max_norm / (total + 1e-6)
    if coef > 1.0:  # a NaN coefficient stays NaN, as torch.clamp leaves it
        coef = 1.0
    if coef != 1.0:
        for a in arrays:
            if a.flags.c_contiguous and a.ndim == 1 and a.dtype in (np.float32, np.float64):
                _ko.scale_inplace(a, coef, threads_for(a.size))
            else:
                a *= a.dtype.type(coef)
    return total


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


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
