"""show_config, thread control (set/get_num_threads, OMP_NUM_THREADS) and the GEMM kernel."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import ranvier as rv
from ranvier._config import config_dict


def _child(code, **env_extra):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(rv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    for k in ("OMP_NUM_THREADS", "RANVIER_ISA"):
        env.pop(k, None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


def _report(**kw):
    buf = io.StringIO()
    rv.show_config(file=buf, **kw)
    return buf.getvalue()


def test_show_config_content():
    text = _report()
    cfg = config_dict()
    assert text.splitlines()[0] == f"ranvier {rv.__version__}"
    openmp = re.search(r"^\s*OpenMP:\s+(\S+)", text, flags=re.M)
    assert openmp and openmp.group(1) == ("yes" if cfg["openmp"] else "no")
    threads = re.search(r"^\s*threads:\s+(\d+)", text, flags=re.M)
    assert threads and int(threads.group(1)) == rv.get_num_threads()
    gemm = re.search(r"^\s*kernels \(ISA\):\s+(\w+) \(supported: ([\w, ]+)\)", text, flags=re.M)
    assert gemm and gemm.group(1) == rv.get_isa()
    assert rv.get_isa() in gemm.group(2).split(", ")
    assert re.search(r"^\s*python:\s+" + re.escape(sys.version.split()[0]), text, flags=re.M)


def test_show_config_prints_to_stdout_and_follows_thread_setting(capsys):
    try:
        rv.set_num_threads(1)
        rv.show_config()
        out = capsys.readouterr().out
        assert re.search(r"^\s*threads:\s+1 ", out, flags=re.M), out
        rv.set_num_threads(3)
        assert re.search(r"^\s*threads:\s+3 ", _report(), flags=re.M)
    finally:
        rv.set_num_threads(None)
    assert out.startswith("ranvier ")


def test_set_get_num_threads_roundtrip():
    default = rv.get_num_threads()
    assert default >= 1
    try:
        for n in (1, 2, 7):
            rv.set_num_threads(n)
            assert rv.get_num_threads() == n
    finally:
        rv.set_num_threads(None)
    assert rv.get_num_threads() == default == config_dict()["omp_max_threads"]


def test_default_thread_count_is_the_cpu_count():
    """Without OMP_NUM_THREADS, an OpenMP build uses every CPU it may run on (one without OpenMP
    uses one thread)."""
    cfg = config_dict()
    res = _child("import ranvier; print(ranvier.get_num_threads())")
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == (cfg["num_procs"] if cfg["openmp"] else 1)


@pytest.mark.parametrize("n", ["1", "2"])
def test_omp_num_threads_respected(n):
    res = _child("import ranvier, io; print(ranvier.get_num_threads());"
                 "b = io.StringIO(); ranvier.show_config(file=b); print(b.getvalue())",
                 OMP_NUM_THREADS=n)
    assert res.returncode == 0, res.stderr
    first, report = res.stdout.split("\n", 1)
    expected = int(n) if config_dict()["openmp"] else 1
    assert int(first) == expected
    assert re.search(rf"^\s*threads:\s+{expected} ", report, flags=re.M)


def test_set_num_threads_overrides_omp_num_threads():
    res = _child("import ranvier; ranvier.set_num_threads(2); print(ranvier.get_num_threads())",
                 OMP_NUM_THREADS="1")
    assert res.returncode == 0 and res.stdout.strip() == "2"


def test_get_isa_and_set_isa(isa, rng):
    assert rv.get_isa() == isa
    assert re.search(rf"kernels \(ISA\):\s+{isa} ", _report())
    layer = rv.Dense(65, 33, dtype=np.float64, seed=0)
    x = rng.normal(size=(17, 65))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.data.T, rtol=1e-12, atol=1e-13)


def test_set_isa_rejects_unknown_name():
    before = rv.get_isa()
    with pytest.raises(ValueError, match="bogus"):
        rv.set_isa("bogus")
    assert rv.get_isa() == before


def test_one_isa_list_and_one_choice_for_every_kernel_family():
    """The ISA names come from the C list (isa.h) and the active ISA lives in one place: no
    kernel module keeps a choice of its own."""
    from ranvier._kernels import _runtime, activations, matmul, optimizers

    assert _runtime.ISA_NAMES == ("generic", "avx2", "avx512", "avx512_bf16")
    for mod in (activations, matmul, optimizers):
        assert not hasattr(mod, "set_isa") and not hasattr(mod, "get_isa"), mod.__name__
    assert _runtime.best_isa() == _runtime.supported_isas()[-1]


def test_ranvier_isa_environment_variable():
    code = "import ranvier; from ranvier._kernels import _runtime; print(ranvier.get_isa())"
    res = _child(code, RANVIER_ISA="generic")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "generic"
    res = _child("import ranvier", RANVIER_ISA="bogus")
    assert res.returncode != 0 and "ValueError" in res.stderr and "bogus" in res.stderr


def test_show_config_reports_the_fork_mode(monkeypatch):
    """The fork line says what a forked child can do with threads; a runtime that cannot release
    its pool (pretended here) reads differently from one that can."""
    from ranvier import _config
    from ranvier._kernels import _runtime

    line = re.search(r"^\s*fork:\s+(.+)$", _report(), flags=re.M)
    assert line and line.group(1) == config_dict()["fork"] == _config.fork_mode()
    if not _runtime.openmp_enabled():
        assert line.group(1).startswith("serial build")
        return
    monkeypatch.setattr(_config, "_release_pool_at_fork", True)
    released = re.search(r"^\s*fork:\s+(.+)$", _report(), flags=re.M).group(1)
    monkeypatch.setattr(_config, "_release_pool_at_fork", False)
    kept = re.search(r"^\s*fork:\s+(.+)$", _report(), flags=re.M).group(1)
    assert released == "pool released before fork (children may use threads)"
    assert kept == "child stays on 1 thread (this OpenMP runtime cannot release its pool)"
