"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d as layers: forward and input gradient against
torch.nn over kernel sizes, strides, paddings, odd sizes and batch 1; backward against central
finite differences (float64); bitwise equal for 1 and 2 threads; output_shape, config, registry,
save/load; argument and input checks naming the layer and the shapes."""
import re

import numpy as np
import pytest

import ranvier as rv
from _layers import check_layer_gradients
from conftest import eps

# (layer, torch's layer with the same arguments) factories, and input shapes for each
CASES = {
    "max-k2": (lambda: rv.MaxPool2d(2), lambda nn: nn.MaxPool2d(2)),
    "max-k3s2p1": (lambda: rv.MaxPool2d(3, 2, 1), lambda nn: nn.MaxPool2d(3, 2, 1)),
    "max-k32s13p11": (lambda: rv.MaxPool2d((3, 2), (1, 3), (1, 1)),
                      lambda nn: nn.MaxPool2d((3, 2), (1, 3), (1, 1))),
    "avg-k2": (lambda: rv.AvgPool2d(2), lambda nn: nn.AvgPool2d(2)),
    "avg-k3s2p1": (lambda: rv.AvgPool2d(3, 2, 1), lambda nn: nn.AvgPool2d(3, 2, 1)),
    "avg-k3s1p1-nopad": (lambda: rv.AvgPool2d(3, 1, 1, count_include_pad=False),
                         lambda nn: nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    "adaptive-1": (lambda: rv.AdaptiveAvgPool2d(1), lambda nn: nn.AdaptiveAvgPool2d(1)),
    "adaptive-2x3": (lambda: rv.AdaptiveAvgPool2d((2, 3)), lambda nn: nn.AdaptiveAvgPool2d((2, 3))),
    "adaptive-7": (lambda: rv.AdaptiveAvgPool2d(7), lambda nn: nn.AdaptiveAvgPool2d(7)),
}
SHAPES = [(1, 1, 5, 5), (2, 3, 7, 9), (3, 5, 13, 11), (1, 17, 28, 28)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_pooling_layers_match_torch(torch, rng, dtype, num_threads, case, shape):
    make, make_torch = CASES[case]
    layer, tlayer = make(), make_torch(torch.nn)
    x = rng.normal(size=shape).astype(dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tlayer(tx)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == tuple(ty.shape)
    assert layer.output_shape(shape[1:]) == y.shape[1:]
    r = rng.normal(size=y.shape).astype(dtype)
    ty.backward(torch.from_numpy(r.copy()))
    dx = layer.backward(r)
    tol = 4 * max(shape[2] * shape[3] if "adaptive" in case else 9, 1) * eps(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.quick
@pytest.mark.parametrize("case", sorted(CASES))
def test_pooling_backward_matches_finite_differences(rng, case):
    layer = CASES[case][0]()
    x = rng.normal(size=(2, 3, 7, 6))
    r = rng.normal(size=(2,) + layer.output_shape((3, 7, 6)))
    check_layer_gradients(layer, x, r, rng)


@pytest.mark.quick
@pytest.mark.parametrize("case", sorted(CASES))
def test_pooling_layers_bitwise_equal_for_1_and_2_threads(rng, dtype, case):
    x = rng.normal(size=(4, 32, 32, 33)).astype(dtype)   # past the parallel cut-off
    r = None
    out = []
    for t in (1, 2):
        rv.set_num_threads(t)
        try:
            layer = CASES[case][0]()
            y = layer.forward(x)
            r = rng.normal(size=y.shape).astype(dtype) if r is None else r
            out.append((y, layer.backward(r)))
        finally:
            rv.set_num_threads(None)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.quick
@pytest.mark.parametrize("case", sorted(CASES))
def test_pooling_protocol_config_and_registry(rng, case):
    layer = CASES[case][0]()
    assert layer.named_parameters() == [] and layer.named_buffers() == []
    cls = type(layer)
    assert rv.layers.layer_class(cls.__name__) is cls
    again = cls(**layer.config())
    assert again.config() == layer.config()
    x = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x), layer.forward(x))
    assert layer.forward(np.ones((1, 2, 7, 6), np.int32)).dtype == np.float32
    assert layer.backward(np.ones(layer.output_shape((2, 7, 6)), np.float32)[None],
                          need_input_grad=False) is None


def test_pooling_defaults_and_pairs():
    m = rv.MaxPool2d(3)
    assert m.config() == {"kernel_size": (3, 3), "stride": (3, 3), "padding": (0, 0)}
    a = rv.AvgPool2d([2, 3], stride=1, padding=(1, 0))
    assert a.config() == {"kernel_size": (2, 3), "stride": (1, 1), "padding": (1, 0),
                          "count_include_pad": True}
    assert rv.AdaptiveAvgPool2d(1).output_shape((5, 9, 9)) == (5, 1, 1)
    assert m.output_shape((4, 7, 8)) == (4, 2, 2)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: rv.MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be >= 1"),
    (lambda: rv.MaxPool2d(2, stride=0), ValueError, "MaxPool2d: stride must be >= 1"),
    (lambda: rv.AvgPool2d(2, padding=-1), ValueError, "AvgPool2d: padding must be >= 0"),
    (lambda: rv.MaxPool2d(3, padding=2), ValueError,
     r"MaxPool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"),
    (lambda: rv.MaxPool2d(2.5), TypeError, "MaxPool2d: kernel_size must be an int"),
    (lambda: rv.MaxPool2d((2, 2, 2)), TypeError, "kernel_size must be an int or a pair"),
    (lambda: rv.MaxPool2d(True), TypeError, "kernel_size"),
    (lambda: rv.AvgPool2d(2, count_include_pad=1), TypeError, "count_include_pad"),
    (lambda: rv.AdaptiveAvgPool2d(0), ValueError, "AdaptiveAvgPool2d: output_size must be >= 1"),
    (lambda: rv.AdaptiveAvgPool2d(None), TypeError, "output_size"),
])
def test_pooling_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("case", ["max-k2", "avg-k3s2p1", "adaptive-2x3"])
def test_pooling_bad_inputs(case):
    layer = CASES[case][0]()
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 1, 1, 1)))
    for bad in (np.ones((3, 8, 8)), np.ones((1, 2, 3, 8, 8)), np.ones(5)):
        with pytest.raises(ValueError, match=rf"{name} expects 4-D input .*"
                           + re.escape(str(bad.shape))):
            layer.forward(bad)
    with pytest.raises(TypeError, match="numeric"):
        layer.forward(np.full((1, 1, 4, 4), "a"))
    with pytest.raises(ValueError, match=rf"{name} takes samples of shape"):
        layer.output_shape((3, 8))
    if case == "max-k2":   # the others' padding makes their kernel fit any plane
        with pytest.raises(ValueError, match=rf"{name}: kernel .* larger than the padded input"):
            layer.forward(np.ones((2, 3, 1, 8)))
    y = layer.forward(np.ones((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((2, 3) + tuple(s + 1 for s in y.shape[2:])))


def test_pooling_layers_save_and_load(tmp_path, rng):
    model = rv.Sequential([rv.MaxPool2d(3, 2, 1), rv.AvgPool2d((2, 1), count_include_pad=False),
                           rv.AdaptiveAvgPool2d((2, 3))])
    path = tmp_path / "pool.safetensors"
    model.save(path)
    loaded = rv.load(path)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.config() for l in loaded.layers] == [l.config() for l in model.layers]
    x = rng.normal(size=(2, 3, 13, 11)).astype(np.float32)
    y, y2 = x, x
    for a, b in zip(model.layers, loaded.layers):
        y, y2 = a.forward(y), b.forward(y2)
    np.testing.assert_array_equal(y, y2)
