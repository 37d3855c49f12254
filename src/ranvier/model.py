"""Sequential model: layers in order, and the training loop (fit), evaluate and predict.

``fit`` runs the four steps of training per mini-batch: forward, loss, backward, optimizer step.
Every way of running the model (``fit``, ``evaluate``, ``predict``, ``predict_proba``,
``model.forward``) runs one compiled plan of blocks (_plan.py), so they give bitwise-equal outputs.
When the last layer is ``Softmax`` and the loss is ``CrossEntropyLoss``, training feeds the logits to
the fused softmax + cross-entropy kernel (stable, one pass) and the Softmax layer is used only for
prediction, as Keras users expect from a softmax output with a cross-entropy loss.
"""
import contextlib
import math
import time

import numpy as np

from . import _plan
from ._random import generator_from
from ._validation import (as_dtype, check_batch_match, check_features, check_float,
                          check_labels, check_positive_int, check_samples, is_integer_labels)
from ._progress import EpochProgress
from ._workspace import Workspace
from .history import History
from .layers import Flatten, Layer, Softmax
from .losses import CrossEntropyLoss, _BinaryLoss, get_loss
from .optim import Adam, get_optimizer

__all__ = ["Sequential"]


def lay_out(params, attr, buf):
    """Copy every parameter's ``attr`` ("data" or "grad") into ``buf``, back to back in order, and
    make it a view there. ``buf`` may be longer (distributed training's all-reduce buffer)."""
    off = 0
    for p in params:
        size = p.data.size
        view = buf[off:off + size].reshape(p.data.shape)
        view[...] = getattr(p, attr)
        setattr(p, attr, view)
        off += size


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
        self._plan = (None, None)  # (key, blocks): the compiled plan, kept across calls
        self._workspace = Workspace()  # the plan's buffers and fit's mini-batch buffers
        self._ran = None           # the blocks the last public forward ran (for backward)
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
        lay_out(params, "data", np.empty(total, dt))
        lay_out(params, "grad", np.zeros(total, dt))

    @property
    def input_shape(self):
        """The per-sample input shape the first shape-fixing layer takes (a Dense's
        (in_features,), a BatchNorm1d's (num_features,)), looking through layers that keep the
        shape; None when a layer that adapts to its input's shape comes first (Flatten, Conv2d:
        the model then takes any (n, ...) batch its layers' shape inference accepts)."""
        for layer in self.layers:
            if layer.input_shape is not None:
                return layer.input_shape
            if type(layer).output_shape is not Layer.output_shape:
                return None
        return None

    @property
    def n_features_in(self):
        """Values per sample the model takes (through any Flatten), or None when no layer fixes
        it or a layer that changes the number of values (Conv2d) comes first."""
        for layer in self.layers:
            if layer.input_shape is not None:
                return math.prod(layer.input_shape)
            if type(layer).output_shape is not Layer.output_shape and not isinstance(layer,
                                                                                      Flatten):
                return None
        return None

    def _check_input(self, X, name="X"):
        """X as the model's input: 2-D (n, features) when its first layers fix a feature vector;
        otherwise any (n, ...) batch (images into Flatten or Conv2d) whose per-sample shape the
        layers' shape inference accepts, the error naming the layer that does not."""
        self._check_dtypes()
        if not self.layers:
            raise ValueError("the model has no layers")
        if self.input_shape is not None and len(self.input_shape) == 1:
            return check_features(X, name, self.dtype, self.n_features_in)
        X = check_samples(X, name, self.dtype)
        try:
            self._layer_shapes(X.shape[1:])
        except ValueError as exc:
            raise ValueError(f"{name} of shape {X.shape}: {exc}") from None
        return X

    def output_shape(self, input_shape=None):
        """The per-sample output shape for a per-sample ``input_shape`` (default: the model's
        ``input_shape``), from each layer's ``output_shape``; ValueError naming the layer that
        cannot take what the one before gives."""
        shapes = self._layer_shapes(input_shape)
        return shapes[-1] if shapes else None

    def _layer_shapes(self, input_shape=None):
        shape = self.input_shape if input_shape is None else tuple(input_shape)
        if shape is None:
            raise ValueError("the model's input shape is not fixed by its first layers (it starts "
                             "with Flatten or Conv2d): pass input_shape, e.g. (28, 28) or "
                             "(1, 28, 28)")
        shapes = []
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as exc:
                raise ValueError(f"layer {i} ({type(layer).__name__}): {exc}") from None
            shapes.append(shape)
        return shapes

    def summary(self, input_shape=None, print_fn=print):
        """Print a Keras-style table (layer, output shape, parameter count, totals) and return it.
        Parameter counts are PyTorch's (buffers such as BatchNorm's running statistics are
        not parameters). ``input_shape``: per sample, needed when the model starts with Flatten or
        Conv2d, e.g. (1, 28, 28)."""
        shapes = self._layer_shapes(input_shape)
        rows = [(f"{i} ({type(l).__name__})", str((None,) + s),
                 sum(p.data.size for p in l.parameters()))
                for i, (l, s) in enumerate(zip(self.layers, shapes))]
        total = sum(r[2] for r in rows)
        buffers = sum(np.asarray(b).size for l in self.layers for _, b in l.named_buffers())
        w0 = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
        w1 = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
        w2 = max(len("Param #"), len(f"{total:,}"))
        rule = "=" * (w0 + w1 + w2)
        lines = ["Model: Sequential", rule,
                 f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>{w2}}", rule]
        lines += [f"{a:<{w0}}{b:<{w1}}{c:>{w2},}" for a, b, c in rows]
        shape_in = self.input_shape if input_shape is None else tuple(input_shape)
        lines += [rule, f"Total params: {total:,}", f"Trainable params: {total:,}",
                  "Non-trainable params: 0",
                  f"Buffers (not parameters): {buffers:,}", f"Input shape: {(None,) + shape_in}"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

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

    def to_onnx(self, path, *, opset=17, input_shape=None, probabilities=None):
        """Write the model to an ONNX file for onnxruntime (needs ``pip install ranvier[onnx]``):
        output ``output`` as ``forward``, plus ``probabilities`` as ``predict_proba`` for a
        classifier; batch dimension symbolic; the model's dtype. See ``ranvier.onnx_export``."""
        from .onnx_export import to_onnx

        return to_onnx(self, path, opset=opset, input_shape=input_shape,
                       probabilities=probabilities)

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

    def forward(self, x):
        """Run the layers on a batch (the model's compiled plan, as fit and predict do); returns a
        new array: the output (probabilities if the last layer is Softmax, otherwise the raw
        outputs)."""
        self._check_dtypes()
        with _plan.RUN_LOCK:
            blocks = self._blocks()
            self._ran = blocks
            return np.array(_plan.run_forward(blocks, x), copy=True)

    __call__ = forward

    def backward(self, grad_output, need_input_grad=True):
        """Backpropagate ``grad_output`` (d loss / d output of the last ``forward``) through every
        layer, filling each parameter's ``.grad``; returns d loss / d input as a new array (None
        with ``need_input_grad=False``, which skips that product)."""
        if self._ran is None:
            raise RuntimeError("Sequential.backward called before forward")
        with _plan.RUN_LOCK:
            g = _plan.run_backward(self._ran, grad_output, need_input_grad)
            return None if g is None else np.array(g, copy=True)

    def _blocks(self):
        """The compiled plan for every layer (see _plan), rebuilt only when the layers, their
        parameters or the dtype change, so its buffers survive from call to call."""
        key = (tuple(map(id, self.layers)), tuple(map(id, self.parameters())), self.dtype)
        if self._plan[0] != key:
            self._plan = (key, _plan.build_plan(self.layers, self._workspace))
        return self._plan[1]

    def _training_blocks(self, loss):
        """The blocks to run while training: all but a final Softmax when the loss fuses it."""
        blocks = self._blocks()
        if len(self._training_layers(loss)) < len(self.layers):
            return blocks[:-1]
        return blocks

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
        X = self._check_input(X, x_name)
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
            initial_epoch=0, distributed=False):
        """Train on (X, y) for ``epochs`` passes over the data in shuffled mini-batches.

        loss: a Loss or name; defaults to the compiled one, else cross-entropy for integer labels
            (MSE otherwise). optimizer: an Optimizer or name; defaults to the compiled one, else
            Adam(lr=1e-3). validation_data=(X_val, y_val), or validation_split: the last fraction of
            (X, y), held out before shuffling (Keras' rule); adds "val_loss" (and
            "val_accuracy"). callbacks: EarlyStopping, ModelCheckpoint, TerminateOnNaN, ... .
            verbose: 0 silent, 1 progress bar, 2 one line per epoch. initial_epoch: resume numbering.
            seed: the shuffling's seed (default: ranvier.manual_seed's generator).
            distributed: True (or an mpi4py communicator) trains data-parallel over MPI, every rank
            passing the same data and taking its share of each batch (see ranvier.distributed).
        Returns a History with the mean loss (and accuracy) per epoch. A NaN or infinite loss
        raises FloatingPointError naming the epoch and batch (TerminateOnNaN stops quietly instead).
        """
        sync = contextlib.nullcontext()  # enters as None: one process
        if distributed:
            from .distributed import DataParallel

            sync = DataParallel(self, distributed)
        with sync as sync:
            return self._fit(X, y, loss, optimizer, epochs, batch_size, shuffle, seed, verbose,
                             validation_data, validation_split, callbacks, initial_epoch, sync)

    def _fit(self, X, y, loss, optimizer, epochs, batch_size, shuffle, seed, verbose,
             validation_data, validation_split, callbacks, initial_epoch, sync):
        from .callbacks import Callback

        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        initial_epoch = check_positive_int(initial_epoch, "initial_epoch", minimum=0)
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be ranvier Callbacks, got {type(cb).__name__}")
        loss_fn, opt = self._fit_objectives(loss, optimizer, y)
        X, y = self._prepare_xy(X, y, loss_fn)
        validation = self._validation_set(validation_data, validation_split, X, y, loss_fn)
        if validation_data is None and validation is not None:
            n_train = X.shape[0] - validation[0].shape[0]
            X, y = X[:n_train], y[:n_train]
        self.loss = loss_fn
        if optimizer is None and self.optimizer is None:
            self.optimizer = opt
        self._flatten_parameters()
        rng = generator_from(seed)
        if sync is not None:
            sync.start(X, y, validation, rng, {
                "batch_size": batch_size, "epochs": epochs, "shuffle": shuffle,
                "initial_epoch": initial_epoch, "loss": type(loss_fn).__name__,
                "optimizer": opt, "seed": seed if isinstance(seed, int) else None},
                loss_fn)
            verbose = verbose if sync.is_main else 0
            callbacks = [cb for cb in callbacks if sync.is_main or not cb.main_process_only]
        run = _EpochRunner(self, X, y, loss_fn, opt, batch_size, shuffle, rng, callbacks, sync)
        history = History()
        self.history = history
        self.stop_training = False
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        self.train()
        try:
            for epoch in range(initial_epoch, initial_epoch + epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                t0 = time.perf_counter()
                progress = EpochProgress(verbose, epoch, initial_epoch + epochs, run.steps)
                metrics = run.epoch(epoch, progress)
                if sync is not None:
                    sync.epoch_end()
                if metrics is None:  # the first batch diverged under TerminateOnNaN
                    progress.close(time.perf_counter() - t0, {})
                    break
                if validation is not None:
                    self.eval()
                    val = (self._evaluate_checked(validation[0], validation[1], loss_fn)
                           if sync is None else sync.evaluate(validation[0], validation[1], loss_fn))
                    self.train()
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

    def _fit_objectives(self, loss, optimizer, y):
        """The loss and optimizer fit uses: given ones, else the compiled ones, else defaults."""
        loss_fn = self._resolve_loss(loss, y)
        if optimizer is not None:
            opt = get_optimizer(optimizer, self.parameters())
        elif self.optimizer is not None:
            opt = self.optimizer
        else:
            opt = Adam(self.parameters())
        return loss_fn, opt

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

    def _forward_batches(self, X, batch_size, blocks):
        """The plan's output for X, batch by batch, in a new array."""
        batch_size = check_positive_int(batch_size, "batch_size")
        n = X.shape[0]
        out = None
        with _plan.RUN_LOCK:
            for s in range(0, n, batch_size):
                y = _plan.run_forward(blocks, X[s:s + batch_size])
                if out is None:
                    out = np.empty((n,) + y.shape[1:], y.dtype)
                out[s:s + y.shape[0]] = y
        return out

    def _outputs(self, X, batch_size, distributed):
        """The plan's outputs for X; with ``distributed``, X is this rank's part of the set and
        every rank gets every rank's outputs, in rank order."""
        if distributed:
            from .distributed import gathered_outputs

            return gathered_outputs(self, X, batch_size, distributed)
        X = self._check_input(X)
        return self._forward_batches(X, batch_size, self._blocks())

    def predict_proba(self, X, batch_size=1024, distributed=False):
        """Class probabilities: the softmax of the outputs, shape (n_samples, n_classes) (the
        outputs themselves when the last layer is Softmax); for a binary loss, the probability of
        the positive class per output: sigmoid of the logits (BCEWithLogitsLoss) or the outputs
        (BCELoss). ``distributed``: as for ``predict``."""
        out = self._outputs(X, batch_size, distributed)
        head = self._probability_layer()
        return out if head is None else head.forward(out)

    def _probability_layer(self):
        """The layer predict_proba applies to the outputs (Sigmoid or Softmax), or None when the
        outputs are the probabilities already (BCELoss, a final Softmax). The ONNX export writes
        the same layer."""
        from .layers import Sigmoid
        from .losses import BCEWithLogitsLoss

        if isinstance(self.loss, _BinaryLoss):
            return Sigmoid() if isinstance(self.loss, BCEWithLogitsLoss) else None
        if self.layers and isinstance(self.layers[-1], Softmax):
            return None
        return Softmax()

    def predict(self, X, batch_size=1024, distributed=False):
        """Class labels for a classifier (cross-entropy loss or Softmax output), else the outputs.
        ``distributed``: True (or an mpi4py communicator) when X is this rank's part of the set;
        every rank then gets the whole set's result, in rank order."""
        out = self._outputs(X, batch_size, distributed)
        if isinstance(self.loss, _BinaryLoss):  # 0/1 per output; 1-D for a single output
            labels = self.loss._decide(out).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        if self._is_classifier():
            return out.argmax(axis=1)
        return out

    def evaluate(self, X, y, batch_size=1024, distributed=False):
        """Mean loss (and accuracy for classifiers) on (X, y), as a dict. ``distributed``: True (or
        an mpi4py communicator) when (X, y) is this rank's part of the set; the result is the whole
        set's, on every rank."""
        if distributed:
            from .distributed import evaluate_shards

            return evaluate_shards(self, X, y, batch_size, distributed)
        loss_fn = self._resolve_loss(None, y)
        X, y = self._prepare_xy(X, y, loss_fn)
        return self._evaluate_checked(X, y, loss_fn, batch_size)

    def _evaluate_checked(self, X, y, loss_fn, batch_size=1024):
        """evaluate() on already validated arrays (fit's validation set)."""
        out = self._forward_batches(X, batch_size, self._training_blocks(loss_fn))
        result = {"loss": float(loss_fn.forward(out, y))}
        if isinstance(loss_fn, _BinaryLoss):
            result["accuracy"] = float(np.mean(loss_fn._decide(out) == (y > 0.5)))
        elif self._is_classifier(loss_fn):
            labels = y if y.ndim == 1 else np.argmax(y, axis=1)
            result["accuracy"] = float(np.mean(out.argmax(axis=1) == labels))
        return result


class _EpochRunner:
    """One epoch of fit's inner loop: gather a mini-batch, forward, loss, backward, optimizer
    step, per batch. The loop runs thousands of times per second on small networks: locals, bound
    methods and math.isfinite instead of NumPy scalar calls, and buffers from the model's
    workspace, so a step allocates nothing."""

    def __init__(self, model, X, y, loss_fn, opt, batch_size, shuffle, rng, callbacks, sync=None):
        from .callbacks import Callback, TerminateOnNaN

        self.model, self.X, self.y, self.loss_fn, self.opt = model, X, y, loss_fn, opt
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng
        self.sync = sync  # distributed.DataParallel, or None
        self.n = X.shape[0]
        self.steps = -(-self.n // batch_size)
        self.classifier = model._is_classifier(loss_fn)
        self.labels = (y if y.ndim == 1 else np.argmax(y, axis=1)) if self.classifier else None
        self.blocks = model._training_blocks(loss_fn)
        self.stop_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in callbacks)
        self.batch_cbs = [cb for cb in callbacks
                          if type(cb).on_batch_end is not Callback.on_batch_end]

    def _buffers(self, m):
        """Buffers that a mini-batch of m rows is gathered into (np.take with out=)."""
        ws, X, y = self.model._workspace, self.X, self.y
        return (ws.get("batch_x", (m,) + X.shape[1:], X.dtype),
                ws.get("batch_y", (m,) + y.shape[1:], y.dtype))

    def epoch(self, epoch, progress):
        """Trains one epoch; returns its metrics, or None when no batch completed."""
        X, y, n, bs = self.X, self.y, self.n, self.batch_size
        loss_fn, opt, blocks, labels = self.loss_fn, self.opt, self.blocks, self.labels
        model, batch_cbs, classifier, sync = self.model, self.batch_cbs, self.classifier, self.sync
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        loss_sum, correct, seen = 0.0, 0, 0
        full = min(bs, n) if sync is None else len(sync.shard(order[:bs]))
        full_bufs = self._buffers(full)

        def backward(scale=1.0):
            grad = loss_fn.backward()
            if scale != 1.0:  # distributed: this rank's part of the global batch's mean
                grad *= scale  # (the backward pass is linear in it: the gradients come scaled)
            _plan.run_backward(blocks, grad)

        for b, start in enumerate(range(0, n, bs)):
            idx = order[start:start + bs]
            if sync is not None:
                idx = sync.shard(idx)  # this rank's share of the global batch
            m = len(idx)
            if m:
                xb, yb = full_bufs if m == full else self._buffers(m)
                # mode="clip": indices come from a permutation; the default mode="raise" would
                # gather into a hidden temporary (a batch-sized allocation per step).
                X.take(idx, axis=0, out=xb, mode="clip")
                y.take(idx, axis=0, out=yb, mode="clip")
                out = _plan.run_forward(blocks, xb)
                batch_loss, hits = loss_fn._train_forward(out, yb)
                if classifier and hits is None:
                    hits = int(np.count_nonzero(out.argmax(axis=1) == labels[idx]))
            else:  # an empty share of a batch smaller than the number of ranks
                batch_loss, hits = 0.0, 0
            if sync is not None:  # backward, then the global batch's gradients, loss and hits
                batch_loss, hits, m = sync.reduce_step(backward, batch_loss, hits, m)
            if not math.isfinite(batch_loss):
                if not self.stop_on_nan:
                    raise FloatingPointError(
                        f"training diverged: the loss is {batch_loss} at epoch {epoch + 1}, batch "
                        f"{b + 1}; lower the learning rate or check the data")
                for cb in batch_cbs:
                    cb.on_batch_end(b, {"loss": batch_loss})
                break
            if sync is None:
                backward()
            opt.step()
            loss_sum += batch_loss * m
            seen += m
            if classifier:
                correct += hits
            progress.update(batch_loss)
            for cb in batch_cbs:
                cb.on_batch_end(b, {"loss": batch_loss})
            if model.stop_training:
                break
        if seen == 0:
            return None
        metrics = {"loss": loss_sum / seen}
        if classifier:
            metrics["accuracy"] = correct / seen
        return metrics
