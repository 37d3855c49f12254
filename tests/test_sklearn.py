"""ranvier.sklearn: scikit-learn's estimator checks, accuracy on digits, regression, Pipeline /
GridSearchCV / clone, partial_fit, early stopping, string labels, parameter validation, pickling,
and step-for-step agreement with scikit-learn's own MLPClassifier / MLPRegressor."""
import os
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402  (scikit-learn depends on scipy)
from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import _reference as ref64  # noqa: E402
import ranvier as rv  # noqa: E402
from ranvier.sklearn import InvalidParameterError, MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = rv.datasets.load_digits()
    X = X / 16.0
    return rv.datasets.train_test_split(X, y, test_size=0.25, seed=0)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(a, b))


# -- scikit-learn's estimator checks --------------------------------------------------------------
# No check is expected to fail, so there is no expected_failed_checks. The small network and
# max_iter keep the ~110 checks fast; check_classifiers_train / check_regressors_train still need
# the fit to reach their accuracy / R^2 bars (ConvergenceWarnings are expected and ignored).
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([
    MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100, random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100, random_state=0),
])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- the same training as scikit-learn, step for step ---------------------------------------------
# In float64 with the same random_state, ranvier draws sklearn's initial weights, visits the
# mini-batches in sklearn's order and makes sklearn's updates (L2 term, loss scale, SGD momentum /
# Nesterov and rate schedules, Adam's epsilon), so the weights and loss curves agree to rounding.
# A wrong alpha scaling, a loss off by a factor (MSE vs half-MSE, per-output averaging) or a
# different optimizer convention moves them by far more than the tolerance.
_AGREE_CASES = {
    "adam-relu": dict(solver="adam", activation="relu"),
    "adam-logistic-nobatchauto": dict(solver="adam", activation="logistic", batch_size=50),
    "sgd-nesterov-tanh": dict(solver="sgd", activation="tanh"),
    "sgd-momentum-identity": dict(solver="sgd", activation="identity", nesterovs_momentum=False),
    "sgd-no-momentum": dict(solver="sgd", momentum=0.0),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05),
    # tol so large that the rate is divided by 5 twice within the 6 epochs
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                         tol=0.5, n_iter_no_change=1),
    "no-shuffle": dict(solver="adam", shuffle=False),
}


def _targets(kind, X, y):
    if kind == "multiclass":
        return y
    if kind == "binary":
        return np.where(y >= 5, "high", "low")
    if kind == "multilabel":
        return np.stack([y >= 5, y % 2 == 0, y == 3], axis=1).astype(int)
    if kind == "regression":
        return X @ np.linspace(-1, 1, X.shape[1]) + 0.5
    return np.stack([X @ np.linspace(-1, 1, X.shape[1]), X[:, :8].sum(axis=1)], axis=1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression",
                                  "multioutput"])
@pytest.mark.parametrize("case", sorted(_AGREE_CASES))
def test_training_matches_scikit_learn(digits, kind, case):
    X_train, _, y_train, _ = digits
    X, y = X_train[:400].astype(np.float64), y_train[:400]
    target = _targets(kind, X, y)
    kw = dict(hidden_layer_sizes=(20, 12), alpha=0.01, max_iter=6, random_state=3,
              learning_rate_init=0.01, batch_size=64)
    kw.update(_AGREE_CASES[case])
    regression = kind in ("regression", "multioutput")
    ours = (MLPRegressor if regression else MLPClassifier)(dtype=np.float64, **kw).fit(X, target)
    ref = (neural_network.MLPRegressor if regression else neural_network.MLPClassifier)(**kw)
    ref.fit(X, target)
    assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
    assert ours.out_activation_ == ref.out_activation_ and ours.n_outputs_ == ref.n_outputs_
    assert [c.shape for c in ours.coefs_] == [c.shape for c in ref.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in ref.intercepts_]
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9, atol=1e-12)
    assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-9)
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-9
    assert _max_diff(ours.intercepts_, ref.intercepts_) < 1e-9
    if regression:
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-8, atol=1e-9)
    else:
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_early_stopping_and_partial_fit_match_scikit_learn(digits, solver):
    X_train, _, y_train, _ = digits
    X = X_train[:500].astype(np.float64)
    y = y_train[:500]
    kw = dict(solver=solver, hidden_layer_sizes=(24,), random_state=0, max_iter=60,
              early_stopping=True, n_iter_no_change=3, learning_rate_init=0.02)
    ours = MLPClassifier(dtype=np.float64, **kw).fit(X, y)
    ref = neural_network.MLPClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ < 60
    np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, atol=1e-12)
    assert ours.best_validation_score_ == ref.best_validation_score_
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-9  # both restored the best epoch's weights

    kw = dict(solver=solver, hidden_layer_sizes=(24,), random_state=0)
    ours, ref = MLPClassifier(dtype=np.float64, **kw), neural_network.MLPClassifier(**kw)
    for start in (0, 250, 0):
        ours.partial_fit(X[start:start + 250], y[start:start + 250], classes=np.arange(10))
        ref.partial_fit(X[start:start + 250], y[start:start + 250], classes=np.arange(10))
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-9


# -- accuracy ---------------------------------------------------------------------------------
@pytest.mark.quick
def test_classifier_digits_accuracy(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(random_state=0, max_iter=100, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.predict_proba(X_test).dtype == np.float32
    np.testing.assert_allclose(clf.predict_proba(X_test).sum(axis=1), 1.0, rtol=1e-5)
    assert clf.loss_curve_[-1] < 0.1 * clf.loss_curve_[0]
    assert clf.n_features_in_ == 64 and clf.n_outputs_ == 10 and clf.n_layers_ == 3
    assert clf.out_activation_ == "softmax"
    np.testing.assert_array_equal(clf.classes_, np.arange(10))


def test_accuracy_close_to_scikit_learn(digits):
    """Sanity bound: on the same data and settings both land within two points of each other."""
    X_train, X_test, y_train, y_test = digits
    kw = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X_train, y_train).score(X_test, y_test)
        ref = neural_network.MLPClassifier(**kw).fit(X_train, y_train).score(X_test, y_test)
    assert ours >= 0.95 and ref >= 0.95
    assert abs(ours - ref) <= 0.02


@pytest.mark.quick
def test_regressor_fits_a_linear_target():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8))
    w = rng.normal(size=8)
    y = X @ w + 0.3 + 0.05 * rng.normal(size=600)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=150,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X[:500], y[:500])
    assert reg.score(X[500:], y[500:]) > 0.95
    pred = reg.predict(X[500:])
    assert pred.shape == (100,) and pred.dtype == np.float64  # X's dtype, as scikit-learn
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 1
    # loss_ is sklearn's squared loss: half the mean squared error (plus the small L2 term)
    half_mse = 0.5 * np.mean((reg.predict(X[:500]) - y[:500]) ** 2)
    assert half_mse < reg.loss_curve_[0] / 10
    assert reg.loss_ == pytest.approx(half_mse, rel=0.5, abs=0.01)


def test_multioutput_regression():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 5))
    Y = np.stack([X[:, 0] - X[:, 1], 2 * X[:, 2] + 1, X[:, 3] * 0.5], axis=1)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=200,
                       random_state=0, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    assert reg.n_outputs_ == 3 and reg.coefs_[-1].shape == (32, 3)
    pred = reg.predict(X)
    assert pred.shape == (400, 3) and pred.dtype == np.float64
    assert reg.score(X, Y) > 0.95


# -- scikit-learn tooling -----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_gridsearch_and_clone(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (48,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=1)
    grid.fit(X_train * 16, y_train)  # unscaled pixels: the StandardScaler does the scaling
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] == (48,)
    assert grid.best_estimator_.score(X_test * 16, y_test) > 0.93
    assert len(grid.cv_results_["mean_test_score"]) == 4

    fitted = grid.best_estimator_[-1]
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    assert not hasattr(fresh, "coefs_")
    # a clone trains to the same weights (same random_state, deterministic kernels)
    fresh.fit(StandardScaler().fit_transform(X_train * 16), y_train)
    again = clone(fresh).fit(StandardScaler().fit_transform(X_train * 16), y_train)
    assert _max_diff(fresh.coefs_, again.coefs_) == 0.0


# -- partial_fit --------------------------------------------------------------------------------
def test_partial_fit_classifier(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_train[:100], y_train[:100])
    assert not hasattr(clf, "coefs_")
    # the first batch need not contain every class
    first = y_train < 5
    clf.partial_fit(X_train[first][:200], y_train[first][:200], classes=np.arange(10))
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 200 and clf.coefs_[-1].shape == (32, 10)
    losses = []
    for _ in range(15):
        clf.partial_fit(X_train, y_train)
        losses.append(clf.loss_)
    assert clf.n_iter_ == 1 and clf.t_ == 200 + 15 * len(X_train)
    assert len(clf.loss_curve_) == 16
    assert losses[-1] < 0.5 * losses[0]
    assert clf.score(X_train, y_train) > 0.9
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(X_train, y_train, classes=np.arange(11))
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X_train[:10], np.full(10, 42))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X_train[:10, :20], y_train[:10])
    with pytest.raises(ValueError, match="early_stopping"):
        clf.set_params(early_stopping=True).partial_fit(X_train, y_train)


def test_partial_fit_regressor_and_after_fit():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    reg.partial_fit(X, y)
    first = reg.loss_
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.loss_ < 0.2 * first
    # fit starts afresh; partial_fit after fit continues the same network
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.set_params(max_iter=5).fit(X, y)
    assert len(reg.loss_curve_) == 5
    reg.partial_fit(X, y)
    assert len(reg.loss_curve_) == 6 and reg.n_iter_ == 1


def test_warm_start_continues():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        before = [c.copy() for c in clf.coefs_]
        clf.fit(X, y)
    assert len(clf.loss_curve_) == 10 and clf.n_iter_ == 5
    assert clf.loss_curve_[-1] < clf.loss_curve_[4]
    assert _max_diff(before, clf.coefs_) > 0
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, y + 1)
    # a new activation applies to the kept weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(activation="tanh", max_iter=1).fit(X, y)
    z = np.tanh(X @ clf.coefs_[0] + clf.intercepts_[0]) @ clf.coefs_[1] + clf.intercepts_[1]
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], ref64.sigmoid(z[:, 0]), rtol=1e-4,
                               atol=1e-6)
    with pytest.raises(ValueError, match="layer sizes"):
        clf.set_params(hidden_layer_sizes=(9,)).fit(X, y)


# -- stopping rule, early stopping, warnings ----------------------------------------------------
def test_convergence_warning_and_stopping_rule():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    # a tolerance no epoch can meet: the first epoch sets best_loss_, the next ones count as no
    # improvement, and training stops once the count exceeds n_iter_no_change (sklearn's rule),
    # without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(4,), tol=100.0, n_iter_no_change=4,
                            random_state=0).fit(X, y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_early_stopping_sets_validation_scores(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                        validation_fraction=0.2, learning_rate_init=0.01, max_iter=200,
                        random_state=0)
    clf.fit(X_train, y_train)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ == len(clf.loss_curve_) < 200
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert clf.best_validation_score_ == max(scores) > 0.9
    assert clf.best_loss_ is None
    # stopped because the best score was not beaten by tol for n_iter_no_change + 1 epochs
    assert int(np.argmax(scores)) <= len(scores) - 4

    reg = MLPRegressor(hidden_layer_sizes=(16,), early_stopping=True, random_state=0,
                       learning_rate_init=0.01, max_iter=100)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, X @ [1.0, 2.0, -1.0])
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_) > 0.9  # R^2

    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.1).fit(X[:10], X[:10, 0])


def test_verbose_prints_each_epoch(capsys):
    X = np.random.default_rng(6).normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, verbose=True).fit(X, X[:, 0])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["Iteration 1", "Iteration 2", "Iteration 3"]


# -- labels -------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_and_binary_labels(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"], dtype=object)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=40, learning_rate_init=0.01,
                        random_state=0).fit(X_train, names[y_train])
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(X_test)
    assert set(pred) <= set(names) and np.mean(pred == names[y_test]) > 0.9
    proba = clf.predict_proba(X_test)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)

    # binary: one logistic output unit, two probability columns in classes_ order
    yb = np.where(y_train % 2 == 0, "even", "odd")
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=40, learning_rate_init=0.01,
                        random_state=0).fit(X_train, yb)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (16, 1)
    np.testing.assert_array_equal(clf.classes_, ["even", "odd"])
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    pred = clf.predict(X_test)
    np.testing.assert_array_equal(pred, np.where(proba[:, 1] > 0.5, "odd", "even"))
    assert np.mean(pred == np.where(y_test % 2 == 0, "even", "odd")) > 0.85
    np.testing.assert_allclose(clf.predict_log_proba(X_test), np.log(proba), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multilabel(digits):
    X_train, X_test, y_train, y_test = digits
    Y = np.stack([y_train >= 5, y_train % 2 == 0], axis=1).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, learning_rate_init=0.01,
                        random_state=0).fit(X_train, Y)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 2
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2) and np.all((proba >= 0) & (proba <= 1))
    pred = clf.predict(X_test)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    Y_test = np.stack([y_test >= 5, y_test % 2 == 0], axis=1).astype(int)
    assert clf.score(X_test, Y_test) > 0.8  # subset accuracy: both labels right


# -- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"hidden_layer_sizes": 0}, {"hidden_layer_sizes": (10, -1)}, {"hidden_layer_sizes": "10"},
    {"hidden_layer_sizes": (10.5,)}, {"activation": "softplus"}, {"max_fun": 0},
    {"max_fun": 1.5},
    {"solver": "rmsprop"}, {"alpha": -1.0}, {"alpha": "0.1"}, {"batch_size": 0},
    {"batch_size": "big"}, {"batch_size": 2.5}, {"learning_rate": "cyclic"},
    {"learning_rate_init": 0.0}, {"learning_rate_init": float("nan")}, {"power_t": -0.5},
    {"max_iter": 0}, {"max_iter": 10.0}, {"shuffle": "yes"}, {"random_state": "seed"},
    {"tol": -1e-3}, {"verbose": "loud"}, {"warm_start": 1}, {"momentum": 1.5},
    {"momentum": -0.1}, {"nesterovs_momentum": None}, {"early_stopping": "no"},
    {"validation_fraction": 1.0}, {"validation_fraction": -0.1}, {"beta_1": 1.0},
    {"beta_2": -0.1}, {"epsilon": 0.0}, {"n_iter_no_change": 0}, {"n_iter_no_change": 2.5},
    {"dtype": np.float16}, {"dtype": "int32"}, {"dtype": "not a dtype"},
], ids=lambda p: "-".join(f"{k}={v!r}" for k, v in p.items()))
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_bad_hyperparameters_raise_at_fit(Estimator, params):
    X = np.random.default_rng(7).normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(int)
    est = Estimator(**params)  # accepted at construction, as scikit-learn requires
    assert est.get_params()[next(iter(params))] is next(iter(params.values()))
    with pytest.raises(ValueError, match=next(iter(params))) as info:
        est.fit(X, y)
    assert isinstance(info.value, InvalidParameterError)
    assert not hasattr(est, "coefs_")
    est = Estimator().set_params(**params)
    if "solver" in params:  # partial_fit exists for the stochastic solvers only (available_if)
        with pytest.raises(AttributeError, match="partial_fit") as info:
            est.partial_fit
        assert isinstance(info.value.__cause__, InvalidParameterError)
        assert "solver" in str(info.value.__cause__)
    else:
        with pytest.raises(ValueError):
            est.partial_fit(X, y, **({"classes": [0, 1]} if Estimator is MLPClassifier else {}))
    assert not hasattr(est, "classes_") and not hasattr(est, "coefs_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_accepted_edge_parameters():
    X = np.random.default_rng(8).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    # no hidden layer: logistic regression; an int hidden_layer_sizes; inf patience; momentum 0/1
    clf = MLPClassifier(hidden_layer_sizes=(), max_iter=3).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(3, 1)] and clf.n_layers_ == 2
    clf = MLPClassifier(hidden_layer_sizes=np.int64(5), max_iter=3, n_iter_no_change=np.inf,
                        solver="sgd", momentum=1.0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(3, 5), (5, 1)]
    with pytest.warns(UserWarning, match="batch_size"):
        MLPRegressor(batch_size=100, max_iter=2).fit(X, X[:, 0])


# -- attributes, dtype, pickling, sparse --------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_coefs_are_the_network_weights(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(12,), max_iter=5, random_state=0).fit(X_train, y_train)
    assert [c.shape for c in clf.coefs_] == [(64, 12), (12, 10)]
    assert [b.shape for b in clf.intercepts_] == [(12,), (10,)]
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    # the forward pass in NumPy from coefs_ / intercepts_ gives predict_proba
    h = np.maximum(X_test @ clf.coefs_[0] + clf.intercepts_[0], 0)
    z = h @ clf.coefs_[1] + clf.intercepts_[1]
    np.testing.assert_allclose(clf.predict_proba(X_test), ref64.softmax(z), rtol=1e-4, atol=1e-6)
    # editing coefs_ in place edits the model; assigning new arrays is picked up too
    assert not np.allclose(clf.predict_proba(X_test[:5]), 0.1, atol=0.01)
    clf.coefs_[1][:] = 0
    clf.intercepts_[1][:] = 0
    np.testing.assert_allclose(clf.predict_proba(X_test[:5]), 0.1, rtol=1e-6)
    clf.coefs_[1] = np.ones((12, 10))
    clf.intercepts_[1] = np.arange(10.0)
    np.testing.assert_array_equal(clf.predict(X_test[:5]), 9)
    assert clf.coefs_[1].dtype == np.float32  # re-bound to the network's weights
    clf.coefs_[0] = np.ones((3, 3))
    with pytest.raises(ValueError, match="shapes"):
        clf.predict(X_test[:5])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_pickle_round_trip_keeps_optimizer_state(digits, solver):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver=solver, max_iter=3, random_state=0)
    clf.fit(X_train, y_train)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))
    assert copy.loss_curve_ == clf.loss_curve_
    # training on continues identically: the Adam moments / SGD momentum came along
    clf.partial_fit(X_train, y_train)
    copy.partial_fit(X_train, y_train)
    assert copy.loss_ == clf.loss_
    assert _max_diff(copy.coefs_, clf.coefs_) == 0.0
    # an unfitted estimator pickles too
    assert pickle.loads(pickle.dumps(MLPRegressor(alpha=0.5))).get_params()["alpha"] == 0.5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dtype_float64_and_sparse_input(digits):
    X_train, X_test, y_train, _ = digits
    kw = dict(hidden_layer_sizes=(16,), max_iter=4, random_state=0)
    c64 = MLPClassifier(dtype=np.float64, **kw).fit(X_train, y_train)
    assert c64.predict_proba(X_test).dtype == np.float64
    assert all(c.dtype == np.float64 for c in c64.coefs_)
    c32 = MLPClassifier(**kw).fit(X_train, y_train)
    assert _max_diff(c32.coefs_, c64.coefs_) < 1e-3  # same training, float32 rounding apart
    # sparse X gives the same network as dense X
    cs = MLPClassifier(**kw).fit(sp.csr_matrix(X_train), y_train)
    assert _max_diff(cs.coefs_, c32.coefs_) < 1e-6
    np.testing.assert_allclose(cs.predict_proba(sp.csc_matrix(X_test)),
                               c32.predict_proba(X_test), atol=1e-6)


def test_unfitted_and_bad_input_errors():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(np.zeros((2, 3)))
    X = np.random.default_rng(9).normal(size=(30, 3))
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(max_iter=1).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor(max_iter=1).fit(np.where(X > 1, np.nan, X), X[:, 0])


def test_import_ranvier_sklearn_only_on_request():
    import subprocess
    import sys

    code = ("import sys, ranvier\n"
            "assert 'sklearn' not in sys.modules and 'ranvier.sklearn' not in sys.modules\n"
            "import ranvier.sklearn\n"
            "assert 'sklearn' in sys.modules\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(rv.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


# -- lbfgs, sample_weight, loss="poisson", dtype following the input ----------------------------
def _weighted_targets(kind, X, y):
    if kind == "poisson":
        return np.random.default_rng(5).poisson(np.exp(X[:, :3].sum(axis=1) / 3.0))
    return _targets(kind, X, y)


_ALL_KINDS = ["multiclass", "binary", "multilabel", "regression", "multioutput", "poisson"]


def _estimators(kind, **kw):
    """(ours in float64, scikit-learn's) for a target kind."""
    if kind in ("regression", "multioutput", "poisson"):
        if kind == "poisson":
            kw["loss"] = "poisson"
        return MLPRegressor(dtype=np.float64, **kw), neural_network.MLPRegressor(**kw)
    return MLPClassifier(dtype=np.float64, **kw), neural_network.MLPClassifier(**kw)


def _fit_both(digits, n, kind, weights_rng, weight_range, **kw):
    """Ours and scikit-learn's fitted on the first n digits with ``kind`` targets and random
    sample weights in ``weight_range`` (None: unweighted); returns (ours, ref, X)."""
    X_train, _, y_train, _ = digits
    X = X_train[:n].astype(np.float64)
    target = _weighted_targets(kind, X, y_train[:n])
    sw = None if weight_range is None else weights_rng.uniform(*weight_range, n)
    ours, ref = _estimators(kind, **kw)
    ours.fit(X, target, sample_weight=sw)
    ref.fit(X, target, sample_weight=sw)
    return ours, ref, X


# L-BFGS from the same start on the same objective and gradient (ranvier's kernels vs sklearn's
# NumPy, equal to rounding) takes the same steps; a wrong loss scale, L2 term, weighting or
# output activation sends it elsewhere within a few iterations.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", _ALL_KINDS)
def test_lbfgs_matches_scikit_learn(digits, kind, weighted):
    ours, ref, X = _fit_both(digits, 150, kind, np.random.default_rng(2),
                             (0.2, 3.0) if weighted else None, solver="lbfgs",
                             hidden_layer_sizes=(9,), alpha=0.01, max_iter=12, random_state=4,
                             activation="tanh")
    assert ours.n_iter_ == ref.n_iter_
    assert ours.out_activation_ == ref.out_activation_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-7)
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-6
    assert _max_diff(ours.intercepts_, ref.intercepts_) < 1e-6
    if kind in ("regression", "multioutput", "poisson"):
        np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-6, atol=1e-8)
    else:
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-7)


# The stochastic solvers with sample weights: sklearn's updates (weighted loss and gradient, L2
# term over the batch's weight sum), step for step.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("kind", _ALL_KINDS)
def test_weighted_stochastic_training_matches_scikit_learn(digits, kind, solver):
    ours, ref, _ = _fit_both(digits, 300, kind, np.random.default_rng(3), (0.0, 2.0),
                             solver=solver, hidden_layer_sizes=(16,), alpha=0.01, max_iter=5,
                             random_state=3, batch_size=50, learning_rate_init=0.01)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-9
    assert _max_diff(ours.intercepts_, ref.intercepts_) < 1e-9


@pytest.mark.parametrize("kind", _ALL_KINDS)
def test_lbfgs_objective_gradient_by_finite_differences(digits, kind):
    """The gradient L-BFGS gets (ranvier's native backward, weighted, with the L2 term) is the
    derivative of the loss it gets."""
    X_train, _, y_train, _ = digits
    X, y = X_train[:40].astype(np.float64), y_train[:40]
    target = _weighted_targets(kind, X, y)
    sw = np.random.default_rng(6).uniform(0.0, 2.0, X.shape[0])
    est = _estimators(kind, solver="lbfgs", hidden_layer_sizes=(5,), alpha=0.3, max_iter=2,
                      random_state=0, activation="logistic")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, target)
    if kind in ("regression", "multioutput", "poisson"):
        Y = np.asarray(target, np.float64).reshape(X.shape[0], -1)
    else:
        Y = est._label_binarizer.transform(target)
    theta = np.concatenate([c.ravel() for c in est.coefs_] + [b.ravel() for b in est.intercepts_])
    _, grad = est._loss_grad_lbfgs(theta.copy(), X, Y, sw)
    if kind == "multioutput":
        # scikit-learn's quirk, kept so that lbfgs takes sklearn's steps: for several outputs the
        # squared loss is averaged over the outputs but its gradient summed over them
        n_weights = sum(c.size for c in est.coefs_)
        l2 = np.zeros_like(grad)
        l2[:n_weights] = est.alpha * theta[:n_weights] / sw.sum()  # not scaled
        grad = (grad - l2) / est.n_outputs_ + l2
    ref64.check_gradient(lambda t: est._loss_grad_lbfgs(t.copy(), X, Y, sw)[0], theta, grad,
                         np.random.default_rng(0))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_integer_weights_are_repeated_samples(digits):
    X_train, _, y_train, _ = digits
    X, y = X_train[:60].astype(np.float64), y_train[:60]
    sw = np.random.default_rng(1).integers(0, 3, X.shape[0])
    kw = dict(solver="lbfgs", hidden_layer_sizes=(7,), max_iter=15, random_state=0)
    weighted = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
    repeated = MLPClassifier(**kw).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    assert _max_diff(weighted.coefs_, repeated.coefs_) < 1e-6


def test_sample_weight_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(19,\), expected \(20,\)"):
        MLPClassifier(max_iter=1).fit(X, y, sample_weight=np.ones(19))
    with pytest.raises(ValueError, match="1D array or scalar"):
        MLPRegressor(max_iter=1).fit(X, X[:, 0], sample_weight=np.ones((20, 1)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_dtype_follows_the_input(digits, Estimator, solver):
    X_train, X_test, y_train, _ = digits
    y = y_train[:200]
    for X, expected in [(X_train[:200].astype(np.float32), np.float32),
                        (X_train[:200].astype(np.float64), np.float64),
                        ((X_train[:200] * 16).astype(np.int64), np.float64)]:
        est = Estimator(solver=solver, hidden_layer_sizes=(8,), max_iter=3, random_state=0)
        est.fit(X, y)
        assert all(a.dtype == expected for a in est.coefs_ + est.intercepts_)
        assert est._model.dtype == expected  # trained in that dtype, not converted after
        out = est.predict_proba(X_test) if Estimator is MLPClassifier else est.predict(X_test)
        assert out.dtype == expected
    # dtype= still fixes the network's precision whatever the input
    est = Estimator(solver=solver, hidden_layer_sizes=(8,), max_iter=3, dtype=np.float32)
    assert est.fit(X_train[:200].astype(np.float64), y).coefs_[0].dtype == np.float32


def test_lbfgs_convergence_warning_verbose_and_no_partial_fit(digits, capsys):
    X_train, _, y_train, _ = digits
    X, y = X_train[:100].astype(np.float64), y_train[:100]
    kw = dict(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning) as ours:
        MLPClassifier(**kw).fit(X, y)
    with pytest.warns(ConvergenceWarning) as ref:
        neural_network.MLPClassifier(**kw).fit(X, y)
    assert [str(w.message) for w in ours] == [str(w.message) for w in ref]
    assert "lbfgs failed to converge after 3 iteration(s)" in str(ours[0].message)
    with pytest.warns(ConvergenceWarning):
        MLPClassifier(verbose=True, **kw).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2", "Iteration 3"]
    with pytest.warns(ConvergenceWarning, match="STOP: TOTAL NO. OF F,G EVALUATIONS"):
        MLPClassifier(max_fun=4, **dict(kw, max_iter=50)).fit(X, y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")


def test_regressor_loss_parameter():
    assert MLPRegressor("poisson").get_params()["loss"] == "poisson"  # first, as scikit-learn's
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InvalidParameterError, match="loss"):
        MLPRegressor(loss="huber").fit(X, X[:, 0])


def test_partial_fit_from_hand_set_weights():
    """scikit-learn's worked example: weights assigned before any fit, then one SGD step."""
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    kw = dict(solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
              max_iter=1, hidden_layer_sizes=2, momentum=0)
    coefs = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]), np.array([[0.1], [0.2]])]
    intercepts = [np.array([0.1, 0.1]), np.array([1.0])]
    ours, ref = MLPClassifier(**kw), neural_network.MLPClassifier(**kw)
    for est in (ours, ref):
        est.coefs_, est.intercepts_ = [c.copy() for c in coefs], [b.copy() for b in intercepts]
        est.n_features_in_ = 3
        if est is ref:  # scikit-learn needs its training state set by hand too
            est.n_outputs_, est.n_layers_, est.out_activation_ = 1, 3, "logistic"
            est.t_, est.n_iter_, est.best_loss_, est.loss_curve_ = 0, 0, np.inf, []
            est._no_improvement_count = 0
        est.partial_fit(X, y, classes=[0, 1])
    assert _max_diff(ours.coefs_, ref.coefs_) < 1e-12
    assert _max_diff(ours.intercepts_, ref.intercepts_) < 1e-12
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-12)
    bad = MLPClassifier(**kw)
    bad.coefs_, bad.intercepts_ = [np.zeros((3, 2)), np.zeros((3, 1))], [np.zeros(2), np.zeros(1)]
    with pytest.raises(ValueError, match=r"coefs_\[1\] / intercepts_\[1\].*do not chain"):
        bad.partial_fit(X, y, classes=[0, 1])


def test_early_stopping_split_names_the_class_as_scikit_learn():
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    with pytest.raises(ValueError, match=r"too few members are: \['True'\]"):
        MLPClassifier(early_stopping=True).fit(X, y)
