"""Callbacks for ``Sequential.fit``, with Keras' names and behaviour: ``EarlyStopping``,
``ModelCheckpoint``, ``TerminateOnNaN``; write your own by subclassing ``Callback``.

``fit`` calls ``on_train_begin``, then per epoch ``on_epoch_begin(epoch)``, ``on_batch_end(batch,
logs)`` after every step (logs: "loss"), ``on_epoch_end(epoch, logs)`` (logs: "loss", "accuracy",
"val_loss", "val_accuracy" as available), and ``on_train_end``. A callback stops training by
setting ``self.model.stop_training = True``.
"""
import math
import os

import numpy as np

from ._validation import check_float, check_positive_int

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "LearningRateScheduler"]


class Callback:
    model = None
    # In a distributed fit, callbacks run on every rank (they see the global metrics, so they
    # decide the same), except those that write files or print results, which set this True and
    # run on rank 0 only.
    main_process_only = False

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("score")) else "min"
    return mode


class _Monitor(Callback):
    """Shared bookkeeping: the best value of a monitored metric and whether a value improves it."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a metric name such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta = abs(check_float(min_delta, "min_delta"))
        self.best = math.inf if self.mode == "min" else -math.inf

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs or {})) or "none"
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which fit did not "
                             f"produce (available: {available}); pass validation_data or "
                             "validation_split for 'val_' metrics")
        return float(value)

    def _improves(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs;
    with ``restore_best_weights`` the model ends with the weights of its best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, baseline=None, verbose=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else check_float(baseline, "baseline")
        self.verbose = verbose
        self.stopped_epoch = None
        self.best_epoch = None
        self._best_weights = None
        self._wait = 0

    def on_train_begin(self, logs=None):
        self._wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self._best_weights = None
        self.best = math.inf if self.mode == "min" else -math.inf
        if self.baseline is not None:
            self.best = self.baseline

    def on_epoch_end(self, epoch, logs=None):
        value = self._current(logs)
        if self._improves(value):
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = self.model.state_dict()
            return
        self._wait += 1
        if self._wait >= self.patience:  # Keras: stop after `patience` epochs without progress
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {self.best_epoch + 1}")


class ModelCheckpoint(_Monitor):
    """Save the model after every epoch, or only when ``monitor`` improves
    (``save_best_only``). ``filepath`` may use ``{epoch}`` and the logs' names, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.safetensors"``. Files are safetensors, written atomically;
    with ``include_optimizer`` (default) they resume training: ``ranvier.load(path)``."""

    main_process_only = True  # in a distributed fit, rank 0 writes the file

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 include_optimizer=True, verbose=0):
        super().__init__(monitor, mode)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or os.PathLike, got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self.include_optimizer = bool(include_optimizer)
        self.verbose = verbose
        self.saved = []

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(os.path.abspath(self.filepath))
        if not os.path.isdir(folder):
            raise ValueError(f"ModelCheckpoint: folder {folder!r} does not exist")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._current(logs)
            if not self._improves(value):
                return
            self.best = value
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot format {self.filepath!r} with epoch and "
                             f"{sorted(logs)}: {exc}") from None
        self.model.save(path, include_optimizer=self.include_optimizer, epoch=epoch + 1)
        self.saved.append(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


class TerminateOnNaN(Callback):
    """Stop training quietly (instead of raising) when the loss becomes NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch + 1}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Step a learning-rate schedule (``ranvier.StepLR``, ``CosineAnnealingLR``, ...) at the end
    of every epoch of ``fit``; ``ReduceLROnPlateau`` is given the epoch's ``monitor`` value."""

    def __init__(self, scheduler, monitor="val_loss"):
        from .schedulers import LRScheduler, ReduceLROnPlateau

        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(f"scheduler must be a ranvier LR scheduler, got "
                            f"{type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = monitor
        self._plateau = isinstance(scheduler, ReduceLROnPlateau)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self._plateau:
            value = logs.get(self.monitor)
            if value is None:
                raise ValueError(f"LearningRateScheduler: ReduceLROnPlateau monitors "
                                 f"{self.monitor!r}, which fit did not produce "
                                 f"(available: {', '.join(sorted(logs)) or 'none'})")
            self.scheduler.step(value)
        else:
            self.scheduler.step()
