"""Shared fixtures: random generators, dtype/thread/ISA matrices, an optional torch."""
import contextlib
import math

import numpy as np
import pytest

import _reference
import ranvier

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]
# Awkward sizes: 1, primes, and sizes just past the GEMM register and cache blocks.
AWKWARD = [1, 2, 5, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 257]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=THREADS, ids=["1thread", "2threads"])
def num_threads(request):
    """Run the test with ranvier set to 1 and then 2 threads; restores the default after."""
    ranvier.set_num_threads(request.param)
    yield request.param
    ranvier.set_num_threads(None)


# The instruction sets with kernels of their own in every family. avx512_bf16 runs the avx512
# tables everywhere but in the bf16 GEMM, whose tests cover it (test_kernels_bf16_gemm.py).
ISAS = ["generic", "avx2", "avx512"]


def _widest_isa():
    from ranvier._kernels import _runtime

    return [i for i in ISAS if i in _runtime.supported_isas()][-1]


@contextlib.contextmanager
def using_isa(name):
    """Run the block on ISA ``name`` (the test skips where this CPU cannot), then restore."""
    from ranvier._kernels import _runtime

    if name not in _runtime.supported_isas():
        pytest.skip(f"this CPU cannot run the {name} kernel")
    before = _runtime.get_isa()
    ranvier.set_isa(name)
    try:
        yield name
    finally:
        ranvier.set_isa(before)


@pytest.fixture(params=ISAS)
def isa(request):
    """Every instruction set this CPU can run, for all kernel families at once (GEMM,
    activations, optimizer updates); restores the best one after."""
    with using_isa(request.param):
        yield request.param


@pytest.fixture(params=["packed", "unpacked"])
def gemm_path(request):
    """Both GEMM paths for products of any size: packed panels (BLIS) or operands read in place
    (what small single-threaded products take)."""
    from ranvier._kernels import matmul

    before = matmul._set_unpacked_max_bytes(0.0 if request.param == "packed" else math.inf)
    yield request.param
    matmul._set_unpacked_max_bytes(before)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (pip install torch==2.13.0)")


# The finite-difference check lives with the other float64 references; older imports of it from
# conftest keep working.
check_gradient = _reference.check_gradient


# -- the quick subset ---------------------------------------------------------------------------
def _slow_variant(item):
    """A parametrized variant that the quick run leaves out: two threads, an ISA (or bf16 GEMM
    path) other than the best one, or a comparison with torch."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("num_threads", 1) != 1:
        return True
    if "isa" in params and params["isa"] != _widest_isa():
        return True
    if "path" in params:  # the bf16 GEMM's paths (test_kernels_bf16_gemm.py): the best alone
        from ranvier._kernels import _runtime

        if params["path"] != _runtime.best_isa():
            return True
    return "torch" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """`@pytest.mark.quick` selects a test for `pytest -m quick` in its cheap variants only: the
    mark is taken off the variants on two threads, on another ISA or against torch (before the
    mark plugin selects)."""
    for item in items:
        if item.get_closest_marker("quick") is not None and _slow_variant(item):
            item.own_markers[:] = [m for m in item.own_markers if m.name != "quick"]
