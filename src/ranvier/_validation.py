"""Input checks for the public API: every message names the argument and what was wrong."""
import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, name="dtype"):
    """Normalise a float dtype argument (float32 or float64 only)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def _as_numeric_array(x, name):
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must contain numbers (bool, int or float); got dtype {arr.dtype}")
    return arr


# -- scalars and arguments ------------------------------------------------------------------------
def is_bool(value):
    return isinstance(value, (bool, np.bool_))


def is_int(value):
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not is_bool(value)


def is_real(value):
    """A real number that is not a bool (ints and numpy scalars included)."""
    return isinstance(value, numbers.Real) and not is_bool(value)


def in_range(value, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True):
    """``value`` lies within the bounds (None: unbounded on that side)."""
    if minimum is not None and (value < minimum or (not min_inclusive and value == minimum)):
        return False
    return maximum is None or not (value > maximum or (not max_inclusive and value == maximum))


def check_int(value, name, minimum=1):
    """An int (numpy integers too, never a bool or a float) >= ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


check_positive_int = check_int  # the name the model, layers and callbacks import


def check_int_pair(value, name, minimum=1):
    """An int or a pair of ints (each >= ``minimum``) as a pair (h, w), as torch's 2-D layers
    take kernel sizes, strides and paddings."""
    if is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(check_int(v, name, minimum) for v in value)


def check_float(value, name, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True):
    """A finite float within the bounds; the message names the bound that was crossed."""
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if not in_range(value, minimum, None, min_inclusive):
        raise ValueError(f"{name} must be {'>=' if min_inclusive else '>'} {minimum}, got {value}")
    if not in_range(value, None, maximum, max_inclusive=max_inclusive):
        raise ValueError(f"{name} must be {'<=' if max_inclusive else '<'} {maximum}, got {value}")
    return value


def check_bool(value, name):
    if not is_bool(value):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def check_choice(value, name, options):
    """``value`` equal to one of ``options`` and of its type (so 1 is not True, nor "1" 1)."""
    if not any(isinstance(value, type(o)) and value == o for o in options):
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def check_instance(value, types, name, expected):
    """TypeError unless ``value`` is an instance of ``types``; ``expected`` says what in words."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    return value


def check_path(path, name="path"):
    """A file system path (str or os.PathLike) as a str."""
    check_instance(path, (str, os.PathLike), name, "a str or os.PathLike")
    return os.fspath(path)


def check_keys(mapping, expected, name, owner):
    """ValueError unless ``mapping`` (e.g. a state_dict) has exactly the keys ``expected``."""
    unknown = sorted(map(str, set(mapping) - set(expected)))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown} for {owner}")
    missing = sorted(set(expected) - set(mapping))
    if missing:
        raise ValueError(f"{name} lacks {missing} for {owner}")


# -- scikit-learn style hyper-parameter checks (ranvier.sklearn) ---------------------------------
class InvalidParameterError(ValueError, TypeError):
    """A hyper-parameter has a bad value or type (raised by ``fit``, as scikit-learn does; it is
    both a ValueError and a TypeError, like sklearn's own InvalidParameterError)."""


def invalid_parameter(name, value, expected):
    """The error scikit-learn raises for a bad hyper-parameter, in its words."""
    return InvalidParameterError(f"The '{name}' parameter must be {expected}. Got {value!r} "
                                 "instead.")


def check_param_float(value, name, minimum=None, maximum=None, min_inclusive=True,
                      max_inclusive=True):
    if not (is_real(value) and np.isfinite(value) and
            in_range(value, minimum, maximum, min_inclusive, max_inclusive)):
        low = "[" if min_inclusive else "("
        high = "]" if max_inclusive and maximum is not None else ")"
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise invalid_parameter(name, value, f"a float in the range {low}{lo}, {hi}{high}")
    return float(value)


def check_param_choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise invalid_parameter(name, value, "a str among " + ", ".join(map(repr, options)))
    return value


def check_param_bool(value, name):
    if not is_bool(value):
        raise invalid_parameter(name, value, "a bool")
    return bool(value)


# -- arrays ---------------------------------------------------------------------------------------
def check_features(x, name, dtype, n_features=None, check_finite=True):
    """A 2-D (n_samples, n_features) C-contiguous float array of ``dtype``.

    Numeric inputs (ints, uint8 images, the other float type) are converted to the model's dtype;
    anything else is a TypeError. Empty, non-2-D, wrong-width and non-finite inputs are ValueErrors.
    """
    arr = _as_numeric_array(x, name)
    _check_matrix_shape(arr, name, n_features)
    return _as_finite(arr, name, dtype, check_finite)


def check_samples(x, name, dtype, check_finite=True):
    """A batch (n_samples, ...) of samples of any shape (images before a Flatten or a Conv2d) as a
    C-contiguous float array of ``dtype``; the caller checks the per-sample shape (a model: by
    its layers' shape inference). Conversions and errors as :func:`check_features`."""
    arr = _as_numeric_array(x, name)
    if arr.ndim < 2:
        raise ValueError(f"{name} must be a batch (n_samples, ...) of at least 2 dimensions, got "
                         f"shape {arr.shape}; for a single sample use x[None]")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return _as_finite(arr, name, dtype, check_finite)


def _as_finite(arr, name, dtype, check_finite):
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if check_finite and not all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _check_matrix_shape(arr, name, n_features):
    """ValueError unless ``arr`` is (n_samples, n_features), neither empty; hints for 1-D / n-D."""
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1:
            hint = "; for a single sample use x.reshape(1, -1)"
        elif arr.ndim > 2:
            hint = ("; flatten each sample first, e.g. x.reshape(len(x), -1), or start the model "
                    "with a Flatten layer")
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample, but the model expects "
                         f"{n_features} (shape {arr.shape})")


def all_finite(arr):
    """True when no element is NaN or infinite: one native pass over float32/float64 data in
    memory order (no temporary), NumPy for anything else."""
    if arr.dtype.kind != "f":
        return True
    if arr.dtype in (np.float32, np.float64) and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        from ._kernels.validation import all_finite as native_all_finite

        # a flat view in memory order (ravel copies nothing for a contiguous array)
        return native_all_finite(arr.ravel(order="K"))
    return bool(np.isfinite(arr).all())


def check_batch_match(n_x, n_y, x_name="X", y_name="y"):
    if n_x != n_y:
        raise ValueError(f"{x_name} and {y_name} have different numbers of samples: {n_x} and {n_y}")


def check_labels(y, name, n_samples=None, n_classes=None):
    """Integer class labels, 1-D int64, each in [0, n_classes)."""
    arr = _as_numeric_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} labels but there are {n_samples} samples")
    if arr.dtype.kind == "f":
        if not all_finite(arr):
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels; found non-integer values")
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    labels = np.ascontiguousarray(arr, dtype=np.int64)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        bound = f"[0, {n_classes - 1}]" if n_classes is not None else ">= 0"
        raise ValueError(f"{name} has labels out of range: found values in [{lo}, {hi}], "
                         f"expected {bound}")
    return labels


def is_integer_labels(y):
    arr = np.asarray(y)
    return arr.dtype.kind in "iub" and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1))

