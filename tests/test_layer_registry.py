"""Layer protocol: a user's registered Layer subclass saves and loads (nothing executed from the
file), every layer has named_buffers and output_shape, and summary() prints shapes and parameter
counts that match PyTorch's for the same network."""
import numpy as np
import pytest

import ranvier as rv


@rv.register_layer
class Scale(rv.Layer):
    """y = factor * x: a user's own layer with a constructor argument and no parameters."""

    def __init__(self, factor=2.0):
        self.factor = float(factor)

    def forward(self, x):
        return np.asarray(x) * self.factor

    def backward(self, grad_output, need_input_grad=True):
        return np.asarray(grad_output) * self.factor

    def config(self):
        return {"factor": self.factor}


class Unregistered(Scale):
    pass


@pytest.mark.quick
def test_user_layer_saves_and_loads(tmp_path, rng):
    model = rv.Sequential([rv.Dense(6, 8, seed=0), Scale(0.5), rv.ReLU(), rv.Dense(8, 3, seed=1)])
    X = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model.fit(X, y, epochs=2, verbose=0, seed=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = rv.load(path)
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 0.5
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_unregistered_layer_is_refused_with_a_clear_error(tmp_path):
    model = rv.Sequential([rv.Dense(6, 8), Unregistered()])
    with pytest.raises(TypeError, match="register_layer"):
        model.save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_register_layer_rejects_bad_use():
    with pytest.raises(TypeError, match="Layer subclass"):
        rv.register_layer(int)
    with pytest.raises(ValueError, match="ranvier's own"):
        rv.register_layer(name="Dense")(Scale)


@pytest.mark.quick
def test_every_layer_has_buffers_and_shapes():
    for layer in (rv.Dense(4, 3), rv.ReLU(), rv.SiLU(), rv.Softmax(), rv.Dropout(0.1),
                  rv.Flatten(), rv.BatchNorm1d(4)):
        assert isinstance(layer.named_buffers(), list)
    assert rv.Dense(4, 3).output_shape((4,)) == (3,)
    assert rv.Flatten().output_shape((2, 3, 5)) == (30,)
    with pytest.raises(ValueError, match=r"takes samples of shape \(4,\)"):
        rv.Dense(4, 3).output_shape((5,))
    model = rv.Sequential([rv.Flatten(), rv.Dense(12, 3)])
    assert model.output_shape((3, 4)) == (3,)
    with pytest.raises(ValueError, match="layer 1 \\(Dense\\)"):
        model.output_shape((3, 5))


def test_summary_matches_pytorch_parameter_counts(torch):
    model = rv.Sequential([rv.Flatten(), rv.Dense(784, 256), rv.BatchNorm1d(256), rv.ReLU(),
                           rv.Dropout(0.2), rv.Dense(256, 10, bias=False), rv.Softmax()])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256),
                              torch.nn.BatchNorm1d(256), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(256, 10, bias=False), torch.nn.Softmax(dim=1))
    text = model.summary(input_shape=(28, 28), print_fn=None)
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(rows) == len(net)
    h = torch.zeros(2, 28, 28)
    net.eval()
    for i, (row, mod) in enumerate(zip(rows, net)):
        h = mod(h)
        count = sum(p.numel() for p in mod.parameters())
        assert row.split()[-1].replace(",", "") == str(count), row
        assert f"(None, {', '.join(map(str, h.shape[1:]))}" in row, row
    total = sum(p.numel() for p in net.parameters())
    assert f"Total params: {total:,}" in text
    assert total == sum(p.data.size for p in model.parameters())


def test_summary_needs_an_input_shape_after_flatten():
    model = rv.Sequential([rv.Flatten(), rv.Dense(12, 3)])
    with pytest.raises(ValueError, match="input_shape"):
        model.summary(print_fn=None)
    assert "Total params: 39" in model.summary(input_shape=(3, 4), print_fn=None)
