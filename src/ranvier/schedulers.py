"""Learning-rate schedules, ``torch.optim.lr_scheduler``'s: the same values for the same settings.

    opt = ranvier.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = ranvier.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        ...                     # optimizer steps
        sched.step()            # ReduceLROnPlateau: sched.step(val_loss)

Each schedule sets ``group["lr"]`` of every parameter group of its optimizer. Like PyTorch's
current versions they update the rate *recursively* from the group's present lr (so changes made
from outside, or by another schedule, compose); CosineAnnealingLR's values therefore differ from the
closed form in the last bits, exactly as PyTorch's do. ``base_lrs`` come from
``group["initial_lr"]`` (set from ``lr`` when the first schedule is attached).
"""
import math
from bisect import bisect_right

from ._validation import check_choice, check_float, check_instance, check_int, check_keys
from .optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "SequentialLR", "ReduceLROnPlateau"]


def _check_optimizer(optimizer):
    return check_instance(optimizer, Optimizer, "optimizer", "a ranvier Optimizer")


class LRScheduler:
    """Base class. Subclasses implement ``get_lr()`` (the next rates, from the groups' present
    ``lr``) and may implement ``_get_closed_form_lr()`` (the rates at ``last_epoch`` from
    ``base_lrs``; SequentialLR uses it when it switches schedules).

    ``last_epoch`` counts ``step()`` calls (0 after construction). Passing ``last_epoch >= 0``
    resumes a schedule: the groups must then hold ``initial_lr``."""

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        last_epoch = check_int(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(f"last_epoch={last_epoch} resumes a schedule, but "
                                     f"optimizer.param_groups[{i}] has no 'initial_lr' (load the "
                                     "optimizer's state first, or use last_epoch=-1)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_last_lr(self):
        """The learning rates (one per parameter group) set by the last ``step()``."""
        return list(self._last_lr)

    def step(self):
        """Advance the schedule by one epoch (or one iteration: whatever unit you step it in)."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    # -- checkpoints ----------------------------------------------------------------------------
    _not_saved = ("optimizer", "_is_initial")

    def state_dict(self):
        """Everything but the optimizer (lists copied), as PyTorch's schedulers do."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k not in self._not_saved}

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()`` of a schedule of the same type."""
        check_instance(state_dict, dict, "state_dict", "a dict")
        check_keys(state_dict, self.state_dict(), "state_dict", type(self).__name__)
        for key in ("base_lrs", "_last_lr", "min_lrs"):
            value = state_dict.get(key)
            if isinstance(value, (list, tuple)) and len(value) != len(self.optimizer.param_groups):
                raise ValueError(f"state_dict[{key!r}] has {len(value)} entries, the optimizer has "
                                 f"{len(self.optimizer.param_groups)} parameter groups")
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_optimizer(optimizer)
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_float(gamma, "gamma", minimum=0.0, min_inclusive=False)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the rate by ``gamma`` every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        _check_optimizer(optimizer)
        self.gamma = check_float(gamma, "gamma", minimum=0.0, min_inclusive=False)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from each group's base rate down to ``eta_min`` over ``T_max`` epochs
    (and back up over the next ``T_max``, as PyTorch's does when stepped past ``T_max``):
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``, computed recursively."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _check_optimizer(optimizer)
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = check_float(eta_min, "eta_min", minimum=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (base_lr - self.eta_min)
                    * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [group["lr"]
                    + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (group["lr"] - self.eta_min) + self.eta_min
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the rate by a factor going linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs, then keep it (a linear warm-up with the defaults)."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        _check_optimizer(optimizer)
        self.start_factor = check_float(start_factor, "start_factor", minimum=0.0,
                                        maximum=1.0, min_inclusive=False)
        self.end_factor = check_float(end_factor, "end_factor", minimum=0.0, maximum=1.0)
        self.total_iters = check_int(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        return [group["lr"] * (1.0 + change / (self.total_iters * self.start_factor
                                               + (self.last_epoch - 1) * change))
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * (self.start_factor + (self.end_factor - self.start_factor)
                           * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base_lr in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the epochs in ``milestones`` (one fewer
    than the schedulers), e.g. a warm-up then a decay::

        warm = LinearLR(opt, start_factor=0.1, total_iters=5)
        decay = CosineAnnealingLR(opt, T_max=95)
        sched = SequentialLR(opt, [warm, decay], milestones=[5])
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_optimizer(optimizer)
        schedulers = list(schedulers)
        milestones = list(milestones)
        if not schedulers:
            raise ValueError("schedulers must hold at least one schedule")
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"schedulers[{i}] is a ReduceLROnPlateau, which SequentialLR "
                                 "cannot step (it needs a metric)")
            check_instance(s, LRScheduler, f"schedulers[{i}]", "an LRScheduler")
            if s.optimizer is not optimizer:
                raise ValueError(f"schedulers[{i}] belongs to another optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"milestones must have one entry fewer than schedulers: got "
                             f"{len(milestones)} milestones for {len(schedulers)} schedulers")
        for i, m in enumerate(milestones):
            check_int(m, f"milestones[{i}]", 1)
            if i and m <= milestones[i - 1]:
                raise ValueError(f"milestones must be increasing, got {milestones}")
        self._schedulers = schedulers
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = check_int(last_epoch, "last_epoch", -1) + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # undo what the schedules did when built
            group["lr"] = group["initial_lr"]
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        for s in schedulers:
            s.last_epoch -= 1
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    _not_saved = LRScheduler._not_saved + ("_schedulers",)

    def state_dict(self):
        sd = super().state_dict()
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict):
        check_instance(state_dict, dict, "state_dict", "a dict")
        if "_schedulers" not in state_dict:
            raise ValueError("state_dict lacks ['_schedulers'] for SequentialLR")
        subs = state_dict["_schedulers"]
        if not isinstance(subs, (list, tuple)) or len(subs) != len(self._schedulers):
            raise ValueError(f"state_dict['_schedulers'] must hold {len(self._schedulers)} states")
        rest = {k: v for k, v in state_dict.items() if k != "_schedulers"}
        check_keys(rest, super().state_dict(), "state_dict", "SequentialLR")
        # load each sub-state; on a bad one, put back the ones already loaded
        saved = [s.state_dict() for s in self._schedulers]
        try:
            for s, sub in zip(self._schedulers, subs):
                s.load_state_dict(sub)
        except (TypeError, ValueError):
            for s, old in zip(self._schedulers, saved):
                s.__dict__.update(old)
            raise
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in rest.items()})


_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rate by ``factor`` when a metric has not improved for ``patience`` epochs:
    ``step(metric)`` once per epoch. ``mode`` "min" (a loss) or "max" (an accuracy); an
    improvement must beat the best by ``threshold`` (relative or absolute); after a reduction,
    ``cooldown`` epochs pass before bad epochs count again; rates never go below ``min_lr`` (one
    value, or one per group), and changes smaller than ``eps`` are skipped."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.optimizer = _check_optimizer(optimizer)
        check_choice(mode, "mode", _MODES)
        check_choice(threshold_mode, "threshold_mode", _THRESHOLD_MODES)
        self.factor = check_float(factor, "factor", minimum=0.0, maximum=1.0, max_inclusive=False)
        self.patience = check_int(patience, "patience", 0)
        self.threshold = check_float(threshold, "threshold", minimum=0.0)
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.eps = check_float(eps, "eps", minimum=0.0)
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"min_lr has {len(min_lr)} values, the optimizer has {n} "
                                 "parameter groups")
            self.default_min_lr = None
            self.min_lrs = [check_float(v, f"min_lr[{i}]", minimum=0.0)
                            for i, v in enumerate(min_lr)]
        else:
            self.default_min_lr = check_float(min_lr, "min_lr", minimum=0.0)
            self.min_lrs = [self.default_min_lr] * n
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics):
        """Record this epoch's ``metrics`` (a number) and reduce the rates on a plateau."""
        if isinstance(metrics, (str, bytes)) or isinstance(metrics, bool):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}")
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}") from None
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs()

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"the optimizer has {len(groups)} parameter groups but min_lr "
                                   f"has {len(self.min_lrs)} values (a group was added); set "
                                   "min_lrs to match")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def load_state_dict(self, state_dict):
        if isinstance(state_dict, dict):
            check_choice(state_dict.get("mode", "min"), "state_dict['mode']", _MODES)
            check_choice(state_dict.get("threshold_mode", "rel"), "state_dict['threshold_mode']",
                         _THRESHOLD_MODES)
        super().load_state_dict(state_dict)
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
