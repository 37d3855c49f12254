"""Sequential: fit/History, evaluate/predict/predict_proba, dtypes end to end, compile, defaults,
determinism across threads, the fused Softmax + cross-entropy path, MSE regression, and a short
training run against torch."""
import numpy as np
import pytest

import ranvier as rv
from conftest import eps


@pytest.fixture(scope="module")
def digits():
    X, y = rv.datasets.load_digits()
    X /= 16.0
    return X[:600], y[:600]


def mlp(dtype=np.float32, seed=0, hidden=32, softmax=False, n_in=64, n_out=10):
    rng = np.random.default_rng(seed)
    layers = [rv.Dense(n_in, hidden, dtype=dtype, seed=rng), rv.ReLU(),
              rv.Dense(hidden, n_out, dtype=dtype, seed=rng, init="xavier")]
    if softmax:
        layers.append(rv.Softmax())
    return rv.Sequential(layers)


def weights(model):
    return [p.data.copy() for p in model.parameters()]


# -- fit / History --------------------------------------------------------------------------------
@pytest.mark.quick
def test_fit_returns_history_with_decreasing_loss(digits, capsys):
    X, y = digits
    model = mlp()
    hist = model.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=rv.SGD(model.parameters(), lr=0.1,
                                                                         momentum=0.9),
                     epochs=6, batch_size=32, seed=0, verbose=0)
    assert capsys.readouterr().out == ""  # verbose=0 prints nothing
    assert isinstance(hist, rv.History) and model.history is hist
    assert set(hist.history) == {"loss", "accuracy"}
    assert hist.epoch == list(range(6)) and len(hist.epoch_time) == 6
    loss, acc = hist["loss"], hist["accuracy"]
    assert len(loss) == len(acc) == 6
    assert all(isinstance(v, float) for v in loss + acc)
    assert np.all(np.diff(loss) < 0), loss
    assert all(0.0 <= a <= 1.0 for a in acc)
    assert acc[-1] > acc[0] and acc[-1] > 0.9
    assert loss[0] < np.log(10) + 0.5  # starts near chance and drops well below it
    assert loss[-1] < 0.5 * loss[0]


def test_fit_verbose_prints_one_line_per_epoch(digits, capsys):
    """verbose=2 (Keras): one line per epoch; verbose=1 is a progress bar (test_callbacks)."""
    X, y = digits
    mlp().fit(X[:64], y[:64], epochs=3, verbose=2, seed=0)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3") and "loss:" in lines[0] and "accuracy:" in lines[0]


def test_fit_history_loss_is_mean_over_samples(digits):
    """shuffle=False, one epoch, lr=0: the recorded loss is the sample-weighted mean batch loss,
    which for fixed weights is the loss on the whole set."""
    X, y = digits
    model = mlp(dtype=np.float64)
    w0 = weights(model)
    hist = model.fit(X[:100], y[:100], loss="cross_entropy",
                     optimizer=rv.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=32,
                     shuffle=False, verbose=0)
    for a, b in zip(weights(model), w0):
        np.testing.assert_array_equal(a, b)
    ref = rv.CrossEntropyLoss()(model.forward(X[:100]), y[:100])
    np.testing.assert_allclose(hist["loss"][0], ref, rtol=1e-12)
    acc = np.mean(model.predict(X[:100]) == y[:100])
    np.testing.assert_allclose(hist["accuracy"][0], acc)


# -- evaluate / predict / predict_proba -----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(digits):
    X, y = digits
    model = mlp(seed=1)
    model.fit(X, y, loss="cross_entropy", optimizer=rv.Adam(model.parameters(), lr=0.01), epochs=3,
              batch_size=64, seed=1, verbose=0)
    return model


@pytest.mark.quick
def test_predict_proba_and_predict_consistent(trained, digits):
    X, y = digits
    proba = trained.predict_proba(X)
    pred = trained.predict(X)
    assert proba.shape == (600, 10) and proba.dtype == np.float32
    assert pred.shape == (600,) and pred.dtype.kind == "i"
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=10 * eps(np.float32))
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    np.testing.assert_array_equal(pred, trained.forward(X).argmax(axis=1))
    assert set(np.unique(pred)) <= set(range(10))


def test_predict_batching_does_not_change_results(trained, digits):
    X, _ = digits
    np.testing.assert_allclose(trained.predict_proba(X, batch_size=7), trained.predict_proba(X),
                               rtol=10 * eps(np.float32), atol=10 * eps(np.float32))
    np.testing.assert_array_equal(trained.predict(X[:50], batch_size=1), trained.predict(X[:50]))


def test_evaluate_matches_manual_loss_and_accuracy(trained, digits):
    X, y = digits
    res = trained.evaluate(X, y)
    assert set(res) == {"loss", "accuracy"}
    assert isinstance(res["loss"], float) and isinstance(res["accuracy"], float)
    np.testing.assert_allclose(res["accuracy"], np.mean(trained.predict(X) == y))
    ref = rv.CrossEntropyLoss()(trained.forward(X), y)
    np.testing.assert_allclose(res["loss"], ref, rtol=1e-6)
    assert res["accuracy"] > 0.8
    onehot = np.eye(10, dtype=np.float32)[y]
    res_oh = trained.evaluate(X, onehot)
    np.testing.assert_allclose(res_oh["loss"], res["loss"], rtol=1e-5)
    assert res_oh["accuracy"] == res["accuracy"]


def test_predict_single_sample(trained, digits):
    X, _ = digits
    assert trained.predict(X[:1]).shape == (1,)
    assert trained.predict_proba(X[3:4]).shape == (1, 10)


# -- dtypes end to end ----------------------------------------------------------------------------
def test_dtype_kept_end_to_end(digits, dtype):
    X, y = digits
    model = mlp(dtype=dtype, seed=2)
    assert model.dtype == dtype
    hist = model.fit(X.astype(dtype), y, epochs=2, batch_size=64, seed=0, verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]
    for p in model.parameters():
        assert p.data.dtype == dtype and p.grad.dtype == dtype
        assert np.any(p.grad != 0)
    out = model.forward(X[:5].astype(dtype))
    assert out.dtype == dtype
    model.backward(np.ones_like(out))
    for p in model.parameters():
        assert p.grad.dtype == dtype
    assert model.predict_proba(X).dtype == dtype
    for other in (np.float32, np.float64, np.int64):  # any numeric input: model-dtype outputs
        assert model.predict_proba((X[:5] * 16).astype(other)).dtype == dtype
        assert model.forward(X[:5].astype(other)).dtype == dtype


def test_float64_input_to_float32_model_gives_float32(digits):
    X, y = digits
    model = mlp(dtype=np.float32)
    X64 = X.astype(np.float64)
    model.fit(X64, y, epochs=1, verbose=0, seed=0)
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    assert model.predict_proba(X64).dtype == np.float32
    assert model.forward(X64).dtype == np.float32
    np.testing.assert_array_equal(model.predict_proba(X64), model.predict_proba(X))


def test_sequential_dtype_argument_and_astype(digits):
    X, y = digits
    model = rv.Sequential([rv.Dense(64, 16, seed=0), rv.Tanh(), rv.Dense(16, 10, seed=1)],
                          dtype=np.float64)
    assert model.dtype == np.float64
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    assert model.astype(np.float32) is model and model.dtype == np.float32
    assert model.predict_proba(X[:3]).dtype == np.float32


def test_fit_again_after_astype(digits):
    """Train in float32, convert to float64 and keep training with the optimizer ``fit`` created:
    the model is float64 end to end (no stale float32 optimizer state)."""
    X, y = digits
    model = mlp(dtype=np.float32)
    model.fit(X, y, epochs=1, verbose=0, seed=0)  # creates and keeps a default Adam
    model.astype(np.float64)
    hist = model.fit(X, y, epochs=1, verbose=0, seed=0)
    assert len(hist["loss"]) == 1
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    assert model.predict_proba(X).dtype == np.float64


def test_mixed_dtype_layers_rejected(digits):
    X, y = digits
    model = rv.Sequential([rv.Dense(64, 8, dtype=np.float32), rv.ReLU(),
                           rv.Dense(8, 10, dtype=np.float64)])
    with pytest.raises(TypeError, match="mix dtypes"):
        model.predict(X)
    with pytest.raises(TypeError, match="mix dtypes"):
        model.fit(X, y, verbose=0)


# -- compile / defaults ---------------------------------------------------------------------------
def test_compile_then_fit_uses_compiled_loss_and_optimizer(digits):
    X, y = digits
    model = mlp(seed=3)
    assert model.compile(loss="cross_entropy", optimizer="sgd") is model
    assert isinstance(model.loss, rv.CrossEntropyLoss) and isinstance(model.optimizer, rv.SGD)
    opt = model.optimizer
    hist = model.fit(X, y, epochs=3, batch_size=32, seed=0, verbose=0)
    assert model.optimizer is opt and isinstance(model.loss, rv.CrossEntropyLoss)
    assert hist["loss"][-1] < hist["loss"][0]


def test_compiled_optimizer_is_the_one_stepping(digits):
    X, y = digits
    model = mlp(seed=3)
    model.compile(loss=rv.CrossEntropyLoss(), optimizer=rv.SGD(model.parameters(), lr=0.0))
    w0 = weights(model)
    model.fit(X, y, epochs=1, verbose=0, seed=0)
    for a, b in zip(weights(model), w0):  # lr = 0: nothing moved
        np.testing.assert_array_equal(a, b)
    model.fit(X, y, optimizer=rv.SGD(model.parameters(), lr=0.1), epochs=1, verbose=0, seed=0)
    assert any(not np.array_equal(a, b) for a, b in zip(weights(model), w0))


def test_compile_with_instances_matches_fit_arguments(digits):
    X, y = digits
    a, b = mlp(seed=4), mlp(seed=4)
    a.compile(loss=rv.CrossEntropyLoss(), optimizer=rv.SGD(a.parameters(), lr=0.05, momentum=0.9))
    a.fit(X, y, epochs=2, batch_size=50, seed=7, verbose=0)
    b.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=rv.SGD(b.parameters(), lr=0.05,
                                                              momentum=0.9),
          epochs=2, batch_size=50, seed=7, verbose=0)
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(p, q)


def test_defaults_without_loss_or_optimizer(digits):
    """Integer labels: cross-entropy and Adam(lr=1e-3), the same as passing them explicitly."""
    X, y = digits
    a, b = mlp(seed=5), mlp(seed=5)
    ha = a.fit(X, y, epochs=2, seed=0, verbose=0)
    assert isinstance(a.loss, rv.CrossEntropyLoss)
    assert type(a.optimizer) is rv.Adam
    g = a.optimizer.param_groups[0]
    assert (g["lr"], g["betas"], g["weight_decay"]) == (0.001, (0.9, 0.999), 0.0)
    assert "accuracy" in ha.history and ha["loss"][-1] < ha["loss"][0]
    b.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=rv.Adam(b.parameters(), lr=1e-3),
          epochs=2, batch_size=32, seed=0, verbose=0)
    for p, q in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(p, q)


def test_default_loss_for_float_targets_is_mse(rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=40)
    model = rv.Sequential([rv.Dense(3, 1, seed=0)])
    hist = model.fit(X, y, epochs=2, verbose=0, seed=0)
    assert isinstance(model.loss, rv.MSELoss) and set(hist.history) == {"loss"}


def test_loss_and_optimizer_names(digits):
    X, y = digits
    for loss, opt, cls in (("cross_entropy", "adamw", rv.AdamW),
                           ("categorical_crossentropy", "SGD", rv.SGD)):
        model = mlp(seed=6)
        model.fit(X[:64], y[:64], loss=loss, optimizer=opt, epochs=1, verbose=0)
        assert isinstance(model.loss, rv.CrossEntropyLoss)


# -- determinism ----------------------------------------------------------------------------------
def _train(X, y, seed_init, seed_fit):
    model = mlp(seed=seed_init, hidden=128)
    model.fit(X, y, loss="cross_entropy", optimizer=rv.SGD(model.parameters(), lr=0.05,
                                                           momentum=0.9),
              epochs=2, batch_size=256, seed=seed_fit, verbose=0)
    return weights(model)


def test_same_seed_same_weights(digits, num_threads):
    X, y = digits
    a, b = _train(X, y, 0, 0), _train(X, y, 0, 0)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    c = _train(X, y, 0, 1)  # another shuffle
    assert any(not np.array_equal(p, q) for p, q in zip(a, c))


def test_weights_bitwise_identical_for_1_and_2_threads(digits):
    """Batch 256 x hidden 128: GEMMs and the activations run past the parallel cut-off."""
    X, y = digits
    try:
        rv.set_num_threads(1)
        one = _train(X, y, 2, 3)
        rv.set_num_threads(2)
        two = _train(X, y, 2, 3)
    finally:
        rv.set_num_threads(None)
    for p, q in zip(one, two):
        np.testing.assert_array_equal(p, q)


def test_shuffle_false_ignores_seed(digits):
    X, y = digits
    out = []
    for seed in (0, 1):
        model = mlp(seed=8)
        model.fit(X[:128], y[:128], epochs=1, batch_size=32, shuffle=False, seed=seed, verbose=0)
        out.append(weights(model))
    for p, q in zip(*out):
        np.testing.assert_array_equal(p, q)


# -- Softmax output + cross-entropy ---------------------------------------------------------------
def test_softmax_last_layer_with_cross_entropy_trains_on_logits(digits):
    """With Softmax last and CrossEntropyLoss, training feeds the logits to the fused kernel: the
    same updates as the model without the Softmax layer."""
    X, y = digits
    sm, lg = mlp(seed=9, softmax=True), mlp(seed=9, softmax=False)
    for model in (sm, lg):
        model.fit(X, y, loss=rv.CrossEntropyLoss(),
                  optimizer=rv.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  epochs=3, batch_size=32, seed=4, verbose=0)
    for p, q in zip(weights(sm), weights(lg)):
        np.testing.assert_array_equal(p, q)
    assert sm.history["loss"] == lg.history["loss"]
    np.testing.assert_allclose(sm.predict_proba(X), lg.predict_proba(X), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(sm.predict(X), lg.predict(X))
    np.testing.assert_allclose(sm.forward(X).sum(axis=1), 1.0, atol=1e-6)  # forward: probabilities
    np.testing.assert_allclose(sm.evaluate(X, y)["loss"], lg.evaluate(X, y)["loss"], rtol=1e-6)
    assert sm.history["loss"][-1] < sm.history["loss"][0]


def test_softmax_model_defaults_to_cross_entropy_and_survives_huge_logits(rng):
    X = rng.normal(size=(64, 5)).astype(np.float32) * 1e3
    y = rng.integers(0, 3, size=64)
    model = rv.Sequential([rv.Dense(5, 3, seed=0), rv.Softmax()])
    hist = model.fit(X, y, epochs=2, verbose=0, seed=0)  # Softmax output: cross-entropy
    assert isinstance(model.loss, rv.CrossEntropyLoss)
    assert np.all(np.isfinite(hist["loss"]))
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    assert np.all(np.isfinite(model.predict_proba(X)))


# -- MSE regression -------------------------------------------------------------------------------
def test_mse_regression_learns_linear_function(rng, dtype):
    w_true, b_true = np.array([1.5, -2.0, 0.5]), 0.3
    X = rng.normal(size=(256, 3)).astype(dtype)
    y = X.astype(np.float64) @ w_true + b_true
    model = rv.Sequential([rv.Dense(3, 1, dtype=dtype, seed=0)])
    hist = model.fit(X, y, loss="mse", optimizer=rv.SGD(model.parameters(), lr=0.1),
                     epochs=40, batch_size=32, seed=0, verbose=0)
    assert set(hist.history) == {"loss"}
    assert hist["loss"][-1] < 1e-3 * hist["loss"][0]
    np.testing.assert_allclose(model[0].weight.data[0], w_true, atol=1e-3)
    np.testing.assert_allclose(model[0].bias.data, [b_true], atol=1e-3)
    pred = model.predict(X)  # a regressor's predict returns the outputs
    assert pred.shape == (256, 1) and pred.dtype == dtype
    np.testing.assert_allclose(pred[:, 0], y, atol=1e-2)
    assert model.evaluate(X, y)["loss"] < 1e-5 and "accuracy" not in model.evaluate(X, y)


# -- structure ------------------------------------------------------------------------------------
def test_named_parameters_match_torch_sequential(torch):
    model = rv.Sequential([rv.Dense(5, 7), rv.ReLU(), rv.Dense(7, 3, bias=False), rv.Tanh(),
                           rv.Dense(3, 2)])
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(),
                                 torch.nn.Linear(7, 3, bias=False), torch.nn.Tanh(),
                                 torch.nn.Linear(3, 2))
    ours = [(n, p.shape) for n, p in model.named_parameters()]
    theirs = [(n, tuple(p.shape)) for n, p in tmodel.named_parameters()]
    assert ours == theirs
    assert model.parameters() == [p for _, p in model.named_parameters()]


def _smooth_model_and_fd(rng):
    model = rv.Sequential([rv.Dense(7, 5, seed=0), rv.Tanh(), rv.Dense(5, 3, seed=1),
                           rv.Sigmoid()], dtype=np.float64)
    for p in model.parameters():
        p.data[...] = rng.normal(scale=0.5, size=p.shape)  # non-zero biases too
    x, r = rng.normal(size=(4, 7)), rng.normal(size=(4, 3))

    def fd(arr):
        h, num, flat = 1e-6, np.empty(arr.size), arr.reshape(-1)
        for i in range(arr.size):
            old = flat[i]
            flat[i] = old + h
            fp = float(np.sum(r * model.forward(x)))
            flat[i] = old - h
            fm = float(np.sum(r * model.forward(x)))
            flat[i] = old
            num[i] = (fp - fm) / (2 * h)
        return num.reshape(arr.shape)

    return model, x, r, fd


def test_sequential_backward_parameter_grads_match_finite_differences(rng):
    model, x, r, fd = _smooth_model_and_fd(rng)
    model.forward(x)
    model.backward(r)
    grads = [p.grad.copy() for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(g, fd(p.data), rtol=1e-6, atol=1e-8)


def test_sequential_backward_returns_input_gradient(rng):
    """``Sequential.backward`` is documented to return d loss / d input."""
    model, x, r, fd = _smooth_model_and_fd(rng)
    model.forward(x)
    dx = model.backward(r)
    assert dx is not None, "Sequential.backward returned None instead of d loss / d input"
    np.testing.assert_allclose(dx, fd(x), rtol=1e-6, atol=1e-8)


def test_train_eval_modes(digits):
    X, y = digits
    model = mlp()
    assert model.training
    assert model.eval() is model and not model.training
    assert all(not layer.training for layer in model)
    model.train()
    assert model.training and all(layer.training for layer in model)
    model.fit(X[:32], y[:32], epochs=1, verbose=0)
    assert not model.training  # fit leaves the model in eval mode


def test_sequential_container_protocol():
    layers = [rv.Dense(3, 4), rv.ReLU(), rv.Dense(4, 2)]
    model = rv.Sequential(layers[:2]).add(layers[2])
    assert len(model) == 3 and model[0] is layers[0] and list(model) == layers
    assert "Dense(in_features=3, out_features=4" in repr(model)


# -- against torch: a short training run ----------------------------------------------------------
def test_fit_matches_torch_training_loop(torch, digits, dtype):
    """fit(shuffle=False) with SGD+momentum equals a hand-written torch loop on the same weights."""
    X, y = digits
    X, y = X[:96].astype(dtype), y[:96]
    model = mlp(dtype=dtype, seed=10, hidden=16)
    tdt = getattr(torch, dtype.name)
    tmodel = torch.nn.Sequential(torch.nn.Linear(64, 16, dtype=tdt), torch.nn.ReLU(),
                                 torch.nn.Linear(16, 10, dtype=tdt))
    with torch.no_grad():
        for (_, p), tp in zip(model.named_parameters(), tmodel.parameters()):
            tp.copy_(torch.from_numpy(p.data.copy()))
    model.fit(X, y, loss="cross_entropy", optimizer=rv.SGD(model.parameters(), lr=0.1,
                                                           momentum=0.9),
              epochs=2, batch_size=32, shuffle=False, verbose=0)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(2):
        for s in range(0, 96, 32):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tmodel(tX[s:s + 32]), ty[s:s + 32]).backward()
            topt.step()
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for p, tp in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=tol, atol=tol)
