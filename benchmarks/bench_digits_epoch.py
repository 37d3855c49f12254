"""One training epoch on the 8x8 digits: ranvier vs an equivalent hand-written NumPy MLP.

Same sizes (64-128-64-10, ReLU), batch, learning rate, initial weights and shuffling; prints the
median time per epoch (min-max over repeats) of each, the time per step, their ratio and the test
accuracy each reached (proof the same work was done).

    python benchmarks/bench_digits_epoch.py [--epochs-timed 5] [--batch-size 32] [--threads N]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fair_blas_env  # noqa: E402

fair_blas_env()

import numpy as np  # noqa: E402

import ranvier as rv  # noqa: E402
from _common import machine_record, timeit, write_json  # noqa: E402
from numpy_mlp import NumpyMLP  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed epochs (median reported)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "digits_epoch.json"))
    args = ap.parse_args()
    if args.threads:
        rv.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass

    X, y = rv.datasets.load_digits()
    X /= 16.0
    X_train, X_test, y_train, y_test = rv.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    rng = np.random.default_rng(0)
    model = rv.Sequential([rv.Dense(64, 128, seed=rng), rv.ReLU(), rv.Dense(128, 64, seed=rng),
                           rv.ReLU(), rv.Dense(64, 10, init="xavier", seed=rng)])
    ref = NumpyMLP([l.weight.data for l in model if isinstance(l, rv.Dense)],
                   [l.bias.data for l in model if isinstance(l, rv.Dense)], lr=0.05, momentum=0.9)
    opt = rv.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = rv.CrossEntropyLoss()
    steps = -(-len(X_train) // args.batch_size)

    seeds = iter(range(10_000))
    t_rv = timeit(lambda: model.fit(X_train, y_train, loss=loss, optimizer=opt, epochs=1,
                                    batch_size=args.batch_size, seed=next(seeds), verbose=0),
                  repeats=args.repeats)
    np_rng = np.random.default_rng(0)
    t_np = timeit(lambda: ref.epoch(X_train, y_train, args.batch_size, np_rng),
                  repeats=args.repeats)
    acc_rv = model.evaluate(X_test, y_test)["accuracy"]
    acc_np = ref.accuracy(X_test, y_test)

    print(f"digits 64-128-64-10, batch {args.batch_size}, {steps} steps/epoch, "
          f"{rv.get_num_threads()} threads, GEMM {rv.get_isa()}")
    print(f"{'':10s} {'epoch ms (median, min-max)':>30s} {'us/step':>9s} {'test acc':>9s}")
    for name, t, acc in (("ranvier", t_rv, acc_rv), ("numpy", t_np, acc_np)):
        print(f"{name:10s} {t['median'] * 1e3:12.2f} ({t['min'] * 1e3:.2f}-{t['max'] * 1e3:.2f})"
              f"{'':6s} {t['median'] / steps * 1e6:9.1f} {acc * 100:8.2f}%")
    ratio = t_rv["median"] / t_np["median"]
    print(f"ranvier / numpy time ratio: {ratio:.3f} ({1 / ratio:.1f}x faster)")
    write_json(args.out, {"machine": machine_record(), "batch_size": args.batch_size,
                          "steps_per_epoch": steps, "ranvier": t_rv, "numpy": t_np,
                          "ratio_ranvier_over_numpy": ratio,
                          "test_accuracy": {"ranvier": acc_rv, "numpy": acc_np}})


if __name__ == "__main__":
    main()
