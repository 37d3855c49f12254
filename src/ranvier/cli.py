"""Command line.

    ranvier demo                      train an MLP on the bundled 8x8 digits, print test accuracy
    ranvier train --data digits --hidden 128,64 --epochs 20 --out model.safetensors --plot c.png
    ranvier evaluate model.safetensors --data digits
    mpiexec -n 2 ranvier train --data mnist --distributed   data-parallel over MPI (ranvier[mpi])
    ranvier config                    version, build, threads, kernel ISA
"""
import argparse
import os
import sys
import time

DATASETS = ("digits", "mnist", "fashion-mnist")
OPTIMIZERS = ("sgd", "adam", "adamw")


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


def _positive_ints(what, example):
    """An argparse type for a comma-separated list of positive ints (``what``, e.g. 256,128)."""
    def parse(text):
        try:
            sizes = tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} such as {example}, "
                                             f"got {text!r}") from None
        if any(s < 1 for s in sizes):
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return sizes
    return parse


_hidden_sizes = _positive_ints("layer widths", "256,128")


def _load_data(name, data_dir, seed, images=False):
    """(X_train, y_train, X_test, y_test) as float32 in [0, 1]; the digits get a seeded split.
    Rows of pixels, or with ``images`` (n, 1, height, width) for a convolutional network."""
    import numpy as np

    import ranvier as rv

    if name == "digits":
        X, y = rv.datasets.load_digits()
        X /= 16.0
        if images:
            X = X.reshape(len(X), 1, 8, 8)
        X_train, X_test, y_train, y_test = rv.datasets.train_test_split(X, y, test_size=0.25,
                                                                        seed=seed)
        return X_train, y_train, X_test, y_test
    if data_dir is None:
        env = os.environ.get("RANVIER_DATA_DIR")
        if env is None:
            raise SystemExit(f"ranvier: --data {name} needs --data-dir DIR (the folder with the "
                             "four gzip IDX files) or RANVIER_DATA_DIR; ranvier never downloads")
        data_dir = os.path.join(env, name)
    loader = rv.datasets.load_mnist if name == "mnist" else rv.datasets.load_fashion_mnist
    try:
        (X_train, y_train), (X_test, y_test) = loader(data_dir, flatten=not images,
                                                      dtype=np.float32, normalize=True)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ranvier: cannot read {name} from {data_dir!r}: {exc}") from None
    return X_train, y_train, X_test, y_test


def _standardize(X, mean, std):
    """X := (X - mean) / std in place: the inputs of ``--model cnn``, whose mean and std are
    the training set's (as PyTorch's examples/mnist normalizes its pixels)."""
    import numpy as np

    X -= np.float32(mean)
    X /= np.float32(std)
    return X


def _build_model(kind, sample_shape, hidden, n_out, seed):
    """``mlp``: Dense + ReLU layers of the ``hidden`` widths. ``cnn``: the layers of PyTorch's
    examples/mnist (Conv 1->32 k3, Conv 32->64 k3, MaxPool 2, then Dense layers of the ``hidden``
    widths, 128 by default as there), without its dropout, started as PyTorch starts them (its
    inputs are standardized too: see _train)."""
    import numpy as np

    import ranvier as rv

    rng = np.random.default_rng(seed)
    layers = []
    if kind == "cnn":
        layers = [rv.Conv2d(sample_shape[0], 32, 3, seed=rng), rv.ReLU(),
                  rv.Conv2d(32, 64, 3, seed=rng), rv.ReLU(), rv.MaxPool2d(2), rv.Flatten()]
        width = int(np.prod(rv.Sequential(layers).output_shape(sample_shape)))
    else:
        width = int(np.prod(sample_shape))
    # The CNN is PyTorch's example to the initial weights too (nn.Linear's default start).
    hidden_init, out_init = ("torch", "torch") if kind == "cnn" else ("he_uniform", "xavier")
    for h in hidden:
        layers += [rv.Dense(width, h, init=hidden_init, seed=rng), rv.ReLU()]
        width = h
    layers.append(rv.Dense(width, n_out, init=out_init, seed=rng))
    return rv.Sequential(layers)


def _describe(model, sample_shape):
    """'784-256-128-10 MLP' or 'CNN Conv2d(1->32 k3)-...-Dense(128->10)'."""
    import ranvier as rv

    dense = [l for l in model.layers if isinstance(l, rv.Dense)]
    if not any(isinstance(l, rv.Conv2d) for l in model.layers):
        return "-".join(str(s) for s in [dense[0].in_features] + [d.out_features for d in dense]) \
            + " MLP"
    parts = []
    for l in model.layers:
        if isinstance(l, rv.Conv2d):
            parts.append(f"Conv2d({l.in_channels}->{l.out_channels} k{l.kernel_size[0]})")
        elif isinstance(l, rv.MaxPool2d):
            parts.append("MaxPool2d(2)")
        elif isinstance(l, rv.Dense):
            parts.append(f"Dense({l.in_features}->{l.out_features})")
    return f"CNN on {'x'.join(map(str, sample_shape))} images: " + "-".join(parts)


def _train(args):
    import ranvier as rv

    if args.threads is not None:
        rv.set_num_threads(args.threads)
    main = True  # the process that prints and writes (rank 0 when distributed)
    if args.distributed:
        from ranvier import distributed

        distributed.init()
        main = distributed.is_main()
    say = print if main else (lambda *a, **k: None)
    X_train, y_train, X_test, y_test = _load_data(args.data, args.data_dir, args.seed,
                                                  images=args.model == "cnn")
    hidden = args.hidden if args.hidden is not None else ((128,) if args.model == "cnn"
                                                          else (128, 64))
    model = _build_model(args.model, X_train.shape[1:], hidden, int(y_train.max()) + 1,
                         args.seed)
    scaling = {}
    if args.model == "cnn":   # sums in float64: 47M pixels would lose digits in float32
        scaling = {"input_mean": float(X_train.mean(dtype="float64")),
                   "input_std": float(X_train.std(dtype="float64"))}
        for X in (X_train, X_test):
            _standardize(X, scaling["input_mean"], scaling["input_std"])
    opt_cls = {"sgd": rv.SGD, "adam": rv.Adam, "adamw": rv.AdamW}[args.optimizer]
    opt_kwargs = {"momentum": 0.9} if args.optimizer == "sgd" else {}
    lr = args.lr if args.lr is not None else (0.05 if args.optimizer == "sgd" else 1e-3)
    optimizer = opt_cls(model.parameters(), lr=lr, **opt_kwargs)
    arch = _describe(model, X_train.shape[1:])
    ranks = f", {distributed.world_size()} ranks" if args.distributed else ""
    say(f"training {arch} on {args.data} ({len(X_train)} train / {len(X_test)} test), "
        f"{args.optimizer} lr={lr}, batch {args.batch_size}, {rv.get_num_threads()} threads{ranks}")
    callbacks = []
    if args.patience is not None:
        callbacks.append(rv.EarlyStopping(monitor="val_loss", patience=args.patience,
                                          restore_best_weights=True, verbose=int(main)))
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, loss=rv.CrossEntropyLoss(), optimizer=optimizer,
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                        validation_split=args.validation_split, callbacks=callbacks,
                        verbose=args.verbose, distributed=args.distributed)
    seconds = time.perf_counter() - t0
    if args.distributed:  # each rank evaluates its share of the test set
        start, stop = distributed.local_range(len(X_test))
        result = model.evaluate(X_test[start:stop], y_test[start:stop], distributed=True)
    else:
        result = model.evaluate(X_test, y_test)
    if not main:
        return 0
    print(f"trained in {seconds:.2f}s; test loss {result['loss']:.4f}, "
          f"test accuracy {result['accuracy'] * 100:.2f}%")
    if args.out:
        model.save(args.out, metadata={"data": args.data, "seed": args.seed,
                                       "test_accuracy": result["accuracy"], **scaling})
        print(f"saved the model to {args.out}")
    if args.plot:
        history.plot(args.plot, title=f"ranvier {arch} on {args.data}")
        print(f"saved the training curves to {args.plot}")
    return 0


def _load_saved(path):
    """The model in a saved file, or exit with a message naming the file and what is wrong."""
    import ranvier as rv

    try:
        return rv.load(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ranvier: cannot load {path!r}: {exc}") from None


def _evaluate(args):
    import ranvier as rv

    model = _load_saved(args.model)
    data = args.data or model.metadata.get("data")
    if data is None:
        raise SystemExit("ranvier: the file does not say which data it was trained on; "
                         "pass --data")
    seed = args.seed if args.seed is not None else model.metadata.get("seed", 0)
    images = bool(model.layers) and isinstance(model.layers[0], rv.Conv2d)
    _, _, X_test, y_test = _load_data(data, args.data_dir, seed, images=images)
    if "input_mean" in model.metadata:
        _standardize(X_test, model.metadata["input_mean"], model.metadata["input_std"])
    if not images and X_test.shape[1] != model.n_features_in:
        raise SystemExit(f"ranvier: the model takes {model.n_features_in} features, {data} has "
                         f"{X_test.shape[1]}")
    result = model.evaluate(X_test, y_test)
    print(f"{args.model} on {data} test set ({len(X_test)} samples): loss {result['loss']:.4f}, "
          f"accuracy {result['accuracy'] * 100:.2f}%")
    return 0


def _export(args):
    model = _load_saved(args.model)
    try:
        model.to_onnx(args.out, opset=args.opset, input_shape=args.input_shape,
                      probabilities=True if args.probabilities else None)
    except (ImportError, OSError, ValueError) as exc:
        raise SystemExit(f"ranvier: cannot export to {args.out!r}: {exc}") from None
    print(f"wrote {args.out} (ONNX opset {args.opset}) from {args.model}")
    return 0


def _demo(args):
    import ranvier as rv

    if args.threads is not None:
        rv.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test = _load_data("digits", None, args.seed)
    model = _build_model("mlp", (64,), (128, 64), 10, args.seed)
    print(f"ranvier {rv.__version__} demo: MLP 64-128-64-10 (ReLU) on the 8x8 digits, "
          f"{len(X_train)} train / {len(X_test)} test images")
    print(f"threads: {rv.get_num_threads()}, kernels: {rv.get_isa()}")
    t0 = time.perf_counter()
    model.fit(X_train, y_train, loss=rv.CrossEntropyLoss(),
              optimizer=rv.SGD(model.parameters(), lr=args.lr, momentum=0.9),
              epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, verbose=2)
    train_time = time.perf_counter() - t0
    result = model.evaluate(X_test, y_test)
    print(f"trained in {train_time:.2f}s; test loss {result['loss']:.4f}, "
          f"test accuracy {result['accuracy'] * 100:.2f}%")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ranvier", description="ranvier: neural networks on the CPU with native kernels.",
        epilog="Run 'ranvier COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train an MLP on the bundled 8x8 digits and report the "
                          "test accuracy (a few seconds)")
    demo.add_argument("--epochs", type=_positive_int, default=20)
    demo.add_argument("--batch-size", type=_positive_int, default=32)
    demo.add_argument("--lr", type=_positive_float, default=0.05, help="SGD learning rate")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="kernel threads (default: OpenMP's, i.e. OMP_NUM_THREADS or all cores)")
    demo.set_defaults(func=_demo)

    train = sub.add_parser(
        "train", help="train an MLP or CNN classifier and save it",
        description="Train a ReLU MLP (or, with --model cnn, a convolutional network) classifier "
                    "on a dataset, report the test accuracy, and optionally save the model "
                    "(.safetensors) and a PNG of the training curves.",
        epilog="examples:\n  ranvier train --data digits --hidden 128,64 --epochs 30 "
               "--out digits.safetensors --plot curves.png\n  ranvier train --data mnist "
               "--data-dir ~/data/mnist --hidden 256,128 --epochs 5 --optimizer adam\n"
               "  ranvier train --data mnist --data-dir ~/data/mnist --model cnn --epochs 2 "
               "--batch-size 64",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--data", choices=DATASETS, default="digits",
                       help="dataset (digits is bundled; mnist/fashion-mnist read local files)")
    train.add_argument("--data-dir", default=None,
                       help="folder with the four gzip IDX files (mnist, fashion-mnist)")
    train.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                       help="mlp: Dense + ReLU layers; cnn: PyTorch's examples/mnist network "
                            "(Conv 1->32 k3, Conv 32->64 k3, MaxPool 2, Dense layers)")
    train.add_argument("--hidden", type=_hidden_sizes, default=None,
                       help="hidden Dense widths, comma-separated (default 128,64 for mlp, 128 "
                            "after the convolutions for cnn)")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate (default 1e-3 for adam/adamw, 0.05 for sgd)")
    train.add_argument("--validation-split", type=float, default=0.1,
                       help="fraction of the training data held out for validation curves")
    train.add_argument("--patience", type=_positive_int, default=None,
                       help="stop early after this many epochs without val_loss progress")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=_positive_int, default=None)
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    train.add_argument("--out", default=None, help="write the model to this .safetensors file")
    train.add_argument("--plot", default=None, help="write loss/accuracy curves to this PNG")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI (pip install 'ranvier[mpi]'): run under "
                            "mpiexec -n N or srun; --batch-size is the global batch, split across "
                            "the ranks; rank 0 prints and writes")
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="report a saved model's test loss and accuracy",
                        description="Load a model saved by 'ranvier train' and evaluate it on the "
                                    "test set of its dataset (the same split it was trained with).")
    ev.add_argument("model", help="a .safetensors file written by 'ranvier train' or model.save")
    ev.add_argument("--data", choices=DATASETS, default=None,
                    help="dataset (default: the one recorded in the file)")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--seed", type=int, default=None,
                    help="digits split seed (default: the one recorded in the file)")
    ev.set_defaults(func=_evaluate)

    ex = sub.add_parser("export", help="convert a saved model to ONNX (for onnxruntime)",
                        description="Write a model saved by 'ranvier train' or model.save as an "
                                    "ONNX file (needs the onnx package: pip install "
                                    "'ranvier[onnx]'). Outputs: 'output' (the model's outputs) "
                                    "and, with --probabilities or for a model ending in Softmax, "
                                    "'probabilities'.")
    ex.add_argument("model", help="a .safetensors file written by ranvier")
    ex.add_argument("out", help="the .onnx file to write")
    ex.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (default 17)")
    ex.add_argument("--probabilities", action="store_true",
                    help="add a 'probabilities' output: the softmax of the outputs")
    ex.add_argument("--input-shape", type=_positive_ints("dimensions", "28,28"), default=None,
                    help="per-sample input shape, comma-separated (only for a model that starts "
                         "with Flatten, e.g. 28,28)")
    ex.set_defaults(func=_export)

    # Its options are ranvier.bench's own (main() hands them over unparsed): 'ranvier bench -h'.
    sub.add_parser("bench", add_help=False,
                   help="time ranvier against NumPy (and PyTorch, scikit-learn) on this machine "
                        "(about a minute; --full for the whole suite)")
    sub.add_parser("config", help="print version, build and threading facts").set_defaults(
        func=lambda args: __import__("ranvier").show_config() or 0)
    return parser


def main(argv=None):
    own_process = argv is None  # the command line: the bench may re-execute this process
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench

        return bench(argv[1:], own_process=own_process)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
