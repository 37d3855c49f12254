"""Datasets: the bundled 8x8 digits, MNIST / Fashion-MNIST from local IDX files, and a train/test
split helper."""
import os

import numpy as np

from .._validation import FLOAT_DTYPES, check_batch_match, check_float
from ._idx import read_idx

__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "train_test_split"]

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
        # Each class gets its share of the test set, rounded down; the samples still missing go
        # to the classes with the largest remainders, so the total is exactly n_test.
        classes, counts = np.unique(y, return_counts=True)
        exact = counts * n_test / n
        per_class = np.floor(exact).astype(np.int64)
        short = n_test - int(per_class.sum())
        if short > 0:
            order = np.argsort(-(exact - per_class), kind="stable")
            per_class[order[:short]] += 1
        test_idx = np.concatenate([
            rng.permutation(np.flatnonzero(y == cls))[:k] for cls, k in zip(classes, per_class)])
    else:
        test_idx = rng.permutation(n)[:n_test]
    mask = np.zeros(n, bool)
    mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~mask))
    test_idx = rng.permutation(np.flatnonzero(mask))
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


# (images, labels) base names of each split; the files are looked for as "<name>.gz", "<name>"
# and "<name>" with "-idx" spelt ".idx" (e.g. "train-images.idx3-ubyte"), in that order.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGE_SHAPE = (28, 28)
_N_CLASSES = 10


def _candidates(base):
    return [base + ".gz", base, base.replace("-idx", ".idx")]


def _find_file(directory, base, what, dataset):
    for name in _candidates(base):
        p = os.path.join(directory, name)
        if os.path.lexists(p):
            return p
    raise FileNotFoundError(
        f"{dataset}: no {what} file in {directory!r}: expected {base + '.gz'!r} (or the "
        f"uncompressed {base!r}). ranvier does not download data; put the four IDX files "
        f"(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz) in that directory")


def _load_split(image_path, label_path, split):
    images = read_idx(image_path, ndim=3, type_byte=0x08,
                      what=f"{split} images (IDX uint8, shape (n, 28, 28))")
    if images.shape[0] == 0:
        raise ValueError(f"{image_path}: the {split} image file holds 0 images")
    if images.shape[1:] != _IMAGE_SHAPE:
        raise ValueError(f"{image_path}: {split} images must be 28x28 pixels, but the file holds "
                         f"images of {images.shape[1]}x{images.shape[2]} (shape {images.shape})")
    labels = read_idx(label_path, ndim=1, type_byte=0x08,
                      what=f"{split} labels (IDX uint8, shape (n,))")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{split} image and label counts differ: {image_path} holds "
                         f"{images.shape[0]} images but {label_path} holds "
                         f"{labels.shape[0]} labels")
    bad = np.flatnonzero(labels >= _N_CLASSES)
    if bad.size:
        raise ValueError(f"{label_path}: {bad.size} {split} label(s) out of range 0..9, e.g. "
                         f"{int(labels[bad[0]])} at index {int(bad[0])}")
    return images, labels.astype(np.int64)


def _load_idx_dataset(path, kind, flatten, dtype, normalize, dataset):
    fn = "load_" + dataset.lower().replace("-", "_")
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a str or os.PathLike directory, got "
                        f"{type(path).__name__}")
    directory = os.fspath(path)
    if not isinstance(directory, str):
        raise TypeError(f"{fn}: path must give a str path, got {type(directory).__name__}")
    if not isinstance(kind, str):
        raise TypeError(f"{fn}: kind must be 'train', 'test' or 'both', got {type(kind).__name__}")
    if kind not in ("train", "test", "both"):
        raise ValueError(f"{fn}: kind must be 'train', 'test' or 'both', got {kind!r}")
    if flatten is not None and not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"{fn}: flatten must be None, True or False, got "
                        f"{type(flatten).__name__}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"{fn}: normalize must be a bool, got {type(normalize).__name__}")
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.uint8),) + FLOAT_DTYPES:
        raise TypeError(f"{fn}: dtype must be uint8, float32 or float64, got {dtype!r}")
    if dt == np.uint8 and normalize:
        raise ValueError(f"{fn}: normalize=True scales pixels to [0, 1] and needs a float dtype; "
                         "pass dtype=np.float32 (or np.float64)")
    if not os.path.exists(directory):
        raise FileNotFoundError(f"{dataset}: directory {directory!r} does not exist (expected a "
                                "directory holding the four IDX files)")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{dataset}: {directory!r} is not a directory; pass the "
                                 "directory holding the four IDX files, not a file")
    splits = ("train", "test") if kind == "both" else (kind,)
    # Find every file before reading any, so a missing one is reported at once.
    paths = {s: (_find_file(directory, _IDX_FILES[s][0], f"{s} images", dataset),
                 _find_file(directory, _IDX_FILES[s][1], f"{s} labels", dataset)) for s in splits}
    out = []
    for s in splits:
        X, y = _load_split(*paths[s], s)
        if flatten is not None:  # (n, 784) for Dense, (n, 1, 28, 28) for Conv2d
            X = X.reshape((X.shape[0], -1) if flatten else (X.shape[0], 1) + X.shape[1:])
        if dt != np.uint8:
            X = X.astype(dt)
            if normalize:
                X /= 255
        out.append((X, y))
    return tuple(out) if kind == "both" else out[0]


def load_mnist(path, kind="both", *, flatten=None, dtype=np.uint8, normalize=False):
    """Load MNIST (LeCun, Cortes and Burges; handwritten digits) from local IDX files.

    ``path`` (str or os.PathLike) is a directory holding ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``.
    The un-gzipped ``train-images-idx3-ubyte`` (or ``train-images.idx3-ubyte``) etc. are accepted
    too; the .gz name is preferred when both exist, and compression is detected from the content.
    Nothing is downloaded.

    Like ``keras.datasets.mnist.load_data()``, the default returns
    ``(X_train, y_train), (X_test, y_test)``: X as uint8 pixels 0..255 of shape (n, 28, 28)
    (60,000 train and 10,000 test images), y as int64 labels 0..9 of shape (n,).

    kind: ``"both"`` (default) as above; ``"train"`` or ``"test"`` returns just that ``(X, y)``
        and reads only that split's two files.
    flatten: None (default) gives Keras' (n, 28, 28); True gives X of shape (n, 784), the 2-D
        (n_samples, n_features) input a ``Dense`` model takes; False keeps the images and gives
        them PyTorch's channel axis, (n, 1, 28, 28), the NCHW input a ``Conv2d`` takes.
    dtype: ``np.uint8`` (default, the raw pixels), ``np.float32`` or ``np.float64``.
    normalize: scale pixels to [0, 1] (divide by 255); needs a float dtype.

    For a model: ``(X, y), (Xt, yt) = load_mnist(path, flatten=True, dtype=np.float32,
    normalize=True)`` (``flatten=False`` for a convolutional one). Every array is a fresh, writable, C-contiguous copy.

    Every file is checked: the IDX magic number (0x00000803 for images, 0x00000801 for labels),
    28x28 images, a payload of exactly the size the header declares, equal image and label counts
    and labels in 0..9. A missing directory or file raises FileNotFoundError (a file where the
    directory should be, NotADirectoryError); a truncated, over-long, corrupt or wrong-kind file
    raises ValueError naming the file; bad argument types raise TypeError.
    """
    return _load_idx_dataset(path, kind, flatten, dtype, normalize, "MNIST")


def load_fashion_mnist(path, kind="both", *, flatten=None, dtype=np.uint8, normalize=False):
    """Load Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; Zalando article images, MIT license).

    The same files, format, arguments, checks and return values as :func:`load_mnist` (and as
    ``keras.datasets.fashion_mnist.load_data()``): by default
    ``(X_train, y_train), (X_test, y_test)`` with uint8 X of shape (n, 28, 28) and int64 y,
    60,000 train and 10,000 test images. Classes 0..9: T-shirt/top, Trouser, Pullover, Dress,
    Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
    """
    return _load_idx_dataset(path, kind, flatten, dtype, normalize, "Fashion-MNIST")
