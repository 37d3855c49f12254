"""MLPClassifier.fit on MNIST: ranvier.sklearn vs scikit-learn, side by side (adam and lbfgs).

The same estimator call for both (``from ranvier.sklearn import MLPClassifier`` instead of
``from sklearn.neural_network import MLPClassifier``): the same data (a subset of MNIST's training
images, float32 in [0, 1], so both train in float32), parameters, ``random_state`` and thread
count. Adam runs a fixed number of epochs (``tol=0``, ``n_iter_no_change=inf``); lbfgs a fixed
number of iterations (it may stop earlier: ``n_iter_`` is printed, and the time per iteration).
Prints the median fit time (min-max over repeats), time per epoch / iteration, the ratio and the
test accuracy each reached (on the 10,000 test images), and writes JSON.

    python benchmarks/bench_sklearn.py [--n-train 10000] [--epochs 5] [--lbfgs-iter 30]
        [--repeats 3] [--threads N] [--data-dir DIR]
"""
import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fair_blas_env  # noqa: E402

fair_blas_env()

import numpy as np  # noqa: E402

import ranvier as rv  # noqa: E402
from _common import (DEFAULT_MNIST_DIR, RESULTS_DIR, Threads, machine_record, timeit,  # noqa: E402
                     versions, write_json)


def _mnist(data_dir, n_train):
    (X, y), (Xt, yt) = rv.datasets.load_mnist(data_dir, flatten=True, dtype=np.float32,
                                              normalize=True)
    return X[:n_train], y[:n_train], Xt, yt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000, help="first N training images")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5, help="adam epochs (max_iter)")
    ap.add_argument("--lbfgs-iter", type=int, default=30, help="lbfgs max_iter")
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per library (median)")
    ap.add_argument("--threads", type=int, default=None, help="default: every core")
    env_dir = os.environ.get("RANVIER_DATA_DIR")
    ap.add_argument("--data-dir", default=os.path.join(env_dir, "mnist") if env_dir
                    else DEFAULT_MNIST_DIR)
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "sklearn_fit.json"))
    args = ap.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    from ranvier.sklearn import MLPClassifier as RvMLP

    threads = Threads().set(args.threads or os.cpu_count())
    X, y, Xt, yt = _mnist(args.data_dir, args.n_train)
    configs = {
        "adam": dict(solver="adam", max_iter=args.epochs, tol=0.0, n_iter_no_change=np.inf,
                     batch_size=200),
        "lbfgs": dict(solver="lbfgs", max_iter=args.lbfgs_iter),
    }
    libs = {"ranvier": RvMLP, "sklearn": SkMLP}
    results = {}
    print(f"MNIST subset: {X.shape[0]} training images (float32), 784-{args.hidden}-10 ReLU, "
          f"{threads} threads, ranvier GEMM {rv.get_isa()}, median of {args.repeats} fits")
    print(f"{'solver':7s} {'library':9s} {'fit s (median, min-max)':>26s} {'n_iter':>7s} "
          f"{'ms/iter':>9s} {'test acc':>9s}")
    for solver, kw in configs.items():
        results[solver] = {}
        for name, cls in libs.items():
            fitted = []

            def fit():
                est = cls(hidden_layer_sizes=(args.hidden,), random_state=0, **kw)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    fitted.append(est.fit(X, y))
            # warm-up: load and initialise each library outside the timings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                cls(hidden_layer_sizes=(args.hidden,), max_iter=1, **{
                    k: v for k, v in kw.items() if k != "max_iter"}).fit(X[:500], y[:500])
            t = timeit(fit, repeats=args.repeats, warmup=0)
            est = fitted[-1]
            acc = float(est.score(Xt, yt))
            per_iter = t["median"] / max(est.n_iter_, 1)
            results[solver][name] = {"time": t, "n_iter": int(est.n_iter_),
                                     "seconds_per_iter": per_iter, "test_accuracy": acc,
                                     "dtype": str(est.coefs_[0].dtype)}
            print(f"{solver:7s} {name:9s} {t['median']:10.3f} ({t['min']:.3f}-{t['max']:.3f})"
                  f"{'':5s} {est.n_iter_:7d} {per_iter * 1e3:9.1f} {acc * 100:8.2f}%")
        r = results[solver]
        ratio = r["sklearn"]["seconds_per_iter"] / r["ranvier"]["seconds_per_iter"]
        r["speedup_per_iter_ranvier_vs_sklearn"] = ratio
        print(f"{solver:7s} ranvier is {ratio:.2f}x scikit-learn's speed per "
              f"{'epoch' if solver == 'adam' else 'iteration'}")
    write_json(args.out, {"machine": machine_record(), "versions": versions(),
                          "threads": threads, "n_train": int(X.shape[0]),
                          "hidden": args.hidden, "configs": {k: {kk: (str(vv) if vv == np.inf
                                                                      else vv)
                                                                 for kk, vv in v.items()}
                                                             for k, v in configs.items()},
                          "results": results})


if __name__ == "__main__":
    main()
