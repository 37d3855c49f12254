"""Two builds of ranvier side by side: the same trainings timed under each source tree in turn,
alternating run by run so that a busy machine slows both alike; medians and their ratio.

Each tree is a checkout built in place (``python setup.py build_ext --inplace``); each run is a
fresh process with ``PYTHONPATH=<tree>/src``. The trainings are the e2e section's (784-256-128-10
MNIST for one epoch, 64-64-64-10 digits for ten; ReLU, softmax cross-entropy, SGD momentum 0.9 lr
0.01 or Adam lr 1e-3) from the same initial weights and batch order in both trees, and the final
training loss of each is printed, so that the same work is seen to be done.

    python benchmarks/compare_builds.py OLD_TREE NEW_TREE [--threads 1] [--repeats 5]
        [--tasks digits,mnist] [--data-dir ../shared/data/mnist]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

# (task, optimizer, batch): the rows of make bench's end-to-end table that training speed is read
# from.
CONFIGS = [("digits", "sgd", 32), ("digits", "adam", 32), ("mnist", "sgd", 32),
           ("mnist", "adam", 32), ("mnist", "adam", 128), ("mnist", "adam", 512)]

CHILD = r"""
import json, sys, time
import numpy as np
import ranvier as rv
task, opt, batch, threads, data_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rv.set_num_threads(threads)
if task == "digits":
    X, y = rv.datasets.load_digits()
    X = (X / 16.0).astype(np.float32)
    X, _, y, _ = rv.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    sizes, epochs = (64, 64, 64, 10), 10
else:
    (X, y), _ = rv.datasets.load_mnist(data_dir)
    X = X.reshape(len(X), -1).astype(np.float32) / np.float32(255)
    sizes, epochs = (784, 256, 128, 10), 1
rng = np.random.default_rng(0)
layers = []
for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(rv.Dense(a, b, seed=rng, init="xavier" if i == len(sizes) - 2 else "he"))
    if i < len(sizes) - 2:
        layers.append(rv.ReLU())
model = rv.Sequential(layers)
make = (lambda: rv.SGD(model.parameters(), lr=0.01, momentum=0.9)) if opt == "sgd" else \
    (lambda: rv.Adam(model.parameters(), lr=1e-3))
state = {k: v.copy() for k, v in model.state_dict().items()}
model.fit(X[:20 * batch], y[:20 * batch], loss=rv.CrossEntropyLoss(), optimizer=make(),
          epochs=1, batch_size=batch, seed=1, verbose=0)          # warm-up
model.load_state_dict(state)
t0 = time.perf_counter()
h = model.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=make(), epochs=epochs,
              batch_size=batch, seed=0, verbose=0)
print(json.dumps({"seconds": time.perf_counter() - t0, "loss": h.history["loss"][-1]}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tasks", default="digits,mnist", help="of digits,mnist (default: both)")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "data", "mnist"))
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"{'task':6s} {'opt':4s} {'batch':>5s}  {'old s (median, min-max)':>24s}  "
          f"{'new s (median, min-max)':>24s}  {'new/old':>7s}  loss old / new")
    for task, opt, batch in [c for c in CONFIGS if c[0] in args.tasks.split(",")]:
        times = {"old": [], "new": []}
        loss = {}
        for _ in range(args.repeats):
            for name in ("old", "new"):
                tree = os.path.abspath(getattr(args, name))
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, task, opt, str(batch), str(args.threads),
                     args.data_dir], env=dict(env, PYTHONPATH=os.path.join(tree, "src")),
                    capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                times[name].append(r["seconds"])
                loss[name] = r["loss"]
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{task:6s} {opt:4s} {batch:5d}  "
              + "  ".join(f"{med[k]:9.3f} ({min(times[k]):.3f}-{max(times[k]):.3f})"
                          for k in ("old", "new"))
              + f"  {med['new'] / med['old']:7.3f}  {loss['old']:.5f} / {loss['new']:.5f}",
              flush=True)


if __name__ == "__main__":
    main()
