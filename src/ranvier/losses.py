"""Loss functions. ``loss(pred, target)`` returns the loss as a float and keeps the gradient with
respect to ``pred``, which ``loss.backward()`` returns (one fused native pass computes both)."""
import numpy as np

from ._config import threads_for
from ._kernels import losses as _kl
from ._validation import check_labels

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "get_loss"]

_REDUCTIONS = ("mean", "sum")


def _pred_matrix(pred, name="pred"):
    pred = np.asarray(pred)
    if pred.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {pred.dtype}")
    if pred.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, outputs), got shape {pred.shape}")
    if pred.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return np.ascontiguousarray(pred)


class Loss:
    """Base class: ``forward(pred, target) -> float`` then ``backward() -> d loss / d pred``."""

    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._grad = None
        self._ws = {}

    def _buffers(self, pred):
        """Gradient and per-row buffers for this batch shape, reused across training steps."""
        key = (pred.shape, pred.dtype)
        ws = self._ws.get(key)
        if ws is None:
            if len(self._ws) > 4:
                self._ws.clear()
            n = pred.shape[0]
            ws = self._ws[key] = (np.empty_like(pred), np.empty(n), np.empty(n, np.int8))
        return ws

    def _train_forward(self, pred, target):
        """``fit``'s fast path: target already validated and converted by the model. Returns
        (loss, number of correctly classified rows or None). The gradient buffer is reused."""
        return self.forward(pred, target), None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def backward(self):
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class CrossEntropyLoss(Loss):
    """Softmax + cross-entropy on logits, as ``torch.nn.CrossEntropyLoss``.

    ``pred``: logits of shape (batch, n_classes) (not probabilities: the softmax is part of the loss
    and is computed stably, max subtracted). ``target``: integer class labels of shape (batch,), or
    class probabilities / one-hot rows of shape (batch, n_classes).
    """

    def forward(self, pred, target):
        logits = _pred_matrix(pred)
        n, c = logits.shape
        scale = 1.0 / n if self.reduction == "mean" else 1.0
        grad = np.empty_like(logits)
        row_loss = np.empty(n)
        target_arr = np.asarray(target)
        if target_arr.ndim == 2 and target_arr.shape[1] == c and c > 1:
            if target_arr.dtype.kind not in "biuf":
                raise TypeError(f"target must be numeric, got dtype {target_arr.dtype}")
            t = np.ascontiguousarray(target_arr, dtype=logits.dtype)
            if t.shape[0] != n:
                raise ValueError(f"target has {t.shape[0]} rows but pred has {n}")
            total = _kl.softmax_cross_entropy_probs(logits, t, grad, row_loss, scale,
                                                    threads_for(logits.size))
        else:
            labels = check_labels(target_arr, "target", n_samples=n, n_classes=c)
            total = _kl.softmax_cross_entropy_labels(logits, labels, grad, row_loss, scale,
                                                     threads_for(logits.size))
        self._grad = grad
        return total * scale

    def _train_forward(self, pred, target):
        grad, row_loss, row_hit = self._buffers(pred)
        n = pred.shape[0]
        scale = 1.0 / n if self.reduction == "mean" else 1.0
        nt = threads_for(pred.size)
        if target.ndim == 1:
            total, hits = _kl.softmax_cross_entropy_labels(pred, target, grad, row_loss, scale, nt,
                                                           row_hit)
        else:
            total = _kl.softmax_cross_entropy_probs(pred, target, grad, row_loss, scale, nt)
            hits = int(np.count_nonzero(pred.argmax(axis=1) == target.argmax(axis=1)))
        self._grad = grad
        return total * scale, hits


class MSELoss(Loss):
    """Mean squared error, as ``torch.nn.MSELoss``: mean over every element (or the sum).

    A 1-D target is taken as one value per sample when ``pred`` has a single column."""

    def forward(self, pred, target):
        pred = _pred_matrix(pred)
        t = np.asarray(target)
        if t.dtype.kind not in "biuf":
            raise TypeError(f"target must be numeric, got dtype {t.dtype}")
        if t.ndim == 1 and pred.shape[1] == 1:
            t = t.reshape(-1, 1)
        if t.shape != pred.shape:
            raise ValueError(f"target shape {t.shape} does not match pred shape {pred.shape}")
        t = np.ascontiguousarray(t, dtype=pred.dtype)
        scale = 1.0 / pred.size if self.reduction == "mean" else 1.0
        grad = np.empty_like(pred)
        total = _kl.mse(pred.reshape(-1), t.reshape(-1), grad.reshape(-1),
                        threads_for(pred.size), scale)
        self._grad = grad
        return total * scale

    def _train_forward(self, pred, target):
        grad = self._buffers(pred)[0]
        scale = 1.0 / pred.size if self.reduction == "mean" else 1.0
        total = _kl.mse(pred.reshape(-1), target.reshape(-1), grad.reshape(-1),
                        threads_for(pred.size), scale)
        self._grad = grad
        return total * scale, None


_BY_NAME = {
    "cross_entropy": CrossEntropyLoss,
    "crossentropy": CrossEntropyLoss,
    "categorical_crossentropy": CrossEntropyLoss,
    "sparse_categorical_crossentropy": CrossEntropyLoss,
    "mse": MSELoss,
    "mean_squared_error": MSELoss,
}


def get_loss(loss):
    """A Loss instance from an instance, a Loss class or a name ('cross_entropy', 'mse')."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss.lower() in _BY_NAME:
        return _BY_NAME[loss.lower()]()
    raise ValueError(f"loss must be a Loss or one of {sorted(_BY_NAME)}, got {loss!r}")
