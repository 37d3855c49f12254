"""The bfloat16 GEMM (csrc/gemm_bf16*.{h,c}, _kernels/bf16.pyx: bf16.gemm): bf16 operands, float32
sums and output, on every path this CPU runs (the VDPBF16PS kernel on avx512_bf16, the portable
one at each other ISA), against a float64 reference of the bf16-rounded operands.

Error bound (float32 accumulation): a pair's two products are exact in float32 (8-bit
significands), so every rounding is an addition: at most k - 1 into a lane, over the k slices and
into C, plus alpha's product and beta's sum. With u = 2^-24 (float32's unit roundoff):
    |out - ref| <= gamma(k + 3) * (|alpha| |op(A)| @ |op(B)| + |beta| |C0|),
    gamma(n) = n u / (1 - n u),
where A and B are the operands' bf16 values. Nothing else is loosened."""
import re
import subprocess
import sys

import numpy as np
import pytest

import _reference
import ranvier
from _assert import assert_within
from conftest import using_isa
from ranvier._kernels import _runtime, activations, bf16, matmul

U = 2.0 ** -24


def _gamma(n):
    return n * U / (1 - n * U)


@pytest.fixture(params=list(_runtime.ISA_NAMES))
def path(request):
    """Every bf16 GEMM path this CPU runs, by the ISA that selects it; restores the ISA after."""
    with using_isa(request.param):
        yield request.param


@pytest.fixture
def forced_blocks():
    """Force the GEMM blocks (matmul._set_gemm_blocking, which the bf16 GEMM follows) for a test;
    the derived ones come back after."""
    before = matmul._forced_gemm_blocking()
    yield matmul._set_gemm_blocking
    matmul._set_gemm_blocking(before)


def _bits(x):
    """bf16 bits of float32 x by the NumPy reference of round-to-nearest-even."""
    return _reference.bf16_bits(np.asarray(x, np.float32).ravel()).reshape(np.shape(x))


def _to_bf16(x):
    """bf16 bits of float32 x by ranvier's own conversion (bf16.to_bf16)."""
    out = np.empty(np.size(x), np.uint16)
    bf16.to_bf16(np.ascontiguousarray(x, np.float32).ravel(), out)
    return out.reshape(np.shape(x))


def _value(x):
    """The bf16 value of an operand as float64: bits as they are, float32 rounded first."""
    bits = x if x.dtype == np.uint16 else _bits(x)
    return _reference.bf16_value(bits).astype(np.float64)


def _reference_product(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None):
    """alpha op(A) @ op(B) + beta C0 in float64 from the bf16 values, and the error bound's
    scale."""
    a64, b64 = _value(a), _value(b)
    a64, b64 = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    ref, scale = alpha * (a64 @ b64), abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        ref, scale = ref + beta * c0, scale + abs(beta) * np.abs(c0.astype(np.float64))
    return ref, scale


def _assert_bound(out, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c0=None,
                  what=""):
    ref, scale = _reference_product(a, b, trans_a, trans_b, alpha, beta, c0)
    k = (a.shape[0] if trans_a else a.shape[1])
    assert_within(out, ref, _gamma(k + 3) * scale, what)


def _operands(rng, m, n, k, trans_a=False, trans_b=False, kinds=("f32", "f32")):
    """Random operands, never zero, stored so that op(a) is (m, k) and op(b) is (k, n): float32
    or bf16 bits ("bits") as ``kinds`` says."""
    def one(shape, kind):
        x = (rng.standard_normal(shape) + np.where(rng.random(shape) < 0.5, -0.1, 0.1))
        x = x.astype(np.float32)
        return _to_bf16(x) if kind == "bits" else x

    return (one((k, m) if trans_a else (m, k), kinds[0]),
            one((n, k) if trans_b else (k, n), kinds[1]))


FORMS = {"NN": (False, False), "NT": (False, True), "TN": (True, False), "TT": (True, True)}
KINDS = [("f32", "f32"), ("bits", "bits"), ("f32", "bits"), ("bits", "f32")]


def _sizes():
    """(m, n, k): 1, primes, odd k, and sizes just past the register tile (MR <= 8, NR <= 32) and
    past the active path's KC (one and two k slices, then a pair split by nothing)."""
    kc = bf16._gemm_blocking()["kc"]
    return [(1, 1, 1), (1, 7, 2), (5, 1, 3), (9, 33, 17), (17, 31, 64), (13, 65, 129),
            (33, 17, kc + 1), (8, 32, 2 * kc + 3), (64, 96, 256)]


# -- against the reference ------------------------------------------------------------------------

@pytest.mark.quick
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("kinds", KINDS, ids=["-".join(k) for k in KINDS])
def test_matches_the_reference(path, form, kinds, num_threads):
    rng = np.random.default_rng(7)
    ta, tb = FORMS[form]
    for m, n, k in _sizes():
        a, b = _operands(rng, m, n, k, ta, tb, kinds)
        out = np.full((m, n), np.nan, np.float32)   # beta == 0: out is never read
        bf16.gemm(a, b, out, trans_a=ta, trans_b=tb, num_threads=num_threads)
        _assert_bound(out, a, b, ta, tb, what=f"{path} {form} {kinds} {m}x{n}x{k}")


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (-0.5, 0.0), (2.0, -0.5), (0.0, 0.75),
                                         (1.0, 0.0)])
def test_alpha_and_beta(path, alpha, beta, num_threads):
    rng = np.random.default_rng(11)
    for m, n, k in [(7, 13, 5), (40, 70, 300), (130, 140, 150)]:
        a, b = _operands(rng, m, n, k, kinds=("bits", "f32"))
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        out = c0.copy() if beta != 0.0 else np.full((m, n), np.nan, np.float32)
        bf16.gemm(a, b, out, alpha=alpha, beta=beta, num_threads=num_threads)
        _assert_bound(out, a, b, alpha=alpha, beta=beta, c0=c0,
                      what=f"{path} alpha={alpha} beta={beta} {m}x{n}x{k}")


def test_k_zero_scales_out_by_beta(path):
    out = np.full((3, 4), 2.0, np.float32)
    bf16.gemm(np.empty((3, 0), np.uint16), np.empty((0, 4), np.float32), out, beta=0.5)
    np.testing.assert_array_equal(out, np.full((3, 4), 1.0, np.float32))


def test_strided_operands_and_output(path, num_threads):
    """Views with steps, negative strides and transposes of storage (no flags), and a strided
    output inside a NaN buffer: right where written, untouched elsewhere."""
    rng = np.random.default_rng(3)
    m, n, k = 37, 45, 71
    big_a = rng.standard_normal((3 * k, 3 * k)).astype(np.float32)
    big_b = _to_bf16(rng.standard_normal((3 * k, 3 * k)).astype(np.float32))
    cases = {
        "steps": (big_a[:2 * m:2, :3 * k:3], big_b[:2 * k:2, :3 * n:3]),
        "negative": (big_a[m - 1::-1, :k], big_b[k - 1::-1, n - 1::-1]),
        "transposed": (big_a[:k, :m].T, big_b[:n, :2 * k:2].T),
    }
    for name, (a, b) in cases.items():
        buf = np.full((2 * m, 3 * n), np.nan, np.float32)
        out = buf[1::2, 2::3]
        bf16.gemm(a, b, out, num_threads=num_threads)
        _assert_bound(out, a, b, what=f"{path} {name}")
        mask = np.ones(buf.shape, bool)
        mask[1::2, 2::3] = False
        assert np.isnan(buf[mask]).all(), f"{path} {name}: wrote outside out"


def test_float32_operand_is_its_rounded_copy(path, num_threads):
    """A float32 operand gives the bits of the product of its to_bf16 copy: the packing rounds as
    to_bf16 does. The data hold exact ties (the dropped half 0x8000, both parities of the kept
    half) and values that round up across a power of two."""
    rng = np.random.default_rng(5)
    m, n, k = 29, 70, 131
    a, b = _operands(rng, m, n, k, trans_b=True)
    for x in (a, b):
        flat = x.reshape(-1).view(np.uint32)
        flat[::7] = (flat[::7] & 0xFFFF0000) | 0x8000          # ties
        flat[3::11] = (flat[3::11] & 0xFF800000) | 0x7FFFFF    # rounds up to the next binade
    for ta, tb in FORMS.values():
        aa, bb = (a.T.copy() if ta else a), (b if tb else b.T.copy())
        want = np.empty((m, n), np.float32)
        bf16.gemm(_to_bf16(aa), _to_bf16(bb), want, ta, tb, num_threads=num_threads)
        for kinds in KINDS[2:] + KINDS[:1]:
            x = aa if kinds[0] == "f32" else _to_bf16(aa)
            y = bb if kinds[1] == "f32" else _to_bf16(bb)
            got = np.empty((m, n), np.float32)
            bf16.gemm(x, y, got, ta, tb, num_threads=num_threads)
            np.testing.assert_array_equal(got, want, err_msg=f"{path} {kinds} {ta} {tb}")


# -- the paths against each other, threads ------------------------------------------------------

def test_every_path_within_the_bound_of_every_other():
    """Each path's result and the best one's differ by at most the two error bounds."""
    rng = np.random.default_rng(13)
    a, b = _operands(rng, 67, 150, 1001, trans_b=True)
    ref, scale = _reference_product(a, b, trans_b=True)
    results = {}
    before = _runtime.get_isa()
    try:
        for isa in _runtime.supported_isas():
            ranvier.set_isa(isa)
            results[isa] = np.empty((67, 150), np.float32)
            bf16.gemm(a, b, results[isa], trans_b=True, num_threads=2)
    finally:
        ranvier.set_isa(before)
    best = results[_runtime.best_isa()]
    for isa, out in results.items():
        assert_within(out, best, 2 * _gamma(1001 + 3) * scale, f"{isa} vs {_runtime.best_isa()}")


@pytest.mark.parametrize("form", list(FORMS))
def test_every_path_gives_the_same_bits_for_the_same_k_slices(forced_blocks, form):
    """With one KC for all (forced blocks), alpha 1 and beta 0 or 1, every path adds the same
    exact products in the same order (the odd one of a pair first, as VDPBF16PS): the same bits.
    Blocks (24, 70, 96) give several MC, NC and k slices, and slices that end on an odd k."""
    forced_blocks((24, 70, 96))
    rng = np.random.default_rng(17)
    ta, tb = FORMS[form]
    m, n, k = 61, 203, 301
    a, b = _operands(rng, m, n, k, ta, tb, kinds=("f32", "bits"))
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    results = {}
    before = _runtime.get_isa()
    try:
        for isa in _runtime.supported_isas():
            ranvier.set_isa(isa)
            for beta in (0.0, 1.0):
                out = c0.copy()
                bf16.gemm(a, b, out, ta, tb, beta=beta, num_threads=2)
                results[isa, beta] = out
    finally:
        ranvier.set_isa(before)
    for (isa, beta), out in results.items():
        _assert_bound(out, a, b, ta, tb, beta=beta, c0=c0, what=f"{isa} beta={beta}")
        np.testing.assert_array_equal(out, results["generic", beta], err_msg=f"{isa} beta={beta}")


@pytest.mark.parametrize("blocks", [None, (16, 8, 64)], ids=["derived", "forced"])
@pytest.mark.parametrize("form", list(FORMS))
def test_one_and_two_threads_give_the_same_bits(path, form, blocks, forced_blocks):
    """Past the parallel cut-off (2^21 multiply-adds), with several blocks of each kind."""
    forced_blocks(blocks)
    rng = np.random.default_rng(19)
    ta, tb = FORMS[form]
    m, n, k = 150, 170, 97
    a, b = _operands(rng, m, n, k, ta, tb, kinds=("bits", "f32"))
    outs = []
    for nt in (1, 2):
        out = np.full((m, n), np.nan, np.float32)
        bf16.gemm(a, b, out, ta, tb, alpha=0.5, num_threads=nt)
        outs.append(out)
    _assert_bound(outs[0], a, b, ta, tb, alpha=0.5, what=f"{path} {form} {blocks}")
    np.testing.assert_array_equal(outs[0], outs[1], err_msg=f"{path} {form} {blocks}")


def test_blocks_follow_matmul(forced_blocks):
    """The bf16 GEMM takes matmul's blocks (RANVIER_GEMM_BLOCKING, _set_gemm_blocking), fitted to
    its tile, and derives its own (for 2-byte elements) when they are not forced."""
    tile = bf16._gemm_blocking()
    forced_blocks((50, 7, 100))
    got = bf16._gemm_blocking()
    assert (got["mc"], got["kc"], got["nc"]) == (50 // tile["mr"] * tile["mr"], 7,
                                                  100 // tile["nr"] * tile["nr"])
    forced_blocks(None)
    derived = matmul._derive_gemm_blocking(_runtime.cpu_caches(), tile["mr"], tile["nr"], 2)
    got = bf16._gemm_blocking()
    assert (got["mc"], got["kc"], got["nc"]) == derived


# -- the Dense epilogue ---------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["relu", "gelu", "sigmoid", "leaky_relu"])
def test_bias_and_activation_epilogue(path, act, num_threads):
    """act(A @ B + bias) in the GEMM's epilogue has the bits of the product followed by
    activations.bias_forward, on the direct and the scratch-tile stores (alpha 1 and 2)."""
    code = activations.ACTIVATIONS[act]
    rng = np.random.default_rng(23)
    for m, n, k, alpha in [(16, 64, 40, 1.0), (19, 45, 33, 1.0), (130, 150, 120, 2.0)]:
        a, b = _operands(rng, m, n, k, trans_b=True, kinds=("f32", "bits"))
        bias = rng.standard_normal(n).astype(np.float32)
        fused = np.empty((m, n), np.float32)
        bf16.gemm(a, b, fused, trans_b=True, alpha=alpha, num_threads=num_threads, bias=bias,
                  act=code, param=0.1)
        plain = np.empty((m, n), np.float32)
        bf16.gemm(a, b, plain, trans_b=True, alpha=alpha, num_threads=num_threads)
        want = np.empty((m, n), np.float32)
        activations.bias_forward(code, plain, bias, want, param=0.1)
        np.testing.assert_array_equal(fused, want, err_msg=f"{path} {act} {m}x{n}x{k}")


# -- what runs, and bad input ---------------------------------------------------------------------

def test_avx512_bf16_is_offered_exactly_when_the_cpu_has_it():
    """CPUID leaf 7 subleaf 1 EAX bit 5 (with AVX-512 usable) against the kernel's flags, in a
    build that has the kernel (a compiler without the intrinsics leaves it out: setup.py)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags here")
    has = ("avx512_bf16" in flags and "avx512" in _runtime.supported_isas()
           and _runtime.avx512_bf16_built())
    assert ("avx512_bf16" in _runtime.supported_isas()) == has


def test_the_path_follows_the_isa():
    before = _runtime.get_isa()
    try:
        for isa in _runtime.supported_isas():
            ranvier.set_isa(isa)
            want = "avx512_bf16 (VDPBF16PS)" if isa == "avx512_bf16" else f"portable ({isa})"
            assert bf16._gemm_path() == want
            assert ranvier._config.config_dict()["bf16_gemm"]["path"] == want
    finally:
        ranvier.set_isa(before)


def test_show_config_and_ranvier_isa_name_the_path():
    """show_config's "bf16 GEMM" line names the path; RANVIER_ISA chooses it in a new process."""
    for isa in _runtime.supported_isas():
        code = "import ranvier; ranvier.show_config()"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**__import__("os").environ, "RANVIER_ISA": isa}, timeout=120)
        assert res.returncode == 0, res.stderr
        line = re.search(r"^\s*bf16 GEMM:\s+(.+)$", res.stdout, flags=re.M)
        want = "avx512_bf16 (VDPBF16PS)" if isa == "avx512_bf16" else f"portable ({isa})"
        assert line and line.group(1).startswith(want), res.stdout


@pytest.mark.parametrize("a, b, out, err, match", [
    (np.ones((2, 3)), np.ones((3, 2), np.float32), np.empty((2, 2), np.float32), TypeError,
     r"gemm: a must be a float32 array, or a uint16 array of bfloat16 bits, got float64"),
    (np.ones((2, 3), np.float32), np.ones((3, 2), np.int16), np.empty((2, 2), np.float32),
     TypeError, r"gemm: b must be .* got int16"),
    (np.ones((2, 3), np.float32), [[1.0] * 2] * 3, np.empty((2, 2), np.float32), TypeError,
     r"gemm: b must be .* got list"),
    (np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.empty((2, 2), np.uint16),
     TypeError, r"gemm: out must be float32, got uint16"),
    (np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.empty((2, 2)), TypeError,
     r"gemm: out must be float32, got float64"),
    (np.ones(3, np.float32), np.ones((3, 2), np.float32), np.empty((2, 2), np.float32),
     ValueError, r"gemm: a must be 2-D, got 1-D"),
    (np.ones((2, 3), np.float32), np.ones((4, 2), np.uint16), np.empty((2, 2), np.float32),
     ValueError, r"gemm: op\(b\)'s rows has 4 entries, expected 3"),
    (np.ones((2, 3), np.float32), np.ones((3, 2), np.uint16), np.empty((2, 3), np.float32),
     ValueError, r"gemm: out has shape \(2, 3\), expected \(2, 2\)"),
], ids=["a-float64", "b-int16", "b-list", "out-uint16", "out-float64", "a-1d", "k-mismatch",
        "out-shape"])
def test_bad_arguments_raise_naming_them(a, b, out, err, match):
    with pytest.raises(err, match=match):
        bf16.gemm(a, b, out)


def test_overlap_and_other_bad_calls_raise():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="gemm: out overlaps a"):
        bf16.gemm(x, np.ones((4, 4), np.uint16), x)
    bits = np.ones((4, 8), np.uint16)
    with pytest.raises(ValueError, match="gemm: out overlaps b"):
        bf16.gemm(np.ones((4, 2), np.float32), bits.view(np.float32)[:2], bits.view(np.float32))
    with pytest.raises(ValueError, match="gemm: out overlaps bias"):
        bf16.gemm(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), x, bias=x[0])
    with pytest.raises(ValueError, match="gemm: bias has 3 entries, expected 4"):
        bf16.gemm(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32),
                  np.empty((4, 4), np.float32), bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="num_threads"):
        bf16.gemm(x, x, np.empty((4, 4), np.float32), num_threads=0)
    with pytest.raises(ValueError, match="unknown activation code 99"):
        bf16.gemm(x, x, np.empty((4, 4), np.float32), act=99)
    shared = np.lib.stride_tricks.as_strided(np.empty(4, np.float32), (4, 4), (4, 0))
    with pytest.raises(ValueError, match="gemm: out .* has elements that share memory"):
        bf16.gemm(x, x, shared)
    readonly = np.empty((4, 4), np.float32)
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        bf16.gemm(x, x, readonly)
