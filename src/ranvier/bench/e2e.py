"""End-to-end training: ranvier vs a hand-written NumPy MLP vs PyTorch vs scikit-learn.

Tasks (ReLU hidden layers, softmax cross-entropy; SGD(lr=0.01, momentum=0.9) and Adam(lr=1e-3)):
  digits  64-64-64-10, 10 epochs at batch 32 (the bundled 8x8 digits, 75/25 split)
  mnist   784-256-128-10, one epoch at batch 32, 128 and 512 (60,000 images, pixels / 255)
ranvier, NumPy and PyTorch start from the same initial weights (ranvier's Dense init, copied; the
weights are (out, in) in all three) and see the same mini-batches in the same order (each epoch
shuffled by ``np.random.default_rng(seed).permutation``, as ``Sequential.fit`` does).
scikit-learn's MLPClassifier cannot take given weights or batch orders: it starts from its own
Glorot init and shuffles with ``random_state`` (alpha=0, constant learning rate, no Nesterov).

Each library runs in its own subprocess, for every thread count in turn, so its peak RSS is its own
(interpreter + library + data + training): VmHWM from /proc/self/status at the end of the child,
because Linux carries ``ru_maxrss`` over fork + exec (a child starts at its parent's peak; the raw
``ru_maxrss`` is recorded too). Every timed
repeat starts from the initial weights with a fresh optimizer after a short warm-up, so all repeats
do identical work; the test accuracy after the run proves the same work was done.

Without a data directory, "mnist" is synthetic MNIST-shaped data (nothing is downloaded).
After the timed runs each library records the training loss of its first CURVE_STEPS steps from
the initial weights at the first batch size, so that the runs can be checked to do the same work.

    ranvier bench --full --only e2e [--threads 1,2] [--data-dir DIR]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from ._common import (Threads, load_mnist, max_rss_mb, ru_maxrss_mb, synthetic_mnist, versions,
                      write_json)

LIBS = ("ranvier", "numpy", "torch", "sklearn")
SGD_LR, MOMENTUM, ADAM_LR = 0.01, 0.9, 1e-3
TASKS = {"digits": {"sizes": (64, 64, 64, 10), "epochs": 10},
         "mnist": {"sizes": (784, 256, 128, 10), "epochs": 1}}
CURVE_STEPS = 50


# -- data and initial weights (parent) ----------------------------------------------------------
def prepare(workdir, data_dir, quick, log, tasks=("digits", "mnist"), mnist_train=None):
    """Write the data sets and initial weights to ``workdir`` as .npy files; return a summary.
    MNIST is read from ``data_dir``, or made synthetic when it is None; ``mnist_train`` keeps
    the first so many training images."""
    import ranvier as rv

    info, sets = {}, {}
    if "digits" in tasks:
        X, y = rv.datasets.load_digits()
        X /= 16.0
        Xtr, Xte, ytr, yte = rv.datasets.train_test_split(X, y, test_size=0.25, seed=0)
        sets["digits"] = (Xtr, ytr, Xte, yte)
        info["digits"] = {"n_train": len(Xtr), "n_test": len(Xte), "source": "ranvier.datasets"}
    if "mnist" in tasks:
        try:
            Xtr, ytr, Xte, yte, source = (synthetic_mnist() if data_dir is None
                                          else load_mnist(data_dir))
            if quick:  # a slice, for smoke tests
                Xtr, ytr, Xte, yte = Xtr[:2048], ytr[:2048], Xte[:1000], yte[:1000]
            if mnist_train:
                Xtr, ytr = Xtr[:mnist_train], ytr[:mnist_train]
            sets["mnist"] = (Xtr, ytr, Xte, yte)
            info["mnist"] = {"n_train": len(Xtr), "n_test": len(Xte), "source": source,
                             "data_dir": data_dir}
        except (OSError, ValueError) as e:
            info["mnist"] = {"skipped": f"MNIST not loaded from {data_dir}: {e}"}
            log(f"  e2e: {info['mnist']['skipped']}")
    for task, (Xtr, ytr, Xte, yte) in sets.items():
        for name, arr in (("Xtr", Xtr), ("ytr", ytr), ("Xte", Xte), ("yte", yte)):
            np.save(os.path.join(workdir, f"{task}_{name}.npy"),
                    np.ascontiguousarray(arr, np.float32 if name[0] == "X" else np.int64))
        sizes = TASKS[task]["sizes"]
        rng = np.random.default_rng(0)
        layers = [rv.Dense(a, b, seed=rng, init="xavier" if i == len(sizes) - 2 else "he")
                  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
        np.savez(os.path.join(workdir, f"{task}_init.npz"),
                 **{f"W{i}": d.weight.data for i, d in enumerate(layers)},
                 **{f"b{i}": d.bias.data for i, d in enumerate(layers)})
    return info


def _load(workdir, task):
    arrs = [np.load(os.path.join(workdir, f"{task}_{n}.npy")) for n in ("Xtr", "ytr", "Xte", "yte")]
    with np.load(os.path.join(workdir, f"{task}_init.npz")) as f:
        n = len(f.files) // 2
        W = [f[f"W{i}"] for i in range(n)]
        b = [f[f"b{i}"] for i in range(n)]
    return arrs, W, b


# -- one library's trainer (child) ---------------------------------------------------------------
class _Trainer:
    """build(W, b) once; reset() before each run; run(X, y, B, epochs, seed); accuracy(X, y);
    curve(X, y, B, steps): the training loss of each of the first ``steps`` steps from the
    initial weights (batches in the order run() takes them with seed 0), or None."""

    def curve(self, X, y, B, steps):
        return None


def _first_steps(X, y, B, steps):
    """The samples of the first ``steps`` batches of run(..., seed=0), in one slice."""
    n = min(len(X), B * steps)
    return X[:n], y[:n]


class RanvierTrainer(_Trainer):
    def __init__(self, W, b, opt):
        import ranvier as rv

        self.rv, self.opt_name = rv, opt
        layers = []
        for i, (w, bb) in enumerate(zip(W, b)):
            d = rv.Dense(w.shape[1], w.shape[0])
            layers.append(d)
            if i < len(W) - 1:
                layers.append(rv.ReLU())
        self.model = rv.Sequential(layers)
        self.dense = [l for l in layers if isinstance(l, rv.Dense)]
        self.W0, self.b0 = W, b
        self.loss = rv.CrossEntropyLoss()

    def reset(self):
        for d, w, bb in zip(self.dense, self.W0, self.b0):
            d.weight.data[...] = w
            d.bias.data[...] = bb
        params = self.model.parameters()
        self.opt = (self.rv.SGD(params, lr=SGD_LR, momentum=MOMENTUM) if self.opt_name == "sgd"
                    else self.rv.Adam(params, lr=ADAM_LR))

    def run(self, X, y, B, epochs, seed, callbacks=None):
        self.model.fit(X, y, loss=self.loss, optimizer=self.opt, epochs=epochs, batch_size=B,
                       seed=seed, verbose=0, callbacks=callbacks)

    def curve(self, X, y, B, steps):
        losses = []

        class Record(self.rv.Callback):
            def on_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]))

        self.reset()
        self.run(*_first_steps(X, y, B, steps), B, 1, 0, callbacks=[Record()])
        return losses

    def accuracy(self, X, y):
        return float(self.model.evaluate(X, y)["accuracy"])


class NumpyTrainer(_Trainer):
    def __init__(self, W, b, opt):
        from .numpy_mlp import NumpyMLP

        self.cls, self.W0, self.b0, self.opt_name = NumpyMLP, W, b, opt

    def reset(self):
        lr = SGD_LR if self.opt_name == "sgd" else ADAM_LR
        self.m = self.cls(self.W0, self.b0, lr=lr, momentum=MOMENTUM, optimizer=self.opt_name)

    def run(self, X, y, B, epochs, seed):
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            self.m.epoch(X, y, B, rng)

    def curve(self, X, y, B, steps):
        self.reset()
        X, y = _first_steps(X, y, B, steps)
        order = np.random.default_rng(0).permutation(len(X))
        return [float(self.m.train_step(X[order[s:s + B]], y[order[s:s + B]]))
                for s in range(0, len(X), B)]

    def accuracy(self, X, y):
        return self.m.accuracy(X, y)


class TorchTrainer(_Trainer):
    def __init__(self, W, b, opt):
        import torch

        self.torch, self.opt_name, self.W0, self.b0 = torch, opt, W, b
        mods = []
        for i, w in enumerate(W):
            mods.append(torch.nn.Linear(w.shape[1], w.shape[0]))
            if i < len(W) - 1:
                mods.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods)
        self.linear = [m for m in mods if isinstance(m, torch.nn.Linear)]
        self.crit = torch.nn.CrossEntropyLoss()
        self._data = {}

    def reset(self):
        torch = self.torch
        with torch.no_grad():
            for lin, w, bb in zip(self.linear, self.W0, self.b0):
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(bb))
        params = self.model.parameters()
        self.opt = (torch.optim.SGD(params, lr=SGD_LR, momentum=MOMENTUM)
                    if self.opt_name == "sgd" else torch.optim.Adam(params, lr=ADAM_LR))

    def _tensors(self, X, y):
        key = (id(X), id(y))
        if key not in self._data:
            self._data = {key: (self.torch.from_numpy(X), self.torch.from_numpy(y))}
        return self._data[key]

    def run(self, X, y, B, epochs, seed, losses=None):
        torch = self.torch
        Xt, yt = self._tensors(X, y)
        rng = np.random.default_rng(seed)
        model, crit, opt, n = self.model, self.crit, self.opt, len(X)
        model.train()
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(n))
            for s in range(0, n, B):
                idx = order[s:s + B]
                xb, yb = Xt[idx], yt[idx]
                opt.zero_grad(set_to_none=True)
                loss = crit(model(xb), yb)
                loss.backward()
                opt.step()
                if losses is not None:
                    losses.append(float(loss.item()))

    def curve(self, X, y, B, steps):
        losses = []
        self.reset()
        X, y = _first_steps(X, y, B, steps)
        self.run(np.ascontiguousarray(X), np.ascontiguousarray(y), B, 1, 0, losses=losses)
        return losses

    def accuracy(self, X, y):
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            pred = self.model(torch.from_numpy(X)).argmax(dim=1).numpy()
        return float(np.mean(pred == y))


class SklearnTrainer(_Trainer):
    def __init__(self, W, b, opt):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        self.cls, self.opt_name = MLPClassifier, opt
        self.hidden = tuple(w.shape[0] for w in W[:-1])

    def reset(self):
        self.clf = None

    def run(self, X, y, B, epochs, seed):
        kw = dict(solver="sgd", learning_rate="constant", learning_rate_init=SGD_LR,
                  momentum=MOMENTUM, nesterovs_momentum=False) if self.opt_name == "sgd" else \
            dict(solver="adam", learning_rate_init=ADAM_LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.clf = self.cls(hidden_layer_sizes=self.hidden, activation="relu", alpha=0.0,
                            batch_size=B, max_iter=epochs, shuffle=True, random_state=seed,
                            tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False, **kw)
        self.clf.fit(X, y)

    def accuracy(self, X, y):
        return float(self.clf.score(X, y))


TRAINERS = {"ranvier": RanvierTrainer, "numpy": NumpyTrainer, "torch": TorchTrainer,
            "sklearn": SklearnTrainer}


def _die_with_parent():
    """Linux: end this child if the parent dies (no orphan keeps the CPU busy)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


def child(lib, workdir, threads, batches, repeats, mnist_repeats, digits_epochs, budget_s=None,
          optimizers=("sgd", "adam")):
    """Run every (threads, task, batch, optimizer) for one library.

    With ``budget_s`` (a busy or slow machine must not blow the suite's time limit), each config
    gets an equal share of the time left: after its first run, it runs only as many repeats as fit
    (at least one), and once the time is spent the remaining configs are skipped. The repeats done
    and the configs skipped are recorded."""
    _die_with_parent()
    if lib == "ranvier":
        import ranvier  # noqa: F401  (Threads sets its thread count once it is loaded)
    if lib == "torch":
        import torch  # noqa: F401
    tc = Threads()
    results = []
    tasks = [t for t in ("digits", "mnist") if os.path.exists(os.path.join(workdir,
                                                                           f"{t}_Xtr.npy"))]
    data = {t: _load(workdir, t) for t in tasks}
    skipped = []
    t_start = time.perf_counter()
    deadline = t_start + budget_s if budget_s else None
    n_left = len(threads) * sum(len(optimizers) * (1 if t == "digits" else len(batches))
                                for t in tasks)
    for nt in threads:
        tc.set(nt)
        for task in tasks:
            (Xtr, ytr, Xte, yte), W, b = data[task]
            epochs = digits_epochs if task == "digits" else TASKS[task]["epochs"]
            for B in ((32,) if task == "digits" else batches):
                for opt in optimizers:
                    share = (deadline - time.perf_counter()) / n_left if deadline else None
                    n_left -= 1
                    if share is not None and share <= 0:
                        skipped.append({"task": task, "optimizer": opt, "batch": B,
                                        "threads": nt})
                        print(f"  e2e {lib:8s} t={nt} {task:6s} {opt:4s} B={B:4d}  skipped: "
                              "time budget spent", file=sys.stderr, flush=True)
                        continue
                    tr = TRAINERS[lib](W, b, opt)
                    tr.reset()  # warm-up: a few steps on a slice
                    nw = min(len(Xtr), 20 * B)
                    tr.run(Xtr[:nw], ytr[:nw], B, 1, 12345)
                    planned = reps = repeats if task == "digits" else mnist_repeats
                    times = []
                    while len(times) < reps:
                        tr.reset()
                        t0 = time.perf_counter()
                        tr.run(Xtr, ytr, B, epochs, 0)
                        times.append(time.perf_counter() - t0)
                        if share is not None and len(times) == 1:
                            reps = min(reps, max(1, int(share / times[0])))
                    acc = tr.accuracy(Xte, yte)
                    curve = tr.curve(Xtr, ytr, B, CURVE_STEPS)
                    steps = -(-len(Xtr) // B) * epochs
                    med = float(np.median(times))
                    rec = {"task": task, "optimizer": opt, "batch": B, "threads": nt,
                           "epochs": epochs, "steps": steps, "n_train": len(Xtr),
                           "time": {"median": med, "min": min(times), "max": max(times),
                                    "repeats": reps},
                           "us_per_step": med / steps * 1e6, "test_accuracy": acc,
                           "repeats_planned": planned, "loss_curve": curve}
                    if lib == "sklearn":
                        rec["sklearn_dtype"] = str(tr.clf.coefs_[0].dtype)
                    results.append(rec)
                    print(f"  e2e {lib:8s} t={nt} {task:6s} {opt:4s} B={B:4d}  "
                          f"{med:8.3f} s ({min(times):.3f}-{max(times):.3f})  "
                          f"{rec['us_per_step']:8.1f} us/step  acc {acc * 100:6.2f}%",
                          file=sys.stderr, flush=True)
    return {"lib": lib, "results": results, "skipped": skipped,
            "max_rss_mb": max_rss_mb("self"),
            "ru_maxrss_mb": ru_maxrss_mb(),
            "wall_s": time.perf_counter() - t_start, "versions": versions()}


def _installed(name):
    """Whether ``name`` can be found, without importing it (and SciPy) into this process."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _child_env():
    """This environment, with the ranvier this process runs first on the path (a source tree
    with PYTHONPATH=src, or an installed wheel: the child imports the same one)."""
    import ranvier

    root = os.path.dirname(os.path.dirname(os.path.abspath(ranvier.__file__)))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))


# -- parent ---------------------------------------------------------------------------------------
def run(quick=False, threads=(1, 2), data_dir=None, repeats=None, mnist_repeats=None,
        batches=None, digits_epochs=None, libs=LIBS, deadline=None, log=print,
        tasks=("digits", "mnist"), optimizers=("sgd", "adam"), mnist_train=None):
    """All libraries' children in turn. ``deadline`` (a time.perf_counter() value): share the time
    left among the children, which then cut repeats, or skip configs, to fit (see child).
    ``data_dir`` None: synthetic MNIST-shaped data."""
    repeats = repeats or (2 if quick else 5)
    mnist_repeats = mnist_repeats or (2 if quick else 5)
    batches = batches or ((128,) if quick else (32, 128, 512))
    digits_epochs = digits_epochs or (2 if quick else TASKS["digits"]["epochs"])
    notes, per_lib = [], {}
    with tempfile.TemporaryDirectory(prefix="ranvier_e2e_") as workdir:
        data_info = prepare(workdir, data_dir, quick, log, tasks, mnist_train)
        if "skipped" in data_info.get("mnist", {}):
            notes.append(data_info["mnist"]["skipped"])
        for i, lib in enumerate(libs):
            need = {"torch": "torch", "sklearn": "sklearn"}.get(lib)
            if need and not _installed(need):
                notes.append(f"{lib} is not installed: its column is skipped.")
                per_lib[lib] = None
                continue
            out = os.path.join(workdir, f"result_{lib}.json")
            cmd = [sys.executable, "-m", __name__, "--child", lib, "--workdir", workdir,
                   "--threads", ",".join(map(str, threads)), "--batches",
                   ",".join(map(str, batches)), "--repeats", str(repeats), "--mnist-repeats",
                   str(mnist_repeats), "--digits-epochs", str(digits_epochs), "--child-out", out,
                   "--optimizers", ",".join(optimizers)]
            if deadline is not None:  # ~5 s per child to start and load the data
                left = len(libs) - i
                share = max(1.0, (deadline - time.perf_counter() - 5 * left) / left)
                cmd += ["--budget-s", f"{share:.1f}"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=_child_env())
            if proc.returncode != 0 or not os.path.exists(out):
                notes.append(f"{lib}: the benchmark subprocess failed (exit {proc.returncode}).")
                per_lib[lib] = None
                continue
            with open(out) as f:
                per_lib[lib] = json.load(f)
            log(f"  e2e {lib}: done in {time.perf_counter() - t0:.1f} s, "
                f"peak RSS {per_lib[lib]['max_rss_mb']:.0f} MiB")
    rows = combine(per_lib)
    cut = sorted({f"{lib} ({r['task']} {r['optimizer']} B={r['batch']} t={r['threads']}: "
                  f"{r[lib]['time']['repeats']})" for r in rows for lib in LIBS
                  if r.get(lib) and r[lib]["time"]["repeats"] < r[lib]["repeats_planned"]})
    if cut:
        notes.append("To fit the time budget these ran fewer repeats than planned: "
                     + ", ".join(cut) + ".")
    dropped = [f"{lib} ({s['task']} {s['optimizer']} B={s['batch']} t={s['threads']})"
               for lib, res in per_lib.items() if res for s in res.get("skipped", [])]
    if dropped:
        notes.append("Skipped, the time budget being spent: " + ", ".join(dropped) + ".")
    notes += [
        "Same initial weights and batch order for ranvier, NumPy and PyTorch; scikit-learn uses "
        "its "
        "own init and shuffling (it cannot take given weights), so its accuracy is comparable only "
        "in kind.",
        "scikit-learn's time is one MLPClassifier.fit(max_iter=epochs): input checks, init and the "
        "per-epoch loss included; alpha=0 (no L2), constant learning rate.",
        "ranvier's time is Sequential.fit (which also tracks the training loss and accuracy); "
        "PyTorch's is a plain loop over index-selected mini-batches.",
        "Peak RSS is the peak of each library's own subprocess (VmHWM; interpreter, library, the "
        "float32 data set and training, all thread counts). Linux's ru_maxrss would include the "
        "parent's peak inherited across fork + exec, so it is only kept as ru_maxrss_mb.",
    ]
    return {"rows": rows, "libs": {k: ({kk: vv for kk, vv in v.items() if kk != "results"}
                                       if v else None) for k, v in per_lib.items()},
            "data": data_info, "repeats": repeats, "mnist_repeats": mnist_repeats,
            "digits_epochs": digits_epochs, "batches": list(batches),
            "hyperparameters": {"sgd_lr": SGD_LR, "momentum": MOMENTUM, "adam_lr": ADAM_LR},
            "notes": notes}


def combine(per_lib):
    """One row per (task, optimizer, batch, threads) with every library side by side."""
    rows = {}
    for lib, res in per_lib.items():
        if not res:
            continue
        for r in res["results"]:
            key = (r["task"], r["optimizer"], r["batch"], r["threads"])
            row = rows.setdefault(key, {"task": r["task"], "optimizer": r["optimizer"],
                                        "batch": r["batch"], "threads": r["threads"],
                                        "epochs": r["epochs"], "steps": r["steps"],
                                        "n_train": r["n_train"]})
            row[lib] = {k: r[k] for k in ("time", "us_per_step", "test_accuracy",
                                          "repeats_planned", "loss_curve")}
            if "sklearn_dtype" in r:
                row[lib]["dtype"] = r["sklearn_dtype"]
            row[lib]["max_rss_mb"] = res["max_rss_mb"]
    out = []
    for key in sorted(rows, key=lambda k: (k[0] != "digits", k[0], k[3], k[2], k[1])):
        row = rows[key]
        for lib in LIBS[1:]:
            if row.get("ranvier") and row.get(lib):
                row[f"time_ratio_vs_{lib}"] = (row["ranvier"]["time"]["median"]
                                               / row[lib]["time"]["median"])
        out.append(row)
    return out


def main():
    """The child process of run(): one library's trainings, written to --child-out."""
    ap = argparse.ArgumentParser(description="one library's runs of ranvier.bench.e2e")
    ap.add_argument("--child", choices=LIBS, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--threads", required=True)
    ap.add_argument("--batches", required=True)
    ap.add_argument("--repeats", type=int, required=True)
    ap.add_argument("--mnist-repeats", type=int, required=True)
    ap.add_argument("--digits-epochs", type=int, required=True)
    ap.add_argument("--child-out", required=True)
    ap.add_argument("--optimizers", default="sgd,adam")
    ap.add_argument("--budget-s", type=float, default=None)
    args = ap.parse_args()
    res = child(args.child, args.workdir, [int(t) for t in args.threads.split(",")],
                [int(b) for b in args.batches.split(",")], args.repeats, args.mnist_repeats,
                args.digits_epochs, args.budget_s, tuple(args.optimizers.split(",")))
    write_json(args.child_out, res)


if __name__ == "__main__":
    main()
