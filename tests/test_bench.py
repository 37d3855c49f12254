"""``ranvier bench`` (src/ranvier/bench/): the shipped benchmark runs from the package, writes
the tables, JSON and chart it promises, and its libraries do the same work: ranvier, the NumPy
MLP and PyTorch start from the same weights on the same batches, so their loss curves agree to
rounding. Timings are not asserted (speed is measured, not tested)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ranvier.bench import main
from ranvier.bench._common import synthetic_mnist

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One smoke run of the GEMM and end-to-end sections on one thread (PyTorch too when it is
    installed), with its JSON, its printed tables and its exit status."""
    out = tmp_path_factory.mktemp("bench")
    libs = "ranvier,numpy" + (",torch" if HAVE_TORCH else "")
    argv = ["--quick", "--only", "gemm,e2e", "--threads", "1", "--libs", libs, "--no-progress",
            "--json", str(out / "r.json")] + (["--plot", str(out / "r.png")] if HAVE_MPL else [])
    proc = subprocess.run([sys.executable, "-m", "ranvier", "bench"] + argv,
                          capture_output=True, text=True, timeout=900)
    with open(out / "r.json") as f:
        res = json.load(f)
    return proc, res, out


def test_the_run_succeeds_and_prints_the_tables(quick_run):
    proc, res, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for heading in ("## 1. GEMM", "## 3. End to end training", "ranvier/NumPy"):
        assert heading in text
    assert res["machine"]["cpu"] in text and res["machine"]["ranvier_isa"] in text
    assert res["config"]["threads"] == [1] and res["config"]["mode"] == "quick"
    if HAVE_MPL:
        with open(out / "r.png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_gemm_rows_are_right_and_complete(quick_run):
    _, res, _ = quick_run
    rows = res["gemm"]["rows"]
    names = {r["name"] for r in rows}
    assert {"L1 fwd X@W.T", "L2 bwd dY@W", "L3 bwd dY.T@X"} <= {n.split(" B=")[0] for n in names}
    for r in rows:
        assert r["ranvier_ok"], r
        assert r["ranvier"]["gflops"] > 0 and r["numpy"]["gflops"] > 0
        assert r["ratio_vs_numpy"] == pytest.approx(r["ranvier"]["gflops"] / r["numpy"]["gflops"])
        assert (r.get("torch") is not None) == HAVE_TORCH


def test_libraries_follow_the_same_loss_curve(quick_run):
    """Same initial weights, same batches: ranvier, NumPy (float32) and PyTorch take the same
    steps. Measured apart by ~1e-7 relative after 50 Adam steps; 1e-4 leaves room for the
    summation orders of the three GEMMs, not for a different step."""
    _, res, _ = quick_run
    rows = res["e2e"]["rows"]
    assert {(r["task"], r["optimizer"]) for r in rows} == {
        (t, o) for t in ("digits", "mnist") for o in ("sgd", "adam")}
    for r in rows:
        ref = np.array(r["ranvier"]["loss_curve"])
        assert len(ref) >= 10 and np.all(np.isfinite(ref))
        assert ref[-5:].mean() < ref[:5].mean()          # it learns
        for lib in ("numpy",) + (("torch",) if HAVE_TORCH else ()):
            other = np.array(r[lib]["loss_curve"])
            np.testing.assert_allclose(other, ref, rtol=1e-4, err_msg=f"{lib} {r['task']} "
                                       f"{r['optimizer']}")
        assert r["ranvier"]["test_accuracy"] == pytest.approx(r["numpy"]["test_accuracy"],
                                                             abs=0.02)


def test_conv_section_times_every_pass_of_every_layer():
    from ranvier.bench import conv, report

    res = conv.run(threads=(1,), batch=2, repeats=1, log=lambda line: None)
    assert {(r["layer"], r["pass"]) for r in res["rows"]} == {
        (layer[0], p) for layer in conv.LAYERS for p in conv.PASSES}
    for r in res["rows"]:
        assert r["ranvier"]["median"] >= 0 and (r["torch"] is not None) == HAVE_TORCH
    assert "| lenet conv1" in report.conv_md(res)


def test_cnn_section_trains_both_libraries_the_same_way():
    """Same weights, same batches: ranvier's fit and PyTorch's loop end with the same mean loss
    (to float32 rounding of the two libraries' summation orders)."""
    from ranvier.bench import cnn_train, report

    res = cnn_train.run(threads=(1,), repeats=1, step_scale=0.02, log=lambda line: None)
    assert [r["net"] for r in res["rows"]] == list(cnn_train.NETS)
    for r in res["rows"]:
        assert r["steps"] == max(1, int(cnn_train.NETS[r["net"]]["steps"] * 0.02))
        assert np.isfinite(r["ranvier"]["loss"]) and r["gemm_floor_ms_per_step"] > 0
        if HAVE_TORCH:
            assert r["torch"]["loss"] == pytest.approx(r["ranvier"]["loss"], rel=1e-4)
            assert r["time_ratio_vs_torch"] > 0
        else:
            assert "torch" not in r
    assert "| lenet5 | 1 |" in report.cnn_md(res)


def test_cnn_gemm_shapes_are_the_step_products():
    """examples/mnist at batch 2: conv1 (1->32 k3, 26x26 out) has no input gradient, conv2
    (32->64 k3, 24x24 out) has all three products, then Dense 9216-128 and 128-10."""
    from ranvier.bench.cnn_train import NETS, gemm_shapes

    assert gemm_shapes(NETS["examples/mnist"]["layers"], batch=2) == [
        ("fwd", 2 * 26 * 26, 32, 9), ("bwd-w", 32, 9, 2 * 26 * 26),
        ("fwd", 2 * 24 * 24, 64, 288), ("bwd-data", 2 * 24 * 24, 288, 64),
        ("bwd-w", 64, 288, 2 * 24 * 24),
        ("fwd", 2, 128, 9216), ("bwd-data", 2, 9216, 128), ("bwd-w", 128, 9216, 2),
        ("fwd", 2, 10, 128), ("bwd-data", 2, 128, 10), ("bwd-w", 10, 128, 2)]


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_sklearn_section_fits_both_the_same_way():
    from ranvier.bench import report, sklearn_fit

    res = sklearn_fit.run(threads=(1,), n_train=300, epochs=1, lbfgs_iter=2, repeats=1,
                          log=lambda line: None)
    assert [r["solver"] for r in res["rows"]] == ["adam", "lbfgs"]
    for r in res["rows"]:
        assert r["ranvier"]["n_iter"] == r["sklearn"]["n_iter"]
        assert r["ranvier"]["dtype"] == "float32"   # float32 data trains in float32
        assert r["speed_per_iter_vs_sklearn"] > 0
    # scikit-learn's lbfgs hands its float64 result back as the weights; adam keeps float32
    assert res["rows"][0]["sklearn"]["dtype"] == "float32"
    assert "| adam | 1 | 300 |" in report.sklearn_md(res)


def test_synthetic_mnist_is_mnist_shaped_and_learnable():
    Xtr, ytr, Xte, yte, _ = synthetic_mnist(n_train=600, n_test=100)
    assert Xtr.shape == (600, 784) and Xte.shape == (100, 784) and Xtr.dtype == np.float32
    assert 0 <= Xtr.min() and Xtr.max() < 1 and 0.05 < (Xtr > 0).mean() < 0.4
    assert set(np.unique(ytr)) == set(range(10)) and ytr.dtype == np.int64
    np.testing.assert_array_equal(synthetic_mnist(n_train=600, n_test=100)[1], ytr)


def test_bad_arguments_are_refused(capsys):
    for argv in (["--only", "nonsense"], ["--threads", "0"], ["--full", "--quick"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "--only" in capsys.readouterr().err


def test_the_cli_lists_bench():
    out = subprocess.run([sys.executable, "-m", "ranvier", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "bench" in out
    out = subprocess.run([sys.executable, "-m", "ranvier", "bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--full" in out and "--json" in out and "--plot" in out


def test_make_bench_writes_one_folder_per_cpu_kind(tmp_path):
    """benchmarks/run_all.py (make bench) hands the suite its results folder by CPU kind."""
    from ranvier.bench._common import cpu_record, results_dir

    kind = cpu_record()["kind"]
    assert results_dir(str(tmp_path)) == os.path.join(str(tmp_path), kind)
    assert results_dir(str(tmp_path), quick=True) == os.path.join(str(tmp_path), kind, "quick")


def test_called_from_other_code_it_never_replaces_the_process(tmp_path, monkeypatch):
    """The bench re-executes itself without OpenBLAS's overrides only when it owns the process
    (the command line); called from a notebook or a test it keeps them and says so."""
    def refuse(*args):
        raise AssertionError(f"the bench tried to re-execute its caller: {args[1]}")

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(os, "execve", refuse)
    with pytest.raises(SystemExit):   # bad arguments: refused before anything else
        main(["--only", "nonsense"], own_process=True)
    assert main(["--quick", "--only", "elementwise", "--threads", "1", "--libs", "ranvier",
                 "--no-progress", "--json", str(tmp_path / "r.json")]) in (0, None)
    with open(tmp_path / "r.json") as f:
        assert "OPENBLAS_CORETYPE=Haswell" in json.load(f)["machine"]["kept_env"]


def test_summary_table_takes_each_cpu_kinds_headline_ratios():
    from ranvier.bench import report

    def run(kind, ratio):
        gemm = [{"dtype": "float32", "threads": t, "kind": k, "ratio_vs_numpy": ratio,
                 "ratio_vs_torch": 2 * ratio} for t in (1, 2) for k in ("mlp", "square")]
        e2e = [{"task": "mnist", "optimizer": "adam", "batch": b, "threads": t,
                "time_ratio_vs_numpy": 0.5, "time_ratio_vs_torch": 0.25}
               for b in (32, 512) for t in (1, 2)]
        cnn = [{"net": "lenet5", "threads": 1, "time_ratio_vs_torch": 0.3}]
        return {"machine": {"cpu_kind": kind, "cpu_detail": {"model_name": "X", "family": 25,
                                                            "model": 17, "flags": ["avx2"]}},
                "config": {"started": "2026-12-02T10:00:00"}, "gemm": {"rows": gemm},
                "e2e": {"rows": e2e}, "cnn": {"rows": cnn}}

    text = report.summary_md([run("amd-zen4", 1.25), run("intel-sapphirerapids", 0.8)])
    lines = text.splitlines()
    assert lines[0] == ("| measure | amd-zen4 1 thr | amd-zen4 2 thr | intel-sapphirerapids 1 thr"
                        " | intel-sapphirerapids 2 thr |")
    assert "| GEMM f32 squares, GFLOP/s vs NumPy | 1.25x | 1.25x | 0.80x | 0.80x |" in lines
    assert "| MNIST MLP epoch, Adam b32, time vs PyTorch | 0.25x | 0.25x | 0.25x | 0.25x |" in lines
    assert "| LeNet-5 steps, time vs PyTorch | 0.30x | - | 0.30x | - |" in lines
    assert "amd-zen4 2026-12-02 (X family 25 model 17, avx2)" in text


def test_bf16_gemm_rows_are_right_and_rendered():
    """The bf16 GEMM section (``--only bf16``): every row checked against its error bound, timed
    for ranvier bf16, ranvier float32 (and PyTorch bf16), with the path that ran."""
    from ranvier._kernels import bf16
    from ranvier.bench import gemm_bf16, report

    libs = ("ranvier", "torch") if HAVE_TORCH else ("ranvier",)
    res = gemm_bf16.run(quick=True, threads=(1,), batches=(8,), squares=(64,), libs=libs,
                        log=lambda *_: None)
    rows = res["rows"]
    assert len(rows) == 10 and res["path"] == bf16._gemm_path()
    for r in rows:
        assert r["ranvier_ok"] and r["bf16_path"] == res["path"], r
        assert r["ranvier"]["gflops"] > 0 and r["ranvier_f32"]["gflops"] > 0
        assert r["ratio_vs_ranvier_f32"] == pytest.approx(
            r["ranvier"]["gflops"] / r["ranvier_f32"]["gflops"])
        assert (r.get("torch") is not None) == HAVE_TORCH
    text = report.gemm_bf16_md(res)
    assert res["path"] in text and "bf16/ranvier float32" in text
