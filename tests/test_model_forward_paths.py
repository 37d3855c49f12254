"""One forward path: fit's forward, evaluate, predict, predict_proba and model.forward run the same
compiled plan, so their outputs are bitwise equal for every layer type and dtype."""
import numpy as np
import pytest

import ranvier as rv
from ranvier import _plan


def _models(dtype):
    """name -> a model holding that layer type (between Dense layers, where it is one)."""
    d = dict(dtype=dtype)
    return {
        "Dense": [rv.Dense(12, 5, seed=1, **d)],
        "ReLU": [rv.Dense(12, 16, seed=1, **d), rv.ReLU(), rv.Dense(16, 5, seed=2, **d)],
        "Sigmoid": [rv.Dense(12, 16, seed=1, **d), rv.Sigmoid(), rv.Dense(16, 5, seed=2, **d)],
        "Tanh": [rv.Dense(12, 16, seed=1, **d), rv.Tanh(), rv.Dense(16, 5, seed=2, **d)],
        "LeakyReLU": [rv.Dense(12, 16, seed=1, **d), rv.LeakyReLU(0.1),
                      rv.Dense(16, 5, seed=2, **d)],
        "ELU": [rv.Dense(12, 16, seed=1, **d), rv.ELU(0.5), rv.Dense(16, 5, seed=2, **d)],
        "GELU": [rv.Dense(12, 16, seed=1, **d), rv.GELU(), rv.Dense(16, 5, seed=2, **d)],
        "SiLU": [rv.Dense(12, 16, seed=1, **d), rv.SiLU(), rv.Dense(16, 5, seed=2, **d)],
        "Softmax": [rv.Dense(12, 5, seed=1, **d), rv.Softmax()],
        "Dropout": [rv.Dense(12, 16, seed=1, **d), rv.Dropout(0.3, seed=0),
                    rv.Dense(16, 5, seed=2, **d)],
        "BatchNorm1d": [rv.Dense(12, 16, seed=1, **d), rv.BatchNorm1d(16, dtype=dtype), rv.ReLU(),
                        rv.Dense(16, 5, seed=2, **d)],
        "Flatten": [rv.Flatten(), rv.Dense(12, 5, seed=1, **d)],
        # images (2, 3, 2): a Conv2d with its fused activation, one without, and the flatten
        "Conv2d": [rv.Conv2d(2, 4, 2, padding=1, seed=1, **d), rv.GELU(),
                   rv.Conv2d(4, 3, (2, 1), stride=(1, 2), bias=False, seed=2, **d), rv.Flatten(),
                   rv.Dense(3 * 3 * 2, 5, seed=3, **d)],
        "Conv2d+ReLU": [rv.Conv2d(2, 4, 3, padding="same", seed=1, **d), rv.ReLU(),
                        rv.Dropout(0.2, seed=0), rv.Flatten(), rv.Dense(24, 5, seed=2, **d)],
        # images (2, 6, 5): each pooling layer, BatchNorm2d and Dropout2d between convolutions
        "MaxPool2d": [rv.Conv2d(2, 4, 3, padding=1, seed=1, **d), rv.ReLU(), rv.MaxPool2d(2),
                      rv.Flatten(), rv.Dense(4 * 3 * 2, 5, seed=2, **d)],
        "AvgPool2d": [rv.Conv2d(2, 4, 3, padding=1, seed=1, **d), rv.AvgPool2d(3, stride=2,
                                                                            padding=1),
                      rv.Flatten(), rv.Dense(4 * 3 * 3, 5, seed=2, **d)],
        "AdaptiveAvgPool2d": [rv.Conv2d(2, 4, 3, seed=1, **d), rv.Tanh(),
                              rv.AdaptiveAvgPool2d(1), rv.Flatten(), rv.Dense(4, 5, seed=2, **d)],
        "BatchNorm2d": [rv.Conv2d(2, 4, 3, padding=1, seed=1, **d), rv.BatchNorm2d(4, dtype=dtype),
                        rv.ReLU(), rv.Flatten(), rv.Dense(4 * 6 * 5, 5, seed=2, **d)],
        "Dropout2d": [rv.Conv2d(2, 4, 3, padding=1, seed=1, **d), rv.Dropout2d(0.3, seed=0),
                      rv.Flatten(), rv.Dense(4 * 6 * 5, 5, seed=2, **d)],
    }


SAMPLE_SHAPES = {"Flatten": (3, 4), "Conv2d": (2, 3, 2), "Conv2d+ReLU": (2, 3, 2),
                 **{k: (2, 6, 5) for k in ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                                           "BatchNorm2d", "Dropout2d")}}


class _CaptureForward(rv.Callback):
    """Records the output of fit's own forward (the plan it trains with) on a fixed batch, in the
    model's inference mode, at the end of training."""

    def __init__(self, x, loss):
        self.x, self.loss, self.out = x, loss, None

    def on_train_end(self):
        model = self.model
        model.eval()
        self.out = np.array(_plan.run_forward(model._training_blocks(self.loss), self.x))


@pytest.mark.quick
@pytest.mark.parametrize("name", list(_models(np.float32)))
def test_fit_forward_equals_predict_bitwise(rng, dtype, name):
    layers = _models(dtype)[name]
    model = rv.Sequential(layers)
    shape = SAMPLE_SHAPES.get(name, (12,))
    X = rng.standard_normal((70,) + shape).astype(dtype)
    y = rng.integers(0, 5, 70)
    loss = rv.CrossEntropyLoss()
    x_batch = X[:33]
    cap = _CaptureForward(np.ascontiguousarray(x_batch), loss)
    model.fit(X, y, loss=loss, epochs=2, batch_size=16, verbose=0, callbacks=[cap], seed=0)
    # predict_proba: the plan on all layers, in batches of 7 (different buffers, same numbers)
    proba = model.predict_proba(X[:33], batch_size=7)
    forward = model.forward(X[:33])
    if name == "Softmax":  # the plan trains on the logits; Softmax is applied for prediction
        np.testing.assert_array_equal(forward, proba)
        logits_model = rv.Sequential(layers[:-1])
        np.testing.assert_array_equal(logits_model.forward(X[:33]), cap.out)
    else:
        np.testing.assert_array_equal(forward, cap.out)
        np.testing.assert_array_equal(proba, rv.Softmax().forward(cap.out))
    np.testing.assert_array_equal(model.predict(X[:33]), np.argmax(forward, axis=1))
    assert forward.dtype == dtype
    # evaluate's loss is the loss of that same output
    logits = cap.out if name != "Softmax" else rv.Sequential(layers[:-1]).forward(X[:33])
    assert model.evaluate(X[:33], y[:33])["loss"] == float(loss.forward(logits, y[:33]))


def test_validation_runs_in_inference_mode(rng):
    """fit's validation metrics are those of evaluate after the epoch: inference mode, so Dropout
    passes through and BatchNorm's running statistics are neither used for nothing nor updated."""
    X = rng.standard_normal((64, 12)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    model = rv.Sequential([rv.Dense(12, 16, seed=1), rv.BatchNorm1d(16), rv.ReLU(),
                           rv.Dropout(0.5, seed=3), rv.Dense(16, 5, seed=2)])
    Xv, yv = X[:20], y[:20]
    hist = model.fit(X, y, epochs=1, batch_size=16, verbose=0, validation_data=(Xv, yv), seed=0)
    running = model.layers[1].running_mean.copy()
    assert hist.history["val_loss"][-1] == model.evaluate(Xv, yv)["loss"]
    np.testing.assert_array_equal(model.layers[1].running_mean, running)


def test_public_forward_returns_a_new_array(rng):
    model = rv.Sequential([rv.Dense(4, 3, seed=0), rv.ReLU()])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    a = model.forward(x)
    b = model.forward(2 * x)
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, model.forward(x))
