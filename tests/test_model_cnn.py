"""A whole convolutional network (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout2d, AvgPool2d,
AdaptiveAvgPool2d, Flatten, Dense) through the model: fit learns, save/load round-trips, the
weights and BatchNorm statistics interchange with the same torch.nn.Sequential through safetensors
both ways, and the ONNX export matches in onnxruntime."""
import numpy as np
import pytest

import ranvier as rv


def _cnn(seed=0):
    return rv.Sequential([
        rv.Conv2d(1, 6, 3, padding=1, seed=seed), rv.BatchNorm2d(6), rv.ReLU(), rv.MaxPool2d(2),
        rv.Dropout2d(0.1, seed=seed),
        rv.Conv2d(6, 8, 3, padding=1, seed=seed + 1), rv.ReLU(), rv.AvgPool2d(2),
        rv.Conv2d(8, 8, 1, seed=seed + 2), rv.ReLU(), rv.AdaptiveAvgPool2d(1),
        rv.Flatten(), rv.Dense(8, 3, seed=seed + 3),
    ])


def _images(rng, n=192):
    """Three classes of 12x12 images: a bright blob in one of three places, on noise."""
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 0.3, (n, 1, 12, 12)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = [(2, 2), (2, 8), (8, 5)][c]
        X[i, 0, r:r + 3, col:col + 3] += 2.0
    return X, y


def _torch_twin(torch, model):
    nn, mods = torch.nn, []
    for layer in model.layers:
        if isinstance(layer, rv.Conv2d):
            mods.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                  layer.stride, layer.padding, layer.dilation, layer.groups,
                                  layer.use_bias))
        elif isinstance(layer, rv.BatchNorm2d):
            mods.append(nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum))
        elif isinstance(layer, rv.MaxPool2d):
            mods.append(nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, rv.AvgPool2d):
            mods.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, rv.AdaptiveAvgPool2d):
            mods.append(nn.AdaptiveAvgPool2d(layer.output_size))
        elif isinstance(layer, rv.Dropout2d):
            mods.append(nn.Dropout2d(layer.p))
        elif isinstance(layer, rv.ReLU):
            mods.append(nn.ReLU())
        elif isinstance(layer, rv.Flatten):
            mods.append(nn.Flatten())
        else:
            mods.append(nn.Linear(layer.in_features, layer.out_features))
    return nn.Sequential(*mods)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(7)
    X, y = _images(rng)
    model = _cnn()
    history = model.fit(X, y, optimizer=rv.Adam(model.parameters(), lr=3e-2), epochs=8,
                        batch_size=32, verbose=0, seed=0)
    return model, X, y, history


def test_fit_learns(trained):
    model, X, y, history = trained
    loss = history.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert model.evaluate(X, y)["accuracy"] > 0.9
    assert model.output_shape((1, 12, 12)) == (3,)


def test_save_load_round_trip(trained, tmp_path):
    model, X, _, _ = trained
    model.save(tmp_path / "cnn.safetensors")
    loaded = rv.load(tmp_path / "cnn.safetensors")
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_interchanges_with_torch_both_ways(trained, tmp_path, torch):
    from safetensors.torch import load_file, save_file

    model, X, _, _ = trained
    model.save(tmp_path / "ranvier.safetensors")
    net = _torch_twin(torch, model)
    net.load_state_dict(load_file(str(tmp_path / "ranvier.safetensors")))
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.forward(X), theirs, rtol=1e-4, atol=1e-5)

    torch.manual_seed(0)
    net2 = _torch_twin(torch, model)
    net2.train()
    with torch.no_grad():   # a few batches so the BatchNorm statistics are not the initial ones
        for i in range(3):
            net2(torch.from_numpy(X[i * 32:(i + 1) * 32]))
    net2.eval()
    save_file(net2.state_dict(), str(tmp_path / "torch.safetensors"))
    mine = _cnn(seed=5)
    mine.load_weights(tmp_path / "torch.safetensors")
    mine.eval()
    with torch.no_grad():
        expected = net2(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(mine.forward(X), expected, rtol=1e-4, atol=1e-5)


def test_onnx_export_matches_onnxruntime(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, X, _, _ = trained
    path = tmp_path / "cnn.onnx"
    model.to_onnx(path, input_shape=(1, 12, 12))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": X})
    np.testing.assert_allclose(out[0], model.forward(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], model.predict_proba(X), rtol=1e-5, atol=1e-5)
