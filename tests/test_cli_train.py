"""`ranvier train` / `ranvier evaluate` and History.plot."""
import os
import subprocess
import sys

import numpy as np
import pytest

import ranvier as rv

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ranvier.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=ENV)


def test_train_writes_model_and_plot_and_evaluate_reproduces(tmp_path):
    pytest.importorskip("matplotlib")
    model_path, png = tmp_path / "m.safetensors", tmp_path / "curves.png"
    res = run("train", "--data", "digits", "--hidden", "128,64", "--epochs", "20", "--out",
              str(model_path), "--plot", str(png))
    assert res.returncode == 0, res.stderr
    acc = float(res.stdout.split("test accuracy ")[1].split("%")[0])
    assert acc >= 95.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ev = run("evaluate", str(model_path))
    assert ev.returncode == 0, ev.stderr
    assert f"accuracy {acc:.2f}%" in ev.stdout
    model = rv.load(model_path)
    assert model.metadata["data"] == "digits" and model.n_features_in == 64


def test_train_cnn_and_evaluate_reproduces(tmp_path):
    """--model cnn: examples/mnist's layers on (n, 1, 8, 8) digits; evaluate reloads the images
    the same way and reports the same accuracy."""
    model_path = tmp_path / "cnn.safetensors"
    res = run("train", "--data", "digits", "--model", "cnn", "--epochs", "4", "--verbose", "0",
              "--out", str(model_path))
    assert res.returncode == 0, res.stderr
    assert "CNN on 1x8x8 images: Conv2d(1->32 k3)-Conv2d(32->64 k3)-MaxPool2d(2)" in res.stdout
    acc = float(res.stdout.split("test accuracy ")[1].split("%")[0])
    assert acc >= 90.0
    ev = run("evaluate", str(model_path))
    assert ev.returncode == 0, ev.stderr
    assert f"accuracy {acc:.2f}%" in ev.stdout
    model = rv.load(model_path)
    assert isinstance(model.layers[0], rv.Conv2d) and model.output_shape((1, 8, 8)) == (10,)
    # the inputs were standardized by the training images' mean and std, kept for evaluate
    X, y = rv.datasets.load_digits()
    X_train, _, _, _ = rv.datasets.train_test_split(X / 16.0, y, test_size=0.25, seed=0)
    assert model.metadata["input_mean"] == pytest.approx(X_train.mean(), rel=1e-12)
    assert model.metadata["input_std"] == pytest.approx(X_train.std(), rel=1e-12)


def test_train_help_and_bad_options(tmp_path):
    res = run("train", "--help")
    assert res.returncode == 0 and "--hidden" in res.stdout and "examples" in res.stdout
    for bad in (["--hidden", "64,x"], ["--hidden", "0"], ["--epochs", "0"], ["--lr", "-1"],
                ["--data", "cifar"], ["--optimizer", "lbfgs"]):
        res = run("train", *bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr, bad


def test_mnist_without_data_dir_is_a_clear_error(tmp_path):
    env_less = {k: v for k, v in ENV.items() if k != "RANVIER_DATA_DIR"}
    res = subprocess.run([sys.executable, "-m", "ranvier.cli", "train", "--data", "mnist"],
                         capture_output=True, text=True, timeout=120, env=env_less)
    assert res.returncode != 0 and "--data-dir" in res.stderr and "Traceback" not in res.stderr
    res = run("train", "--data", "mnist", "--data-dir", str(tmp_path))
    assert res.returncode != 0 and "cannot read mnist" in res.stderr


@pytest.mark.quick
def test_evaluate_bad_file(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a model")
    res = run("evaluate", str(bad))
    assert res.returncode != 0 and "cannot load" in res.stderr and "Traceback" not in res.stderr


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = rv.datasets.load_digits()
    model = rv.Sequential([rv.Dense(64, 32, seed=0), rv.ReLU(), rv.Dense(32, 10, seed=1)])
    h = model.fit(X / 16, y, epochs=3, validation_split=0.2, verbose=0)
    fig = h.plot(tmp_path / "c.png", title="t")
    labels = [[line.get_label() for line in ax.get_lines()] for ax in fig.axes]
    assert labels == [["training", "validation"], ["training", "validation"]]
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), h.history["val_loss"])
    assert (tmp_path / "c.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="nothing to plot"):
        rv.History().plot()
