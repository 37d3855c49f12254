"""Shared fixtures: random generators, dtype/thread/ISA matrices, an optional torch."""
import numpy as np
import pytest

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


@pytest.fixture(params=["generic", "avx2", "avx512"])
def isa(request):
    """Every GEMM micro-kernel this CPU can run; restores the best one after."""
    from ranvier._kernels import matmul

    if request.param not in matmul.supported_isas():
        pytest.skip(f"this CPU cannot run the {request.param} kernel")
    before = matmul.get_isa()
    matmul.set_isa(request.param)
    yield request.param
    matmul.set_isa(before)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (pip install torch==2.13.0)")
