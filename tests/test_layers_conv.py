"""Conv2d at the API level: against torch.nn.Conv2d (output and the three gradients) over strides,
paddings, dilations, groups, odd sizes and batch 1 in float32 and float64; central finite
differences; PyTorch's initialisation; bad input; in a model (fused with its activation, bitwise
equal to the unfused layers, no allocation per step, training); save/load; weights interchanged
with torch.nn.Sequential both ways; a small CNN on real MNIST."""
import numpy as np
import pytest

import ranvier as rv
from _assert import assert_fit_allocates_nothing
from _layers import check_layer_gradients
from _reference import conv2d as conv2d_ref
from test_mnist_training import DATA

# (n, c_in, h, w, c_out, kernel_size, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1, 1),
    (2, 3, 7, 9, 4, 3, 1, 1, 1, 1),
    (3, 2, 11, 8, 5, (5, 3), (2, 1), (2, 0), 1, 1),
    (2, 4, 13, 13, 6, 3, (3, 2), (1, 2), (2, 1), 2),
    (1, 6, 9, 10, 6, 3, 1, "same", 1, 6),       # depthwise, "same"
    (2, 6, 8, 7, 9, 2, 2, (0, 1), (1, 2), 3),
    (5, 7, 6, 6, 17, 1, 1, 0, 1, 1),             # 1x1
    (2, 3, 4, 5, 2, (4, 5), 1, "valid", 1, 1),   # kernel as large as the input
    (1, 2, 3, 3, 3, 3, 1, 2, 2, 1),              # padding past half the kernel
    (1, 5, 17, 13, 7, 5, 1, "same", 3, 1),       # "same" with dilation
]
IDS = [f"case{i}" for i in range(len(CASES))]


def _layer(case, dtype, seed=0):
    n, c, h, w, o, k, s, p, d, g = case
    return rv.Conv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g, dtype=dtype, seed=seed)


def _torch_conv(torch, layer, dtype):
    t = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                        stride=layer.stride, padding=layer.padding_mode or layer.padding,
                        dilation=layer.dilation, groups=layer.groups, bias=layer.use_bias)
    t = t.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.weight.data))
        if layer.use_bias:
            t.bias.copy_(torch.from_numpy(layer.bias.data))
    return t


@pytest.mark.quick
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch_conv2d(rng, dtype, torch, case):
    n, c, h, w = case[:4]
    layer = _layer(case, dtype)
    tconv = _torch_conv(torch, layer, dtype)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = layer.forward(x)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tconv(tx)
    assert y.shape == tuple(ty.shape) and y.dtype == dtype
    assert layer.output_shape((c, h, w)) == y.shape[1:]
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    k = layer.weight.data[0].size
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale_k, scale_n = np.sqrt(k), np.sqrt(n * y.shape[2] * y.shape[3])
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=tol * scale_k)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0,
                               atol=tol * np.sqrt(layer.out_channels * k))
    np.testing.assert_allclose(layer.weight.grad, tconv.weight.grad.numpy(), rtol=0,
                               atol=tol * scale_n * 4)
    np.testing.assert_allclose(layer.bias.grad, tconv.bias.grad.numpy(), rtol=0,
                               atol=tol * scale_n * 4)


@pytest.mark.quick
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4], CASES[5]],
                         ids=[IDS[1], IDS[3], IDS[4], IDS[5]])
def test_backward_matches_finite_differences(rng, case):
    n, c, h, w = case[:4]
    layer = _layer(case, np.float64, seed=3)
    x = rng.standard_normal((n, c, h, w))
    r = rng.standard_normal((n,) + layer.output_shape((c, h, w)))
    dx = check_layer_gradients(layer, x, r, rng)
    assert dx.shape == x.shape


def test_forward_matches_the_float64_reference_without_bias(rng, dtype):
    layer = rv.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, groups=2, bias=False, dtype=dtype,
                      seed=1)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = rng.standard_normal((3, 4, 9, 8)).astype(dtype)
    ref = conv2d_ref(x.astype(np.float64), layer.weight.data.astype(np.float64), None,
                     layer.stride, layer.padding, layer.dilation, layer.groups)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(layer.forward(x), ref, rtol=0, atol=tol)
    assert layer.backward(np.ones_like(ref, dtype=dtype), need_input_grad=False) is None


def test_init_and_layout_as_torch(torch):
    layer = rv.Conv2d(6, 64, (3, 5), groups=2, seed=0)
    assert layer.weight.shape == (64, 3, 3, 5) and layer.bias.shape == (64,)
    bound = 1 / np.sqrt(3 * 3 * 5)  # kaiming_uniform(a=sqrt(5)): 1 / sqrt(fan_in), bias too
    torch.manual_seed(0)  # a fixed draw: the statistical bounds below are not met by every draw
    t = torch.nn.Conv2d(6, 64, (3, 5), groups=2)
    for mine, theirs in ((layer.weight.data, t.weight), (layer.bias.data, t.bias)):
        theirs = theirs.detach().numpy()
        for p in (mine, theirs):  # U(-bound, bound): max near bound, mean 0, variance bound^2/3
            assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
            sigma = bound / np.sqrt(3 * p.size)
            assert abs(p.mean()) < 4 * sigma
            assert abs(p.var() / (bound ** 2 / 3) - 1) < 0.3
    assert layer.weight.dtype == np.float32
    np.testing.assert_array_equal(rv.Conv2d(6, 8, 3, seed=5).weight.data,
                                  rv.Conv2d(6, 8, 3, seed=5).weight.data)


@pytest.mark.quick
def test_bad_arguments_and_inputs_name_the_layer_and_shapes(rng):
    conv = rv.Conv2d(3, 4, 5, padding=1)
    with pytest.raises(ValueError, match=r"Conv2d expects input of shape \(batch, 3, H, W\).*"
                                         r"\(2, 3, 8\)"):
        conv.forward(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d takes 3 input channels.*\(2, 8, 8\)"):
        conv.forward(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"larger than the padded input \(4, 9\).*\(3, 2, 7\)"):
        conv.forward(np.zeros((1, 3, 2, 7), np.float32))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        rv.Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        rv.Conv2d(3, 4, 3, stride=(1, -1))
    with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
        rv.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=3 must divide .* out_channels=4"):
        rv.Conv2d(3, 4, 3, groups=3)
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'valid' or 'same'"):
        rv.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(ValueError, match="'same' needs stride 1"):
        rv.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="'same'.*odd kernel"):
        rv.Conv2d(3, 4, 2, padding="same")
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        rv.Conv2d(3, 4, (3, 3, 3))
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        rv.Conv2d(3, 4, 2.5)
    with pytest.raises(ValueError, match=r"grad_output must have shape \(1, 4, 4, 4\)"):
        conv.forward(np.zeros((1, 3, 6, 6), np.float32))
        conv.backward(np.zeros((1, 4, 3, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        rv.Conv2d(1, 1, 1).backward(np.zeros((1, 1, 1, 1), np.float32))
    # in a model: the error names the layer and the input's shape
    model = rv.Sequential([rv.Conv2d(1, 4, 3), rv.ReLU(), rv.Flatten(), rv.Dense(4 * 26 * 26, 10)])
    with pytest.raises(ValueError, match=r"X of shape \(2, 784\): layer 0 \(Conv2d\)"):
        model.predict(np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match=r"X of shape \(2, 3, 28, 28\): layer 0 \(Conv2d\): "
                                         r"Conv2d takes 1 input channels"):
        model.predict(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"layer 3 \(Dense\)"):
        model.predict(np.zeros((2, 1, 27, 28), np.float32))
    with pytest.raises(ValueError, match=r"X is empty \(shape \(0, 1, 28, 28\)\)"):
        model.predict(np.zeros((0, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        model.predict(np.zeros(784, np.float32))
    bad = np.zeros((2, 1, 28, 28), np.float32)
    bad[1, 0, 3, 4] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.predict(bad)
    with pytest.raises(TypeError, match="X must contain numbers"):
        model.predict(np.zeros((2, 1, 28, 28), object))


def _cnn(dtype=np.float32, act=rv.ReLU):
    return [rv.Conv2d(1, 4, 3, padding=1, dtype=dtype, seed=1), act(),
            rv.Conv2d(4, 6, 3, stride=2, dtype=dtype, seed=2), act(),
            rv.Conv2d(6, 6, 1, bias=False, dtype=dtype, seed=3),
            rv.Flatten(), rv.Dense(6 * 4 * 4, 5, dtype=dtype, seed=4)]


@pytest.mark.quick
@pytest.mark.parametrize("act", [rv.ReLU, rv.GELU, rv.Tanh, lambda: rv.ELU(0.5)],
                         ids=["relu", "gelu", "tanh", "elu"])
def test_fused_block_is_bitwise_the_unfused_layers(rng, dtype, act):
    """The model's conv blocks (activation in the kernel's epilogue, workspace buffers) against
    each layer's own forward/backward: the same output, input gradient and every gradient."""
    from ranvier import _plan

    model = rv.Sequential(_cnn(dtype, act))
    blocks = model._blocks()
    assert [type(b).__name__ for b in blocks[:3]] == ["ConvBlock"] * 3
    assert [len(b.layers) for b in blocks[:3]] == [2, 2, 1]
    x = rng.standard_normal((3, 1, 10, 10)).astype(dtype)
    dy = rng.standard_normal((3, 5)).astype(dtype)
    out = np.array(_plan.run_forward(blocks, x))
    dx = np.array(_plan.run_backward(blocks, dy, need_input_grad=True))
    fused_grads = [p.grad.copy() for p in model.parameters()]
    h = x
    for layer in model.layers:
        h = layer.forward(h)
    np.testing.assert_array_equal(h, out)
    g = dy
    for layer in reversed(model.layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(g, dx)
    for a, p in zip(fused_grads, model.parameters()):
        np.testing.assert_array_equal(a, p.grad)


def test_cnn_training_step_allocates_no_arrays_after_first_batch(rng):
    """As the MLP's test: 8 channels of 32x32 at batch 256 make each batch-sized buffer 8 MB, so
    one allocated per step would lift the traced peak past the 1 MB allowed."""
    X = rng.standard_normal((512, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 3, 512)
    model = rv.Sequential([rv.Conv2d(1, 8, 3, padding=1, seed=1), rv.ReLU(),
                           rv.Conv2d(8, 8, 3, padding="same", seed=2), rv.GELU(),
                           rv.Flatten(), rv.Dense(8 * 32 * 32, 3, seed=3)])
    opt = rv.SGD(model.parameters(), lr=0.01, momentum=0.9)
    assert_fit_allocates_nothing(model, X, y, "CNN", optimizer=opt, batch_size=256)


def _blobs(rng, n=240):
    """Images whose class is where a bright blob sits: a task a CNN learns in a few epochs."""
    X = rng.normal(0, 0.3, size=(n, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i, c in enumerate(y):
        X[i, 0, 2 + 3 * c:5 + 3 * c, 4:8] += 2.0
    return X, y


@pytest.mark.quick
def test_fit_reduces_the_loss_and_summary(rng):
    X, y = _blobs(rng)
    model = rv.Sequential([rv.Conv2d(1, 4, 3, padding=1, seed=0), rv.ReLU(),
                           rv.Conv2d(4, 4, 3, stride=2, seed=1), rv.ReLU(), rv.Flatten(),
                           rv.Dense(4 * 5 * 5, 3, seed=2)])
    hist = model.fit(X, y, epochs=6, batch_size=32, verbose=0, seed=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert model.evaluate(X, y)["accuracy"] > 0.9
    text = model.summary(input_shape=(1, 12, 12), print_fn=None)
    assert "(None, 4, 12, 12)" in text and "(None, 4, 5, 5)" in text and "(None, 100)" in text
    assert f"Total params: {4 * 9 + 4 + 4 * 4 * 9 + 4 + 100 * 3 + 3:,}" in text
    assert "Input shape: (None, 1, 12, 12)" in text
    with pytest.raises(ValueError, match=r"pass input_shape, e.g. \(28, 28\) or \(1, 28, 28\)"):
        model.summary(print_fn=None)


def test_save_load_round_trip(tmp_path, rng, dtype):
    X, y = _blobs(rng, 64)
    model = rv.Sequential([rv.Conv2d(1, 3, (3, 2), stride=(1, 2), padding=1, dilation=(2, 1),
                                     seed=0),
                           rv.Tanh(), rv.Conv2d(3, 3, 3, padding="same", groups=3, bias=False,
                                                seed=1),
                           rv.Flatten(), rv.Dense(3 * 10 * 7, 3, seed=2)], dtype=dtype)
    model.fit(X, y, epochs=1, batch_size=16, verbose=0, seed=0)
    path = tmp_path / "cnn.safetensors"
    model.save(path)
    loaded = rv.load(path)
    assert loaded.layers[0].config() == model.layers[0].config()
    assert loaded.layers[2].padding_mode == "same" and loaded.layers[2].bias is None
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def _torch_twin(torch, model):
    """torch.nn.Sequential of the same layers (Conv2d, ReLU, Flatten, Linear)."""
    mods = []
    for layer in model.layers:
        if isinstance(layer, rv.Conv2d):
            mods.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                        layer.stride, layer.padding_mode or layer.padding,
                                        layer.dilation, layer.groups, layer.use_bias))
        elif isinstance(layer, rv.ReLU):
            mods.append(torch.nn.ReLU())
        elif isinstance(layer, rv.Flatten):
            mods.append(torch.nn.Flatten())
        else:
            mods.append(torch.nn.Linear(layer.in_features, layer.out_features))
    return torch.nn.Sequential(*mods)


def test_weights_interchange_with_torch_both_ways(tmp_path, rng, torch):
    """Weights trained in ranvier load into the same torch.nn.Sequential via safetensors and give
    the same outputs (the flatten after the last conv in PyTorch's (C, H, W) order), and torch's
    weights load into ranvier."""
    from safetensors.torch import load_file, save_file

    X, y = _blobs(rng, 96)
    model = rv.Sequential([rv.Conv2d(1, 4, 3, padding=1, seed=0), rv.ReLU(),
                           rv.Conv2d(4, 5, 3, stride=2, groups=1, seed=1), rv.ReLU(),
                           rv.Flatten(), rv.Dense(5 * 5 * 5, 3, seed=2)])
    model.fit(X, y, epochs=2, batch_size=16, verbose=0, seed=0)
    path = tmp_path / "ranvier.safetensors"
    model.save(path)
    net = _torch_twin(torch, model)
    net.load_state_dict(load_file(str(path)))
    with torch.no_grad():
        theirs = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.forward(X), theirs, rtol=1e-5, atol=1e-5)
    # and back: torch's own (fresh) weights into a ranvier model
    torch.manual_seed(0)
    net2 = _torch_twin(torch, model)
    save_file(net2.state_dict(), str(tmp_path / "torch.safetensors"))
    mine = rv.Sequential(_layers_like(model))
    mine.load_weights(tmp_path / "torch.safetensors")
    with torch.no_grad():
        theirs2 = net2(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(mine.forward(X), theirs2, rtol=1e-5, atol=1e-5)
    mine.compile(loss="cross_entropy")
    assert mine.predict(X).tolist() == theirs2.argmax(axis=1).tolist()


def _layers_like(model):
    return [type(l)(**l.config()) for l in model.layers]


def test_small_cnn_learns_real_mnist():
    """12,000 images, 3 epochs (about a second): over 93% on 2,000 test images."""
    folder = DATA / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST data not found at {folder} (set RANVIER_DATA_DIR)")
    (X, y), (Xt, yt) = rv.datasets.load_mnist(folder, flatten=False, dtype=np.float32,
                                              normalize=True)
    assert X.shape == (60000, 1, 28, 28)
    model = rv.Sequential([rv.Conv2d(1, 8, 5, stride=2, seed=0), rv.ReLU(),
                           rv.Conv2d(8, 16, 3, stride=2, seed=1), rv.ReLU(),
                           rv.Flatten(), rv.Dense(16 * 5 * 5, 10, seed=2)])
    model.fit(X[:12000], y[:12000], epochs=3, batch_size=64, verbose=0, seed=0,
              optimizer=rv.Adam(model.parameters(), lr=3e-3))
    assert model.evaluate(Xt[:2000], yt[:2000])["accuracy"] > 0.93
