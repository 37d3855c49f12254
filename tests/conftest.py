"""Shared fixtures: random generators, dtype/thread/ISA matrices, an optional torch."""
import math

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
    """Every instruction set this CPU can run, for all kernel families at once (GEMM,
    activations, optimizer updates); restores the best one after."""
    from ranvier._kernels import _runtime

    if request.param not in _runtime.supported_isas():
        pytest.skip(f"this CPU cannot run the {request.param} kernel")
    before = _runtime.get_isa()
    ranvier.set_isa(request.param)
    yield request.param
    ranvier.set_isa(before)


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


# Finite differences, shared by the layer tests.
FD_STEP = 1e-6  # central-difference step (float64)
FD_MAX_COORDS = 120  # coordinates checked one by one; larger arrays get a random subset + directions
FD_BIG_SUBSET = 40  # subset size past the parallel cut-off (each evaluation is a full forward)


def check_gradient(objective, x, analytic, rng):
    """Compare ``analytic`` (d objective / d x) with central differences: every coordinate for
    small arrays, else a random subset of coordinates plus random directional derivatives.
    ``x`` is perturbed in place and restored."""
    assert x.dtype == np.float64 and analytic.shape == x.shape
    f0 = objective(x)
    atol = 1e-7 * (1.0 + abs(f0))  # rounding of the difference quotient is ~1e-10 * |f|
    flat, gflat = x.reshape(-1), analytic.reshape(-1)
    if x.size <= FD_MAX_COORDS:
        idx = np.arange(x.size)
    else:
        k = FD_MAX_COORDS if x.size < 32768 else FD_BIG_SUBSET
        idx = rng.choice(x.size, k, replace=False)
    num = np.empty(len(idx))
    for k, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + FD_STEP
        fp = objective(x)
        flat[i] = old - FD_STEP
        fm = objective(x)
        flat[i] = old
        num[k] = (fp - fm) / (2 * FD_STEP)
    np.testing.assert_allclose(gflat[idx], num, rtol=1e-6, atol=atol)
    if x.size > FD_MAX_COORDS:
        for _ in range(3):
            v = rng.standard_normal(x.shape)
            x0 = x.copy()
            x[...] = x0 + FD_STEP * v
            fp = objective(x)
            x[...] = x0 - FD_STEP * v
            fm = objective(x)
            x[...] = x0
            np.testing.assert_allclose(np.vdot(analytic, v), (fp - fm) / (2 * FD_STEP), rtol=1e-6,
                                       atol=atol * np.sqrt(x.size))
