"""The bundled digits and train_test_split."""
import numpy as np
import pytest

import ranvier as rv
from ranvier.datasets import load_digits, train_test_split

COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.quick
def test_load_digits_shapes_dtypes_values(digits):
    X, y = digits
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16
    np.testing.assert_array_equal(X, np.round(X))  # integer pixel values 0..16
    assert len(np.unique(X)) == 17
    np.testing.assert_array_equal(np.bincount(y, minlength=10), COUNTS)
    assert y.min() == 0 and y.max() == 9
    assert len(np.unique(X, axis=0)) > 1700  # real images, not a constant or tiled array


def test_load_digits_float64_and_fresh_copies(digits):
    X64, y64 = load_digits(dtype=np.float64)
    assert X64.dtype == np.float64
    np.testing.assert_array_equal(X64, digits[0])
    np.testing.assert_array_equal(y64, digits[1])
    X1, _ = load_digits()
    X1 /= 16  # callers scale in place, as the demo does; later loads are unaffected
    assert load_digits()[0].max() == 16


def test_load_digits_known_image(digits):
    """The first image of the UCI set is a zero: symmetric-ish ring, empty centre columns."""
    X, y = digits
    assert y[0] == 0
    img = X[0].reshape(8, 8)
    assert img[0].sum() > 0 and img[:, 0].sum() == 0 and img[3:5, 3:5].sum() < img[3:5].sum()


SIZES = [(0.25, 450), (0.2, 360), (0.5, 899), (0.01, 18), (0.999, 1796), (1, 1), (5, 5), (10, 10),
         (100, 100), (1796, 1796)]  # a fraction is rounded up, a count is taken as is


@pytest.mark.parametrize("test_size,n_test", SIZES)
def test_train_test_split_sizes_unstratified(digits, test_size, n_test):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, seed=0, stratify=False)
    assert (len(Xte), len(yte)) == (n_test, n_test)
    assert (len(Xtr), len(ytr)) == (1797 - n_test, 1797 - n_test)


def test_train_test_split_sizes_stratified(digits):
    """Stratified (the default) splits give exactly the requested test size too, and never an
    empty train or test part."""
    X, y = digits
    wrong = []
    for test_size, n_test in SIZES:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, seed=0)
        assert len(Xte) == len(yte) and len(Xtr) == len(ytr) and len(Xtr) + len(Xte) == 1797
        if len(Xte) != n_test:
            wrong.append(f"test_size={test_size}: {len(Xte)} test / {len(Xtr)} train, "
                         f"expected {n_test} / {1797 - n_test}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.quick
def test_train_test_split_is_a_partition_and_keeps_pairs(digits):
    X, y = digits
    idx = np.arange(1797)
    itr, ite, ytr, yte = train_test_split(idx, y, test_size=0.25, seed=3)
    assert len(np.intersect1d(itr, ite)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([itr, ite])), idx)
    np.testing.assert_array_equal(ytr, y[itr])  # rows stay with their labels
    np.testing.assert_array_equal(yte, y[ite])
    Xtr, Xte, _, _ = train_test_split(X, y, test_size=0.25, seed=3)
    np.testing.assert_array_equal(Xtr, X[itr])
    np.testing.assert_array_equal(Xte, X[ite])
    assert not np.array_equal(ite, np.sort(ite))  # shuffled


def test_train_test_split_stratified_proportions(digits):
    X, y = digits
    _, _, ytr, yte = train_test_split(X, y, test_size=0.25, seed=1)
    te = np.bincount(yte, minlength=10)
    np.testing.assert_allclose(te, np.array(COUNTS) * 0.25, atol=1)
    np.testing.assert_array_equal(np.bincount(ytr, minlength=10) + te, COUNTS)


def test_train_test_split_deterministic(digits):
    X, y = digits
    a = train_test_split(X, y, test_size=0.3, seed=42)
    b = train_test_split(X, y, test_size=0.3, seed=42)
    c = train_test_split(X, y, test_size=0.3, seed=43)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])


def test_train_test_split_unstratified_with_float_targets(rng):
    X = rng.normal(size=(50, 3))
    y = rng.normal(size=50)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=0)
    assert Xte.shape == (10, 3) and ytr.shape == (40,)
    np.testing.assert_array_equal(np.sort(np.concatenate([ytr, yte])), np.sort(y))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(test_size=0.0), ValueError, "test_size"),
    (dict(test_size=-0.1), ValueError, "test_size"),
    (dict(test_size=1.0), ValueError, "test_size"),
    (dict(test_size=1.5), ValueError, "test_size"),
    (dict(test_size=0), ValueError, "test_size"),
    (dict(test_size=-3), ValueError, "test_size"),
    (dict(test_size=1797), ValueError, "test_size"),
    (dict(test_size=float("nan")), ValueError, "test_size"),
    (dict(test_size="0.25"), TypeError, "test_size"),
    (dict(test_size=True), TypeError, "test_size"),
    (dict(test_size=None), TypeError, "test_size"),
])
def test_train_test_split_bad_test_size(digits, kwargs, exc, match):
    X, y = digits
    with pytest.raises(exc, match=match):
        train_test_split(X, y, **kwargs)


def test_train_test_split_bad_data(digits):
    X, y = digits
    with pytest.raises(ValueError, match="X and y have different numbers of samples"):
        train_test_split(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(X[:1], y[:1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(X[:0], y[:0])


def test_digits_are_learnable_quickly(digits):
    """The bundled data and the split feed straight into a model."""
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X / 16, y, test_size=0.25, seed=0)
    model = rv.Sequential([rv.Dense(64, 10, seed=0, init="xavier")])
    model.fit(Xtr, ytr, optimizer=rv.SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=10,
              batch_size=32, seed=0, verbose=0)
    assert model.evaluate(Xte, yte)["accuracy"] > 0.9
