"""Command line: ``ranvier demo`` trains an MLP on the bundled digits and reports test accuracy."""
import argparse
import sys
import time


def _demo(args):
    import numpy as np

    import ranvier as rv

    if args.threads is not None:
        rv.set_num_threads(args.threads)
    X, y = rv.datasets.load_digits()
    X /= 16.0
    X_train, X_test, y_train, y_test = rv.datasets.train_test_split(X, y, test_size=0.25,
                                                                    seed=args.seed)
    rng = np.random.default_rng(args.seed)
    model = rv.Sequential([
        rv.Dense(64, 128, seed=rng), rv.ReLU(),
        rv.Dense(128, 64, seed=rng), rv.ReLU(),
        rv.Dense(64, 10, init="xavier", seed=rng),
    ])
    print(f"ranvier {rv.__version__} demo: MLP 64-128-64-10 (ReLU) on the 8x8 digits, "
          f"{len(X_train)} train / {len(X_test)} test images")
    print(f"threads: {rv.get_num_threads()}, GEMM kernel: {rv.get_isa()}")
    t0 = time.perf_counter()
    model.fit(X_train, y_train, loss=rv.CrossEntropyLoss(),
              optimizer=rv.SGD(model.parameters(), lr=args.lr, momentum=0.9),
              epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, verbose=1)
    train_time = time.perf_counter() - t0
    result = model.evaluate(X_test, y_test)
    print(f"trained in {train_time:.2f}s; test loss {result['loss']:.4f}, "
          f"test accuracy {result['accuracy'] * 100:.2f}%")
    return 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="ranvier", description="ranvier: neural networks on the "
                                     "CPU with native kernels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train an MLP on the bundled 8x8 digits and report the "
                          "test accuracy")
    demo.add_argument("--epochs", type=_positive_int, default=20)
    demo.add_argument("--batch-size", type=_positive_int, default=32)
    demo.add_argument("--lr", type=_positive_float, default=0.05, help="SGD learning rate")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="kernel threads (default: OpenMP's, i.e. OMP_NUM_THREADS or all cores)")
    demo.set_defaults(func=_demo)
    sub.add_parser("config", help="print version, build and threading facts").set_defaults(
        func=lambda args: __import__("ranvier").show_config() or 0)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
