"""MLPClassifier.fit on MNIST: ranvier.sklearn vs scikit-learn, side by side (adam and lbfgs).

The same estimator call for both (``from ranvier.sklearn import MLPClassifier`` instead of
``from sklearn.neural_network import MLPClassifier``): the same data (a subset of MNIST's training
images, float32 in [0, 1], so both train in float32), parameters, ``random_state`` and thread
count. Adam runs a fixed number of epochs (``tol=0``, ``n_iter_no_change=inf``); lbfgs a fixed
number of iterations (it may stop earlier: ``n_iter_`` is printed, and the time per iteration).
Prints the median fit time (min-max over repeats), time per epoch / iteration, the ratio and the
test accuracy each reached (on the 10,000 test images).

Without a data directory the images are synthetic MNIST-shaped data.

    ranvier bench --full --only sklearn [--threads 1,2] [--data-dir DIR]
"""
import warnings

import numpy as np

from ._common import Threads, load_mnist, optional_import, synthetic_mnist, timeit

def run(threads=(1, 2), data_dir=None, n_train=10_000, hidden=128, epochs=5, lbfgs_iter=30,
        repeats=3, log=print, libs=("ranvier", "sklearn")):
    """One row per (solver, threads) with each library's fit time (timeit record), iterations,
    time per iteration and test accuracy, and ranvier's speed per iteration over sklearn's."""
    from ranvier.sklearn import MLPClassifier as RvMLP

    sk = optional_import("sklearn.neural_network") if "sklearn" in libs else None
    Xtr, ytr, Xt, yt, source = (synthetic_mnist() if data_dir is None else load_mnist(data_dir))
    X, y = Xtr[:n_train], ytr[:n_train]
    configs = {
        "adam": dict(solver="adam", max_iter=epochs, tol=0.0, n_iter_no_change=np.inf,
                     batch_size=200),
        "lbfgs": dict(solver="lbfgs", max_iter=lbfgs_iter),
    }
    classes = {"ranvier": RvMLP}
    notes = [f"Data: the first {len(X)} training images of {source}, float32 (both train in "
             f"float32); 784-{hidden}-10 ReLU; adam: {epochs} epochs at batch 200; lbfgs: at "
             f"most {lbfgs_iter} iterations; median of {repeats} fits."]
    if sk is None:
        notes.append("scikit-learn is not installed (or left out by --libs): its column is "
                     "skipped.")
    else:
        classes["sklearn"] = sk.MLPClassifier
    rows, tc = [], Threads()
    for nt in threads:
        tc.set(nt)
        for solver, kw in configs.items():
            row = {"solver": solver, "threads": nt, "n_train": int(len(X)), "hidden": hidden}
            for name, cls in classes.items():
                fitted = []

                def fit():
                    est = cls(hidden_layer_sizes=(hidden,), random_state=0, **kw)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # ConvergenceWarning: fixed iterations
                        fitted.append(est.fit(X, y))
                # warm-up: load and initialise each library outside the timings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cls(hidden_layer_sizes=(hidden,), max_iter=1, **{
                        k: v for k, v in kw.items() if k != "max_iter"}).fit(X[:500], y[:500])
                t = timeit(fit, repeats=repeats, warmup=0)
                est = fitted[-1]
                row[name] = {"time": t, "n_iter": int(est.n_iter_),
                             "seconds_per_iter": t["median"] / max(est.n_iter_, 1),
                             "test_accuracy": float(est.score(Xt, yt)),
                             "dtype": str(est.coefs_[0].dtype)}
                log(f"  sklearn {solver:5s} t={nt} {name:8s} {t['median']:.3f} s, "
                    f"{est.n_iter_} iterations, accuracy {row[name]['test_accuracy'] * 100:.2f}%")
            if row.get("sklearn"):
                row["speed_per_iter_vs_sklearn"] = (row["sklearn"]["seconds_per_iter"]
                                                    / row["ranvier"]["seconds_per_iter"])
            rows.append(row)
    tc.set(1)
    return {"rows": rows, "notes": notes}
