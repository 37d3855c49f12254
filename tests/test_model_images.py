"""Images (n, h, w) go straight into a model that starts with Flatten: fit, predict, evaluate."""
import numpy as np
import pytest

import ranvier as rv


@pytest.mark.quick
def test_flatten_first_accepts_images_everywhere(rng):
    X = rng.random((120, 8, 8)).astype(np.float32)
    y = (X.reshape(120, -1).sum(1) > 32).astype(np.int64)
    model = rv.Sequential([rv.Flatten(), rv.Dense(64, 16, seed=0), rv.ReLU(),
                           rv.Dense(16, 2, seed=1)])
    h = model.fit(X, y, epochs=3, batch_size=16, verbose=0, validation_split=0.2)
    assert len(h.epoch) == 3
    flat = rv.Sequential([rv.Dense(64, 16), rv.ReLU(), rv.Dense(16, 2)])
    flat.load_state_dict({k.replace("1.", "0.", 1).replace("3.", "2.", 1): v
                          for k, v in model.state_dict().items()})
    np.testing.assert_array_equal(model.predict_proba(X), flat.predict_proba(X.reshape(120, -1)))
    assert model.evaluate(X, y)["accuracy"] == flat.evaluate(X.reshape(120, -1), y)["accuracy"]


def test_wrong_image_size_and_no_flatten(rng):
    model = rv.Sequential([rv.Flatten(), rv.Dense(64, 2)])
    with pytest.raises(ValueError, match="64"):
        model.predict(rng.random((3, 7, 8)))
    with pytest.raises(ValueError, match="Flatten"):
        rv.Sequential([rv.Dense(64, 2)]).predict(rng.random((3, 8, 8)))
