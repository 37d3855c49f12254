"""Sequential model: layers in order, and the training loop (fit), evaluate and predict.

``fit`` runs the four steps of training per mini-batch: forward, loss, backward, optimizer step.
When the last layer is ``Softmax`` and the loss is ``CrossEntropyLoss``, training feeds the logits to
the fused softmax + cross-entropy kernel (stable, one pass) and the Softmax layer is used only for
prediction, as Keras users expect from a softmax output with a cross-entropy loss.
"""
import math
import time

import numpy as np

from . import _plan
from ._validation import (as_dtype, check_batch_match, check_features, check_float,
                          check_labels, check_positive_int, is_integer_labels)
from ._progress import EpochProgress
from .layers import Layer, Softmax
from .losses import CrossEntropyLoss, _BinaryLoss, get_loss
from .optim import Adam, get_optimizer

__all__ = ["Sequential", "History"]


class History:
    """What ``fit`` returns, as Keras: ``history.history["loss"]`` is the per-epoch mean training loss;
    ``"accuracy"`` is there for classifiers. ``history.epoch`` lists the epoch indices."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.epoch_time = []

    def _record(self, epoch, seconds, **metrics):
        self.epoch.append(epoch)
        self.epoch_time.append(seconds)
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def plot(self, path=None, title=None):
        """Draw loss and accuracy per epoch (training and validation) with matplotlib; saves a PNG
        to ``path`` when given. Returns the matplotlib Figure."""
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'ranvier[plot]')") from None
        if not self.epoch:
            raise ValueError("History.plot: nothing to plot, no epoch was recorded")
        panels = [("loss", "Loss")] + ([("accuracy", "Accuracy")]
                                      if "accuracy" in self.history else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, (key, label) in zip(axes[0], panels):
            ax.plot(epochs, self.history[key], "o-", label="training", color="tab:blue")
            if f"val_{key}" in self.history:
                ax.plot(epochs, self.history[f"val_{key}"], "s--", label="validation",
                        color="tab:orange")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label.lower())
            ax.set_title(label)
            ax.grid(True, alpha=0.3)
            ax.legend()
            if len(epochs) <= 20:
                ax.set_xticks(epochs)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Sequential:
    """A stack of layers applied in order.

    >>> model = Sequential([Dense(64, 128), ReLU(), Dense(128, 10)])
    >>> history = model.fit(X, y, loss=CrossEntropyLoss(), optimizer="adam", epochs=10)
    """

    def __init__(self, layers=(), *, dtype=None):
        self.layers = []
        self.loss = None
        self.optimizer = None
        self.training = True
        self.history = None
        self.epoch = 0              # epochs trained so far (restored from checkpoints)
        self.stop_training = False  # set by callbacks to end fit early
        self._plan = (None, None)  # (key, blocks): the training plan, kept across fit calls
        self._gather = {}          # reused mini-batch buffers, by shape and dtype
        for layer in layers:
            self.add(layer)
        if dtype is not None:
            self.astype(dtype)

    # -- structure -------------------------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes ranvier layers, got {type(layer).__name__}")
        self.layers.append(layer)
        return self

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def named_parameters(self):
        """(name, Parameter) pairs named as PyTorch names a Sequential's: ``0.weight``, ``0.bias``."""
        return [(f"{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.named_parameters()]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].data.dtype if params else np.dtype(np.float32)

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` (float32 or float64) in place; returns self."""
        dt = as_dtype(dtype)
        for layer in self.layers:
            layer.astype(dt)
        if self.optimizer is not None:
            self.optimizer._cast_state(dt)
        return self

    def _flatten_parameters(self):
        """Keep every parameter, and every gradient, back to back in one buffer (each Parameter's
        arrays become views into it), so an optimizer updates the whole model in one native pass.
        Done before training; a no-op when already flat."""
        params = self.parameters()
        if not params:
            return
        dt = params[0].data.dtype
        if any(p.data.dtype != dt for p in params):
            return  # mixed dtypes: _check_dtypes reports it
        from .optim import _flat_span

        if (_flat_span([p.data for p in params]) is not None
                and _flat_span([p.grad for p in params]) is not None):
            return
        total = sum(p.data.size for p in params)
        data, grad = np.empty(total, dt), np.zeros(total, dt)
        off = 0
        for p in params:
            size = p.data.size
            view = data[off:off + size].reshape(p.data.shape)
            view[...] = p.data
            p.data = view
            p.grad = grad[off:off + size].reshape(p.data.shape)
            off += size

    @property
    def n_features_in(self):
        for layer in self.layers:
            if hasattr(layer, "in_features"):
                return layer.in_features
        return None

    # -- state and files ----------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer under PyTorch's names (``0.weight`` as (out, in),
        ``0.bias``, ...): the same keys and shapes as a ``torch.nn.Sequential`` of the same layers."""
        from .io import model_state

        return {k: np.array(v, copy=True) for k, v in model_state(self).items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the model's parameters and buffers (cast to the model's dtype). Missing or
        unexpected keys (with ``strict``) and shape mismatches raise ValueError."""
        from .io import model_state

        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        own = model_state(self)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict does not match the model: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{key!r}] must be numeric, got dtype {value.dtype}")
            if value.shape != target.shape:
                raise ValueError(f"state_dict[{key!r}] has shape {value.shape}, the model expects "
                                 f"{target.shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"state_dict[{key!r}] contains NaN or infinity")
        for key, target in own.items():
            if key in state_dict:
                target[...] = np.asarray(state_dict[key])
        return self

    def save(self, path, include_optimizer=False, epoch=None, metadata=None):
        """Write the model to a .safetensors file (never pickle): weights under PyTorch's names,
        architecture and dtype in the metadata; with ``include_optimizer`` a resumable checkpoint
        (optimizer state, and ``epoch``); ``metadata``: a JSON-able dict kept in the file (read
        back as ``model.metadata``). The write is atomic. Rebuild with ``ranvier.load``."""
        from . import io

        io.save(self, path, optimizer=self.optimizer if include_optimizer else None, epoch=epoch,
                extra=metadata)

    def load_weights(self, path, strict=True):
        """Load weights from a safetensors file (ranvier's, or PyTorch's ``state_dict``)."""
        from . import io

        return io.load_weights(self, path, strict=strict)

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.training = self.training
        return self

    def eval(self):
        return self.train(False)

    # -- forward / backward ----------------------------------------------------------------------
    def _check_dtypes(self):
        dts = {p.data.dtype for p in self.parameters()}
        if len(dts) > 1:
            raise TypeError(f"the layers of this model mix dtypes {sorted(map(str, dts))}; "
                            "call model.astype(np.float32) (or float64) first")

    def forward(self, x, _layers=None):
        """Run the layers on a batch; returns the output (probabilities if the last layer is
        Softmax, otherwise the raw outputs)."""
        for layer in (self.layers if _layers is None else _layers):
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_output, need_input_grad=True):
        """Backpropagate ``grad_output`` (d loss / d output) through every layer, filling each
        parameter's ``.grad``; returns d loss / d input (None with ``need_input_grad=False``,
        which skips that product)."""
        g = grad_output
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_input_grad=need_input_grad or i > 0)
        return g

    # -- training configuration ------------------------------------------------------------------
    def compile(self, loss=None, optimizer=None):
        """Set the loss and optimizer once (Keras style): instances or names
        ('cross_entropy', 'mse'; 'sgd', 'adam', 'adamw')."""
        if loss is not None:
            self.loss = get_loss(loss)
        if optimizer is not None:
            self.optimizer = get_optimizer(optimizer, self.parameters())
        return self

    def _is_classifier(self, loss=None):
        loss = loss if loss is not None else self.loss
        last_softmax = bool(self.layers) and isinstance(self.layers[-1], Softmax)
        return isinstance(loss, (CrossEntropyLoss, _BinaryLoss)) or (loss is None and last_softmax)

    def _training_layers(self, loss):
        """Layers to run while training: all but a final Softmax when the loss is fused with it."""
        if isinstance(loss, CrossEntropyLoss) and self.layers and isinstance(self.layers[-1],
                                                                               Softmax):
            return self.layers[:-1]
        return self.layers

    def _prepare_xy(self, X, y, loss, names=("X", "y")):
        x_name, y_name = names
        self._check_dtypes()
        if not self.layers:
            raise ValueError("the model has no layers")
        X = check_features(X, x_name, self.dtype, self.n_features_in,
                           allow_nd=self._starts_with_flatten())
        n_out = self._n_outputs()
        if isinstance(loss, CrossEntropyLoss):
            y_arr = np.asarray(y)
            if y_arr.ndim == 2 and n_out is not None and y_arr.shape[1] == n_out and n_out > 1:
                y = check_features(y_arr, y_name, self.dtype, n_out)  # one-hot / probabilities
            else:
                y = check_labels(y_arr, y_name, n_samples=None, n_classes=n_out)
        else:
            y_arr = np.asarray(y)
            if y_arr.ndim == 1:
                y_arr = y_arr.reshape(-1, 1)
            y = check_features(y_arr, y_name, self.dtype, n_out)
            if isinstance(loss, _BinaryLoss):
                loss._check_target(y, y_name)  # BCE targets must lie in [0, 1]
        check_batch_match(X.shape[0], y.shape[0], x_name, y_name)
        return X, y

    def _n_outputs(self):
        for layer in reversed(self.layers):
            if hasattr(layer, "out_features"):
                return layer.out_features
        return None

    def _resolve_loss(self, loss, y):
        if loss is not None:
            return get_loss(loss)
        if self.loss is not None:
            return self.loss
        if is_integer_labels(y) or (self.layers and isinstance(self.layers[-1], Softmax)):
            return CrossEntropyLoss()
        return get_loss("mse")

    # -- fit / evaluate / predict ----------------------------------------------------------------
    def fit(self, X, y, *, loss=None, optimizer=None, epochs=10, batch_size=32, shuffle=True,
            seed=None, verbose=1, validation_data=None, validation_split=0.0, callbacks=None,
            initial_epoch=0):
        """Train on (X, y) for ``epochs`` passes over the data in shuffled mini-batches.

        loss: a Loss or name; defaults to the compiled one, else cross-entropy for integer labels
            (MSE otherwise). optimizer: an Optimizer or name; defaults to the compiled one, else
            Adam(lr=1e-3). validation_data=(X_val, y_val), or validation_split: the last fraction of
            (X, y), held out before shuffling (Keras' rule); adds "val_loss" (and
            "val_accuracy"). callbacks: EarlyStopping, ModelCheckpoint, TerminateOnNaN, ... .
            verbose: 0 silent, 1 progress bar, 2 one line per epoch. initial_epoch: resume numbering.
        Returns a History with the mean loss (and accuracy) per epoch. A NaN or infinite loss
        raises FloatingPointError naming the epoch and batch (TerminateOnNaN stops quietly instead).
        """
        from .callbacks import Callback, TerminateOnNaN

        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        initial_epoch = check_positive_int(initial_epoch, "initial_epoch", minimum=0)
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be ranvier Callbacks, got {type(cb).__name__}")
        loss_fn = self._resolve_loss(loss, y)
        if optimizer is not None:
            opt = get_optimizer(optimizer, self.parameters())
        elif self.optimizer is not None:
            opt = self.optimizer
        else:
            opt = Adam(self.parameters())
        X, y = self._prepare_xy(X, y, loss_fn)
        validation = self._validation_set(validation_data, validation_split, X, y, loss_fn)
        if validation_data is None and validation is not None:
            n_train = X.shape[0] - validation[0].shape[0]
            X, y = X[:n_train], y[:n_train]
        self.loss = loss_fn
        if optimizer is None and self.optimizer is None:
            self.optimizer = opt
        self._flatten_parameters()
        classifier = self._is_classifier(loss_fn)
        labels = (y if y.ndim == 1 else np.argmax(y, axis=1)) if classifier else None
        blocks = self._training_plan(loss_fn)
        rng = np.random.default_rng(seed)
        n = X.shape[0]
        steps = -(-n // batch_size)
        history = History()
        self.history = history
        self.stop_training = False
        stop_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in callbacks)
        batch_cbs = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        self.train()
        try:
            for epoch in range(initial_epoch, initial_epoch + epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                t0 = time.perf_counter()
                progress = EpochProgress(verbose, epoch, initial_epoch + epochs, steps)
                order = rng.permutation(n) if shuffle else np.arange(n)
                loss_sum, correct, seen = 0.0, 0, 0
                # The step loop runs thousands of times per second on small networks: locals,
                # bound methods and math.isfinite instead of NumPy scalar calls.
                full_bufs = self._batch_buffers(min(batch_size, n), X, y)
                for b, start in enumerate(range(0, n, batch_size)):
                    idx = order[start:start + batch_size]
                    m = len(idx)
                    xb, yb = full_bufs if m == batch_size else self._batch_buffers(m, X, y)
                    # mode="clip": indices come from a permutation; the default mode="raise"
                    # would gather into a hidden temporary (a batch-sized allocation per step).
                    X.take(idx, axis=0, out=xb, mode="clip")
                    y.take(idx, axis=0, out=yb, mode="clip")
                    out = _plan.run_forward(blocks, xb)
                    batch_loss, hits = loss_fn._train_forward(out, yb)
                    if not math.isfinite(batch_loss):
                        if not stop_on_nan:
                            raise FloatingPointError(
                                f"training diverged: the loss is {batch_loss} at epoch "
                                f"{epoch + 1}, batch {b + 1}; lower the learning rate or check "
                                "the data")
                        for cb in batch_cbs:
                            cb.on_batch_end(b, {"loss": batch_loss})
                        break
                    _plan.run_backward(blocks, loss_fn.backward())
                    opt.step()
                    loss_sum += batch_loss * m
                    seen += m
                    if classifier:
                        if hits is None:
                            hits = int(np.count_nonzero(out.argmax(axis=1) == labels[idx]))
                        correct += hits
                    progress.update(batch_loss)
                    for cb in batch_cbs:
                        cb.on_batch_end(b, {"loss": batch_loss})
                    if self.stop_training:
                        break
                if seen == 0:
                    progress.close(time.perf_counter() - t0, {})
                    break
                metrics = {"loss": loss_sum / seen}
                if classifier:
                    metrics["accuracy"] = correct / seen
                if validation is not None:
                    val = self._evaluate_checked(validation[0], validation[1], loss_fn)
                    metrics.update({f"val_{k}": v for k, v in val.items()})
                seconds = time.perf_counter() - t0
                history._record(epoch, seconds, **metrics)
                progress.close(seconds, metrics)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, dict(metrics))
                self.epoch = epoch + 1
                if self.stop_training:
                    break
        finally:
            self.eval()
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _validation_set(self, validation_data, validation_split, X, y, loss_fn):
        if validation_data is not None:
            if validation_split:
                raise ValueError("pass validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv, yv = self._prepare_xy(validation_data[0], validation_data[1], loss_fn,
                                      names=("validation_data[0]", "validation_data[1]"))
            return Xv, yv
        split = check_float(validation_split, "validation_split", minimum=0.0, maximum=1.0)
        if split == 0.0:
            return None
        n_val = int(X.shape[0] * split)
        if not 0 < n_val < X.shape[0]:
            raise ValueError(f"validation_split={split} leaves {n_val} of {X.shape[0]} samples for "
                             "validation; need at least one for each of training and validation")
        return X[-n_val:], y[-n_val:]

    def _training_plan(self, loss_fn):
        """Fused blocks for training (see _plan), rebuilt only when the layers or dtype change,
        so their buffers survive from one fit call to the next."""
        layers = self._training_layers(loss_fn)
        key = (tuple(map(id, layers)), self.dtype)
        if self._plan[0] != key:
            self._plan = (key, _plan.build_plan(layers))
        return self._plan[1]

    def _batch_buffers(self, m, X, y):
        """Buffers that mini-batches of size m are gathered into (np.take with out=)."""
        key = (m, X.shape[1:], X.dtype, y.shape[1:], y.dtype)
        bufs = self._gather.get(key)
        if bufs is None:
            if len(self._gather) > 4:
                self._gather.clear()
            bufs = self._gather[key] = (np.empty((m,) + X.shape[1:], X.dtype),
                                        np.empty((m,) + y.shape[1:], y.dtype))
        return bufs

    def _forward_batches(self, X, batch_size, layers):
        batch_size = check_positive_int(batch_size, "batch_size")
        n = X.shape[0]
        if batch_size >= n:
            return self.forward(X, layers)
        outs = [self.forward(X[s:s + batch_size], layers) for s in range(0, n, batch_size)]
        return np.concatenate(outs, axis=0)

    def _check_X(self, X):
        self._check_dtypes()
        if not self.layers:
            raise ValueError("the model has no layers")
        return check_features(X, "X", self.dtype, self.n_features_in,
                              allow_nd=self._starts_with_flatten())

    def _starts_with_flatten(self):
        from .layers import Flatten

        return bool(self.layers) and isinstance(self.layers[0], Flatten)

    def predict_proba(self, X, batch_size=1024):
        """Class probabilities: the softmax of the outputs, shape (n_samples, n_classes) (the
        outputs themselves when the last layer is Softmax); for a binary loss, the probability of
        the positive class per output: sigmoid of the logits (BCEWithLogitsLoss) or the outputs
        (BCELoss)."""
        from .layers import Sigmoid
        from .losses import BCEWithLogitsLoss

        X = self._check_X(X)
        out = self._forward_batches(X, batch_size, self.layers)
        if isinstance(self.loss, _BinaryLoss):
            return Sigmoid().forward(out) if isinstance(self.loss, BCEWithLogitsLoss) else out
        if self.layers and isinstance(self.layers[-1], Softmax):
            return out
        return Softmax().forward(out)

    def predict(self, X, batch_size=1024):
        """Class labels for a classifier (cross-entropy loss or Softmax output), else the outputs."""
        X = self._check_X(X)
        out = self._forward_batches(X, batch_size, self.layers)
        if isinstance(self.loss, _BinaryLoss):  # 0/1 per output; 1-D for a single output
            labels = self.loss._decide(out).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        if self._is_classifier():
            return out.argmax(axis=1)
        return out

    def evaluate(self, X, y, batch_size=1024):
        """Mean loss (and accuracy for classifiers) on (X, y), as a dict."""
        loss_fn = self._resolve_loss(None, y)
        X, y = self._prepare_xy(X, y, loss_fn)
        return self._evaluate_checked(X, y, loss_fn, batch_size)

    def _evaluate_checked(self, X, y, loss_fn, batch_size=1024):
        """evaluate() on already validated arrays (fit's validation set)."""
        out = self._forward_batches(X, batch_size, self._training_layers(loss_fn))
        result = {"loss": float(loss_fn.forward(out, y))}
        if isinstance(loss_fn, _BinaryLoss):
            result["accuracy"] = float(np.mean(loss_fn._decide(out) == (y > 0.5)))
        elif self._is_classifier(loss_fn):
            labels = y if y.ndim == 1 else np.argmax(y, axis=1)
            result["accuracy"] = float(np.mean(out.argmax(axis=1) == labels))
        return result
