"""Data and models shared by the MPI scripts and tests/test_distributed.py (the one-process
reference builds the same)."""
import os
from pathlib import Path

import numpy as np

import ranvier as rv

DATA = Path(os.environ.get("RANVIER_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" /
                           "data"))


def mnist_available():
    return (DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()


def load_data(name, n, dtype):
    """(X, y, X_test, y_test): MNIST (flattened, in [0, 1]) or a seeded synthetic set of n rows."""
    if name == "mnist":
        (X, y), (Xt, yt) = rv.datasets.load_mnist(DATA / "mnist", flatten=True, dtype=dtype,
                                                   normalize=True)
        return X, y, Xt, yt
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n + 97, 20)).astype(dtype)
    y = (X[:, :5].argmax(axis=1) + (X[:, 5] > 1)) % 5
    return X[:n], y[:n], X[n:], y[n:]


def build(kind, n_in, dtype, seed):
    rng = np.random.default_rng(seed)
    if kind == "mnist":
        layers = [rv.Dense(n_in, 128, seed=rng), rv.ReLU(), rv.Dense(128, 64, seed=rng), rv.ReLU(),
                  rv.Dense(64, 10, seed=rng)]
    elif kind == "bn":
        layers = [rv.Dense(n_in, 32, seed=rng), rv.BatchNorm1d(32), rv.ReLU(),
                  rv.Dropout(0.2, seed=seed), rv.Dense(32, 5, seed=rng)]
    else:
        layers = [rv.Dense(n_in, 32, seed=rng), rv.ReLU(), rv.Dense(32, 5, seed=rng)]
    return rv.Sequential(layers, dtype=dtype)
