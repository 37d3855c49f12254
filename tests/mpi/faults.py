"""Run by tests/test_distributed.py under ``mpiexec -n 2``: one rank goes wrong in the way MODE
names; every rank must end (with an error naming what and where) instead of waiting for ever.

    python faults.py raise|bad_shard|nan_loss|shapes|weighted|optimizer
"""
import sys

import numpy as np

import ranvier as rv
from ranvier import distributed


class RaiseOnRank1(rv.Callback):
    def on_batch_end(self, batch, logs=None):
        if distributed.rank() == 1 and batch == 2:
            raise RuntimeError("a callback failed on purpose")


def main(mode):
    distributed.init()
    r = distributed.rank()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = X[:, :2].copy()
    callbacks = []
    if mode == "raise":
        callbacks.append(RaiseOnRank1())
    elif mode == "bad_shard" and r == 1:
        X[7, 3] = np.nan
    elif mode == "nan_loss":
        y[3, 0] = 3e38  # row 3 is in rank 1's share of the first batch (rows 0-3, unshuffled)
    elif mode == "shapes" and r == 1:
        X = X[:-1]
        y = y[:-1]
    model = rv.Sequential([rv.Dense(6, 8, seed=0), rv.ReLU(), rv.Dense(8, 2, seed=1)])
    loss = "mse"
    if mode == "weighted":  # not supported distributed (yet): refused on every rank
        loss, y = rv.CrossEntropyLoss(weight=[1.0, 2.0]), (X[:, 0] > 0).astype(np.int64)
    optimizer = rv.Adam(model.parameters(), lr=1e-3 if mode != "optimizer" or r == 0 else 1e-2)
    try:
        model.fit(X, y, loss=loss, optimizer=optimizer, epochs=50, batch_size=4, shuffle=False, verbose=0,
                  callbacks=callbacks, distributed=True)
    except (FloatingPointError, ValueError) as exc:  # raised on every rank together
        print(f"rank {r}: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(3)
    print(f"rank {r}: finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
