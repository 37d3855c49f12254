"""load_mnist / load_fashion_mnist and the IDX reader behind them.

The real-data tests read ``<data>/mnist`` and ``<data>/fashion-mnist``, where ``<data>`` is
``$RANVIER_DATA_DIR`` if set, else ``shared/data`` next to the repository; they are skipped when the
directory is absent. Everything else runs on small IDX files written into ``tmp_path`` by an
independent writer below (not ranvier's code).
"""
import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import ranvier as rv
from ranvier.datasets import load_fashion_mnist, load_mnist
from ranvier.datasets._idx import read_idx

DATA_DIR = Path(os.environ["RANVIER_DATA_DIR"]) if os.environ.get("RANVIER_DATA_DIR") else \
    Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = DATA_DIR / "mnist"
FASHION_DIR = DATA_DIR / "fashion-mnist"

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
LOADERS = [load_mnist, load_fashion_mnist]


def _need(directory):
    if not directory.is_dir():
        pytest.skip(f"real data not found at {directory} (set RANVIER_DATA_DIR to the directory "
                    "holding mnist/ and fashion-mnist/)")
    return directory


# ---------------------------------------------------------------- the real files

@pytest.fixture(scope="module")
def mnist():
    return load_mnist(_need(MNIST_DIR))


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist(_need(FASHION_DIR))


def _check_arrays(X, y, n):
    assert X.shape == (n, 28, 28) and X.dtype == np.uint8
    assert X.flags.c_contiguous and X.flags.writeable
    assert y.shape == (n,) and y.dtype == np.int64 and y.flags.writeable
    assert X.min() == 0 and X.max() == 255
    assert y.min() == 0 and y.max() == 9


def test_real_mnist(mnist):
    (X, y), (Xt, yt) = mnist
    _check_arrays(X, y, 60000)
    _check_arrays(Xt, yt, 10000)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), MNIST_TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), MNIST_TEST_COUNTS)
    # The well-known first labels, and the published normalisation constants (0.1307, 0.3081).
    np.testing.assert_array_equal(y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(yt[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    assert abs(X.mean() / 255 - 0.1307) < 5e-4 and abs(X.std() / 255 - 0.3081) < 5e-4
    # Rows are rows: the mean "1" is a vertical stroke, so its column profile is far more peaked
    # than its row profile (a transposed reader would swap them).
    ones = X[y == 1].mean(axis=0)
    col, row = ones.sum(axis=0), ones.sum(axis=1)
    assert col.max() / col.mean() > 2 * row.max() / row.mean()
    assert len(np.unique(X[:2000].reshape(2000, -1), axis=0)) == 2000  # real, distinct images


def test_real_fashion_mnist(fashion):
    (X, y), (Xt, yt) = fashion
    _check_arrays(X, y, 60000)
    _check_arrays(Xt, yt, 10000)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [1000] * 10)
    np.testing.assert_array_equal(y[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    assert abs(X.mean() / 255 - 0.2860) < 5e-4 and abs(X.std() / 255 - 0.3530) < 5e-4


def test_real_mnist_is_not_fashion(mnist, fashion):
    assert not np.array_equal(mnist[1][0], fashion[1][0])


def test_real_mnist_test_split_options(mnist):
    """kind="test" alone, flattened and normalised, matches the default load."""
    Xt, yt = load_mnist(str(MNIST_DIR), kind="test", flatten=True, dtype=np.float32,
                        normalize=True)
    assert Xt.shape == (10000, 784) and Xt.dtype == np.float32 and Xt.flags.c_contiguous
    assert Xt.min() == 0.0 and Xt.max() == 1.0
    np.testing.assert_array_equal(yt, mnist[1][1])
    np.testing.assert_allclose(Xt, mnist[1][0].reshape(10000, 784) / np.float32(255), rtol=1e-7)


@pytest.mark.parametrize("name", [TEST_IMAGES + ".gz", TEST_LABELS + ".gz"])
def test_real_file_cut_in_half(tmp_path, name):
    src = _need(MNIST_DIR)
    for n in (TEST_IMAGES + ".gz", TEST_LABELS + ".gz"):
        shutil.copyfile(src / n, tmp_path / n)
    data = (src / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as exc:
        load_mnist(tmp_path, kind="test")
    assert name in str(exc.value)


# ---------------------------------------------------------------- synthetic IDX files

def idx_bytes(array, type_byte=0x08, ndim=None, dims=None):
    """The IDX encoding of ``array`` (uint8); type_byte / ndim / dims override the header."""
    array = np.asarray(array)
    dims = array.shape if dims is None else dims
    ndim = len(dims) if ndim is None else ndim
    header = bytes([0, 0, type_byte, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(">u1").tobytes()


def gz(data):
    return gzip.compress(data, mtime=0)


def make_split(rng, n):
    return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n, dtype=np.uint8))


@pytest.fixture
def synth(tmp_path):
    """A directory of four valid gzip IDX files (7 train, 3 test images) and their contents."""
    rng = np.random.default_rng(7)
    train, test = make_split(rng, 7), make_split(rng, 3)
    train[1][:3] = [0, 9, 5]  # both ends of the label range
    for (name_x, name_y), (X, y) in (((TRAIN_IMAGES, TRAIN_LABELS), train),
                                     ((TEST_IMAGES, TEST_LABELS), test)):
        (tmp_path / (name_x + ".gz")).write_bytes(gz(idx_bytes(X)))
        (tmp_path / (name_y + ".gz")).write_bytes(gz(idx_bytes(y)))
    return tmp_path, train, test


def _assert_loaded(result, train, test):
    (X, y), (Xt, yt) = result
    for (got_x, got_y), (want_x, want_y) in (((X, y), train), ((Xt, yt), test)):
        assert got_x.dtype == np.uint8 and got_x.shape == want_x.shape
        assert got_y.dtype == np.int64 and got_y.shape == want_y.shape
        np.testing.assert_array_equal(got_x, want_x)
        np.testing.assert_array_equal(got_y, want_y)


@pytest.mark.quick
@pytest.mark.parametrize("loader", LOADERS)
def test_round_trip(synth, loader):
    d, train, test = synth
    _assert_loaded(loader(d), train, test)
    _assert_loaded(loader(str(d)), train, test)
    X, y = loader(d, kind="train")
    np.testing.assert_array_equal(X, train[0])
    np.testing.assert_array_equal(y, train[1])
    Xt, yt = loader(d, kind="test")
    np.testing.assert_array_equal(Xt, test[0])
    np.testing.assert_array_equal(yt, test[1])


def test_fresh_writable_copies(synth):
    d, train, _ = synth
    X, y = load_mnist(d, kind="train")
    assert X.flags.writeable and X.flags.c_contiguous and y.flags.writeable
    X[:] = 0
    y[:] = 0
    X2, y2 = load_mnist(d, kind="train")
    np.testing.assert_array_equal(X2, train[0])
    np.testing.assert_array_equal(y2, train[1])


def test_uncompressed_and_alternative_names(synth):
    d, train, test = synth
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        raw = gzip.decompress((d / (name + ".gz")).read_bytes())
        (d / (name + ".gz")).unlink()
        (d / name).write_bytes(raw)
    _assert_loaded(load_mnist(d), train, test)
    # The "train-images.idx3-ubyte" spelling of some mirrors.
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        (d / name).rename(d / name.replace("-idx", ".idx"))
    _assert_loaded(load_mnist(d), train, test)


def test_gz_name_preferred_and_content_sniffed(synth):
    d, train, test = synth
    # A stale uncompressed copy next to the .gz is ignored.
    (d / TRAIN_LABELS).write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    _assert_loaded(load_mnist(d), train, test)
    # Compression is read from the content, not the name: an uncompressed file named .gz works.
    raw = gzip.decompress((d / (TEST_IMAGES + ".gz")).read_bytes())
    (d / (TEST_IMAGES + ".gz")).write_bytes(raw)
    _assert_loaded(load_mnist(d), train, test)


def test_multi_member_gzip(synth):
    """A gzip file of several members (e.g. from concatenated .gz files) is one stream."""
    d, train, _ = synth
    data = idx_bytes(train[0])
    (d / (TRAIN_IMAGES + ".gz")).write_bytes(gz(data[:1000]) + gz(data[1000:]))
    np.testing.assert_array_equal(load_mnist(d, kind="train")[0], train[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32"])
def test_flatten_dtype_normalize(synth, dtype):
    d, train, test = synth
    X, y = load_mnist(d, kind="train", flatten=True)
    assert X.shape == (7, 784) and X.dtype == np.uint8
    np.testing.assert_array_equal(X, train[0].reshape(7, 784))
    (Xf, yf), (Xtf, _) = load_mnist(d, dtype=dtype)
    assert Xf.dtype == np.dtype(dtype) and Xf.shape == (7, 28, 28)
    np.testing.assert_array_equal(Xf, train[0].astype(np.float64))  # 0..255, not scaled
    assert yf.dtype == np.int64
    Xn, _ = load_mnist(d, kind="test", flatten=True, dtype=dtype, normalize=True)
    assert Xn.dtype == np.dtype(dtype) and Xn.shape == (3, 784)
    np.testing.assert_allclose(Xn, test[0].reshape(3, 784) / 255.0,
                               rtol=1e-6 if np.dtype(dtype) == np.float32 else 1e-15)
    assert 0.0 <= Xn.min() and Xn.max() <= 1.0


def test_unflattened_images_have_a_channel_axis_for_conv2d(synth):
    """flatten=False: (n, 1, 28, 28), PyTorch's NCHW, the input a Conv2d model takes."""
    d, train, test = synth
    (X, y), (Xt, _) = load_mnist(d, flatten=False, dtype=np.float32, normalize=True)
    assert X.shape == (7, 1, 28, 28) and Xt.shape == (3, 1, 28, 28) and X.flags.c_contiguous
    np.testing.assert_allclose(X[:, 0], train[0] / np.float32(255), rtol=1e-6)
    model = rv.Sequential([rv.Conv2d(1, 2, 5, stride=3), rv.ReLU(), rv.Flatten(),
                           rv.Dense(2 * 8 * 8, 10)])
    assert model.forward(X).shape == (7, 10)


def test_flattened_float_data_fits_a_model(synth):
    """The documented one-liner gives input a Dense model accepts as it is."""
    d, _, _ = synth
    (X, y), _ = load_mnist(d, flatten=True, dtype=np.float32, normalize=True)
    assert X.shape == (7, 784) and X.dtype == np.float32
    model = rv.Sequential([rv.Dense(784, 10)])
    pred = model.predict(X)
    assert pred.shape == (7, 10) and np.isfinite(pred).all()
    with pytest.raises(ValueError, match="must be 2-D"):  # the unflattened default is not
        model.predict(load_mnist(d, kind="train", dtype=np.float32)[0])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(kind="validation"), ValueError, "kind must be 'train', 'test' or 'both'"),
    (dict(kind=None), TypeError, "kind must be"),
    (dict(flatten=1), TypeError, "flatten must be None, True or False"),
    (dict(normalize="yes"), TypeError, "normalize must be a bool"),
    (dict(dtype=np.int32), TypeError, "dtype must be uint8, float32 or float64"),
    (dict(dtype=np.float16), TypeError, "dtype must be uint8, float32 or float64"),
    (dict(dtype=None), TypeError, "dtype must be uint8, float32 or float64"),
    (dict(dtype="nonsense"), TypeError, "dtype must be uint8, float32 or float64"),
    (dict(normalize=True), ValueError, "normalize=True .* needs a float dtype"),
])
def test_bad_arguments(synth, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_mnist(synth[0], **kwargs)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("path", [None, 3, 1.5, b"/tmp", ["a"]])
def test_bad_path_type(loader, path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        loader(path)


@pytest.mark.parametrize("loader,name", [(load_mnist, "MNIST"),
                                         (load_fashion_mnist, "Fashion-MNIST")])
def test_missing_directory(tmp_path, loader, name):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"{name}: directory .* does not exist") as exc:
        loader(missing)
    assert str(missing) in str(exc.value)


def test_path_is_a_file(synth):
    f = synth[0] / (TRAIN_IMAGES + ".gz")
    with pytest.raises(NotADirectoryError, match="is not a directory") as exc:
        load_mnist(f)
    assert str(f) in str(exc.value)


@pytest.mark.parametrize("name,what", [(TRAIN_IMAGES, "train images"),
                                       (TRAIN_LABELS, "train labels"),
                                       (TEST_IMAGES, "test images"),
                                       (TEST_LABELS, "test labels")])
def test_missing_file(synth, name, what):
    d = synth[0]
    (d / (name + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=f"no {what} file") as exc:
        load_mnist(d)
    msg = str(exc.value)
    assert name + ".gz" in msg and str(d) in msg and "does not download" in msg
    # Only the split that needs the file fails.
    other = "test" if name.startswith("train") else "train"
    load_mnist(d, kind=other)


def test_missing_file_reported_before_reading(synth, monkeypatch):
    """With kind="both", a missing test file is reported without first reading the train set."""
    d = synth[0]
    (d / (TEST_LABELS + ".gz")).unlink()
    import ranvier.datasets as ds

    def boom(*a, **k):
        raise AssertionError("read a file before checking that all four exist")
    monkeypatch.setattr(ds, "read_idx", boom)
    with pytest.raises(FileNotFoundError, match=TEST_LABELS):
        load_mnist(d)


def _replace(d, name, data):
    (d / (name + ".gz")).write_bytes(data)
    return name + ".gz"


def _raises_naming(d, fname, match, exc=ValueError, kind="both"):
    with pytest.raises(exc, match=match) as info:
        load_mnist(d, kind=kind)
    assert fname in str(info.value), str(info.value)
    return str(info.value)


@pytest.mark.parametrize("name", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
@pytest.mark.parametrize("cut", [0.5, -1, -4, -8, 12, 3, 1])
def test_truncated_gzip_stream(synth, name, cut):
    """The gzip file itself cut short: inside the deflate data, the CRC/size trailer, the header."""
    d = synth[0]
    data = (d / (name + ".gz")).read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    fname = _replace(d, name, data[:n])
    _raises_naming(d, fname, "truncated")


def test_empty_file(synth):
    d = synth[0]
    fname = _replace(d, TRAIN_IMAGES, b"")
    _raises_naming(d, fname, "truncated .*0 byte")


@pytest.mark.parametrize("name,cut", [(TRAIN_IMAGES, 1), (TRAIN_IMAGES, 784), (TRAIN_IMAGES, 7),
                                      (TRAIN_LABELS, 1), (TEST_IMAGES, 20), (TEST_LABELS, 3)])
def test_truncated_payload_regzipped(synth, name, cut):
    """A valid gzip stream of an IDX file missing its last bytes (or most of its header)."""
    d = synth[0]
    raw = gzip.decompress((d / (name + ".gz")).read_bytes())
    fname = _replace(d, name, gz(raw[:-cut]))
    msg = _raises_naming(d, fname, "truncated")
    if cut < 10:
        assert f"holds only {len(raw) - cut - (16 if 'images' in name else 8)}" in msg


def test_truncated_header_regzipped(synth):
    d = synth[0]
    raw = gzip.decompress((d / (TRAIN_IMAGES + ".gz")).read_bytes())
    for n in (2, 6, 12):
        fname = _replace(d, TRAIN_IMAGES, gz(raw[:n]))
        _raises_naming(d, fname, "truncated")


@pytest.mark.parametrize("name", [TRAIN_IMAGES, TEST_LABELS])
@pytest.mark.parametrize("extra", [b"\x00", b"\x01" * 784])
def test_over_long_payload(synth, name, extra):
    d = synth[0]
    raw = gzip.decompress((d / (name + ".gz")).read_bytes())
    fname = _replace(d, name, gz(raw + extra))
    _raises_naming(d, fname, "over-long")


def test_huge_header_dims_fail_cleanly(synth):
    """A header promising 4 billion images neither allocates that nor hangs."""
    d = synth[0]
    X = synth[1][0]
    fname = _replace(d, TRAIN_IMAGES, gz(idx_bytes(X, dims=(2**32 - 1, 28, 28))))
    _raises_naming(d, fname, r"truncated .*shape \(4294967295, 28, 28\)")


def test_over_long_by_a_lot(synth):
    """A small header followed by a large (highly compressible) payload is rejected as over-long."""
    d = synth[0]
    data = idx_bytes(synth[1][0]) + bytes(20_000_000)
    fname = _replace(d, TRAIN_IMAGES, gz(data))
    _raises_naming(d, fname, "over-long", kind="train")


@pytest.mark.parametrize("magic", [b"\x08\x03\x00\x00", b"\x00\x01\x08\x03", b"\x1f\x00\x08\x03",
                                   b"PK\x03\x04"])
def test_wrong_magic(synth, magic):
    d = synth[0]
    raw = gzip.decompress((d / (TRAIN_IMAGES + ".gz")).read_bytes())
    fname = _replace(d, TRAIN_IMAGES, gz(magic + raw[4:]))
    _raises_naming(d, fname, "not an IDX file")


def test_not_gzip_not_idx(synth):
    d = synth[0]
    fname = _replace(d, TEST_LABELS, b"hello, this is text\n" * 10)
    _raises_naming(d, fname, "not an IDX file")


def test_corrupt_gzip_data(synth):
    d = synth[0]
    data = bytearray((d / (TRAIN_IMAGES + ".gz")).read_bytes())
    data[len(data) // 2] ^= 0xFF
    fname = _replace(d, TRAIN_IMAGES, bytes(data))
    _raises_naming(d, fname, "corrupt gzip data|truncated|over-long")
    fname = _replace(d, TRAIN_IMAGES, gz(idx_bytes(synth[1][0])))  # restore it
    data = bytearray((d / (TRAIN_LABELS + ".gz")).read_bytes())
    data[-8] ^= 0x01  # the CRC-32 in the trailer
    fname = _replace(d, TRAIN_LABELS, bytes(data))
    _raises_naming(d, fname, "corrupt gzip data.*CRC")


@pytest.mark.parametrize("type_byte,match", [(0x09, r"found magic number 0x00000903 \(int8"),
                                             (0x0D, r"found magic number 0x00000D03 \(float32"),
                                             (0x07, "unknown data type byte 0x07"),
                                             (0xFF, "unknown data type byte 0xFF")])
def test_wrong_dtype_byte(synth, type_byte, match):
    d = synth[0]
    X = synth[1][0]
    fname = _replace(d, TRAIN_IMAGES, gz(idx_bytes(X, type_byte=type_byte)))
    _raises_naming(d, fname, match)


def test_labels_in_images_slot(synth):
    d = synth[0]
    shutil.copyfile(d / (TRAIN_LABELS + ".gz"), d / (TRAIN_IMAGES + ".gz"))
    msg = _raises_naming(d, TRAIN_IMAGES + ".gz", "wrong kind of IDX file")
    assert "expected train images" in msg and "0x00000803" in msg
    assert "found magic number 0x00000801" in msg and "label file" in msg


def test_images_in_labels_slot(synth):
    d = synth[0]
    shutil.copyfile(d / (TEST_IMAGES + ".gz"), d / (TEST_LABELS + ".gz"))
    msg = _raises_naming(d, TEST_LABELS + ".gz", "wrong kind of IDX file")
    assert "expected test labels" in msg and "found magic number 0x00000803" in msg
    assert "image file" in msg


def test_wrong_ndim(synth):
    d = synth[0]
    X = synth[1][0]
    fname = _replace(d, TRAIN_IMAGES, gz(idx_bytes(X.reshape(7, 784))))
    _raises_naming(d, fname, "found magic number 0x00000802")


@pytest.mark.parametrize("shape", [(7, 27, 29), (7, 784, 1), (1, 28, 196), (7, 32, 32)])
def test_wrong_image_size(synth, shape):
    d = synth[0]
    X = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    fname = _replace(d, TRAIN_IMAGES, gz(idx_bytes(X)))
    _raises_naming(d, fname, "must be 28x28 pixels")


def test_zero_images(synth):
    d = synth[0]
    fname = _replace(d, TEST_IMAGES, gz(idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    _raises_naming(d, fname, "holds 0 images")


@pytest.mark.parametrize("n_labels", [6, 8, 0])
def test_count_mismatch(synth, n_labels):
    d = synth[0]
    fname = _replace(d, TRAIN_LABELS, gz(idx_bytes(np.zeros(n_labels, np.uint8))))
    msg = _raises_naming(d, fname, "train image and label counts differ")
    assert TRAIN_IMAGES + ".gz" in msg
    assert "holds 7 images but" in msg and f"holds {n_labels} labels" in msg


@pytest.mark.parametrize("bad", [10, 11, 255])
def test_label_out_of_range(synth, bad):
    d = synth[0]
    y = synth[2][1].copy()
    y[2] = bad
    fname = _replace(d, TEST_LABELS, gz(idx_bytes(y)))
    _raises_naming(d, fname, f"out of range 0..9, e.g. {bad} at index 2")


def test_directory_in_file_slot(synth):
    d = synth[0]
    (d / (TEST_IMAGES + ".gz")).unlink()
    (d / (TEST_IMAGES + ".gz")).mkdir()
    _raises_naming(d, TEST_IMAGES + ".gz", "not a regular file")


def test_fashion_messages_name_the_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST: no train images file"):
        load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------- the reader on its own

@pytest.mark.parametrize("dtype,type_byte", [(">u1", 0x08), (">i1", 0x09), (">i2", 0x0B),
                                             (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E)])
def test_read_idx_all_types(tmp_path, dtype, type_byte):
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.standard_normal((3, 4, 5)) * 100).astype(dt)
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dt)
    header = bytes([0, 0, type_byte, 3]) + struct.pack(">3I", 3, 4, 5)
    p = tmp_path / "x.idx.gz"
    p.write_bytes(gz(header + a.tobytes()))
    out = read_idx(p)
    assert out.shape == (3, 4, 5) and out.dtype.isnative and out.flags.writeable
    assert out.dtype == dt.newbyteorder("=")
    np.testing.assert_array_equal(out, a)
    p.write_bytes(header + a.tobytes() + b"\0")  # uncompressed this time, one byte too many
    with pytest.raises(ValueError, match="over-long"):
        read_idx(p)


def test_read_idx_zero_dims(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match="declares 0 dimensions"):
        read_idx(p)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx(tmp_path / "nope.gz")
