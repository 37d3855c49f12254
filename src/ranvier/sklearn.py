"""scikit-learn estimators on ranvier: ``MLPClassifier`` and ``MLPRegressor``.

    from ranvier.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=50, random_state=0).fit(X, y)
    clf.predict(X_test), clf.predict_proba(X_test), clf.score(X_test, y_test)

They take scikit-learn's ``sklearn.neural_network`` parameter names and semantics, and train a
``ranvier.Sequential`` of ``Dense`` layers with ranvier's kernels (forward, backward, losses and the
SGD / Adam updates). This module imports scikit-learn (``pip install "ranvier[sklearn]"``);
``import ranvier`` does not import it. scikit-learn's own MLP tests
(``sklearn/neural_network/tests/test_mlp.py``) pass against these estimators, except two that read
sklearn's private ``_optimizer`` object (tests/test_sklearn_suite.py).

What matches scikit-learn's ``MLPClassifier`` / ``MLPRegressor``:

- the objective: the mean loss of a mini-batch plus ``alpha / 2 * sum(||W||^2) / batch_size``
  (weights only, not biases), and its gradient. ``loss_`` and ``loss_curve_`` are on sklearn's
  scale: log-loss for classifiers, half the mean squared error for regressors.
- the output layer: softmax for multiclass (``CrossEntropyLoss``), one logistic unit per output for
  binary and multilabel targets (trained as a two-class softmax over the logits ``[0, z]``, which
  is the sigmoid of ``z``: so ``coefs_[-1]`` has one column for a binary problem, as in sklearn),
  identity + ``MSELoss`` for regression, or with ``MLPRegressor(loss="poisson")`` the half
  Poisson deviance with a log link (the network outputs ``log(prediction)``).
- ``sample_weight`` in ``fit`` / ``partial_fit``: each row's loss and gradient weighted, divided by
  the batch's weight sum (the L2 term too), as sklearn; the early-stopping split splits them.
- ``solver="lbfgs"``: scipy's L-BFGS-B (scipy is a dependency of scikit-learn) over every weight
  and bias as one flat vector, each evaluation a full-batch forward / loss / backward through
  ranvier's kernels; ``max_iter``, ``max_fun``, ``tol`` as sklearn passes them and sklearn's
  ConvergenceWarning. The objective and gradient are sklearn's, including its quirk for several
  regression outputs (loss averaged over the outputs, gradient summed), so lbfgs takes sklearn's
  steps. No ``partial_fit`` with lbfgs (``hasattr`` is False, as in sklearn).
- the dtype: float32 ``X`` trains and predicts in float32, any other ``X`` in float64, and
  ``coefs_`` / ``intercepts_`` have that dtype (``dtype=`` fixes it instead).
- initialisation (Glorot uniform, biases too), the mini-batch order, the early-stopping split and
  the stopping rule (``tol`` / ``n_iter_no_change`` on the training loss, or on the validation score
  with ``early_stopping=True``, restoring the best weights), ``learning_rate`` schedules,
  ``warm_start``, ``partial_fit``, and the attributes (``coefs_`` in sklearn's ``(in, out)`` layout,
  ``intercepts_``, ``loss_``, ``loss_curve_``, ``best_loss_``, ``n_iter_``, ``t_``,
  ``validation_scores_``, ``best_validation_score_``, ``n_layers_``, ``n_outputs_``,
  ``out_activation_``, ``classes_``); ``coefs_`` / ``intercepts_`` assigned by hand before any fit
  are trained on by ``partial_fit``. With float64 data and the same ``random_state`` the weights
  follow sklearn's to rounding error.

Differences:

- ``dtype`` (None by default: follow ``X`` as above) can fix the precision of the network; inputs
  are then converted to it and ``predict`` / ``predict_proba`` return it.
- no ``_optimizer`` attribute (the updates are ranvier's SGD / Adam, see ``_Solver``).
- sparse ``X`` is accepted, as in sklearn, but densified one mini-batch (or 4096 prediction rows)
  at a time: ranvier's kernels are dense.

``coefs_[i]`` and ``intercepts_[i]`` are views of the network's parameters (``coefs_[i]`` is the
transpose of the ranvier ``Dense`` weight): editing them in place edits the model, and arrays
assigned to them are copied into the model before the next ``predict`` or ``fit``.
"""
import math
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ranvier.sklearn needs scikit-learn: pip install 'ranvier[sklearn]' "
                      "(or pip install scikit-learn)") from exc
import scipy.sparse as sp
from scipy.special import xlogy
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, gen_batches
from sklearn.utils import shuffle as _shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from threadpoolctl import threadpool_limits   # a dependency of scikit-learn

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.4 / 1.5
    def _validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)

from ._validation import (InvalidParameterError, check_param_bool, check_param_choice,
                          check_param_float, invalid_parameter, is_bool, is_int, is_real)
from .layers import Dense, ReLU, Sigmoid, Softmax, Tanh
from .losses import CrossEntropyLoss, MSELoss
from .model import Sequential
from .optim import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor", "InvalidParameterError"]

_HIDDEN_ACTIVATIONS = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
_SOLVERS = ("lbfgs", "adam", "sgd")
_STOCHASTIC_SOLVERS = ("adam", "sgd")
_REGRESSION_LOSSES = ("squared_error", "poisson")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_PREDICT_CHUNK = 4096  # rows per forward pass in predict (bounds the activations' memory)


class _BaseMLP(BaseEstimator):
    """Shared code of MLPClassifier and MLPRegressor (not for direct use)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    # -- parameters --------------------------------------------------------------------------
    def _check_params(self):
        """Validate every hyper-parameter; returns (hidden layer sizes as a list, numpy dtype or
        None to follow the input's)."""
        hls = self.hidden_layer_sizes
        iterable = not isinstance(hls, str) and hasattr(hls, "__iter__")
        hidden = [hls] if is_int(hls) else list(hls) if iterable else None
        if hidden is None or not all(is_int(h) for h in hidden):
            raise invalid_parameter("hidden_layer_sizes", hls, "an int or an array-like of ints")
        if any(h <= 0 for h in hidden):
            raise InvalidParameterError(f"hidden_layer_sizes must be > 0, got {hls}.")
        hidden = [int(h) for h in hidden]
        check_param_choice(self.activation, "activation", tuple(_HIDDEN_ACTIVATIONS))
        check_param_choice(self.solver, "solver", _SOLVERS)
        if not self._is_classifier:
            check_param_choice(self.loss, "loss", _REGRESSION_LOSSES)
        check_param_float(self.alpha, "alpha", 0.0)
        bs = self.batch_size
        if not (bs == "auto" if isinstance(bs, str) else is_int(bs) and bs >= 1):
            raise invalid_parameter("batch_size", bs, "'auto' or an int in the range [1, inf)")
        check_param_choice(self.learning_rate, "learning_rate", _LEARNING_RATES)
        check_param_float(self.learning_rate_init, "learning_rate_init", 0.0, min_inclusive=False)
        check_param_float(self.power_t, "power_t", 0.0)
        if not is_int(self.max_iter) or self.max_iter < 1:
            raise invalid_parameter("max_iter", self.max_iter, "an int in the range [1, inf)")
        check_param_bool(self.shuffle, "shuffle")
        rs = self.random_state
        if not (rs is None or is_int(rs) or isinstance(rs, np.random.RandomState)):
            raise invalid_parameter("random_state", rs,
                                    "None, an int or a numpy.random.RandomState")
        check_param_float(self.tol, "tol", 0.0)
        if not (is_bool(self.verbose) or is_int(self.verbose)):
            raise invalid_parameter("verbose", self.verbose, "a bool or an int")
        check_param_bool(self.warm_start, "warm_start")
        check_param_float(self.momentum, "momentum", 0.0, 1.0)
        check_param_bool(self.nesterovs_momentum, "nesterovs_momentum")
        check_param_bool(self.early_stopping, "early_stopping")
        check_param_float(self.validation_fraction, "validation_fraction", 0.0, 1.0,
                          max_inclusive=False)
        check_param_float(self.beta_1, "beta_1", 0.0, 1.0, max_inclusive=False)
        check_param_float(self.beta_2, "beta_2", 0.0, 1.0, max_inclusive=False)
        check_param_float(self.epsilon, "epsilon", 0.0, min_inclusive=False)
        nic = self.n_iter_no_change
        if not ((is_int(nic) and nic >= 1) or (is_real(nic) and nic == np.inf)):
            raise invalid_parameter("n_iter_no_change", nic, "an int in the range [1, inf) or inf")
        if not is_int(self.max_fun) or self.max_fun < 1:
            raise invalid_parameter("max_fun", self.max_fun, "an int in the range [1, inf)")
        if self.dtype is None:  # follow the input (np.dtype(None) would be float64)
            return hidden, None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise invalid_parameter("dtype", self.dtype, "None, numpy.float32 or numpy.float64")
        return hidden, dtype

    # -- the network -------------------------------------------------------------------------
    def _build_network(self, coefs, intercepts, dtype, activation=None):
        """The ranvier Sequential holding ``coefs`` (``(in, out)`` arrays) and ``intercepts``;
        binds ``coefs_`` / ``intercepts_`` to its parameters."""
        dense = []
        for c, b in zip(coefs, intercepts):
            d = Dense(c.shape[0], c.shape[1], dtype=dtype, seed=0)
            d.weight.data[...] = np.asarray(c).T
            d.bias.data[...] = b
            dense.append(d)
        self._dense = dense
        self._assemble(self.activation if activation is None else activation)
        self._bind_attributes()

    def _assemble(self, activation):
        """The Sequential: the Dense layers with the hidden activation between them."""
        act = _HIDDEN_ACTIVATIONS[activation]
        layers = []
        for i, d in enumerate(self._dense):
            layers.append(d)
            if act is not None and i < len(self._dense) - 1:
                layers.append(act())
        self._model = Sequential(layers).eval()
        self._activation = activation

    def _bind_attributes(self):
        self.coefs_ = [d.weight.data.T for d in self._dense]
        self.intercepts_ = [d.bias.data for d in self._dense]
        self._bound = (list(self.coefs_), list(self.intercepts_))

    def _sync_params(self):
        """Copy into the network any array assigned to ``coefs_`` / ``intercepts_`` since it was
        bound (sklearn users may set them by hand); no-op otherwise."""
        coefs, intercepts = self.coefs_, self.intercepts_
        if (len(coefs) == len(self._dense) and len(intercepts) == len(self._dense)
                and all(a is b for a, b in zip(coefs, self._bound[0]))
                and all(a is b for a, b in zip(intercepts, self._bound[1]))):
            return
        if len(coefs) != len(self._dense) or len(intercepts) != len(self._dense):
            raise ValueError(f"coefs_ and intercepts_ must hold {len(self._dense)} arrays, got "
                             f"{len(coefs)} and {len(intercepts)}")
        for i, (c, b, d) in enumerate(zip(coefs, intercepts, self._dense)):
            c, b = np.asarray(c), np.asarray(b)
            if c.shape != d.weight.data.T.shape or b.shape != d.bias.data.shape:
                raise ValueError(f"coefs_[{i}] / intercepts_[{i}] must have shapes "
                                 f"{d.weight.data.T.shape} / {d.bias.data.shape}, got "
                                 f"{c.shape} / {b.shape}")
            d.weight.data[...] = c.T
            d.bias.data[...] = b
        self._bind_attributes()

    def _initialize(self, layer_units, n_outputs, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        coefs, intercepts = [], []
        rs = self._random_state
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            # sklearn's Glorot-uniform initialisation, drawn in the same order from the same
            # RandomState, so a given random_state starts from sklearn's weights
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(rs.uniform(-bound, bound, fan_out))
        self._build_network(coefs, intercepts, dtype)
        self._best_params = [p.data.copy() for p in self._model.parameters()]
        self._solver = None
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _check_network(self, layer_units, n_outputs, dtype):
        """Before warm_start / partial_fit training: the existing network must fit the data.
        ``coefs_`` / ``intercepts_`` set by hand before any fit (as scikit-learn allows) become
        the network."""
        if not hasattr(self, "_dense"):
            self._adopt_weights(n_outputs, dtype)
        self._sync_params()
        units = [self._dense[0].in_features] + [d.out_features for d in self._dense]
        if units != list(layer_units):
            raise ValueError(f"the network has layer sizes {units} but hidden_layer_sizes and the "
                             f"data call for {list(layer_units)}; fit again with "
                             "warm_start=False to start a new network")
        if self._model.dtype != dtype:  # dtype changed through set_params: convert the weights
            self._build_network([c.astype(dtype) for c in self.coefs_], self.intercepts_, dtype)
            self._best_params = [p.data.copy() for p in self._model.parameters()]
            self._solver = None
        elif self._activation != self.activation:  # activation changed through set_params
            self._assemble(self.activation)

    def _adopt_weights(self, n_outputs, dtype):
        """The network from ``coefs_`` / ``intercepts_`` assigned by hand before any fit; the
        training state the user did not set starts as a new fit's."""
        coefs = [np.asarray(c, dtype) for c in self.coefs_]
        intercepts = [np.asarray(b, dtype) for b in self.intercepts_]
        if not coefs or len(coefs) != len(intercepts):
            raise ValueError("coefs_ and intercepts_ must hold the same number (at least one) of "
                             f"arrays, got {len(coefs)} and {len(intercepts)}")
        for i, (c, b) in enumerate(zip(coefs, intercepts)):
            if (c.ndim != 2 or b.shape != (c.shape[1],)
                    or (i > 0 and c.shape[0] != coefs[i - 1].shape[1])):
                raise ValueError(f"coefs_[{i}] / intercepts_[{i}] have shapes {c.shape} / "
                                 f"{b.shape}, which do not chain into a network")
        self._build_network(coefs, intercepts, dtype)
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(coefs) + 1
        self.out_activation_ = self._output_activation()
        for name, value in (("n_iter_", 0), ("t_", 0), ("loss_curve_", []),
                            ("_no_improvement_count", 0), ("best_loss_", np.inf),
                            ("validation_scores_", None), ("best_validation_score_", None)):
            if not hasattr(self, name):
                setattr(self, name, value)
        self._best_params = [p.data.copy() for p in self._model.parameters()]
        self._solver = None

    # -- training ----------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, incremental):
        hidden, dtype = self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if dtype is None:
            # as scikit-learn: float32 input stays float32, anything else becomes float64; a
            # network that is trained on keeps its dtype
            dtype = (self._model.dtype if not first_pass and hasattr(self, "_model")
                     else (np.float64, np.float32))
        X, y, T, n_outputs = self._validate_input(X, y, incremental, reset=first_pass,
                                                  dtype=dtype)
        dtype = X.dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        layer_units = [X.shape[1]] + hidden + [n_outputs]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, n_outputs, dtype)
        else:
            self._check_network(layer_units, n_outputs, dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, T, sample_weight)
        else:
            self._fit_stochastic(X, y, T, sample_weight, incremental)
        if not all(np.isfinite(p.data).all() for p in self._model.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _check_solver(self):
        """partial_fit exists for the stochastic solvers only (``available_if``), as in sklearn."""
        check_param_choice(self.solver, "solver", _SOLVERS)
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _fit_stochastic(self, X, y, T, sample_weight, incremental):
        if not incremental or self._solver is None:
            self._solver = _Solver(self, self._dense, self._grad_scale())
        solver = self._solver
        solver.alpha = float(self.alpha)  # read every call, as sklearn does
        early_stopping = self.early_stopping
        # warm_start with early_stopping switched on or off since the last fit
        if early_stopping and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self._best_params = [p.data.copy() for p in self._model.parameters()]
        if not early_stopping and self.best_loss_ is None:
            self.best_loss_ = min(self.loss_curve_, default=np.inf)
        sw_train = sw_val = None
        if early_stopping:
            # sklearn stratifies only single-output classification targets (binary problems),
            # on the 0/1 target as bools (so a class too small to split is named 'True')
            stratify = (T.astype(bool) if self._is_classifier and T.ndim == 2 and T.shape[1] == 1
                        else None)
            train, val = train_test_split(np.arange(X.shape[0]), random_state=self._random_state,
                                          test_size=self.validation_fraction, stratify=stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_train, T_train = X[train], T[train]
            X_val, y_val = X[val], y[val]
            if sample_weight is not None:
                sw_train, sw_val = sample_weight[train], sample_weight[val]
        else:
            X_train, T_train, X_val, y_val, sw_train = X, T, None, None, sample_weight

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        model, loss_fn = self._model, self._loss_function()
        weights = [d.weight.data for d in self._dense]
        half_alpha = 0.5 * float(self.alpha)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _shuffle(sample_idx, random_state=self._random_state)
                accumulated_loss = 0.0
                for batch in gen_batches(n_samples, batch_size):
                    idx = sample_idx[batch] if self.shuffle else batch
                    xb = _rows(X_train, idx)
                    m = xb.shape[0]
                    row_weights, denom = _batch_weights(sw_train, idx, m, xb.dtype)
                    if denom == 0.0:
                        continue  # every sample of the batch weighs 0: nothing to learn
                    out = model.forward(xb)
                    batch_loss, grad = self._loss_and_grad(loss_fn, out, T_train[idx],
                                                           row_weights)
                    if half_alpha:
                        batch_loss += half_alpha * sum(_sqnorm(w) for w in weights) / denom
                    model.backward(grad, need_input_grad=False)
                    solver.step(denom)
                    accumulated_loss += batch_loss * m
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                if not np.isfinite(self.loss_) and not all(
                        np.isfinite(p.data).all() for p in model.parameters()):
                    break  # diverged: _fit raises
                self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                solver.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if solver.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:  # restore the best weights
            for p, best in zip(model.parameters(), self._best_params):
                p.data[...] = best

    def _fit_lbfgs(self, X, T, sample_weight):
        """scipy's L-BFGS-B over every weight and bias as one flat float64 vector (the network's
        parameters in order), each evaluation one full-batch forward / loss / backward through
        ranvier's kernels in the network's dtype; ``max_iter``, ``max_fun`` and ``gtol=tol`` as
        sklearn passes them, and sklearn's ConvergenceWarning when scipy stops short."""
        try:
            from scipy.optimize import minimize
        except ImportError as exc:  # pragma: no cover - scikit-learn itself needs scipy
            raise ImportError("solver='lbfgs' needs scipy: pip install 'ranvier[sklearn]'") from exc
        if sp.issparse(X):
            X = X.toarray()
        X = np.ascontiguousarray(X)
        row_weights, denom = _batch_weights(sample_weight, slice(None), X.shape[0], X.dtype)
        params = self._model.parameters()
        loss_fn = self._loss_function()
        evaluations = []

        def loss_grad(theta):
            _unflatten(theta, [p.data for p in params])
            loss, coef_grads, intercept_grads = self._loss_grad(X, T, row_weights, denom, loss_fn)
            evaluations.append(loss)
            return loss, np.concatenate([g.ravel() for pair in zip(coef_grads, intercept_grads)
                                         for g in pair])

        iterations = []

        def report(theta):  # verbose: one line per iteration, as the stochastic solvers print
            iterations.append(evaluations[-1])
            print("Iteration %d, loss = %.8f" % (len(iterations), evaluations[-1]))

        theta0 = np.concatenate([p.data.ravel() for p in params]).astype(np.float64)
        # BLAS on one thread: between ranvier's kernels, L-BFGS-B and the L2 term make small
        # BLAS calls whose thread pools (NumPy's and scipy's OpenBLAS) then spin against
        # ranvier's OpenMP threads; on 2 cores that made a fit 3-5x slower (issue 11's note).
        with threadpool_limits(limits=1, user_api="blas"):
            res = minimize(loss_grad, theta0, method="L-BFGS-B", jac=True,
                           callback=report if self.verbose else None,
                           options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                    "gtol": self.tol})
        self.n_iter_ = min(res.nit, self.max_iter)
        if res.status != 0:  # scikit-learn's message (sklearn.utils.optimize)
            msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                   f"(status={res.status}):\n{res.message}\n")
            if self.n_iter_ == self.max_iter:
                msg += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={self.max_iter}).")
            msg += ("\nYou might also want to scale the data as shown in:\n"
                    "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        self.loss_ = float(res.fun)
        _unflatten(res.x, [p.data for p in params])

    def _loss_grad(self, X, T, row_weights, denom, loss_fn):
        """sklearn's objective on (X, T) at the network's weights, L2 term included, and its
        gradient as float64 arrays in ranvier's layout: (loss, weight grads (out, in), bias
        grads). ``row_weights``: sample weights scaled to mean 1, or None; ``denom``: their sum
        (the number of samples without weights)."""
        out = self._model.forward(X)
        loss, grad = self._loss_and_grad(loss_fn, out, T, row_weights)
        self._model.backward(grad, need_input_grad=False)
        inv_scale = 1.0 / self._grad_scale()
        decay = float(self.alpha) / denom
        coef_grads, intercept_grads = [], []
        for d in self._dense:
            w = d.weight.data.astype(np.float64)
            coef_grads.append(d.weight.grad * inv_scale + decay * w)
            intercept_grads.append(d.bias.grad * inv_scale)
            loss += 0.5 * decay * _sqnorm(w)
        return float(loss), coef_grads, intercept_grads

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, *buffers):
        """scikit-learn's private L-BFGS objective, for code written against it (sklearn's own
        gradient test): parameters packed in sklearn's order (every ``coefs_[i]`` raveled, then
        every ``intercepts_[i]``), ``y`` the binarized (classifier) or 2-D (regressor) target;
        sklearn's scratch ``buffers`` are not needed. Sets the network's weights to the packed
        ones and returns (loss, gradient packed the same way)."""
        self._sync_params()
        theta = np.asarray(packed_coef_inter, np.float64)
        coefs = [d.weight.data.T for d in self._dense]
        _unflatten(theta, coefs + [d.bias.data for d in self._dense])
        dtype = self._model.dtype
        X = np.ascontiguousarray(X.toarray() if sp.issparse(X) else X, dtype=dtype)
        T = self._packed_target(np.asarray(y))
        n = X.shape[0]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        row_weights, denom = _batch_weights(sample_weight, slice(None), n, dtype)
        loss, coef_grads, intercept_grads = self._loss_grad(X, T, row_weights, denom,
                                                            self._loss_function())
        return loss, np.concatenate([g.T.ravel() for g in coef_grads]
                                    + [g.ravel() for g in intercept_grads])

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            score = self._validation_score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = [p.data.copy() for p in self._model.parameters()]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _validation_score(self, X, y, sample_weight=None):
        pred = self._predict_validated(X)
        if np.issubdtype(pred.dtype, np.floating) and not np.isfinite(pred).all():
            return np.nan
        return float(self._score_function(y, pred, sample_weight=sample_weight))

    # -- prediction --------------------------------------------------------------------------
    def _forward(self, X):
        """Raw network outputs (logits / regression values) for validated X, in chunks."""
        self._sync_params()
        n = X.shape[0]
        if n <= _PREDICT_CHUNK and not sp.issparse(X):
            return self._model.forward(X)
        return np.concatenate([self._model.forward(_rows(X, slice(s, s + _PREDICT_CHUNK)))
                               for s in range(0, n, _PREDICT_CHUNK)], axis=0)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_model")

    def _check_X(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, accept_sparse="csr", dtype=self._model.dtype, reset=False)

    # -- pickling: ranvier objects are rebuilt from coefs_ / intercepts_ ---------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("_model", None)
        state.pop("_dense", None)
        state.pop("_bound", None)
        solver = state.pop("_solver", None)
        if model is not None:
            self._sync_params()
            state["coefs_"] = [np.array(c) for c in self.coefs_]
            state["intercepts_"] = [np.array(b) for b in self.intercepts_]
            state["_solver"] = None if solver is None else solver.snapshot()
        return state

    def __setstate__(self, state):
        solver = state.pop("_solver", None)
        super().__setstate__(state)
        if "coefs_" in state:
            self._build_network(state["coefs_"], state["intercepts_"],
                                np.asarray(state["coefs_"][0]).dtype,
                                state.get("_activation", self.activation))
            self._solver = None if solver is None else _Solver.restore(solver, self._dense)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _rows(X, idx):
    """Rows of X as a dense C-contiguous array (sparse X is densified one batch at a time)."""
    rows = X[idx]
    return rows.toarray() if sp.issparse(rows) else rows


def _batch_weights(sample_weight, idx, m, dtype):
    """(weights of the rows ``idx`` scaled to mean 1, in ``dtype``, and their sum) for weighted
    training; (None, m) without sample weights. The objective averages ``weight * loss`` over the
    rows, which is sklearn's sum of ``sample_weight * loss`` over the sum of the weights."""
    if sample_weight is None:
        return None, float(m)
    w = sample_weight[idx]
    total = float(w.sum())
    if total == 0.0:
        return None, 0.0
    return (w * (m / total)).astype(dtype), total


def _weighted_one_hot(labels, row_weights, n_classes, dtype):
    """One-hot rows of ``labels`` scaled by ``row_weights``: a cross-entropy target whose loss
    and gradient are the weighted ones (the kernel takes rows that do not sum to one)."""
    target = np.zeros((labels.shape[0], n_classes), dtype)
    target[np.arange(labels.shape[0]), labels] = row_weights
    return target


def _unflatten(theta, arrays):
    """Copy consecutive pieces of the flat vector ``theta`` into ``arrays`` (views included)."""
    off = 0
    for a in arrays:
        a[...] = theta[off:off + a.size].reshape(a.shape)
        off += a.size


def _sqnorm(w):
    flat = w.reshape(-1)
    return float(np.dot(flat, flat))


class _Solver:
    """sklearn's SGDOptimizer / AdamOptimizer carried out by ranvier's SGD / Adam.

    Two parameter groups: weights, with the L2 term ``alpha / batch_size`` as weight decay (set
    before every step, since the last batch may be smaller), and biases, without. The loss
    gradient reaching the optimizer is ``scale`` times sklearn's (ranvier's losses average over
    every output where sklearn averages over samples, and MSE carries a factor 2); the scale is
    folded into the optimizer: SGD's rate is divided by it, the weight decay and Adam's epsilon
    multiplied by it, which makes every update sklearn's. Adam's epsilon is also rescaled each
    step by ``1 / sqrt(1 - beta_2^t)``: PyTorch (and ranvier) add it to the bias-corrected
    ``sqrt(v_hat)``, sklearn to the raw ``sqrt(v)``.
    """

    def __init__(self, est, dense, scale):
        self.kind = est.solver
        self.scale = float(scale)
        self.alpha = float(est.alpha)
        self.t = 0
        weights = [d.weight for d in dense]
        biases = [d.bias for d in dense]
        groups = [{"params": weights}, {"params": biases}]
        if self.kind == "sgd":
            self.schedule = est.learning_rate
            self.learning_rate_init = float(est.learning_rate_init)
            self.learning_rate = self.learning_rate_init
            self.power_t = float(est.power_t)
            momentum = float(est.momentum)
            self.opt = SGD(groups, lr=self.learning_rate / self.scale, momentum=momentum,
                           nesterov=bool(est.nesterovs_momentum) and momentum > 0)
        else:
            self.schedule = "constant"
            self.beta_2 = float(est.beta_2)
            self.epsilon = float(est.epsilon)
            self.opt = Adam(groups, lr=float(est.learning_rate_init),
                            betas=(float(est.beta_1), self.beta_2), eps=self.epsilon)

    def step(self, batch_size):
        self.t += 1
        groups = self.opt.param_groups
        groups[0]["weight_decay"] = self.scale * self.alpha / batch_size
        if self.kind == "adam":
            eps = self.scale * self.epsilon / math.sqrt(1.0 - self.beta_2 ** self.t)
            groups[0]["eps"] = groups[1]["eps"] = eps
        self.opt.step()

    def iteration_ends(self, time_step):
        if self.kind == "sgd" and self.schedule == "invscaling":
            self._set_rate(self.learning_rate_init / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg, verbose):
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_rate(self.learning_rate / 5.0)
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    def _set_rate(self, rate):
        # sklearn's velocity has the rate folded in (v = momentum * v - rate * grad); PyTorch's
        # buffer holds raw gradients and the rate is applied at each step. Rescaling the buffer
        # by old / new rate keeps the two identical across a change of rate.
        ratio = self.learning_rate / rate
        sd = self.opt.state_dict()
        buffers = [st["momentum_buffer"] for st in sd["state"].values()
                   if st.get("step", 0) > 0 and "momentum_buffer" in st]
        if buffers:
            for buf in buffers:
                buf *= ratio
            self.opt.load_state_dict(sd)
        self.learning_rate = rate
        for g in self.opt.param_groups:
            g["lr"] = rate / self.scale

    # Pickling: the ranvier optimizer is saved as its state_dict (parameters by position) and
    # loaded into a new one over the rebuilt parameters.
    def snapshot(self):
        attrs = {k: v for k, v in self.__dict__.items() if k != "opt"}
        return {"attrs": attrs, "optimizer": self.opt.state_dict()}

    @classmethod
    def restore(cls, snap, dense):
        self = cls.__new__(cls)
        self.__dict__.update(snap["attrs"])
        groups = [{"params": [d.weight for d in dense]}, {"params": [d.bias for d in dense]}]
        self.opt = SGD(groups, lr=0.0) if self.kind == "sgd" else Adam(groups)
        self.opt.load_state_dict(snap["optimizer"])
        return self


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units in each hidden layer (``()`` for none).
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Activation of the hidden layers.
    solver : {"lbfgs", "adam", "sgd"}, default="adam"
        "lbfgs": scipy's L-BFGS-B on the whole data set (full batch), for small data sets.
    alpha : float, default=0.0001
        L2 penalty: ``alpha / 2 * sum(||W||^2) / batch_size`` is added to each mini-batch's loss
        (weights only, not biases).
    batch_size : int or "auto", default="auto"
        ``min(200, n_samples)`` when "auto".
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the SGD learning rate (ignored by Adam), as in scikit-learn.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default=200
        Epochs (passes over the data), or L-BFGS iterations; a ConvergenceWarning is issued when
        they run out.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState or None, default=None
        Weight initialisation, shuffling and the early-stopping split.
    tol : float, default=1e-4
        Training stops when the training loss (or the validation score with early stopping) has
        not improved by ``tol`` for ``n_iter_no_change`` consecutive epochs.
    verbose : bool, default=False
        Print the loss of every epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        SGD momentum, in [0, 1].
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop on its score (accuracy / R^2),
        keeping the best weights.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        With "lbfgs": the most loss-and-gradient evaluations.
    dtype : None, numpy.float32 or numpy.float64, default=None
        Precision of the ranvier network (ranvier extra). None: as scikit-learn, float32 for
        float32 ``X``, else float64.
"""

_ATTRS_DOC = """
    Attributes
    ----------
    loss_ : float
        Loss of the last epoch (mean over its mini-batches, L2 term included); with "lbfgs"
        the final full-batch loss.
    loss_curve_ : list of float
        ``loss_`` of every epoch (the stochastic solvers only).
    best_loss_ : float or None
        Lowest ``loss_`` (None with early stopping).
    validation_scores_ : list of float or None
        Validation score of every epoch with early stopping, else None.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last call to fit (1 after partial_fit).
    t_ : int
        Training samples seen.
    coefs_ : list of ndarray
        ``coefs_[i]`` is the ``(n_in, n_out)`` weight matrix of layer i (a view of the ranvier
        ``Dense`` weight, transposed).
    intercepts_ : list of ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier trained by ranvier (scikit-learn API).

    Minimises the log-loss with L-BFGS, Adam or SGD. Multiclass targets use a softmax output (ranvier's
    fused softmax + cross-entropy); binary and multilabel targets use one logistic unit per
    output, trained as a two-class softmax over ``[0, z]`` (equal to ``sigmoid(z)``), so binary
    problems have a single output unit and ``predict_proba`` returns two columns, as in sklearn.
    Class labels may be of any type (strings too).
""" + _PARAMS_DOC + _ATTRS_DOC + """    classes_ : ndarray
        The class labels (``arange(n_labels)`` for multilabel targets).
"""

    _is_classifier = True
    _score_function = staticmethod(accuracy_score)

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) from a new network (or the current one with warm_start);
        ``sample_weight``: one non-negative weight per sample."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y). ``classes`` (every label of the whole data set) is required on
        the first call. Only for the stochastic solvers ("adam", "sgd")."""
        self._check_params()  # before classes_ is set
        if self._first_partial_fit_call(classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _first_partial_fit_call(self, classes):
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                     f"partial_fit, was: {self.classes_!r}")
            else:
                self.classes_ = unique_labels(classes)
                return True
        return False

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = _validate_data(self, X, y, accept_sparse="csr", multi_output=True, dtype=dtype,
                              reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        if sp.issparse(Y):
            Y = Y.toarray()
        return X, y, self._packed_target(Y), Y.shape[1]

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_function(self):
        return CrossEntropyLoss()

    def _grad_scale(self):
        # softmax: ranvier's mean cross-entropy is sklearn's log-loss. logistic: ranvier averages
        # the (batch * outputs) two-class rows, sklearn sums over outputs and averages over rows.
        return 1.0 if self.out_activation_ == "softmax" else 1.0 / self.n_outputs_

    def _packed_target(self, Y, dtype=None):
        """The training target from the binarized ``Y``: class indices for a softmax output,
        else the (n_samples, n_outputs) 0/1 matrix."""
        if self._output_activation() == "softmax":
            return np.ascontiguousarray(np.argmax(Y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(Y.reshape(Y.shape[0], -1), dtype=np.int64)

    def _loss_and_grad(self, loss_fn, out, target, row_weights=None):
        """(sklearn's log-loss of the batch, ``_grad_scale()`` times its gradient with respect to
        ``out``). With ``row_weights`` (mean 1) the cross-entropy runs on one-hot rows scaled by
        the weights, which weighs both the loss and the gradient of every row in the kernel."""
        m, k = out.shape
        if self.out_activation_ == "softmax":
            if row_weights is not None:
                target = _weighted_one_hot(target, row_weights, k, out.dtype)
            loss = loss_fn(out, target)
            return loss, loss_fn.backward()
        logits = np.zeros((m * k, 2), out.dtype)  # [0, z]: softmax gives [1 - s(z), s(z)]
        logits[:, 1] = out.reshape(-1)
        target = target.reshape(-1)
        if row_weights is not None:
            target = _weighted_one_hot(target, np.repeat(row_weights, k), 2, out.dtype)
        loss = loss_fn(logits, target) * k
        return loss, loss_fn.backward()[:, 1].reshape(m, k)

    def _probabilities(self, X):
        """Output activations: softmax (n, classes) or sigmoid (n, outputs), model dtype."""
        z = self._forward(X)
        if self.out_activation_ == "softmax":
            return Softmax().forward(z)
        return Sigmoid().forward(z)

    def _predict_validated(self, X):
        p = self._probabilities(X)
        if self.n_outputs_ == 1:
            p = p.ravel()
        return self._label_binarizer.inverse_transform(p)

    def predict(self, X):
        """Class labels (an indicator matrix for multilabel targets)."""
        return self._predict_validated(self._check_X(X))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes) (two columns for binary problems),
        columns in the order of ``classes_``."""
        p = self._probabilities(self._check_X(X))
        if self.n_outputs_ == 1:
            p = p.ravel()
            return np.stack([1 - p, p], axis=1)
        return p

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor trained by ranvier (scikit-learn API).

    Minimises the squared error (identity output, ranvier's ``MSELoss``; ``loss_`` is reported
    on sklearn's scale, half the mean squared error), or with ``loss="poisson"`` the half Poisson
    deviance of ``exp(output)`` (log link; predictions are positive), with L-BFGS, Adam or SGD.
    ``y`` may have several columns (multi-output regression).

    loss : {"squared_error", "poisson"}, default="squared_error"
        (the first parameter, as in scikit-learn)
""" + _PARAMS_DOC + _ATTRS_DOC

    _is_classifier = False
    _score_function = staticmethod(r2_score)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype)
        self.loss = loss

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) from a new network (or the current one with warm_start);
        ``sample_weight``: one non-negative weight per sample."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y). Only for the stochastic solvers ("adam", "sgd")."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = _validate_data(self, X, y, accept_sparse="csr", multi_output=True, y_numeric=True,
                              dtype=dtype, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        T = self._packed_target(y, X.dtype)
        return X, y, T, T.shape[1]

    def _packed_target(self, y, dtype=None):
        """The training target: (n_samples, n_outputs) in ``dtype`` (default the network's)."""
        return np.ascontiguousarray(y.reshape(y.shape[0], -1),
                                    dtype=self._model.dtype if dtype is None else dtype)

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_function(self):
        return MSELoss()

    def _grad_scale(self):
        # ranvier's MSE: mean over batch * outputs of (pred - y)^2, gradient 2 (pred - y) / (m k);
        # sklearn's gradient is (pred - y) / m. The Poisson gradient is computed at sklearn's scale.
        return 2.0 / self.n_outputs_ if self.out_activation_ == "identity" else 1.0

    def _loss_and_grad(self, loss_fn, out, target, row_weights=None):
        """(sklearn's loss of the batch, ``_grad_scale()`` times its gradient with respect to
        ``out``): half the squared error averaged over the outputs (gradient summed over them,
        as sklearn's), or for ``loss="poisson"`` the half Poisson deviance of ``exp(out)`` summed
        over the outputs (log link: gradient ``exp(out) - y``). ``row_weights``: mean 1."""
        m = out.shape[0]
        if self.out_activation_ == "exp":
            pred = np.exp(out)
            rows = (xlogy(target, target / pred) - target + pred).sum(axis=1)
            grad = pred - target
        elif row_weights is None:
            loss = 0.5 * loss_fn(out, target)  # sklearn's squared loss is half the MSE
            return loss, loss_fn.backward()
        else:
            grad = out - target
            rows = 0.5 * np.mean(grad * grad, axis=1)
            grad *= self._grad_scale()
        if row_weights is not None:
            rows = rows * row_weights
            grad *= row_weights[:, None]
        grad /= m
        return float(np.mean(rows)), grad

    def _predict_validated(self, X):
        out = self._forward(X)
        if self.out_activation_ == "exp":
            np.exp(out, out=out)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        return self._predict_validated(self._check_X(X))
