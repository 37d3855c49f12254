"""ONNX export (src/ranvier/onnx_export.py): every layer type and whole models run in onnxruntime
and give what ranvier's forward and predict_proba give; the files pass onnx's checker; bad
requests get clear errors. Skipped without onnx / onnxruntime (CI installs both)."""
import os
from pathlib import Path

import numpy as np
import pytest

import ranvier as rv

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# float32: ranvier's GEMM and activations vs MLAS's differ by a few ulp; float64 agrees to ~1e-15.
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
OPSETS = [13, 17, 20]


def _run(path, X):
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X})))


def _between_dense(layer, dtype):
    return rv.Sequential([rv.Dense(12, 16, seed=1), layer, rv.Dense(16, 5, seed=2)], dtype=dtype)


def _trained_batchnorm(rng, affine=True):
    bn = rv.BatchNorm1d(16, affine=affine)
    bn.running_mean[:] = rng.standard_normal(16)
    bn.running_var[:] = rng.random(16) + 0.5
    if affine:
        bn.weight.data[:] = rng.standard_normal(16)
        bn.bias.data[:] = rng.standard_normal(16)
    return bn


LAYERS = {
    "ReLU": lambda rng: rv.ReLU(), "Sigmoid": lambda rng: rv.Sigmoid(),
    "Tanh": lambda rng: rv.Tanh(), "LeakyReLU": lambda rng: rv.LeakyReLU(0.1),
    "ELU": lambda rng: rv.ELU(0.7), "GELU": lambda rng: rv.GELU(), "SiLU": lambda rng: rv.SiLU(),
    "Dropout": lambda rng: rv.Dropout(0.4, seed=0),
    "BatchNorm1d": _trained_batchnorm,
    "BatchNorm1d-no-affine": lambda rng: _trained_batchnorm(rng, affine=False),
}


@pytest.mark.quick
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_between_dense_layers_matches(tmp_path, rng, dtype, name, opset):
    model = _between_dense(LAYERS[name](rng), dtype)
    model.eval()
    X = (3 * rng.standard_normal((37, 12))).astype(dtype)  # negatives, zeros' neighbours, large
    X[0, :3] = 0.0
    path = model.to_onnx(tmp_path / "m.onnx", opset=opset, probabilities=True)
    if name == "GELU" and dtype == np.float64:
        # onnxruntime implements Erf in float32 only; onnx's reference evaluator runs the file,
        # with an Erf of its own that computes in float32 too (np.vectorize(math.erf, "f")).
        from onnx.reference import ReferenceEvaluator

        (out,) = ReferenceEvaluator(os.fspath(path)).run(["output"], {"input": X})
        np.testing.assert_allclose(out, model.forward(X), rtol=0, atol=1e-6)
        return
    got = _run(path, X)
    tol = TOL[dtype]
    assert got["output"].dtype == dtype and got["output"].shape == (37, 5)
    np.testing.assert_allclose(got["output"], model.forward(X), rtol=tol, atol=tol)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("bias", [True, False])
def test_dense_alone_and_batch_dimension_is_symbolic(tmp_path, rng, dtype, bias):
    model = rv.Sequential([rv.Dense(7, 3, bias=bias, seed=4)], dtype=dtype)
    path = model.to_onnx(tmp_path / "dense.onnx")
    proto = onnx.load(os.fspath(path))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in proto.graph.output] == ["output"]  # no loss, no Softmax: a regressor
    for n in (1, 2, 61):
        X = rng.standard_normal((n, 7)).astype(dtype)
        np.testing.assert_allclose(_run(path, X)["output"], model.forward(X), rtol=TOL[dtype],
                                   atol=TOL[dtype])


def test_flatten_and_softmax(tmp_path, rng, dtype):
    model = rv.Sequential([rv.Flatten(), rv.Dense(12, 6, seed=3), rv.Tanh(), rv.Dense(6, 4, seed=5),
                           rv.Softmax()], dtype=dtype)
    with pytest.raises(ValueError, match="input_shape"):
        model.to_onnx(tmp_path / "f.onnx")
    path = model.to_onnx(tmp_path / "f.onnx", input_shape=(3, 4))
    X = rng.standard_normal((11, 3, 4)).astype(dtype)
    got = _run(path, X)
    np.testing.assert_allclose(got["output"], model.forward(X), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=TOL[dtype],
                               atol=TOL[dtype])


@pytest.mark.quick
def test_conv2d_matches(tmp_path, rng, dtype):
    """Conv with every attribute (pairs, "same", dilation, groups, no bias) and a CNN's flatten
    in PyTorch's order, against onnxruntime within 1e-5."""
    model = rv.Sequential([rv.Conv2d(2, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                     seed=0), rv.ReLU(),
                           rv.Conv2d(6, 6, 3, padding="same", groups=3, bias=False, seed=1),
                           rv.GELU(), rv.Conv2d(6, 4, 1, seed=2), rv.Flatten(),
                           rv.Dense(4 * 5 * 7, 3, seed=3)], dtype=dtype)
    with pytest.raises(ValueError, match="input_shape"):
        model.to_onnx(tmp_path / "c.onnx")
    path = model.to_onnx(tmp_path / "c.onnx", input_shape=(2, 9, 9), probabilities=True)
    X = rng.standard_normal((13, 2, 9, 9)).astype(dtype)
    if dtype == np.float64:  # onnxruntime's Erf (in GELU) is float32 only: see above
        from onnx.reference import ReferenceEvaluator

        (out,) = ReferenceEvaluator(os.fspath(path)).run(["output"], {"input": X})
        np.testing.assert_allclose(out, model.forward(X), rtol=0, atol=1e-6)
        return
    got = _run(path, X)
    assert got["output"].shape == (13, 3)
    np.testing.assert_allclose(got["output"], model.forward(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["bce_logits", "bce"])
def test_binary_probabilities_follow_the_loss(tmp_path, rng, loss):
    layers = [rv.Dense(6, 8, seed=1), rv.ReLU(), rv.Dense(8, 1, seed=2)]
    if loss == "bce":
        layers.append(rv.Sigmoid())
    model = rv.Sequential(layers)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    model.fit(X, y, loss=rv.BCEWithLogitsLoss() if loss == "bce_logits" else rv.BCELoss(),
              epochs=2, verbose=0, seed=0)
    got = _run(model.to_onnx(tmp_path / "b.onnx"), X)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-5, atol=1e-5)


def test_file_passes_the_checker_and_names_ranvier(tmp_path):
    model = rv.Sequential([rv.Dense(4, 8, seed=0), rv.GELU(), rv.BatchNorm1d(8), rv.Dense(8, 3)])
    for opset in OPSETS:
        proto = onnx.load(os.fspath(model.to_onnx(tmp_path / f"c{opset}.onnx", opset=opset)))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.producer_name == "ranvier" and proto.opset_import[0].version == opset
        ops = {n.op_type for n in proto.graph.node}
        assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)


def test_digits_model_trained_matches_on_real_data(tmp_path):
    X, y = rv.datasets.load_digits()
    X = X / 16.0
    Xtr, Xte, ytr, yte = rv.datasets.train_test_split(X, y, test_size=0.3, seed=0)
    model = rv.Sequential([rv.Dense(64, 64, seed=1), rv.BatchNorm1d(64), rv.SiLU(),
                           rv.Dropout(0.1, seed=2), rv.Dense(64, 10, seed=3)])
    model.fit(Xtr, ytr, loss="cross_entropy", optimizer=rv.Adam(model.parameters(), lr=3e-3),
              epochs=15, verbose=0, seed=0)
    got = _run(model.to_onnx(tmp_path / "digits.onnx"), Xte.astype(np.float32))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(Xte), rtol=1e-5,
                               atol=1e-5)
    assert np.mean(got["probabilities"].argmax(1) == yte) == np.mean(model.predict(Xte) == yte)


def test_mnist_model_gives_the_same_test_accuracy(tmp_path):
    folder = Path(os.environ.get("RANVIER_DATA_DIR",
                                 Path(__file__).resolve().parents[2] / "shared" / "data")) / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {folder} (set RANVIER_DATA_DIR)")
    (Xtr, ytr), (Xte, yte) = rv.datasets.load_mnist(folder, flatten=True, dtype=np.float32,
                                                    normalize=True)
    model = rv.Sequential([rv.Dense(784, 128, seed=1), rv.ReLU(), rv.Dense(128, 10, seed=2)])
    model.fit(Xtr[:20000], ytr[:20000], loss="cross_entropy", optimizer="adam", epochs=1,
              batch_size=64, verbose=0, seed=0)
    acc = np.mean(model.predict(Xte) == yte)
    got = _run(model.to_onnx(tmp_path / "mnist.onnx"), Xte)
    assert acc > 0.9
    assert np.mean(got["probabilities"].argmax(1) == yte) == acc


def test_cli_export(tmp_path, rng):
    from ranvier.cli import main

    model = rv.Sequential([rv.Dense(5, 4, seed=1), rv.ELU(), rv.Dense(4, 3, seed=2)])
    model.save(tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "m.onnx"),
                 "--probabilities", "--opset", "18"]) == 0
    X = rng.standard_normal((9, 5)).astype(np.float32)
    got = _run(tmp_path / "m.onnx", X)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(SystemExit, match="cannot export"):
        main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "no" / "m.onnx")])


class _Custom(rv.Layer):
    def forward(self, x):
        return x

    def backward(self, dy, need_input_grad=True):
        return dy


def test_bad_requests_get_clear_errors(tmp_path):
    model = rv.Sequential([rv.Dense(3, 2), _Custom()])
    with pytest.raises(ValueError, match=r"layer 1 \(_Custom\) has no ONNX form"):
        model.to_onnx(tmp_path / "x.onnx")
    good = rv.Sequential([rv.Dense(3, 2)])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        good.to_onnx(tmp_path / "missing" / "x.onnx")
    for opset in (12, 10_000):
        with pytest.raises(ValueError, match="opset must be between 13"):
            good.to_onnx(tmp_path / "x.onnx", opset=opset)
    with pytest.raises(TypeError, match="opset must be an int"):
        good.to_onnx(tmp_path / "x.onnx", opset="17")
    with pytest.raises(ValueError, match="empty model"):
        rv.Sequential([]).to_onnx(tmp_path / "x.onnx")
    stats_free = rv.Sequential([rv.Dense(3, 4), rv.BatchNorm1d(4, track_running_stats=False)])
    with pytest.raises(ValueError, match="track_running_stats=False"):
        stats_free.to_onnx(tmp_path / "x.onnx")
    assert not any(p.name.endswith(".onnx") for p in tmp_path.iterdir())  # nothing half-written


def test_export_keeps_a_previous_file_when_it_fails(tmp_path):
    target = tmp_path / "m.onnx"
    rv.Sequential([rv.Dense(3, 2, seed=0)]).to_onnx(target)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        rv.Sequential([rv.Dense(3, 2), _Custom()]).to_onnx(target)
    assert target.read_bytes() == before


def _image_layers(rng):
    """BatchNorm2d (trained statistics), the pooling layers and Dropout2d, then Flatten."""
    bn = rv.BatchNorm2d(3)
    bn.running_mean[:] = rng.standard_normal(3)
    bn.running_var[:] = rng.random(3) + 0.5
    bn.weight.data[:] = rng.standard_normal(3)
    bn.bias.data[:] = rng.standard_normal(3)
    return [bn, rv.MaxPool2d(3, 2, 1), rv.Dropout2d(0.3, seed=0),
            rv.AvgPool2d((2, 3), stride=1, padding=(1, 1), count_include_pad=False),
            rv.AvgPool2d(2), rv.AdaptiveAvgPool2d(1), rv.Flatten()]


@pytest.mark.quick
@pytest.mark.parametrize("opset", OPSETS)
def test_image_layers_match(tmp_path, rng, dtype, opset):
    """MaxPool, AveragePool (both divisors), GlobalAveragePool, BatchNorm2d's folded inference
    form and Dropout2d left out: onnxruntime gives what the layers' eval forward gives (layer by
    layer: the model's N-D input path is another branch's)."""
    model = rv.Sequential(_image_layers(rng), dtype=dtype)
    model.eval()
    path = model.to_onnx(tmp_path / "img.onnx", opset=opset, input_shape=(3, 13, 11))
    kinds = [n.op_type for n in onnx.load(os.fspath(path)).graph.node]
    assert {"MaxPool", "AveragePool", "GlobalAveragePool", "Mul", "Add"} <= set(kinds)
    assert "Dropout" not in kinds
    X = (3 * rng.standard_normal((5, 3, 13, 11))).astype(dtype)
    want = X
    for layer in model.layers:
        want = layer.forward(want)
    if dtype == np.float64:
        # onnxruntime has no float64 AveragePool; onnx's reference evaluator runs the file
        from onnx.reference import ReferenceEvaluator

        (got,) = ReferenceEvaluator(os.fspath(path)).run(["output"], {"input": X})
    else:
        got = _run(path, X)["output"]
    assert got.dtype == dtype and got.shape == want.shape == (5, 3)
    np.testing.assert_allclose(got, want, rtol=TOL[np.dtype(dtype)], atol=TOL[np.dtype(dtype)])


def test_adaptive_pool_other_than_global_has_no_onnx_form(tmp_path):
    model = rv.Sequential([rv.AdaptiveAvgPool2d((2, 2)), rv.Flatten()])
    with pytest.raises(ValueError, match=r"layer 0 \(AdaptiveAvgPool2d\) has output_size "
                                         r"\(2, 2\): only \(1, 1\)"):
        model.to_onnx(tmp_path / "x.onnx", input_shape=(3, 4, 4))
