"""Datasets: the bundled 8x8 digits, and a train/test split helper."""
import os

import numpy as np

from .._validation import check_batch_match, check_float

__all__ = ["load_digits", "train_test_split"]

_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load_digits(dtype=np.float32):
    """The UCI 8x8 handwritten digits bundled with ranvier (1,797 images; CC BY 4.0).

    Returns ``(X, y)``: X of shape (1797, 64) with pixel values 0..16 as ``dtype``, y of shape
    (1797,) int64 labels 0..9. Scale X (e.g. ``X / 16``) before training.
    """
    with np.load(os.path.join(_DATA_DIR, "digits.npz")) as f:
        images, labels = f["images"], f["labels"]
    return images.astype(dtype), labels.astype(np.int64)


def train_test_split(X, y, test_size=0.25, seed=None, stratify=True):
    """Split (X, y) into ``X_train, X_test, y_train, y_test`` after a seeded shuffle.

    test_size: a fraction in (0, 1) or a number of samples. With ``stratify`` (default) and integer
    labels, each class keeps its proportion in both parts.
    """
    X, y = np.asarray(X), np.asarray(y)
    n = X.shape[0] if X.ndim else 0
    check_batch_match(n, y.shape[0] if y.ndim else 0)
    if n < 2:
        raise ValueError(f"train_test_split needs at least 2 samples, got {n}")
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    else:
        frac = check_float(test_size, "test_size", minimum=0.0, min_inclusive=False, maximum=1.0)
        n_test = int(np.ceil(frac * n))
    if not 0 < n_test < n:
        raise ValueError(f"test_size gives {n_test} test samples out of {n}; need 1..{n - 1}")
    rng = np.random.default_rng(seed)
    if stratify and y.ndim == 1 and y.dtype.kind in "iub":
        test_idx = []
        for cls in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == cls))
            test_idx.append(members[: int(round(len(members) * n_test / n))])
        test_idx = np.concatenate(test_idx)
    else:
        test_idx = rng.permutation(n)[:n_test]
    mask = np.zeros(n, bool)
    mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    test_idx = rng.permutation(np.flatnonzero(mask))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]
