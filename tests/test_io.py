"""Saving and loading: safetensors files, PyTorch compatibility both ways, atomic writes, and
clear errors for truncated, corrupted, foreign and mismatched files."""
import os

import numpy as np
import pytest

import ranvier as rv
from ranvier import io as rio


def _model(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rv.Sequential([rv.Dense(12, 16, seed=rng, dtype=dtype), rv.ReLU(),
                          rv.Dense(16, 8, seed=rng, dtype=dtype), rv.Tanh(),
                          rv.Dense(8, 3, init="xavier", seed=rng, dtype=dtype)])


@pytest.fixture
def data(rng):
    return rng.standard_normal((50, 12)).astype(np.float32), rng.integers(0, 3, 50)


def test_save_load_round_trip(tmp_path, data, dtype):
    X, y = data
    model = _model(dtype)
    model.fit(X, y, epochs=2, verbose=0, seed=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = rv.load(path)
    assert [type(l) for l in again] == [type(l) for l in model]
    assert again.dtype == dtype
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))


def test_state_dict_uses_torch_names_and_copies(data):
    model = _model()
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert sd["0.weight"].shape == (16, 12)
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert np.abs(model[0].weight.data).sum() > 0


def test_ranvier_file_loads_in_torch(torch, tmp_path, data):
    from safetensors.torch import load_file

    X, y = data
    model = _model()
    model.fit(X, y, epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    tm = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                             torch.nn.Tanh(), torch.nn.Linear(8, 3))
    tm.load_state_dict(load_file(str(path)))
    with torch.no_grad():
        logits = tm(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(logits.argmax(1), model.predict(X))
    np.testing.assert_allclose(logits, model.forward(X), rtol=1e-5, atol=1e-5)


def test_torch_file_loads_in_ranvier(torch, tmp_path, data):
    from safetensors.torch import save_file

    X, _ = data
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                             torch.nn.Tanh(), torch.nn.Linear(8, 3))
    path = tmp_path / "t.safetensors"
    save_file(tm.state_dict(), str(path))
    model = _model(seed=5).load_weights(path)
    with torch.no_grad():
        logits = tm(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.forward(X), logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no ranvier architecture"):
        rv.load(path)  # weights only: the architecture must come from the user


def test_interrupted_save_keeps_previous_file(tmp_path, data, monkeypatch):
    X, y = data
    model = _model()
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()
    model.fit(X, y, epochs=1, verbose=0)  # the weights change

    def half_then_die(f, payload):
        f.write(payload[: len(payload) // 2])
        raise KeyboardInterrupt("killed half way")

    monkeypatch.setattr(rio, "_write_all", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary left behind
    rv.load(path)  # and it still loads


def test_killed_process_mid_save_keeps_previous_file(tmp_path):
    """A save in a child process killed (SIGKILL-like, os._exit) after writing half the bytes."""
    import subprocess
    import sys

    path = tmp_path / "m.safetensors"
    code = f"""
import os, numpy as np, ranvier as rv
from ranvier import io as rio
m = rv.Sequential([rv.Dense(12, 16, seed=0), rv.ReLU(), rv.Dense(16, 3, seed=1)])
m.save({str(path)!r})
def die(f, payload):
    f.write(payload[: len(payload) // 2]); f.flush(); os._exit(9)
rio._write_all = die
m[0].weight.data[...] = 1.0
m.save({str(path)!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 9
    model = rv.load(path)
    assert not np.all(model[0].weight.data == 1.0)


@pytest.mark.parametrize("damage", ["truncated", "header", "header_bytes", "data_byte", "empty",
                                    "foreign"])
def test_damaged_files_raise_value_error(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    _model().save(path)
    raw = path.read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) - 100]
    elif damage == "header":
        raw = raw[:8] + b"[" + raw[9:]  # the JSON header no longer opens an object
    elif damage == "header_bytes":
        raw = raw[:8] + b"\xff" * 50 + raw[58:]
    elif damage == "data_byte":  # one flipped bit in a weight: only the checksum can tell
        raw = raw[:-7] + bytes([raw[-7] ^ 0x10]) + raw[-6:]
    elif damage == "empty":
        raw = b""
    else:
        raw = b"PK\x03\x04 this is a zip file, not a model" * 10
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="m.safetensors"):
        rv.load(path)


def test_missing_file_and_bad_path_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        rv.load(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="path"):
        rv.load(42)


def test_shape_mismatch_and_wrong_keys(tmp_path):
    path = tmp_path / "m.safetensors"
    _model().save(path)
    other = rv.Sequential([rv.Dense(12, 17), rv.ReLU(), rv.Dense(17, 8), rv.Tanh(),
                           rv.Dense(8, 3)])
    with pytest.raises(ValueError, match=r"0.weight.*shape"):
        other.load_weights(path)
    smaller = rv.Sequential([rv.Dense(12, 16), rv.ReLU(), rv.Dense(16, 8)])
    with pytest.raises(ValueError, match="unexpected keys"):
        smaller.load_weights(path)
    sd = _model().state_dict()
    sd["0.weight"] = np.full((16, 12), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        _model().load_state_dict(sd)
    with pytest.raises(TypeError, match="dict"):
        _model().load_state_dict([1, 2])


def test_architecture_metadata_is_plain_json_not_code(tmp_path):
    """The loader only instantiates ranvier's own layer classes named in the metadata."""
    import json

    from safetensors.numpy import load_file, save_file

    path = tmp_path / "m.safetensors"
    _model().save(path)
    tensors, meta = rio.read_file(path)
    arch = json.loads(meta["architecture"])
    arch[1]["type"] = "os.system"
    meta["architecture"] = json.dumps(arch)
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(ValueError, match="unknown layer type"):
        rv.load(path)


def test_batchnorm_buffers_save_and_load(tmp_path, rng):
    """num_batches_tracked is saved 0-d, as torch's state_dict has it, and loads back."""
    model = rv.Sequential([rv.Dense(3, 4, seed=0), rv.BatchNorm1d(4)])
    for _ in range(2):
        model.layers[1].forward(rng.normal(size=(5, 4)))
    model.save(tmp_path / "bn.safetensors")
    loaded = rv.load(tmp_path / "bn.safetensors")
    for (name, a), (_, b) in zip(model.layers[1].named_buffers(),
                                 loaded.layers[1].named_buffers()):
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(a, b)
    assert int(loaded.layers[1].num_batches_tracked) == 2


def test_a_loaded_model_predicts_what_the_saved_one_did(tmp_path, rng):
    """load() returns the model in eval mode, as fit leaves it: Dropout off and BatchNorm on its
    running statistics, so predictions are bitwise those of the model that was saved."""
    X = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = rv.Sequential([rv.Dense(6, 16, seed=0), rv.BatchNorm1d(16), rv.ReLU(),
                           rv.Dropout(0.5, seed=0), rv.Dense(16, 3, seed=1)])
    model.fit(X, y, epochs=2, batch_size=16, verbose=0, seed=0)
    model.save(tmp_path / "m.safetensors")
    loaded = rv.load(tmp_path / "m.safetensors")
    assert not any(layer.training for layer in loaded.layers)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))
