"""Every layer family at once (Dense, the activations, Dropout, BatchNorm1d, Flatten): read-only
inputs, results independent of the thread count, output and gradient dtypes, higher-rank and
integer inputs, configs that rebuild a layer, backward before forward and bad inputs,
need_input_grad, and models that combine them. Each family's own tests are in
test_layers_<family>.py."""
import math

import numpy as np
import pytest

import ranvier as rv
from _layers import ACTIVATIONS, act_input
from conftest import readonly

FIRST = ["Dense", "ReLU", "Sigmoid", "Tanh", "Softmax"]  # the first layers of the library
NEW = ["LeakyReLU", "GELU", "ELU"]  # activations added later


def make_layer(name, dtype, features, out_features=15):
    """A layer of family ``name`` in ``dtype`` taking ``features`` inputs (Dense maps them to
    ``out_features``); BatchNorm1d with weights and biases that are not 1 and 0."""
    if name == "Dense":
        return rv.Dense(features, out_features, dtype=dtype, seed=3)
    if name == "Dropout":
        return rv.Dropout(0.3, seed=5)
    if name == "BatchNorm1d":
        layer = rv.BatchNorm1d(features, dtype=dtype)
        layer.weight.data[:] = np.linspace(0.5, 2, features)
        layer.bias.data[:] = np.linspace(-1, 1, features)
        return layer
    if name == "Flatten":
        return rv.Flatten()
    return ACTIVATIONS[name]()


# -- read-only inputs -----------------------------------------------------------------------------
READONLY_CASES = [(name, True) for name in FIRST] + [
    (name, training) for name in NEW + ["Dropout", "BatchNorm1d", "Flatten"]
    for training in (True, False)]


@pytest.mark.quick
@pytest.mark.parametrize("name,training", READONLY_CASES,
                         ids=[f"{n}-{'train' if t else 'eval'}" for n, t in READONLY_CASES])
def test_readonly_inputs_give_same_results(rng, dtype, name, training):
    n, d = 17, 33
    x = act_input("ELU", rng, (n, d), dtype)
    r = rng.normal(size=(n, 15 if name == "Dense" else d)).astype(dtype)
    ref_layer, ro_layer = make_layer(name, dtype, d), make_layer(name, dtype, d)
    ref_layer.training = ro_layer.training = training
    y_ref = ref_layer.forward(x.copy())
    dx_ref = ref_layer.backward(r.copy())
    x_ro, r_ro = readonly(x), readonly(r)
    y = ro_layer.forward(x_ro)
    dx = ro_layer.backward(r_ro)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for p, q in zip(ro_layer.parameters(), ref_layer.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    np.testing.assert_array_equal(x_ro, x)  # inputs untouched
    np.testing.assert_array_equal(r_ro, r)
    if name != "Flatten":  # Flatten returns a view of its input, as numpy's reshape
        assert y.flags.writeable and dx.flags.writeable


# -- threads --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIRST + NEW + ["Dropout", "BatchNorm1d"])
def test_layers_bitwise_identical_for_1_and_2_threads(rng, dtype, name):
    """Work sizes past the parallel cut-off (32768): each output element is computed the same way
    whatever the thread count."""
    shape = (129, 257)
    x = act_input("ELU", rng, shape, dtype)
    results = []
    try:
        for t in (1, 2):
            rv.set_num_threads(t)
            layer = make_layer(name, dtype, 257, out_features=129)
            y = layer.forward(x)
            dx = layer.backward(np.cos(np.arange(y.size, dtype=dtype)).reshape(y.shape))
            results.append([y, dx] + [p.grad.copy() for p in layer.parameters()]
                           + [b.copy() for _, b in getattr(layer, "named_buffers", list)()])
    finally:
        rv.set_num_threads(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# -- dtypes and shapes ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIRST)
def test_output_and_grad_dtypes(rng, dtype, name):
    layer = make_layer(name, dtype, 7, out_features=5)
    x = rng.normal(size=(3, 7)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(rng.normal(size=y.shape).astype(dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    assert all(p.data.dtype == dtype and p.grad.dtype == dtype for p in layer.parameters())


def test_activations_keep_higher_rank_shapes_and_convert_ints(rng):
    x = rng.normal(size=(3, 4, 5))
    for name in NEW + ["Dropout"]:
        layer = make_layer(name, np.float32, 5)
        y = layer.forward(x)
        assert y.shape == x.shape and y.dtype == np.float64
        assert layer.backward(np.ones_like(x)).shape == x.shape
        yi = layer.forward(np.arange(-6, 6).reshape(3, 4))
        assert yi.dtype == np.float32


# -- configs, bad inputs, need_input_grad ---------------------------------------------------------
@pytest.mark.parametrize("name", FIRST)
def test_backward_before_forward_raises(name):
    layer = make_layer(name, np.float32, 3, out_features=2)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 2), np.float32))


def test_new_layers_bad_inputs():
    for layer in (rv.LeakyReLU(), rv.GELU(), rv.ELU(), rv.Dropout(0.5), rv.Flatten()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.ones((2, 2)))
        with pytest.raises(TypeError, match="numeric"):
            layer.forward(np.array([["a", "b"]]))
        layer.forward(np.ones((2, 3, 2)))
        with pytest.raises(ValueError, match="grad_output must have shape"):
            layer.backward(np.ones((2, 5)))
    for bad in (np.ones(5), np.float64(3.0)):
        with pytest.raises(ValueError, match="at least 2-D"):
            rv.Flatten().forward(bad)
    with pytest.raises(TypeError, match="numeric array"):
        rv.Flatten().forward("images")


def test_need_input_grad_false_returns_none(rng):
    x = rng.normal(size=(3, 5))
    for layer in (rv.LeakyReLU(), rv.GELU(), rv.ELU(), rv.Dropout(0.5, seed=0), rv.Flatten()):
        layer.forward(x)
        assert layer.backward(np.ones((3, 5)), need_input_grad=False) is None


@pytest.mark.quick
def test_configs_rebuild_layers():
    for layer in [rv.LeakyReLU(0.2), rv.GELU(), rv.ELU(0.5), rv.Dropout(0.25, seed=3),
                  rv.Flatten(), rv.BatchNorm1d(5, eps=1e-3, momentum=None, affine=False)]:
        cfg = layer.config()
        again = type(layer)(**cfg)
        assert again.config() == cfg
        assert repr(again) == repr(layer)
    assert rv.LeakyReLU(0.2).config() == {"negative_slope": 0.2}
    assert rv.ELU(0.5).config() == {"alpha": 0.5}
    assert rv.Dropout(0.25, seed=3).config() == {"p": 0.25, "seed": 3}
    assert rv.GELU().config() == {} and rv.Flatten().config() == {}


# -- in a model -----------------------------------------------------------------------------------
def test_model_with_new_layers_trains_and_eval_is_deterministic(rng):
    n = 200
    X = rng.normal(size=(n, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    model = rv.Sequential([rv.Flatten(), rv.Dense(784, 64, seed=0), rv.BatchNorm1d(64),
                           rv.ReLU(), rv.Dropout(0.2, seed=1), rv.Dense(64, 10, seed=2)])
    names = [name for name, _ in model.named_parameters()]
    assert names == ["1.weight", "1.bias", "2.weight", "2.bias", "5.weight", "5.bias"]
    hist = model.fit(X, y, epochs=4, batch_size=32, seed=0, verbose=0)
    loss = hist.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < 0.8 * loss[0]
    bn = model[2]
    assert int(bn.num_batches_tracked) == 4 * math.ceil(n / 32)
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    assert not model.training and not bn.training and not model[4].training
    p1 = model.predict(X[:33])
    o1 = model.forward(X[:33])
    o2 = model.forward(X[:33])
    np.testing.assert_array_equal(o1, o2)  # eval: running statistics, no dropout
    np.testing.assert_array_equal(model.predict(X[:33]), p1)
    # evaluation mode computes exactly the eval-mode layers in sequence
    h = model[1].forward(X[:5])
    h = (h - bn.running_mean) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps) \
        * bn.weight.data + bn.bias.data
    ref = model[5].forward(np.maximum(h, 0).astype(np.float32))
    np.testing.assert_allclose(model.forward(X[:5]), ref, rtol=1e-4, atol=1e-4)
    model.train()
    assert not np.array_equal(model.forward(X[:33]), model.forward(X[:33]))  # dropout is back


def test_model_with_new_layers_float64_and_gelu_elu_leaky(rng):
    X = rng.normal(size=(64, 3, 11))
    y = rng.integers(0, 3, size=64)
    model = rv.Sequential([rv.Flatten(), rv.Dense(33, 16, seed=0), rv.BatchNorm1d(16),
                           rv.GELU(), rv.Dense(16, 16, seed=1), rv.ELU(), rv.Dropout(0.1, seed=2),
                           rv.Dense(16, 16, seed=3), rv.LeakyReLU(0.1), rv.Dense(16, 3, seed=4)],
                          dtype=np.float64)
    assert model[2].running_mean.dtype == np.float64
    hist = model.fit(X.reshape(64, 33), y, epochs=5, batch_size=16, seed=0, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    out = model.forward(X)  # images-like 3-D input goes through Flatten
    assert out.dtype == np.float64 and out.shape == (64, 3)


