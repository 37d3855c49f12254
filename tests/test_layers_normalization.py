"""BatchNorm1d and BatchNorm2d: backward against central finite differences (float64) in training
and evaluation, every element against a float64 NumPy evaluation of the formulas (BatchNorm2d's
through the same reference on its (batch * height * width, channels) rows) and against torch
(running statistics over several steps, then evaluation), their options, parameters, buffers,
config and astype, save/load, argument and input checks."""
import re

import numpy as np
import pytest

import ranvier as rv
from _assert import assert_within
from _layers import check_layer_gradients
from conftest import AWKWARD, eps

# (batch, features); training needs a batch of at least 2; (129, 257) is past the parallel cut-off
BN_SHAPES = [(2, 1), (7, 7), (33, 33), (7, 129), (129, 7), (129, 257)]
assert {d for s in BN_SHAPES for d in s} <= set(AWKWARD)
# (batch, channels, height, width): batch 1, a 1x1 plane, odd planes; the last is past the
# parallel cut-off
BN2D_SHAPES = [(1, 1, 2, 1), (2, 3, 5, 7), (1, 17, 7, 7), (7, 5, 1, 1), (3, 33, 13, 11),
               (2, 65, 33, 31)]
ALL_SHAPES = BN_SHAPES + BN2D_SHAPES
ALL_IDS = ["x".join(map(str, s)) for s in ALL_SHAPES]


def _rows(a):
    """A (batch, channels) array as it is; (n, c, h, w) as its (n * h * w, c) rows, the layout in
    which BatchNorm2d is BatchNorm1d."""
    a = np.asarray(a)
    return a if a.ndim == 2 else a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _bn_ref(x, w, b, eps_, dy):
    """float64 reference: training-mode output and gradients, plus error-bound scales, on the
    rows of x and dy (y and dx come back as rows)."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (_rows(x), w, b, _rows(dy)))
    n = x.shape[0]
    mean = x.mean(axis=0)
    mean = mean + (x - mean).mean(axis=0)  # refined: a column sum of thousands of rows is off
    var = ((x - mean) ** 2).mean(axis=0)   # by tens of ulps of |mean|, more than the bounds
    invstd = 1 / np.sqrt(var + eps_)
    xhat = (x - mean) * invstd
    y = xhat * w + b
    db = dy.sum(axis=0)
    dw = (dy * xhat).sum(axis=0)
    dx = w * invstd * (dy - db / n - xhat * dw / n)
    # Error scales: xhat = (x - mean) * invstd carries eps * invstd * (|mean| + |x - mean|) (the
    # mean itself is rounded), which is much more than eps * |xhat| when |mean| >> std.
    cond = invstd * (np.abs(mean) + np.abs(x - mean))
    ady = np.abs(dy)
    scale = {"y": np.abs(w) * cond + np.abs(b),
             "dx": np.abs(w) * invstd * (ady + ady.mean(axis=0) + cond * (ady * cond).mean(axis=0)),
             "dw": (ady * cond).sum(axis=0), "db": ady.sum(axis=0)}
    return {"y": y, "dx": dx, "dw": dw, "db": db, "mean": mean, "var": var,
            "uvar": var * n / max(n - 1, 1)}, scale


def _bn_input(rng, shape, dtype):
    # a mean far from zero and spread that differs per feature
    spread = np.linspace(0.5, 3, shape[1]).reshape((-1,) + (1,) * (len(shape) - 2))
    return (rng.normal(size=shape) * spread + 5).astype(dtype)


def _bn_layer(rng, c, dtype, ndim=2, **kw):
    """BatchNorm1d (ndim 2) or BatchNorm2d (ndim 4) with random affine parameters."""
    layer = (rv.BatchNorm1d if ndim == 2 else rv.BatchNorm2d)(c, dtype=dtype, **kw)
    if layer.affine:
        layer.weight.data[:] = rng.normal(size=c)
        layer.bias.data[:] = rng.normal(size=c)
    return layer


@pytest.mark.quick
@pytest.mark.parametrize("shape", ALL_SHAPES, ids=ALL_IDS)
def test_batchnorm_backward_matches_finite_differences_training(rng, shape):
    c = shape[1]
    layer = _bn_layer(rng, c, np.float64, len(shape))
    x = _bn_input(rng, shape, np.float64)
    r = rng.normal(size=shape)
    check_layer_gradients(layer, x, r, rng)


@pytest.mark.parametrize("shape", [(1, 1), (1, 33), (7, 7), (129, 257), (1, 3, 1, 1),
                                   (2, 5, 7, 3)],
                         ids=["1x1", "1x33", "7x7", "129x257", "1x3x1x1", "2x5x7x3"])
def test_batchnorm_backward_matches_finite_differences_eval(rng, shape):
    c = shape[1]
    layer = _bn_layer(rng, c, np.float64, len(shape))
    layer.running_mean[:] = rng.normal(size=c)
    layer.running_var[:] = rng.uniform(0.5, 2, size=c)
    layer.training = False
    x = _bn_input(rng, shape, np.float64)
    r = rng.normal(size=shape)
    check_layer_gradients(layer, x, r, rng)


@pytest.mark.quick
@pytest.mark.parametrize("shape", ALL_SHAPES, ids=ALL_IDS)
def test_batchnorm_training_matches_float64_reference(rng, dtype, num_threads, shape):
    """Every element, against a float64 NumPy evaluation of the formulas."""
    c = shape[1]
    layer = _bn_layer(rng, c, dtype, len(shape))
    x = _bn_input(rng, shape, dtype)
    r = rng.normal(size=shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(r)
    assert y.shape == dx.shape == shape
    ref, scale = _bn_ref(x, layer.weight.data, layer.bias.data, 1e-5, r)
    tol = 8 * eps(dtype)
    assert_within(_rows(y), ref["y"], tol * scale["y"], "y")
    assert_within(_rows(dx), ref["dx"], tol * scale["dx"], "dx")
    assert_within(layer.weight.grad, ref["dw"], tol * scale["dw"], "dweight")
    assert_within(layer.bias.grad, ref["db"], tol * scale["db"], "dbias")
    assert_within(layer.running_mean, 0.1 * ref["mean"], tol * (np.abs(ref["mean"]) + 1),
                  "running_mean")
    assert_within(layer.running_var, 0.9 + 0.1 * ref["uvar"], tol * (np.abs(ref["uvar"]) + 1),
                  "running_var")


@pytest.mark.parametrize("shape", ALL_SHAPES, ids=ALL_IDS)
def test_batchnorm_matches_torch_train_then_eval(torch, rng, dtype, num_threads, shape):
    n, c = shape[:2]
    layer = _bn_layer(rng, c, dtype, len(shape))
    tbn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        c, dtype=getattr(torch, dtype.name))
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
        tbn.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
    tol = 32 * eps(dtype)

    def step(x, r):
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tbn.zero_grad()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(r.copy()))
        y = layer.forward(x)
        dx = layer.backward(r)
        _, scale = _bn_ref(x, layer.weight.data, layer.bias.data, 1e-5, r)
        assert_within(_rows(y), _rows(ty.detach().numpy()).astype(np.float64), tol * scale["y"],
                      "y")
        assert_within(_rows(dx), _rows(tx.grad.numpy()).astype(np.float64), tol * scale["dx"],
                      "dx")
        assert_within(layer.weight.grad, tbn.weight.grad.numpy().astype(np.float64),
                      tol * scale["dw"], "dweight")
        assert_within(layer.bias.grad, tbn.bias.grad.numpy().astype(np.float64),
                      tol * scale["db"], "dbias")

    for _ in range(3):  # running statistics after several steps
        step(_bn_input(rng, shape, dtype), rng.normal(size=shape).astype(dtype))
        rm, rvar = tbn.running_mean.numpy(), tbn.running_var.numpy()
        assert_within(layer.running_mean, rm.astype(np.float64), tol * (np.abs(rm) + 1),
                      "running_mean")
        assert_within(layer.running_var, rvar.astype(np.float64), tol * (np.abs(rvar) + 1),
                      "running_var")
        assert int(layer.num_batches_tracked) == int(tbn.num_batches_tracked)
    assert layer.running_mean.dtype == dtype and layer.running_var.dtype == dtype
    tbn.eval()
    layer.training = False
    before = [b.copy() for _, b in layer.named_buffers()]
    for m in (1, n):  # evaluation takes a batch of one too
        step(_bn_input(rng, (m,) + shape[1:], dtype),
             rng.normal(size=(m,) + shape[1:]).astype(dtype))
    for (_, b), b0 in zip(layer.named_buffers(), before):
        np.testing.assert_array_equal(b, b0)  # evaluation leaves the running statistics alone


@pytest.mark.parametrize("kw", [{"momentum": None}, {"affine": False},
                                {"track_running_stats": False}, {"momentum": 0.5, "eps": 1e-3}],
                         ids=["cumulative", "no-affine", "no-running-stats", "momentum-eps"])
@pytest.mark.parametrize("shape", [(33, 17), (3, 17, 5, 7)], ids=["1d", "2d"])
def test_batchnorm_options_match_torch(torch, rng, dtype, kw, shape):
    n, c = shape[:2]
    layer = _bn_layer(rng, c, dtype, len(shape), **kw)
    tbn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        c, dtype=getattr(torch, dtype.name), **kw)
    if layer.affine:
        with torch.no_grad():
            tbn.weight.copy_(torch.from_numpy(layer.weight.data.copy()))
            tbn.bias.copy_(torch.from_numpy(layer.bias.data.copy()))
    tol = 64 * eps(dtype)
    for mode in ("train", "train", "train", "eval"):
        if mode == "eval":
            tbn.eval()
            layer.training = False
        x = _bn_input(rng, shape, dtype)
        r = rng.normal(size=shape).astype(dtype)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tbn.zero_grad()
        ty = tbn(tx)
        ty.backward(torch.from_numpy(r.copy()))
        y, dx = layer.forward(x), layer.backward(r)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol * 4)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol * 4)
        if layer.affine:
            np.testing.assert_allclose(layer.weight.grad, tbn.weight.grad.numpy(), rtol=tol,
                                       atol=tol * (x.size // c))
            np.testing.assert_allclose(layer.bias.grad, tbn.bias.grad.numpy(), rtol=tol,
                                       atol=tol * (x.size // c))
        if layer.track_running_stats:
            np.testing.assert_allclose(layer.running_mean, tbn.running_mean.numpy(), rtol=tol,
                                       atol=tol)
            np.testing.assert_allclose(layer.running_var, tbn.running_var.numpy(), rtol=tol,
                                       atol=tol)
            assert int(layer.num_batches_tracked) == int(tbn.num_batches_tracked)
    names = {name for name, _ in layer.named_parameters()}
    assert names == {name for name, _ in tbn.named_parameters()}
    assert {name for name, _ in layer.named_buffers()} == {name for name, _ in tbn.named_buffers()}


def test_batchnorm_constant_feature_gives_zero_not_nan(dtype):
    x = np.full((7, 3), 4.0, dtype)
    x[:, 1] = np.arange(7)
    layer = rv.BatchNorm1d(3, dtype=dtype)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y[:, 0], 0)
    np.testing.assert_allclose(y[:, 1].mean(), 0, atol=8 * eps(dtype))


def test_batchnorm_parameters_buffers_config_astype(rng):
    layer = rv.BatchNorm1d(7)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.parameters() == [layer.weight, layer.bias]
    np.testing.assert_array_equal(layer.weight.data, np.ones(7, np.float32))
    np.testing.assert_array_equal(layer.bias.data, np.zeros(7, np.float32))
    bufs = dict(layer.named_buffers())
    assert list(bufs) == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bufs["running_mean"], 0)
    np.testing.assert_array_equal(bufs["running_var"], 1)
    assert bufs["num_batches_tracked"].dtype == np.int64 and bufs["num_batches_tracked"].shape == ()
    layer.forward(rng.normal(size=(5, 7)))
    layer.forward(rng.normal(size=(5, 7)))
    assert int(dict(layer.named_buffers())["num_batches_tracked"]) == 2  # the same arrays, updated
    rm = layer.running_mean.copy()
    assert layer.astype(np.float64) is layer
    for arr in (layer.weight.data, layer.weight.grad, layer.bias.data, layer.running_mean,
                layer.running_var):
        assert arr.dtype == np.float64
    np.testing.assert_array_equal(layer.running_mean, rm.astype(np.float64))
    assert layer.dtype == np.float64
    assert layer.forward(rng.normal(size=(5, 7)).astype(np.float32)).dtype == np.float64
    cfg = layer.config()
    assert cfg == {"num_features": 7, "eps": 1e-5, "momentum": 0.1, "affine": True,
                   "track_running_stats": True}
    assert rv.BatchNorm1d(**cfg).config() == cfg
    bare = rv.BatchNorm1d(3, affine=False, track_running_stats=False, dtype=np.float64)
    assert bare.named_parameters() == [] and bare.named_buffers() == []
    assert bare.astype(np.float32).dtype == np.float32
    assert bare.forward(rng.normal(size=(4, 3))).dtype == np.float32


def test_batchnorm_need_input_grad_false_still_fills_parameter_grads(rng):
    layer = _bn_layer(rng, 17, np.float64)
    x, r = _bn_input(rng, (7, 17), np.float64), rng.normal(size=(7, 17))
    layer.forward(x)
    dx = layer.backward(r)
    grads = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[:] = np.nan
    assert layer.backward(r, need_input_grad=False) is None
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert dx.shape == x.shape


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"num_features": 0}, ValueError, "num_features must be >= 1"),
    ({"num_features": -3}, ValueError, "num_features"),
    ({"num_features": 2.5}, TypeError, "num_features must be an int"),
    ({"num_features": None}, TypeError, "num_features"),
    ({"num_features": 4, "eps": 0.0}, ValueError, "eps must be > 0"),
    ({"num_features": 4, "eps": "a"}, TypeError, "eps must be a number"),
    ({"num_features": 4, "momentum": 1.5}, ValueError, "momentum must be <= 1"),
    ({"num_features": 4, "momentum": -0.1}, ValueError, "momentum must be >= 0"),
    ({"num_features": 4, "momentum": "fast"}, TypeError, "momentum must be a number"),
    ({"num_features": 4, "affine": "yes"}, TypeError, "affine must be True or False"),
    ({"num_features": 4, "track_running_stats": 1}, TypeError, "track_running_stats"),
    ({"num_features": 4, "dtype": np.int32}, TypeError, "dtype must be float32 or float64"),
])
def test_batchnorm_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rv.BatchNorm1d(**kwargs)


def test_batchnorm_bad_inputs(rng):
    layer = rv.BatchNorm1d(7)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((3, 7)))
    with pytest.raises(ValueError, match=r"expects 7 features \(num_features\)"):
        layer.forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        layer.forward(np.ones(7))
    with pytest.raises(ValueError, match="2-D"):
        layer.forward(np.ones((3, 7, 2)))
    with pytest.raises(TypeError, match="numeric"):
        layer.forward(np.array([["a"] * 7] * 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer.forward(np.ones((1, 7)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _eval(rv.BatchNorm1d(7, track_running_stats=False)).forward(np.ones((1, 7)))
    assert _eval(rv.BatchNorm1d(7)).forward(np.ones((1, 7))).shape == (1, 7)  # running stats
    assert int(layer.num_batches_tracked) == 0  # failed calls changed nothing
    layer.forward(rng.normal(size=(3, 7)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((3, 6)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((2, 7)))


def _eval(layer):
    layer.training = False
    return layer




def test_batchnorm2d_bad_inputs_and_protocol(rng):
    layer = rv.BatchNorm2d(3)
    for bad in (np.ones((2, 3, 4)), np.ones((2, 4, 5, 5)), np.ones((2, 3))):
        with pytest.raises(ValueError, match=rf"BatchNorm2d expects 4-D input \(batch, 3 "
                                             rf"channels \(num_features\), height, width\), got "
                                             rf"shape {re.escape(str(bad.shape))}"):
            layer.forward(bad)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer.forward(np.ones((1, 3, 1, 1)))
    assert int(layer.num_batches_tracked) == 0
    assert layer.forward(rng.normal(size=(1, 3, 2, 1))).shape == (1, 3, 2, 1)  # 2 values each
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((1, 3, 1, 2)))
    assert layer.output_shape((3, 5, 7)) == (3, 5, 7)
    with pytest.raises(ValueError, match=r"BatchNorm2d takes samples of shape \(3, height"):
        layer.output_shape((4, 5, 7))
    assert layer.input_shape is None
    cfg = layer.config()
    assert rv.BatchNorm2d(**cfg).config() == cfg
    assert rv.layers.layer_class("BatchNorm2d") is rv.BatchNorm2d


def test_batchnorm2d_state_dict_round_trip_through_safetensors_and_torch(torch, tmp_path, rng):
    """Parameters and buffers (running statistics, num_batches_tracked) saved by ranvier load
    into ranvier and into torch.nn.BatchNorm2d, and torch's load into ranvier."""
    from safetensors.torch import load_file, save_file

    model = rv.Sequential([_bn_layer(rng, 5, np.float32, 4)])
    bn = model.layers[0]
    for _ in range(3):
        bn.forward(_bn_input(rng, (4, 5, 6, 7), np.float32))
    path = tmp_path / "bn.safetensors"
    model.save(path)
    loaded = rv.load(path)
    assert isinstance(loaded.layers[0], rv.BatchNorm2d)
    for (na, a), (nb, b) in zip(bn.named_parameters() + bn.named_buffers(),
                                loaded.layers[0].named_parameters()
                                + loaded.layers[0].named_buffers()):
        assert na == nb
        np.testing.assert_array_equal(getattr(a, "data", a), getattr(b, "data", b))
    tmodel = torch.nn.Sequential(torch.nn.BatchNorm2d(5))
    tmodel.load_state_dict(load_file(str(path)))
    tmodel.eval()
    bn.training = False
    x = _bn_input(rng, (2, 5, 6, 7), np.float32)
    np.testing.assert_allclose(bn.forward(x), tmodel(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for t in (tmodel[0].weight, tmodel[0].bias, tmodel[0].running_mean):
            t.copy_(torch.randn(5))
        tmodel[0].num_batches_tracked.fill_(11)
    tpath = tmp_path / "from_torch.safetensors"
    save_file(tmodel.state_dict(), str(tpath))
    model.load_weights(tpath)
    np.testing.assert_array_equal(bn.running_mean, tmodel[0].running_mean.numpy())
    assert int(bn.num_batches_tracked) == 11
    np.testing.assert_allclose(bn.forward(x), tmodel(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
