"""fit's training workflow: validation sets, callbacks, NaN handling and progress output."""
import builtins

import numpy as np
import pytest

import ranvier as rv


@pytest.fixture
def digits():
    X, y = rv.datasets.load_digits()
    return X / 16.0, y


def _model(seed=0, hidden=32):
    rng = np.random.default_rng(seed)
    return rv.Sequential([rv.Dense(64, hidden, seed=rng), rv.ReLU(),
                          rv.Dense(hidden, 10, init="xavier", seed=rng)])


def test_validation_data_adds_val_metrics(digits):
    X, y = digits
    model = _model()
    h = model.fit(X[:1200], y[:1200], validation_data=(X[1200:], y[1200:]), epochs=3,
                  verbose=0, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    expected = model.evaluate(X[1200:], y[1200:])
    assert h.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-6)
    assert h.history["val_accuracy"][-1] == pytest.approx(expected["accuracy"])


def test_validation_split_holds_out_the_last_samples(digits):
    X, y = digits
    a, b = _model(), _model()
    ha = a.fit(X, y, validation_split=0.25, epochs=2, verbose=0, seed=0, shuffle=False)
    n_val = int(len(X) * 0.25)
    hb = b.fit(X[:-n_val], y[:-n_val], validation_data=(X[-n_val:], y[-n_val:]), epochs=2,
               verbose=0, seed=0, shuffle=False)
    assert ha.history == hb.history


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_split": 1.5}, "validation_split"),
    ({"validation_split": 0.0001}, "validation_split"),
    ({"validation_data": (np.ones((3, 64)),)}, "validation_data"),
    ({"validation_data": (np.ones((3, 63)), np.zeros(3, int))}, r"validation_data\[0\]"),
    ({"validation_data": (np.ones((3, 64)), np.array([0, 1, 12]))}, r"validation_data\[1\]"),
    ({"validation_data": (np.ones((3, 64)), np.zeros(3, int)), "validation_split": 0.2}, "not both"),
    ({"callbacks": [object()]}, "Callback"),
    ({"initial_epoch": -1}, "initial_epoch"),
])
def test_bad_workflow_arguments(digits, kwargs, match):
    X, y = digits
    with pytest.raises((ValueError, TypeError), match=match):
        _model().fit(X, y, epochs=1, verbose=0, **kwargs)


@pytest.mark.quick
def test_early_stopping_stops_and_restores_best_weights(digits):
    X, y = digits
    model = _model(hidden=64)
    # A high learning rate makes validation loss rise after a few epochs.
    es = rv.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = model.fit(X[:1000], y[:1000], validation_data=(X[1000:], y[1000:]), epochs=60,
                  optimizer=rv.SGD(model.parameters(), lr=0.3, momentum=0.9), callbacks=[es],
                  verbose=0, seed=0)
    n_run = len(h.epoch)
    assert es.stopped_epoch is not None and n_run < 60
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert es.best_epoch == best
    assert n_run == best + 1 + 2  # the best epoch, then `patience` epochs without progress
    assert model.evaluate(X[1000:], y[1000:])["loss"] == pytest.approx(val[best], rel=1e-5)


def test_early_stopping_min_delta_and_mode(digits):
    X, y = digits
    es = rv.EarlyStopping(monitor="accuracy", patience=0, min_delta=1.0)  # nothing improves by 1
    h = _model().fit(X, y, epochs=10, callbacks=[es], verbose=0, seed=0)
    assert es.mode == "max" and len(h.epoch) == 2
    with pytest.raises(ValueError, match="val_loss"):
        _model().fit(X, y, epochs=2, callbacks=[rv.EarlyStopping()], verbose=0)
    with pytest.raises(ValueError, match="mode"):
        rv.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        rv.EarlyStopping(patience=-1)


@pytest.mark.quick
def test_model_checkpoint_save_best_only_and_resume(digits, tmp_path):
    X, y = digits
    model = _model()
    path = tmp_path / "best-{epoch:02d}.safetensors"
    ck = rv.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    h = model.fit(X[:1200], y[:1200], validation_data=(X[1200:], y[1200:]), epochs=6,
                  callbacks=[ck], verbose=0, seed=0)
    accs = h.history["val_accuracy"]
    improving = [i for i, a in enumerate(accs) if a > max(accs[:i], default=-1)]
    assert [p for p in ck.saved] == [str(tmp_path / f"best-{i + 1:02d}.safetensors")
                                     for i in improving]
    best = rv.load(ck.saved[-1])
    assert best.epoch == improving[-1] + 1
    assert best.evaluate(X[1200:], y[1200:])["accuracy"] == pytest.approx(max(accs))


def test_model_checkpoint_bad_folder(digits, tmp_path):
    X, y = digits
    ck = rv.ModelCheckpoint(tmp_path / "missing" / "m.safetensors", monitor="loss")
    with pytest.raises(ValueError, match="does not exist"):
        _model().fit(X, y, epochs=1, callbacks=[ck], verbose=0)


def test_nan_loss_raises_naming_epoch_and_batch(digits):
    X, y = digits
    model = _model()
    with pytest.raises(FloatingPointError, match=r"epoch \d+, batch \d+"):
        model.fit(X, y, optimizer=rv.SGD(model.parameters(), lr=1e30), epochs=5, verbose=0)


def test_terminate_on_nan_stops_quietly(digits, capsys):
    X, y = digits
    model = _model()
    h = model.fit(X, y, optimizer=rv.SGD(model.parameters(), lr=1e30), epochs=5,
                  callbacks=[rv.TerminateOnNaN()], verbose=0)
    assert "terminating" in capsys.readouterr().out
    assert len(h.epoch) < 5


def test_custom_callback_sees_every_hook(digits):
    X, y = digits
    seen = []

    class Recorder(rv.Callback):
        def on_train_begin(self, logs=None):
            seen.append("begin")

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", epoch, sorted(logs)))

        def on_batch_end(self, batch, logs=None):
            if batch == 0:
                seen.append(("batch", round(logs["loss"], 6) > 0))

        def on_train_end(self, logs=None):
            seen.append("end")

    _model().fit(X, y, epochs=2, batch_size=500, callbacks=[Recorder()], verbose=0)
    assert seen == ["begin", ("batch", True), ("epoch", 0, ["accuracy", "loss"]),
                    ("batch", True), ("epoch", 1, ["accuracy", "loss"]), "end"]


def test_initial_epoch_numbers_history(digits):
    X, y = digits
    model = _model()
    h = model.fit(X, y, epochs=2, initial_epoch=3, verbose=0)
    assert h.epoch == [3, 4] and model.epoch == 5


def test_verbose_modes(digits, capsys, monkeypatch):
    X, y = digits
    _model().fit(X, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "loss:" in out
    _model().fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    pytest.importorskip("tqdm")
    _model().fit(X, y, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "batch" in out  # tqdm bar
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    _model().fit(X, y, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert out.startswith("Epoch 1/1 - ") and "accuracy:" in out  # plain line without tqdm


def test_learning_rate_scheduler_steps_once_per_epoch(digits):
    X, y = digits
    model = _model()
    opt = rv.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = rv.StepLR(opt, step_size=1, gamma=0.5)
    model.fit(X, y, optimizer=opt, epochs=3, callbacks=[rv.LearningRateScheduler(sched)],
              verbose=0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    plateau = rv.ReduceLROnPlateau(opt, patience=0, factor=0.1)
    cb = rv.LearningRateScheduler(plateau, monitor="accuracy")
    with pytest.raises(ValueError, match="val_loss"):
        rv.LearningRateScheduler(plateau).on_epoch_end(0, {"loss": 1.0})
    model.fit(X, y, optimizer=opt, epochs=2, callbacks=[cb], verbose=0)
    with pytest.raises(TypeError, match="scheduler"):
        rv.LearningRateScheduler(opt)
