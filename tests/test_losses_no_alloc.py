"""No allocation per training step for the elementwise losses, and none per kernel call.

test_kernels_dense checks a cross-entropy model; here the same for MSE, BCEWithLogits, Huber and
L1 models, and, at the kernel level, that a loss or norm call's traced peak does not grow with the
array length (the partial sums live on the stack, not in an array allocated per call).
"""
import tracemalloc

import numpy as np
import pytest

import ranvier as rv
from _assert import assert_fit_allocates_nothing
from ranvier._kernels import losses, optimizers


def _peak_growth(fn):
    """Bytes the traced peak rises above the start while fn() runs (fn warmed up first)."""
    fn()
    tracemalloc.start()
    try:
        growth = 0
        for _ in range(3):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            fn()
            growth = max(growth, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    return growth


@pytest.mark.parametrize("loss", [rv.MSELoss(), rv.BCEWithLogitsLoss(), rv.HuberLoss(delta=0.5),
                                  rv.L1Loss()], ids=["mse", "bce_with_logits", "huber", "l1"])
def test_training_step_allocates_no_arrays_after_first_batch(rng, loss):
    """As test_kernels_dense's cross-entropy case: 256 outputs at batch 2048 make every
    batch-sized array (the loss gradient included) 2 MB, so one allocated per step would lift the
    traced peak past the 1 MB left for per-fit and per-epoch bookkeeping."""
    X = rng.standard_normal((4096, 64)).astype(np.float32)
    y = rng.random((4096, 256)).astype(np.float32)     # in [0, 1]: valid for BCEWithLogits too
    model = rv.Sequential([rv.Dense(64, 128, seed=1), rv.ReLU(), rv.Dense(128, 256, seed=2)])
    opt = rv.SGD(model.parameters(), lr=0.01, momentum=0.9)
    assert_fit_allocates_nothing(model, X, y, type(loss).__name__, loss=loss, optimizer=opt,
                                 batch_size=2048)


KERNELS = {
    "mse": lambda p, t, g: losses.mse(p, t, g, 2, 1.0),
    "bce_with_logits": lambda p, t, g: losses.bce_with_logits(p, t, g, None, 2, 1.0),
    "bce": lambda p, t, g: losses.bce(p, t, g, 2, 1.0),
    "huber": lambda p, t, g: losses.huber(p, t, g, 0.5, 2, 1.0),
    "l1": lambda p, t, g: losses.l1(p, t, g, 2, 1.0),
    "norm": lambda p, t, g: optimizers.norm_accumulate(p, 2.0, 2),
}


@pytest.mark.quick
@pytest.mark.parametrize("name", list(KERNELS))
def test_reduction_kernels_allocate_nothing_that_grows_with_the_input(name):
    """What a call allocates (argument views) is the same for 320 elements and for 2.4M: a
    partial-sum array per call (600 chunks here) would add ~5 KB."""
    rng = np.random.default_rng(0)
    growth = {}
    for n in (320, 600 * 4096):
        p = rng.random(n).astype(np.float32)
        t = rng.random(n).astype(np.float32)
        g = np.empty_like(p)
        growth[n] = _peak_growth(lambda: KERNELS[name](p, t, g))
    assert growth[600 * 4096] == growth[320], growth
