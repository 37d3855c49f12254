"""``import ranvier`` is light: numpy and the compiled kernels, nothing heavy."""
import os
import subprocess
import sys

import pytest

import ranvier

HEAVY = ("torch", "sklearn", "matplotlib", "scipy", "pandas", "tqdm", "tensorflow", "jax",
         "mpi4py")


def _env():
    env = dict(os.environ)
    # the directory holding the ranvier under test (src/ in a dev checkout, site-packages when
    # installed), so the child imports the same package
    root = os.path.dirname(os.path.dirname(os.path.abspath(ranvier.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _run(code):
    return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=60)


def test_import_ranvier_imports_nothing_heavy():
    code = ("import sys, ranvier\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert 'numpy' in sys.modules\n"
            "print('ok', ranvier.__file__)")
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok ")
    # the child imported the same package as this process
    assert os.path.samefile(res.stdout.split(" ", 1)[1].strip(), ranvier.__file__)


def test_using_the_api_stays_light():
    code = ("import io, sys, numpy as np, ranvier as rv\n"
            "X, y = rv.datasets.load_digits()\n"
            "m = rv.Sequential([rv.Dense(64, 8, seed=0), rv.ReLU(), rv.Dense(8, 10, seed=1)])\n"
            "m.fit(X[:64] / 16, y[:64], epochs=1, verbose=0)\n"
            "m.predict(X[:4]); rv.show_config(file=io.StringIO())\n"
            "import ranvier.cli\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = _run(code)
    assert res.returncode == 0, res.stderr


@pytest.mark.quick
def test_public_names():
    assert ranvier.__version__ == "0.1.0"
    for name in ranvier.__all__:
        assert hasattr(ranvier, name), name
    for name in ("Dense", "ReLU", "Sigmoid", "Tanh", "Softmax", "CrossEntropyLoss", "MSELoss",
                 "SGD", "Adam", "AdamW", "Sequential", "History", "show_config",
                 "set_num_threads", "get_num_threads", "get_isa", "datasets"):
        assert name in ranvier.__all__, name
    assert callable(ranvier.datasets.load_digits)
    assert callable(ranvier.datasets.train_test_split)
