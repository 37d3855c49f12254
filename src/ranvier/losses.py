"""Loss functions. ``loss(pred, target)`` returns the loss as a float and keeps the gradient with
respect to ``pred``, which ``loss.backward()`` returns (one fused native pass computes both)."""
import numpy as np

from ._config import threads_for
from ._kernels import losses as _kl
from ._validation import check_choice, check_float, check_labels

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "BCELoss", "HuberLoss",
           "L1Loss", "get_loss"]

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


def _target_like(target, pred, name="target"):
    """``target`` as a C-contiguous array of pred's dtype and shape; a 1-D target is taken as
    one value per sample when ``pred`` has a single column."""
    if isinstance(target, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(target).__name__}")
    t = np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {t.dtype}")
    if t.ndim == 1 and pred.shape[1] == 1:
        t = t.reshape(-1, 1)
    if t.shape != pred.shape:
        raise ValueError(f"{name} shape {t.shape} does not match pred shape {pred.shape}")
    return np.ascontiguousarray(t, dtype=pred.dtype)


def _check_unit_interval(arr, name):
    """ValueError naming ``name`` unless every element lies in [0, 1] (NaN fails: min and max
    return it). min/max make no array-sized boolean temporaries, unlike arr >= 0."""
    if arr.size and not (arr.min() >= 0 and arr.max() <= 1):
        bad = arr[~((arr >= 0) & (arr <= 1))]
        raise ValueError(f"{name} must hold values in [0, 1]; found {bad.size} outside "
                         f"(e.g. {bad.flat[0]!r})")


def _class_weights(weight, name):
    """A read-only float64 copy of a 1-D, finite, non-negative weight vector (None stays None)."""
    if weight is None:
        return None
    if isinstance(weight, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(weight).__name__}")
    w = np.asarray(weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {w.dtype}")
    w = np.array(w, dtype=np.float64, ndmin=1)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {np.shape(weight)}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative, got minimum {w.min()!r}")
    w.setflags(write=False)
    return w


class Loss:
    """Base class: ``forward(pred, target) -> float`` then ``backward() -> d loss / d pred``."""

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)
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

    ``weight``: one non-negative weight per class. ``label_smoothing`` in [0, 1]: the target mixes
    with the uniform distribution, ``(1 - eps) * target + eps / n_classes``. As torch: with integer
    labels each sample's loss is ``(1 - eps) * w[y] * -log p_y + eps / C * sum_c w_c * -log p_c``
    and the mean divides by ``sum_i w[y_i]`` (the batch size without weights); with probability
    targets the loss is ``-sum_c w_c * ((1 - eps) t_c + eps / C) * log p_c`` and the mean divides
    by the batch size.
    """

    def __init__(self, weight=None, *, reduction="mean", label_smoothing=0.0):
        # weight first and the rest keyword-only, as torch.nn.CrossEntropyLoss(weight, ...)
        super().__init__(reduction)
        self.label_smoothing = check_float(label_smoothing, "label_smoothing", 0.0, 1.0)
        self.weight = _class_weights(weight, "weight")

    def _plain(self):
        return self.weight is None and self.label_smoothing == 0.0

    def _check_weight(self, c):
        if self.weight is not None and self.weight.size != c:
            raise ValueError(f"weight has {self.weight.size} entries but pred has {c} classes")

    def _label_scale(self, labels, n):
        if self.reduction == "sum":
            return 1.0
        if self.weight is None:
            return 1.0 / n
        wsum = float(self.weight[labels].sum())
        return 1.0 / wsum if wsum > 0 else float("nan")   # torch: 0 / 0 -> nan

    def _probs_total(self, logits, probs, grad, row_loss, nt):
        """(summed loss, scale) for soft targets (one probability row per sample), filling grad."""
        scale = 1.0 / logits.shape[0] if self.reduction == "mean" else 1.0
        if self._plain():
            total = _kl.softmax_cross_entropy_probs(logits, probs, grad, row_loss, scale, nt)
        else:
            total = _kl.softmax_cross_entropy_probs_weighted(
                logits, probs, grad, row_loss, scale, self.weight, self.label_smoothing, nt)
        return total, scale

    def forward(self, pred, target):
        logits = _pred_matrix(pred)
        n, c = logits.shape
        self._check_weight(c)
        grad = np.empty_like(logits)
        row_loss = np.empty(n)
        nt = threads_for(logits.size)
        target_arr = np.asarray(target)
        if target_arr.ndim == 2 and target_arr.shape[1] == c and c > 1:
            if target_arr.dtype.kind not in "biuf":
                raise TypeError(f"target must be numeric, got dtype {target_arr.dtype}")
            t = np.ascontiguousarray(target_arr, dtype=logits.dtype)
            if t.shape[0] != n:
                raise ValueError(f"target has {t.shape[0]} rows but pred has {n}")
            total, scale = self._probs_total(logits, t, grad, row_loss, nt)
        else:
            labels = check_labels(target_arr, "target", n_samples=n, n_classes=c)
            scale = self._label_scale(labels, n)
            if self._plain():
                total = _kl.softmax_cross_entropy_labels(logits, labels, grad, row_loss, scale, nt)
            else:
                total = _kl.softmax_cross_entropy_labels_weighted(
                    logits, labels, grad, row_loss, scale, self.weight, self.label_smoothing, nt)
        self._grad = grad
        return total * scale

    def _train_forward(self, pred, target):
        grad, row_loss, row_hit = self._buffers(pred)
        n = pred.shape[0]
        nt = threads_for(pred.size)
        if target.ndim == 1:
            scale = self._label_scale(target, n)
            if self._plain():
                total, hits = _kl.softmax_cross_entropy_labels(pred, target, grad, row_loss, scale,
                                                               nt, row_hit)
            else:
                total, hits = _kl.softmax_cross_entropy_labels_weighted(
                    pred, target, grad, row_loss, scale, self.weight, self.label_smoothing, nt,
                    row_hit)
        else:
            total, scale = self._probs_total(pred, target, grad, row_loss, nt)
            hits = int(np.count_nonzero(pred.argmax(axis=1) == target.argmax(axis=1)))
        self._grad = grad
        return total * scale, hits

    def __repr__(self):
        extra = ""
        if self.label_smoothing:
            extra += f", label_smoothing={self.label_smoothing!r}"
        if self.weight is not None:
            extra += f", weight={self.weight.tolist()!r}"
        return f"{type(self).__name__}(reduction={self.reduction!r}{extra})"


class MSELoss(Loss):
    """Mean squared error, as ``torch.nn.MSELoss``: mean over every element (or the sum).

    A 1-D target is taken as one value per sample when ``pred`` has a single column."""

    def forward(self, pred, target):
        pred = _pred_matrix(pred)
        t = _target_like(target, pred)
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


class _ElementwiseLoss(Loss):
    """Losses on (batch, outputs) predictions with a same-shape target (a 1-D target for a single
    output column); the mean is over every element, as torch."""

    def _scale(self, pred):
        return 1.0 / pred.size if self.reduction == "mean" else 1.0

    def _check(self, pred, target):
        """Validated (pred, target): subclasses add range checks."""
        pred = _pred_matrix(pred)
        return pred, _target_like(target, pred)

    def forward(self, pred, target):
        pred, t = self._check(pred, target)
        grad = np.empty_like(pred)
        total = self._run(pred, t, grad)[0]
        self._grad = grad
        return total * self._scale(pred)

    def _train_forward(self, pred, target):
        grad = self._buffers(pred)[0]
        total, hits = self._run(pred, target, grad)
        self._grad = grad
        return total * self._scale(pred), hits

    def _run(self, pred, target, grad):
        """(summed loss, hits or None) from the kernel, filling grad."""
        raise NotImplementedError


class _BinaryLoss(_ElementwiseLoss):
    """Binary cross-entropies: targets in [0, 1]; ``fit`` reports accuracy (each output thresholded
    at probability 0.5 against target > 0.5) and ``predict`` returns 0/1 labels."""

    _threshold = 0.5

    def _check(self, pred, target):
        pred, t = super()._check(pred, target)
        _check_unit_interval(t, "target")
        return pred, t

    def _check_target(self, y, name="y"):
        """For the model: targets must be probabilities / 0-1 labels."""
        _check_unit_interval(y, name)

    def _decide(self, out):
        """Boolean decisions from the model's outputs (logits or probabilities)."""
        return out > self._threshold

    def _hits(self, element_hits, pred):
        # Per output column: element hits / columns, so fit's correct / n is the element accuracy.
        k = pred.shape[1]
        return element_hits if k == 1 else element_hits / k


class BCEWithLogitsLoss(_BinaryLoss):
    """Sigmoid + binary cross-entropy on logits, as ``torch.nn.BCEWithLogitsLoss``; stable for any
    logit: ``max(z, 0) - z t + log1p(exp(-|z|))``.

    ``pred``: logits (batch, outputs); ``target``: same shape (or (batch,) for one output), values
    in [0, 1]. ``pos_weight``: weight of the positive term, a scalar or one per output column
    (loss ``-[w t log s(z) + (1 - t) log(1 - s(z))]``).
    """

    _threshold = 0.0  # sigmoid(z) > 0.5

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.pos_weight = _class_weights(pos_weight, "pos_weight")
        self._pw_cache = (None, None)

    def _pos_weight_for(self, k):
        if self.pos_weight is None:
            return None
        if self._pw_cache[0] == k:
            return self._pw_cache[1]
        if self.pos_weight.size == 1:
            pw = np.full(k, self.pos_weight[0])
        elif self.pos_weight.size == k:
            pw = self.pos_weight
        else:
            raise ValueError(f"pos_weight has {self.pos_weight.size} entries but pred has {k} "
                             "columns (give one per column, or a scalar)")
        self._pw_cache = (k, pw)
        return pw

    def _check(self, pred, target):
        pred, t = super()._check(pred, target)
        self._pos_weight_for(pred.shape[1])
        return pred, t

    def _run(self, pred, target, grad):
        total, hits = _kl.bce_with_logits(pred.reshape(-1), target.reshape(-1), grad.reshape(-1),
                                          self._pos_weight_for(pred.shape[1]),
                                          threads_for(pred.size), self._scale(pred))
        return total, self._hits(hits, pred)

    def __repr__(self):
        extra = "" if self.pos_weight is None else f", pos_weight={self.pos_weight.tolist()!r}"
        return f"{type(self).__name__}(reduction={self.reduction!r}{extra})"


class BCELoss(_BinaryLoss):
    """Binary cross-entropy on probabilities, as ``torch.nn.BCELoss``: ``pred`` in [0, 1] (e.g.
    after a Sigmoid layer), each log clamped at -100 so that p = 0 or 1 gives a finite loss. Prefer
    ``BCEWithLogitsLoss`` on logits, which is stable."""

    def _check(self, pred, target):
        pred, t = super()._check(pred, target)
        _check_unit_interval(pred, "pred")
        return pred, t

    def _run(self, pred, target, grad):
        total, hits = _kl.bce(pred.reshape(-1), target.reshape(-1), grad.reshape(-1),
                              threads_for(pred.size), self._scale(pred))
        if not np.isfinite(total):  # fit's unchecked path: say why rather than "diverged"
            _check_unit_interval(pred, "pred")
        return total, self._hits(hits, pred)


class HuberLoss(_ElementwiseLoss):
    """Huber loss, as ``torch.nn.HuberLoss``: ``0.5 d^2`` where ``|d| < delta``, else
    ``delta (|d| - delta / 2)``, with d = pred - target."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = check_float(delta, "delta", 0.0, min_inclusive=False)

    def _run(self, pred, target, grad):
        return _kl.huber(pred.reshape(-1), target.reshape(-1), grad.reshape(-1), self.delta,
                         threads_for(pred.size), self._scale(pred)), None

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r}, delta={self.delta!r})"


class L1Loss(_ElementwiseLoss):
    """Mean absolute error, as ``torch.nn.L1Loss``; the gradient is sign(pred - target), 0 where
    they are equal."""

    def _run(self, pred, target, grad):
        return _kl.l1(pred.reshape(-1), target.reshape(-1), grad.reshape(-1),
                      threads_for(pred.size), self._scale(pred)), None


_BY_NAME = {
    "cross_entropy": CrossEntropyLoss,
    "crossentropy": CrossEntropyLoss,
    "categorical_crossentropy": CrossEntropyLoss,
    "sparse_categorical_crossentropy": CrossEntropyLoss,
    "mse": MSELoss,
    "mean_squared_error": MSELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "binary_crossentropy_with_logits": BCEWithLogitsLoss,
    "bce": BCELoss,
    "binary_crossentropy": BCELoss,
    "huber": HuberLoss,
    "l1": L1Loss,
    "mae": L1Loss,
    "mean_absolute_error": L1Loss,
}


def get_loss(loss):
    """A Loss instance from an instance, a Loss class or a name ('cross_entropy', 'mse',
    'bce_with_logits', 'bce', 'huber', 'l1', ...)."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss.lower() in _BY_NAME:
        return _BY_NAME[loss.lower()]()
    raise ValueError(f"loss must be a Loss or one of {sorted(_BY_NAME)}, got {loss!r}")
