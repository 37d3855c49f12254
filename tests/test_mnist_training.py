"""Training on the real MNIST and Fashion-MNIST (784-256-128-10, Adam). Skipped with a reason when
the data is absent; marked slow, but CI runs them."""
import os
from pathlib import Path

import numpy as np
import pytest

import ranvier as rv

DATA = Path(os.environ.get("RANVIER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" /
                           "data"))


def _load(name):
    folder = DATA / name
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real {name} data not found at {folder} (set RANVIER_DATA_DIR)")
    loader = rv.datasets.load_mnist if name == "mnist" else rv.datasets.load_fashion_mnist
    return loader(folder, flatten=True, dtype=np.float32, normalize=True)


def _mlp(seed):
    rng = np.random.default_rng(seed)
    return rv.Sequential([rv.Dense(784, 256, seed=rng), rv.ReLU(), rv.Dense(256, 128, seed=rng),
                          rv.ReLU(), rv.Dense(128, 10, init="xavier", seed=rng)])


@pytest.mark.slow
@pytest.mark.parametrize("name,seed,epochs,target", [("mnist", 0, 5, 0.975),
                                                     ("fashion-mnist", 1, 10, 0.87)],
                         ids=["mnist-97.5-percent-in-5-epochs",
                              "fashion-mnist-87-percent-in-10-epochs"])
def test_reaches_the_target_accuracy(name, seed, epochs, target):
    (X, y), (Xt, yt) = _load(name)
    model = _mlp(seed)
    model.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=rv.Adam(model.parameters(), lr=1e-3),
              epochs=epochs, batch_size=128, seed=0, verbose=0)
    acc = model.evaluate(Xt, yt)["accuracy"]
    print(f"{name} test accuracy after {epochs} epochs: {acc:.4f}")
    assert acc >= target
