"""Assertions shared by the tests: elementwise error bounds with a message naming the worst entry,
closeness relative to the largest magnitude, and output buffers with NaN sentinels that catch
writes past either end."""
import tracemalloc

import numpy as np

# Optimizer results against references: relative to the largest magnitude of the compared array
# (the two sides round in different places over many steps).
SCALED_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_within(got, ref, bound, what):
    """|got - ref| <= bound elementwise (``bound`` broadcast to ref's shape), got finite; the
    message names the count of bad entries and the worst one relative to its bound."""
    got64 = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    bound = np.broadcast_to(np.asarray(bound, np.float64), ref.shape)
    assert got64.shape == ref.shape, f"{what}: shape {got64.shape} vs {ref.shape}"
    assert np.isfinite(got64).all(), f"{what}: non-finite values"
    err = np.abs(got64 - ref)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0)),
                             err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} entries off; worst at {i}: "
                             f"got {got64[i]!r}, expected {ref[i]!r}, bound {bound[i]:.3e}")


def assert_close_to_scale(got, ref, dtype, what):
    """max |got - ref| <= SCALED_RTOL[dtype] * max |ref|, got finite and of ref's shape."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values"
    scale = max(np.abs(ref).max(), np.finfo(dtype).tiny)
    err = np.abs(got - ref).max()
    tol = SCALED_RTOL[np.dtype(dtype)]
    assert err <= tol * scale, f"{what}: max |err| {err:.3e} > {tol:.0e} * max|ref| {scale:.3e}"


def guarded(shape, dtype):
    """(buffer, output view): the view has a NaN sentinel on each side in the buffer."""
    size = int(np.prod(shape))
    buf = np.full(size + 2, np.nan, dtype)
    return buf, buf[1:-1].reshape(shape)


def assert_sentinels(buf, what):
    assert np.isnan(buf[0]) and np.isnan(buf[-1]), f"{what}: wrote outside the output"


def assert_fit_allocates_nothing(model, X, y, what="", **fit_kwargs):
    """After a first fit (so every buffer exists), two more epochs lift the traced peak by less
    than 1 MB: no array allocated per training step when batch-sized arrays are larger."""
    model.fit(X, y, epochs=1, verbose=0, **fit_kwargs)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model.fit(X, y, epochs=2, verbose=0, **fit_kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - base < 1 << 20, f"{what}: peak grew by {peak - base} bytes"
