"""GEMM, bias add and bias gradient kernels against float64 NumPy references.

GEMM results are checked elementwise against the classical forward error bound of a dot product
of length K,
    |C - C_ref| <= c * (K + 2) * eps * (|alpha| |op(A)| @ |op(B)| + |beta| |C0|),
(the "+ 2" pays for the alpha/beta scaling and the final rounding), never against a fixed rtol: a
wrong index or a dropped k-slice produces errors of order |A||B|, many orders above the bound.
"""
import itertools
import math

import numpy as np
import pytest

from conftest import AWKWARD, eps, readonly
from ranvier._kernels import _runtime, matmul

# The brief's awkward sizes: conftest's list plus 255 (one below a 256 KC block).
SIZES = sorted(set(AWKWARD) | {255})
C_BOUND = 3  # small constant in the error bound


@pytest.fixture(autouse=True, scope="module")
def _serial_reference_blas():
    """The float64 references go through NumPy's BLAS; on a small, busy machine its thread pool
    only adds waiting (it does not change any result). One BLAS thread when threadpoolctl is
    there; otherwise nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _shape_grid():
    """The full diagonal (M = N = K) plus a fixed sample of random (M, N, K) triples."""
    r = np.random.default_rng(2024)
    triples = [(s, s, s) for s in SIZES]
    picks = r.choice(SIZES, size=(16, 3))
    triples += [tuple(int(v) for v in t) for t in picks]
    # Always include thin/fat corners: vectors, K = 1, and one dimension at the largest size.
    triples += [(1, 257, 1), (257, 1, 1), (1, 1, 257), (257, 257, 1), (2, 257, 129), (129, 5, 257)]
    return list(dict.fromkeys(triples))


SHAPES = _shape_grid()
# (trans_a, trans_b): NN is dY @ W (input gradient), NT is X @ W.T (forward), TN is dY.T @ X
# (weight gradient); TT completes the set.
FORMS = {"NN": (False, False), "NT": (False, True), "TN": (True, False), "TT": (True, True)}


def _operands(rng, m, n, k, dtype, trans_a, trans_b):
    """Stored a and b (C-contiguous) such that op(a) is (m, k) and op(b) is (k, n)."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def _op(x, trans):
    return x.T if trans else x


def _reference(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None):
    """alpha * op(a) @ op(b) + beta * c0 in float64, and the scale of the error bound."""
    a64 = _op(np.asarray(a, dtype=np.float64), trans_a)
    b64 = _op(np.asarray(b, dtype=np.float64), trans_b)
    ref = alpha * (a64 @ b64)
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        c64 = np.asarray(c0, dtype=np.float64)
        ref = ref + beta * c64
        scale = scale + abs(beta) * np.abs(c64)
    return ref, scale


def _assert_within_bound(out, ref, scale, k, dtype, what):
    """|out - ref| <= C_BOUND * (k + 2) * eps * scale + tiny floor, elementwise."""
    out = np.asarray(out)
    assert out.shape == ref.shape, what
    assert np.isfinite(out).all(), f"{what}: non-finite entries in the result"
    bound = C_BOUND * (k + 2) * eps(dtype) * scale + max(k, 1) * np.finfo(dtype).tiny
    err = np.abs(out.astype(np.float64) - ref)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err / bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} entries outside the error bound; worst at "
            f"{i}: got {out[i]!r}, expected {ref[i]!r}, |err| {err[i]:.3e} > bound {bound[i]:.3e}")


def _nan_out(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


# --------------------------------------------------------------------------------------------
# GEMM correctness: every ISA x dtype x threads, all four transpose forms, the sampled grid
# --------------------------------------------------------------------------------------------

@pytest.mark.quick
def test_gemm_grid_all_forms(isa, dtype, num_threads):
    """out := op(a) @ op(b) with beta = 0 on a NaN-filled out, over the (M, N, K) grid: NN, NT
    and TN on every triple, TT on the diagonal."""
    rng = np.random.default_rng(dtype.itemsize)
    for m, n, k in SHAPES:
        for form, (trans_a, trans_b) in FORMS.items():
            if form == "TT" and not m == n == k:
                continue
            a, b = _operands(rng, m, n, k, dtype, trans_a, trans_b)
            out = _nan_out((m, n), dtype)
            matmul.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, num_threads=num_threads)
            ref, scale = _reference(a, b, trans_a, trans_b)
            _assert_within_bound(out, ref, scale, k, dtype,
                                 f"{isa} {dtype.name} {form} m={m} n={n} k={k} t={num_threads}")


@pytest.mark.parametrize("size", [1, 17, 257])
def test_gemm_backprop_forms(isa, dtype, num_threads, size):
    """The three products of a dense layer's forward and backward pass, with a layer-shaped
    (batch, in, out) = (size + 3, size, 2 * size + 1) problem and W stored (out, in)."""
    rng = np.random.default_rng(size)
    batch, fan_in, fan_out = size + 3, size, 2 * size + 1
    x = rng.standard_normal((batch, fan_in)).astype(dtype)
    w = rng.standard_normal((fan_out, fan_in)).astype(dtype)
    dy = rng.standard_normal((batch, fan_out)).astype(dtype)

    y = _nan_out((batch, fan_out), dtype)          # Y = X @ W.T
    matmul.gemm(x, w, y, trans_b=True, num_threads=num_threads)
    ref, scale = _reference(x, w, False, True)
    _assert_within_bound(y, ref, scale, fan_in, dtype, f"{isa} X @ W.T")

    dx = _nan_out((batch, fan_in), dtype)          # dX = dY @ W
    matmul.gemm(dy, w, dx, num_threads=num_threads)
    ref, scale = _reference(dy, w, False, False)
    _assert_within_bound(dx, ref, scale, fan_out, dtype, f"{isa} dY @ W")

    dw = _nan_out((fan_out, fan_in), dtype)        # dW = dY.T @ X
    matmul.gemm(dy, x, dw, trans_a=True, num_threads=num_threads)
    ref, scale = _reference(dy, x, True, False)
    _assert_within_bound(dw, ref, scale, batch, dtype, f"{isa} dY.T @ X")


STRIDED_SHAPES = [(1, 1, 1), (5, 7, 2), (17, 15, 33), (63, 33, 127), (129, 17, 65),
                  (257, 31, 255), (33, 257, 257)]
OUT_KINDS = ("C", "every-other-col", "F", "reversed-rows")


def _strided_cases(rng, m, n, k, dtype):
    """Non-contiguous views of op(a) (m, k) and op(b) (k, n), as (name, a, b, trans_a, trans_b)."""
    def every_other_col(rows, cols):   # column stride 2, row stride 2 * cols + 2
        return rng.standard_normal((rows, 2 * cols)).astype(dtype)[:, ::2]

    def every_other_row_col(rows, cols):   # both strides > 1
        return rng.standard_normal((2 * rows, 3 * cols)).astype(dtype)[::2, ::3]

    def fortran(rows, cols):   # a transposed view: column-major storage
        return rng.standard_normal((cols, rows)).astype(dtype).T

    def reversed_rows(rows, cols):   # negative row stride
        return rng.standard_normal((rows, cols)).astype(dtype)[::-1]

    yield "cols::2 x cols::2", every_other_col(m, k), every_other_col(k, n), False, False
    yield "rows::2,cols::3 x F", every_other_row_col(m, k), fortran(k, n), False, False
    yield "F x cols::2", fortran(m, k), every_other_col(k, n), False, False
    # Strided storage *and* trans flags: op(a) = a.T with a a strided (k, m) view, etc.
    yield "T(cols::2) x T(F)", every_other_col(k, m), fortran(n, k), True, True
    yield "T(F) x T(rows::2,cols::3)", fortran(k, m), every_other_row_col(n, k), True, True
    yield "reversed x T(reversed)", reversed_rows(m, k), reversed_rows(n, k), False, True


def test_gemm_strided_inputs_and_output(isa, dtype, num_threads):
    """Sliced, transposed and reversed views as inputs; out a strided window of a NaN-filled
    buffer. The result must be correct and nothing outside the window may be written."""
    rng = np.random.default_rng(7)
    for s, (m, n, k) in enumerate(STRIDED_SHAPES):
        for c, (name, a, b, ta, tb) in enumerate(_strided_cases(rng, m, n, k, dtype)):
            assert _op(a, ta).shape == (m, k) and _op(b, tb).shape == (k, n)
            assert not (a.flags.c_contiguous and b.flags.c_contiguous) or m == k == n == 1
            # Each input case meets every out layout as the shapes go by.
            for out_kind in (OUT_KINDS[(s + c) % len(OUT_KINDS)],):
                if out_kind == "C":
                    buf = _nan_out((m, n), dtype)
                    out = buf
                elif out_kind == "every-other-col":
                    buf = _nan_out((m + 2, 2 * n + 1), dtype)
                    out = buf[1:m + 1, 1::2]
                elif out_kind == "F":
                    buf = _nan_out((n, m), dtype)
                    out = buf.T
                else:
                    buf = _nan_out((m, n), dtype)
                    out = buf[::-1]
                matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, num_threads=num_threads)
                ref, scale = _reference(a, b, ta, tb)
                what = f"{isa} {dtype.name} {name} out={out_kind} m={m} n={n} k={k}"
                _assert_within_bound(out, ref, scale, k, dtype, what)
                if out_kind == "every-other-col":
                    mask = np.ones(buf.shape, dtype=bool)
                    mask[1:m + 1, 1::2] = False
                    assert np.isnan(buf[mask]).all(), f"{what}: wrote outside the out window"


def test_gemm_readonly_inputs(isa, dtype, num_threads):
    """const memoryviews: read-only a and b (C-contiguous, transposed, and a zero-stride
    broadcast view, which NumPy only hands out read-only) must be accepted and used correctly."""
    rng = np.random.default_rng(11)
    for m, n, k in [(1, 1, 1), (7, 17, 5), (65, 33, 129), (129, 257, 63), (257, 255, 257)]:
        for form, (ta, tb) in FORMS.items():
            a, b = _operands(rng, m, n, k, dtype, ta, tb)
            ra, rb = readonly(a), readonly(b)
            assert not ra.flags.writeable and not rb.flags.writeable
            out = _nan_out((m, n), dtype)
            matmul.gemm(ra, rb, out, trans_a=ta, trans_b=tb, num_threads=num_threads)
            ref, scale = _reference(a, b, ta, tb)
            _assert_within_bound(out, ref, scale, k, dtype, f"{isa} read-only {form} {m}x{n}x{k}")
        # Row stride 0: every row of op(a) is the same vector.
        row = rng.standard_normal(k).astype(dtype)
        a_bc = np.broadcast_to(row, (m, k))
        assert a_bc.strides[0] == 0 and not a_bc.flags.writeable
        b = readonly(rng.standard_normal((k, n)).astype(dtype))
        out = _nan_out((m, n), dtype)
        matmul.gemm(a_bc, b, out, num_threads=num_threads)
        ref, scale = _reference(a_bc, b, False, False)
        _assert_within_bound(out, ref, scale, k, dtype, f"{isa} broadcast a {m}x{n}x{k}")


ALPHA_BETA_SHAPES = [(1, 1, 1), (5, 16, 7), (33, 31, 17), (65, 129, 255), (127, 63, 257),
                     (17, 33, 513)]   # k = 257 and 513 span two and three KC = 256 slices


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5], ids=["beta0", "beta1", "beta0.5"])
def test_gemm_alpha_beta(isa, dtype, num_threads, beta):
    """out := alpha op(a) op(b) + beta out. beta = 0 must not read out (filled with NaN)."""
    rng = np.random.default_rng(int(10 * beta))
    for (m, n, k), alpha in zip(ALPHA_BETA_SHAPES, itertools.cycle((1.0, -0.75, 2.5))):
        for form in ("NN", "NT", "TN"):
            ta, tb = FORMS[form]
            a, b = _operands(rng, m, n, k, dtype, ta, tb)
            if beta == 0.0:
                c0 = _nan_out((m, n), dtype)
            else:
                c0 = rng.standard_normal((m, n)).astype(dtype)
            out = c0.copy()
            matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta,
                        num_threads=num_threads)
            ref, scale = _reference(a, b, ta, tb, alpha, beta, c0)
            _assert_within_bound(out, ref, scale, k, dtype,
                                 f"{isa} {form} alpha={alpha} beta={beta} {m}x{n}x{k}")


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_nothing_to_multiply(isa, dtype, beta):
    """k == 0 or alpha == 0: out := beta * out exactly (zeros for beta = 0, even over NaN)."""
    rng = np.random.default_rng(3)
    for m, n in [(1, 1), (7, 5), (33, 17)]:
        c0 = _nan_out((m, n), dtype) if beta == 0.0 else rng.standard_normal((m, n)).astype(dtype)
        expected = np.zeros((m, n), dtype) if beta == 0.0 else (dtype.type(beta) * c0)
        out = c0.copy()
        matmul.gemm(np.empty((m, 0), dtype), np.empty((0, n), dtype), out, beta=beta)
        np.testing.assert_array_equal(out, expected, err_msg=f"k=0 beta={beta}")
        out = c0.copy()
        a = rng.standard_normal((m, 4)).astype(dtype)
        b = rng.standard_normal((4, n)).astype(dtype)
        matmul.gemm(a, b, out, alpha=0.0, beta=beta)
        np.testing.assert_array_equal(out, expected, err_msg=f"alpha=0 beta={beta}")
    # m == 0 or n == 0: nothing to compute, nothing to touch.
    matmul.gemm(np.ones((0, 3), dtype), np.ones((3, 4), dtype), np.empty((0, 4), dtype), beta=beta)
    matmul.gemm(np.ones((2, 3), dtype), np.ones((3, 0), dtype), np.empty((2, 0), dtype), beta=beta)


# Shapes on and across the compile-time cache blocks ranvier had before they were derived from the
# caches (MC <= 192, KC = 256, NC in {2048, 4080, 4096}): m > MC, k > 2 KC and n > NC make the ic,
# pc and jc loops take more than one trip; m, k and n exactly on a block size check the loop ends.
# (The derived blocks, and forced ones, are crossed by the tests at the end of this file.)
BLOCK_SHAPES = [(200, 7, 513), (3, 4100, 300), (193, 4099, 2), (192, 17, 256), (144, 33, 512),
                (97, 2048, 5), (2, 4096, 3), (5, 4080, 7)]


def test_gemm_crosses_cache_blocks(isa, dtype, num_threads):
    rng = np.random.default_rng(17)
    for m, n, k in BLOCK_SHAPES:
        for form in ("NN", "NT", "TN"):
            ta, tb = FORMS[form]
            a, b = _operands(rng, m, n, k, dtype, ta, tb)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            out = c0.copy()
            matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, alpha=1.5, beta=0.5,
                        num_threads=num_threads)
            ref, scale = _reference(a, b, ta, tb, 1.5, 0.5, c0)
            _assert_within_bound(out, ref, scale, k, dtype, f"{isa} {form} {m}x{n}x{k}")


def test_gemm_isas_agree(dtype):
    """Switching kernels with set_isa inside one test: each supported ISA gives a result within
    the bound of the same reference."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((129, 257)).astype(dtype)
    b = rng.standard_normal((257, 65)).astype(dtype)
    ref, scale = _reference(a, b, False, False)
    before = _runtime.get_isa()
    try:
        for name in _runtime.supported_isas():
            _runtime.set_isa(name)
            out = _nan_out((129, 65), dtype)
            matmul.gemm(a, b, out, num_threads=2)
            _assert_within_bound(out, ref, scale, 257, dtype, f"{name}")
    finally:
        _runtime.set_isa(before)


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------

def _bits(x):
    return np.ascontiguousarray(x).tobytes()


@pytest.mark.parametrize("form", ["NN", "NT", "TN"])
def test_gemm_bitwise_identical_across_threads(isa, dtype, form):
    """300 x 300 x 300 (several MC row blocks, two KC slices): every thread count must give the
    same bits, with beta = 0 and with beta = 0.5 (1 and 2 threads)."""
    rng = np.random.default_rng(300)
    ta, tb = FORMS[form]
    m = n = k = 300
    a, b = _operands(rng, m, n, k, dtype, ta, tb)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for beta in (0.0, 0.5):
        results = []
        for nt in (1, 2):
            out = c0.copy()
            matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, beta=beta, num_threads=nt)
            results.append(out)
        ref, scale = _reference(a, b, ta, tb, 1.0, beta, c0)
        _assert_within_bound(results[0], ref, scale, k, dtype, f"{isa} {form} 300^3")
        for nt, out in zip((2,), results[1:]):
            assert _bits(out) == _bits(results[0]), (
                f"{isa} {dtype.name} {form} beta={beta}: {nt} threads differ from 1 thread "
                f"(max |diff| {np.max(np.abs(out - results[0])):.3e})")


def test_bias_grad_bitwise_identical_across_threads(dtype):
    rng = np.random.default_rng(301)
    for n, d in [(300, 300), (1000, 257), (65, 1025)]:
        dy = rng.standard_normal((n, d)).astype(dtype)
        base = rng.standard_normal(d).astype(dtype)
        for accumulate in (False, True):
            outs = []
            for nt in (1, 2):
                out = base.copy()
                matmul.bias_grad(dy, out, accumulate=accumulate, num_threads=nt)
                outs.append(out)
            for nt, out in zip((2,), outs[1:]):
                assert _bits(out) == _bits(outs[0]), f"bias_grad {n}x{d} acc={accumulate} t={nt}"


# --------------------------------------------------------------------------------------------
# GEMM argument checking and ISA selection
# --------------------------------------------------------------------------------------------

def test_gemm_rejects_mismatched_shapes(dtype):
    a = np.ones((3, 4), dtype)
    b = np.ones((5, 6), dtype)
    with pytest.raises(ValueError):
        matmul.gemm(a, b, np.empty((3, 6), dtype))                  # k: 4 vs 5
    with pytest.raises(ValueError):
        matmul.gemm(a, np.ones((4, 6), dtype), np.empty((3, 5), dtype))   # wrong out
    with pytest.raises(ValueError):
        matmul.gemm(a, np.ones((4, 6), dtype), np.empty((3, 6), dtype), trans_a=True)
    out = np.full((3, 6), 7.0, dtype)
    with pytest.raises(ValueError):
        matmul.gemm(a, np.ones((6, 5), dtype), out, trans_b=True)     # op(b) is (5, 6)
    assert (out == 7).all(), "a rejected call must not touch out"


def test_gemm_rejects_mixed_dtypes():
    with pytest.raises((TypeError, ValueError)):
        matmul.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64),
                    np.empty((2, 2), np.float32))


def test_isa_selection_api():
    supported = _runtime.supported_isas()
    assert "generic" in supported
    assert set(supported) <= {"generic", "avx2", "avx512", "avx512_bf16"}
    assert _runtime.best_isa() in supported
    assert _runtime.best_isa() == supported[-1], "best_isa must be the widest supported kernel"
    before = _runtime.get_isa()
    try:
        for name in supported:
            _runtime.set_isa(name)
            assert _runtime.get_isa() == name
        with pytest.raises(ValueError):
            _runtime.set_isa("sse9")
        for name in {"avx2", "avx512", "avx512_bf16"} - set(supported):
            with pytest.raises(ValueError):
                _runtime.set_isa(name)
        _runtime.set_isa("generic")
        with pytest.raises(ValueError):
            _runtime.set_isa("sse9")
        assert _runtime.get_isa() == "generic", "a failed set_isa must keep the current kernel"
    finally:
        _runtime.set_isa(before)


# --------------------------------------------------------------------------------------------
# bias_add and bias_grad
# --------------------------------------------------------------------------------------------

BIAS_SHAPES = [(n, d) for n in (1, 2, 7, 33, 129) for d in (1, 5, 16, 17, 63, 65, 257)]
BIAS_SHAPES += [(255, 257), (257, 129), (1000, 31)]


def test_bias_add(dtype, num_threads):
    """y += bias is one IEEE addition per element, so it must match NumPy bit for bit."""
    rng = np.random.default_rng(13)
    for n, d in BIAS_SHAPES:
        y = rng.standard_normal((n, d)).astype(dtype)
        bias = rng.standard_normal(d).astype(dtype)
        expected = y + bias
        for b in (bias, readonly(bias)):
            got = y.copy()
            matmul.bias_add(got, b, num_threads)
            np.testing.assert_array_equal(got, expected, err_msg=f"bias_add {n}x{d}")


def test_bias_add_leaves_neighbours_alone(dtype, num_threads):
    rng = np.random.default_rng(14)
    buf = np.full(33 * 17 + 2, np.nan, dtype)
    y = buf[1:-1].reshape(33, 17)
    y[...] = rng.standard_normal((33, 17))
    bias = rng.standard_normal(17).astype(dtype)
    expected = y + bias
    matmul.bias_add(y, bias, num_threads)
    np.testing.assert_array_equal(y, expected)
    assert np.isnan(buf[0]) and np.isnan(buf[-1])


def _colsum_reference(dy):
    """Column sums in float64 and the scale of their rounding error (sum of |dy|)."""
    dy64 = np.asarray(dy, dtype=np.float64)
    return dy64.sum(axis=0), np.abs(dy64).sum(axis=0)


def _assert_colsum(out, ref, absum, n, dtype, what, base=None):
    # Accumulated in double (error <= n eps64 sum|dy|), then rounded once to dtype (and, with
    # accumulate, one more addition in double before that rounding).
    if base is not None:
        ref = ref + np.asarray(base, np.float64)
        absum = absum + np.abs(np.asarray(base, np.float64))
    bound = (2 * (n + 1) * eps(np.float64) * absum + eps(dtype) * np.abs(ref)
             + np.finfo(dtype).tiny)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.isfinite(out).all(), what
    assert (err <= bound).all(), (
        f"{what}: max |err| {err.max():.3e}, at a bound of {bound[np.argmax(err)]:.3e}")


def test_bias_grad(dtype, num_threads):
    rng = np.random.default_rng(15)
    for n, d in BIAS_SHAPES:
        dy = rng.standard_normal((n, d)).astype(dtype)
        ref, absum = _colsum_reference(dy)
        out = np.full(d, np.nan, dtype)          # accumulate=False must not read out
        matmul.bias_grad(dy, out, num_threads=num_threads)
        _assert_colsum(out, ref, absum, n, dtype, f"bias_grad {n}x{d}")
        out = np.full(d, np.nan, dtype)
        matmul.bias_grad(readonly(dy), out, False, num_threads)
        _assert_colsum(out, ref, absum, n, dtype, f"bias_grad read-only {n}x{d}")
        base = rng.standard_normal(d).astype(dtype)
        out = base.copy()
        matmul.bias_grad(dy, out, accumulate=True, num_threads=num_threads)
        _assert_colsum(out, ref, absum, n, dtype, f"bias_grad accumulate {n}x{d}", base=base)


def test_bias_grad_sums_in_double():
    """float32 gradients summed over many rows: a float32 accumulator drifts by ~sqrt(n) ulps
    or worse, the double one lands on the correctly rounded float32 of the exact sum."""
    rng = np.random.default_rng(16)
    n, d = 20000, 9
    dy = (rng.standard_normal((n, d)) + 1000.0).astype(np.float32)
    out = np.empty(d, np.float32)
    matmul.bias_grad(dy, out, num_threads=2)
    # Every float32 near 1000 is a multiple of 2**-14 and the sums stay below 2**25, so the
    # double accumulation is exact here whatever the order.
    exact = np.array([math.fsum(col) for col in dy.T.astype(np.float64)])
    np.testing.assert_array_equal(out, exact.astype(np.float32))


def test_bias_grad_empty_batch(dtype):
    out = np.full(5, np.nan, dtype)
    matmul.bias_grad(np.empty((0, 5), dtype), out)
    np.testing.assert_array_equal(out, np.zeros(5, dtype))
    base = np.arange(5, dtype=dtype)
    out = base.copy()
    matmul.bias_grad(np.empty((0, 5), dtype), out, accumulate=True)
    np.testing.assert_array_equal(out, base)


def test_bias_grad_rejects_wrong_length(dtype):
    with pytest.raises(ValueError):
        matmul.bias_grad(np.ones((3, 4), dtype), np.empty(5, dtype))


# Register tiles per ISA (MR rows x NR columns; float, double). Edge tiles run narrower kernels:
# one per leftover row count, and a half-width one when at most NR / 2 columns are left.
TILES = {"generic": {4: (4, 8), 8: (4, 4)}, "avx2": {4: (6, 16), 8: (6, 8)},
         "avx512": {4: (8, 32), 8: (8, 16)}}


def _edge_sizes(tile):
    """Every leftover 1..tile-1 plus exact multiples, for one and two whole tiles."""
    return sorted({*range(1, 2 * tile + 2)})


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5], ids=["beta0", "beta1", "beta-0.5"])
def test_gemm_every_edge_tile(isa, dtype, beta, gemm_path):
    """Each (leftover rows, leftover columns) tile kernel, on either side of the half-width
    switch, with k on one and on two KC slices (the second slice accumulates into C), on both
    paths."""
    mr, nr = TILES[isa][dtype.itemsize]
    rng = np.random.default_rng(mr * nr + int(4 * beta))
    ns = sorted({1, nr // 2 - 1, nr // 2, nr // 2 + 1, nr - 1, nr, nr + nr // 2, 2 * nr + 1} - {0})
    for k in (3, 300):
        for m in _edge_sizes(mr):
            for n in ns:
                for form in ("NN", "NT", "TN"):
                    ta, tb = FORMS[form]
                    a, b = _operands(rng, m, n, k, dtype, ta, tb)
                    c0 = (_nan_out((m, n), dtype) if beta == 0.0
                          else rng.standard_normal((m, n)).astype(dtype))
                    out = c0.copy()
                    matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, beta=beta)
                    ref, scale = _reference(a, b, ta, tb, 1.0, beta, c0)
                    _assert_within_bound(out, ref, scale, k, dtype,
                                         f"{isa} {gemm_path} {form} beta={beta} {m}x{n}x{k}")


def test_bias_add_rejects_wrong_length(dtype):
    y = np.zeros((3, 4), dtype)
    with pytest.raises(ValueError, match="bias"):
        matmul.bias_add(y, np.ones(3, dtype))
    with pytest.raises(ValueError, match="bias"):
        matmul.bias_add(y, np.ones(5, dtype))


# --------------------------------------------------------------------------------------------
# Under forced cache blocks (RANVIER_GEMM_BLOCKING's hook): every block edge lands somewhere new
# --------------------------------------------------------------------------------------------

# (mc, kc, nc) as asked for; each ISA fits them to its tile (MC, NC rounded down to whole tiles).
FORCED_BLOCKINGS = {"one-tile": (1, 1, 1), "odd": (13, 7, 37), "small": (24, 40, 96),
                    "largest": tuple(matmul.BLOCKING_BOUNDS[b] for b in ("mc", "kc", "nc"))}


@pytest.fixture(params=list(FORCED_BLOCKINGS))
def forced_blocking(request):
    """The GEMM runs with these blocks for the test; the derived ones come back after."""
    before = matmul._set_gemm_blocking(FORCED_BLOCKINGS[request.param])
    yield request.param
    matmul._set_gemm_blocking(before)


def _past_blocks(dtype, largest=100):
    """m, n, k values for the active blocks: 1, a prime, and one past one and two blocks (where
    a block is at most ``largest``: the biggest blocks are crossed by the derived-blocks test)."""
    b = matmul._gemm_blocking()[dtype.name]

    def sizes(block):
        return sorted({1, 31} | ({block + 1, 2 * block + 1} if block <= largest else set()))

    return sizes(b["mc"]), sizes(b["nc"]), sizes(b["kc"])


def test_gemm_under_forced_blocks(isa, dtype, num_threads, forced_blocking, gemm_path):
    """All four forms on sizes that end just past the forced MC, NC and KC blocks, with beta
    0 (NaN-filled out) and beta 1 (the k slices accumulate into a C that holds values)."""
    rng = np.random.default_rng(7)
    ms, ns, ks = _past_blocks(dtype)
    for m, n, k in itertools.product(ms, ns, ks):
        for form, (ta, tb) in FORMS.items():
            a, b = _operands(rng, m, n, k, dtype, ta, tb)
            beta = float((m + n + k) % 2)
            c0 = (_nan_out((m, n), dtype) if beta == 0.0
                  else rng.standard_normal((m, n)).astype(dtype))
            out = c0.copy()
            matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, beta=beta, num_threads=num_threads)
            ref, scale = _reference(a, b, ta, tb, 1.0, beta, c0)
            _assert_within_bound(out, ref, scale, k, dtype, f"{isa} {forced_blocking} {gemm_path}"
                                 f" {form} beta={beta} {m}x{n}x{k} t={num_threads}")


@pytest.mark.parametrize("act", ["none", "relu", "sigmoid"])
def test_dense_epilogue_under_forced_blocks(isa, dtype, forced_blocking, gemm_path, act):
    """X @ W.T + bias, then the activation, fused into the last k slice of each tile."""
    from _reference import activation
    from ranvier._kernels.activations import ACTIVATIONS

    rng = np.random.default_rng(11)
    ms, ns, ks = _past_blocks(dtype)
    for n, fout, fin in itertools.product(ms, ns, ks):
        x = rng.standard_normal((n, fin)).astype(dtype)
        w = rng.standard_normal((fout, fin)).astype(dtype)
        bias = rng.standard_normal(fout).astype(dtype)
        z, scale = _reference(np.c_[x, np.ones(n, dtype)], np.c_[w, bias], False, True)
        for nt in (1, 2):
            out = _nan_out((n, fout), dtype)
            matmul.dense_forward(x, w, bias, out, ACTIVATIONS[act], 0.0, nt)
            # the activations are 1-Lipschitz: the pre-activation bound carries over, plus the
            # activation's own rounding (a few eps: sigmoid's outputs are below 1)
            err = np.abs(out - activation(act, z))
            bound = C_BOUND * (fin + 3) * eps(dtype) * scale + 4 * eps(dtype)
            assert (err <= bound).all(), (f"{isa} {forced_blocking} {act} {n}x{fout}x{fin} "
                                          f"t={nt}: worst {np.max(err - bound):.3e} over")


@pytest.mark.parametrize("form", list(FORMS))
def test_gemm_bitwise_identical_across_threads_under_forced_blocks(isa, dtype, forced_blocking,
                                                                   form):
    """Above the parallel cut-off (2^21 multiply-adds), 1 and 2 threads give the same bits
    whatever the blocks."""
    m, n, k = 161, 173, 157
    rng = np.random.default_rng(3)
    ta, tb = FORMS[form]
    a, b = _operands(rng, m, n, k, dtype, ta, tb)
    outs = []
    for nt in (1, 2):
        out = _nan_out((m, n), dtype)
        matmul.gemm(a, b, out, trans_a=ta, trans_b=tb, num_threads=nt)
        outs.append(_bits(out))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_gemm_just_past_the_derived_blocks(isa, dtype):
    """One product one past the derived MC, KC and NC (the blocks this CPU really runs), with
    the bias + ReLU epilogue, on 1 and 2 threads (the same bits)."""
    from ranvier._kernels.activations import ACTIVATIONS

    before = matmul._set_gemm_blocking(None)
    try:
        blk = matmul._gemm_blocking()[dtype.name]
        n, fout, fin = blk["mc"] + 1, blk["nc"] + 1, blk["kc"] + 1
        rng = np.random.default_rng(5)
        x = rng.standard_normal((n, fin)).astype(dtype)
        w = rng.standard_normal((fout, fin)).astype(dtype)
        bias = rng.standard_normal(fout).astype(dtype)
        z, scale = _reference(np.c_[x, np.ones(n, dtype)], np.c_[w, bias], False, True)
        outs = []
        for nt in (1, 2):
            out = _nan_out((n, fout), dtype)
            matmul.dense_forward(x, w, bias, out, ACTIVATIONS["relu"], 0.0, nt)
            _assert_within_bound(out, np.maximum(z, 0.0), scale, fin + 1, dtype,
                                 f"{isa} derived {blk} t={nt}")
            outs.append(_bits(out))
        np.testing.assert_array_equal(outs[0], outs[1])
    finally:
        matmul._set_gemm_blocking(before)
