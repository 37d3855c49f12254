"""Data-parallel fit over MPI (ranvier.distributed): scripts in tests/mpi run under ``mpiexec -n N``
(OMP_NUM_THREADS=1 per rank) and write every rank's results; this file compares them with one
process on the full batch and across ranks. Skipped where mpi4py or mpiexec is missing.

Not bitwise equal to one process: each rank's gradient sums its share of the batch's rows in the
GEMMs, and the all-reduce adds the shares, so the float additions are grouped differently; the
difference is rounding, compared relative to each tensor's largest magnitude (SCALED_RTOL: 1e-5
float32, 1e-12 float64). Ranks are bitwise equal to each other: they apply the same reduced
gradients."""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import ranvier as rv
from _assert import SCALED_RTOL, assert_close_to_scale
from mpi._common import build, load_data, mnist_available

HERE = os.path.dirname(os.path.abspath(__file__))


def _mpiexec():
    """mpiexec next to this Python (a venv with the mpich wheel), else on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.access(local, os.X_OK) else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason="distributed training needs mpi4py and mpiexec: pip install 'ranvier[mpi]'")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # the ranvier under test (src/ in a checkout, site-packages when installed) for the children
    root = os.path.dirname(os.path.dirname(os.path.abspath(rv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_mpi(n, script, *args, timeout=240):
    """``mpiexec -n n python tests/mpi/script args``; the CompletedProcess and its wall time."""
    cmd = [_mpiexec(), "-n", str(n), sys.executable, os.path.join(HERE, "mpi", script),
           *map(str, args)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    return res, time.perf_counter() - t0


def train(tmp_path, n, *args, timeout=240):
    """Every rank's results of tests/mpi/train.py, as dicts of arrays."""
    out = tmp_path / f"n{n}"
    out.mkdir(parents=True, exist_ok=True)
    res, _ = run_mpi(n, "train.py", out, *args, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    ranks = []
    for r in range(n):
        with np.load(out / f"rank{r}.npz", allow_pickle=False) as f:
            ranks.append({k: f[k] for k in f.files})
    return ranks


def one_process(data, n, dtype, epochs, batch_size, model="mlp", validation_split=0.0,
                reduction="mean"):
    """The same training in this process, without MPI: the reference (the distributed script
    builds rank 0's model with seed 1, which the broadcast gives every rank)."""
    X, y, _, _ = load_data(data, n, dtype)
    m = build(model, X.shape[1], dtype, seed=1)
    history = m.fit(X, y, loss=rv.CrossEntropyLoss(reduction=reduction),
                    optimizer=rv.Adam(m.parameters(), lr=1e-3),
                    epochs=epochs, batch_size=batch_size, seed=5, verbose=0,
                    validation_split=validation_split)
    return m, history


def assert_ranks_bitwise_equal(ranks):
    for r, other in enumerate(ranks[1:], 1):
        assert other.keys() == ranks[0].keys()
        np.testing.assert_array_equal(other["digests"], ranks[0]["digests"],
                                      err_msg=f"rank {r}'s parameters differ after some step")
        for k in ranks[0]:
            np.testing.assert_array_equal(other[k], ranks[0][k], err_msg=f"rank {r}: {k}")


def assert_matches_one_process(rank0, model, history, dtype):
    for k, v in model.state_dict().items():
        assert_close_to_scale(rank0[f"param.{k}"], v, np.dtype(dtype), k)
    for k, v in history.history.items():
        np.testing.assert_allclose(rank0[f"history.{k}"], v, rtol=SCALED_RTOL[np.dtype(dtype)],
                                   err_msg=k)


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_ranks_equal_one_process_on_mnist_with_adam(tmp_path, dtype):
    """The issue's acceptance: 2 ranks, global batch 128, 2 epochs of MNIST with Adam."""
    if not mnist_available():
        pytest.skip("real MNIST not found (set RANVIER_DATA_DIR)")
    ranks = train(tmp_path, 2, "--data", "mnist", "--model", "mnist", "--dtype", dtype,
                  "--epochs", 2, "--batch-size", 128, timeout=600)
    assert_ranks_bitwise_equal(ranks)
    assert len(ranks[0]["digests"]) == 2 * 469  # every step checked
    model, history = one_process("mnist", None, dtype, 2, 128, model="mnist")
    assert_matches_one_process(ranks[0], model, history, dtype)
    assert history.history["accuracy"][-1] > 0.95


@needs_mpi
@pytest.mark.parametrize("n_ranks,n,batch_size,reduction", [
    pytest.param(2, 1001, 128, "mean", id="even-shares", marks=pytest.mark.quick),
    pytest.param(2, 1001, 125, "mean", id="last-batch-of-one-row"),
    pytest.param(3, 1001, 127, "mean", id="three-ranks-uneven"),
    pytest.param(2, 13, 32, "mean", id="one-batch-odd"),
    pytest.param(3, 1001, 125, "sum", id="sum-reduction")])
def test_uneven_shares_equal_one_process(tmp_path, n_ranks, n, batch_size, reduction):
    """Global batches that do not divide among the ranks (a rank may get one row more, or none)
    are weighted by their rows: still the one-process result; with validation reduced too."""
    ranks = train(tmp_path, n_ranks, "--n", n, "--dtype", "float64", "--epochs", 2,
                  "--batch-size", batch_size, "--validation-split", 0.1, "--reduction", reduction)
    assert_ranks_bitwise_equal(ranks)
    model, history = one_process("synthetic", n, "float64", 2, batch_size, validation_split=0.1,
                                 reduction=reduction)
    assert_matches_one_process(ranks[0], model, history, "float64")


@needs_mpi
def test_one_rank_is_bitwise_the_one_process_fit(tmp_path):
    """The weights bitwise; the loss to float32 rounding, as each step's loss sum travels in a
    slot of the (float32) gradient buffer."""
    (rank0,) = train(tmp_path, 1, "--dtype", "float32", "--epochs", 2, "--batch-size", 64)
    model, history = one_process("synthetic", 1001, "float32", 2, 64)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(rank0[f"param.{k}"], v, err_msg=k)
    np.testing.assert_array_equal(rank0["history.accuracy"], history.history["accuracy"])
    np.testing.assert_allclose(rank0["history.loss"], history.history["loss"], rtol=1e-7)


@needs_mpi
def test_batchnorm_dropout_and_early_stopping_ranks_stay_equal(tmp_path):
    """BatchNorm normalises by each rank's share (as DDP without SyncBatchNorm) and its running
    statistics are averaged at every epoch's end; Dropout draws each rank's masks (seeded per
    rank); EarlyStopping sees the global val_loss: ranks stay bitwise equal, buffers included, and
    stop at the same epoch."""
    ranks = train(tmp_path, 2, "--model", "bn", "--epochs", 30, "--batch-size", 64,
                  "--validation-split", 0.1, "--patience", 0)
    assert_ranks_bitwise_equal(ranks)
    assert np.isfinite(ranks[0]["history.val_loss"]).all()
    assert len(ranks[0]["history.val_loss"]) < 30  # stopped early, together


@needs_mpi
def test_evaluate_and_predict_on_shards_reduce(tmp_path):
    ranks = train(tmp_path, 2, "--dtype", "float64", "--epochs", 1, "--evaluate")
    assert_ranks_bitwise_equal(ranks)
    model, _ = one_process("synthetic", 1001, "float64", 1, 128)
    _, _, Xt, yt = load_data("synthetic", 1001, "float64")
    want = model.evaluate(Xt, yt)
    for k, v in want.items():
        np.testing.assert_allclose(ranks[0][f"evaluate.{k}"], v, rtol=1e-12, err_msg=k)
    np.testing.assert_array_equal(ranks[0]["predict"], model.predict(Xt))
    np.testing.assert_allclose(ranks[0]["predict_proba"], model.predict_proba(Xt), rtol=1e-12,
                               atol=1e-15)


@needs_mpi
def test_checkpoint_from_rank_0_resumes_on_one_or_two_ranks(tmp_path):
    ckpt = tmp_path / "ckpt-{epoch}.safetensors"
    train(tmp_path, 2, "--dtype", "float64", "--epochs", 1, "--checkpoint", ckpt)
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert written == ["ckpt-1.safetensors"]
    path = tmp_path / "ckpt-1.safetensors"
    # resumed in this process (one rank, no MPI) and on two ranks: the same second epoch
    model = rv.load(path)
    X, y, _, _ = load_data("synthetic", 1001, "float64")
    model.fit(X, y, loss=rv.CrossEntropyLoss(), epochs=1, batch_size=128, seed=5, verbose=0,
              initial_epoch=model.epoch)
    assert model.epoch == 2
    ranks = train(tmp_path / "resumed", 2, "--dtype", "float64", "--epochs", 1, "--resume", path)
    assert_ranks_bitwise_equal(ranks)
    for k, v in model.state_dict().items():
        assert_close_to_scale(ranks[0][f"param.{k}"], v, np.dtype(np.float64), k)


@needs_mpi
@pytest.mark.parametrize("mode,expect,rc", [
    ("raise", "rank 1 of 2 failed", None),
    ("bad_shard", "rank 1 of 2 failed", None),
    ("nan_loss", "FloatingPointError: training diverged", 3),
    ("shapes", "rank 1 differs from rank 0 at the start of fit: X", 3),
    ("weighted", "with class weights and reduction='mean'", 3),
    ("optimizer", "rank 1 differs from rank 0 at the start of fit: optimizer is Adam with [{'lr': 0.01", 3),
])
def test_a_failing_rank_ends_every_rank(mode, expect, rc):
    """Never a hang: an error on one rank aborts the job (printed with its rank); errors the ranks
    reach together (a NaN global loss, mismatched data) are raised on every rank."""
    res, seconds = run_mpi(2, "faults.py", mode, timeout=60)
    text = res.stdout + res.stderr
    assert res.returncode != 0, text
    assert expect in text, text
    assert "finished" not in text
    if rc is not None:  # raised on both ranks, each exits with the script's code
        assert text.count(expect) == 2, text
    assert seconds < 30, f"took {seconds:.1f}s to end"


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    from ranvier import distributed

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails
    monkeypatch.setattr(distributed, "_comm", None)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.local_range(10) == (0, 10)
    with pytest.raises(ImportError, match=r"pip install 'ranvier\[mpi\]'"):
        distributed.init()
    model = rv.Sequential([rv.Dense(3, 2, seed=0)])
    X = np.zeros((4, 3), np.float32)
    with pytest.raises(ImportError, match="mpi4py"):
        model.fit(X, np.zeros(4, np.int64), epochs=1, verbose=0, distributed=True)
    with pytest.raises(ImportError, match="mpi4py"):
        model.predict(X, distributed=True)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        distributed.init(comm="COMM_WORLD")


@needs_mpi
def test_cli_train_distributed(tmp_path):
    """``mpiexec -n 2 ranvier train --distributed``: rank 0 alone prints and writes the model,
    which equals a one-process run's to rounding."""
    out = tmp_path / "digits.safetensors"
    args = ["train", "--data", "digits", "--hidden", "32", "--epochs", "3", "--batch-size", "64",
            "--verbose", "2", "--out", out]
    cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "ranvier.cli", *args, "--distributed"]
    res = subprocess.run(list(map(str, cmd)), env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("training 64-32-10 MLP") == 1 and ", 2 ranks" in res.stdout
    assert res.stdout.count("Epoch 3/3") == 1 and res.stdout.count("saved the model") == 1
    single = tmp_path / "single.safetensors"
    res1 = subprocess.run([sys.executable, "-m", "ranvier.cli", *map(str, args[:-1]), single],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert res1.returncode == 0, res1.stderr
    got, want = rv.load(out).state_dict(), rv.load(single).state_dict()
    for k, v in want.items():
        assert_close_to_scale(got[k], v, np.dtype(np.float32), k)
