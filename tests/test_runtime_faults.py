"""Faults people hit in real processes: fork after OpenMP, several Python threads on one model,
ranvier beside torch and scikit-learn, threadpoolctl. Every child runs under a timeout, so a
hang fails the test instead of hanging CI."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import ranvier as rv

TIMEOUT = 120


def run_child(code, env=None):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_fork_after_parallel_kernel_child_trains():
    """The parent runs a 2-thread GEMM (OpenMP team created), then forks; the child trains a
    model and returns its accuracy through a pipe. Bounded: a hang fails by timeout."""
    out = run_child("""
        import multiprocessing as mp
        import numpy as np
        import ranvier as rv
        from ranvier._kernels import matmul

        rv.set_num_threads(2)
        a = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
        out = np.empty_like(a)
        matmul.gemm(a, a, out, num_threads=2)        # big enough to run in parallel

        layer = rv.Dense(300, 300, seed=0)
        before = layer.forward(a)                    # public API: uses get_num_threads()

        def child(q):
            X, y = rv.datasets.load_digits()
            m = rv.Sequential([rv.Dense(64, 64, seed=0), rv.ReLU(), rv.Dense(64, 10, seed=1)])
            m.fit(X / 16, y, epochs=10, verbose=0, seed=0)
            again = layer.forward(a)                 # a GEMM big enough to go parallel
            q.put((m.evaluate(X / 16, y)["accuracy"], float(np.abs(again - before).max()),
                   rv.get_num_threads()))

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        acc, diff, child_threads = q.get(timeout=90)
        p.join(30)
        print(p.exitcode, acc, diff, child_threads, rv.get_num_threads())
    """)
    code, acc, diff, child_threads, parent_threads = out.split()
    assert code == "0" and float(acc) > 0.9 and float(diff) == 0.0
    assert child_threads == "1" and parent_threads == "2"  # the child runs serially


def test_four_threads_predict_same_answers():
    X, y = rv.datasets.load_digits()
    X = X / 16
    model = rv.Sequential([rv.Dense(64, 128, seed=0), rv.ReLU(), rv.Dense(128, 10, seed=1)])
    model.fit(X, y, epochs=2, verbose=0, seed=0)
    expected = model.predict_proba(X)
    results, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(20):
                got = model.predict_proba(X)
                if not np.array_equal(got, expected):
                    raise AssertionError(f"thread {i} got different probabilities")
            results[i] = got
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "predict hung in a thread"
    assert not errors, errors
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.parametrize("order", ["ranvier-first", "others-first"])
def test_import_beside_torch_and_sklearn(order):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    imports = ("import ranvier as rv\nimport torch\nimport sklearn.neural_network"
               if order == "ranvier-first" else
               "import torch\nimport sklearn.neural_network\nimport ranvier as rv")
    out = run_child(imports + """
import numpy as np
from ranvier._kernels import matmul
a = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
o = np.empty_like(a)
matmul.gemm(a, a, o, num_threads=2)
t = torch.from_numpy(a) @ torch.from_numpy(a)
from sklearn.neural_network import MLPClassifier
X = np.random.default_rng(1).standard_normal((200, 5)); y = (X[:, 0] > 0).astype(int)
MLPClassifier(max_iter=5).fit(X, y)
matmul.gemm(a, a, o, num_threads=2)
print(float(np.abs(o - t.numpy()).max()))
""")
    assert float(out.strip()) < 1e-3


@pytest.mark.quick
def test_threadpoolctl_sees_and_limits_ranvier():
    pytest.importorskip("threadpoolctl")
    out = run_child("""
        import ranvier as rv
        from ranvier._kernels import _runtime
        from threadpoolctl import threadpool_info, threadpool_limits
        libs = [d for d in threadpool_info() if d["user_api"] == "openmp"]
        print(len(libs) >= 1 if _runtime.openmp_enabled() else True)
        with threadpool_limits(limits=1, user_api="openmp"):
            print(rv.get_num_threads())
        print(rv.get_num_threads())
    """, env={"OMP_NUM_THREADS": "2"})
    seen, limited, after = out.split()
    assert seen == "True"
    if rv._config.config_dict()["openmp"]:
        assert limited == "1" and after == "2"
