"""Denormals flushed while kernels run (csrc/fpenv.h): subnormal inputs and results read and
written as zero in every thread of a kernel, gradual underflow with set_flush_denormal(False),
and the caller's floating-point control word (x86 MXCSR, aarch64 FPCR) the same after every
entry point, read by C (_runtime._fp_control_word), in the calling thread and in the OpenMP
workers."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import ranvier
from ranvier._kernels import _runtime
from ranvier._kernels import activations as act_k
from ranvier._kernels import matmul, optimizers
from test_kernels_contract import SPECS, _call

pytestmark = pytest.mark.skipif(not _runtime.flush_denormal_supported(),
                                reason="this CPU has no flush-to-zero mode ranvier sets")

# A subnormal of each type and the bits of the x86 / aarch64 flush modes.
TINY = {np.dtype(np.float32): np.float32(1e-42), np.dtype(np.float64): np.float64(1e-310)}
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
FLUSH_BITS = 0x8040 if X86 else 1 << 24
# Status flags (x86 MXCSR bits 0-5; aarch64 keeps them in FPSR): NumPy clears them around its own
# operations, so a word read after NumPy ran is compared without them.
CONTROL = ~0x3F if X86 else ~0
# Bigger than one elementwise / optimizer chunk (16384), so two threads both take a share.
N_PARALLEL = 3 * 16384 + 7


@pytest.fixture(params=[True, False], ids=["flush", "gradual"])
def flush(request):
    before = ranvier.get_flush_denormal()
    ranvier.set_flush_denormal(request.param)
    yield request.param
    ranvier.set_flush_denormal(before)


@pytest.fixture(autouse=True)
def caller_word():
    """Every test starts and ends with the control word the process had."""
    word = _runtime._fp_control_word()
    yield word
    _runtime._set_fp_control_word(word)


def _expect_flushed(out, tiny_result, flush):
    """All zero when flushing; otherwise every element the (nonzero) subnormal result."""
    assert tiny_result != 0 and abs(tiny_result) < np.finfo(out.dtype).tiny
    if flush:
        np.testing.assert_array_equal(out, 0)
    else:
        np.testing.assert_allclose(out, tiny_result, rtol=1e-2)


@pytest.mark.quick
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm(dtype, threads, flush):
    k = 37
    a = np.full((512, k), TINY[dtype], dtype)
    b = np.full((k, 257), 0.5, dtype)
    out = np.ones((512, 257), dtype)
    matmul.gemm(a, b, out, num_threads=threads)
    _expect_flushed(out, k * 0.5 * float(TINY[dtype]), flush)


@pytest.mark.parametrize("threads", [1, 2])
def test_activation_backward(dtype, threads, flush, isa):
    code, param = ranvier.Sigmoid().fused_activation
    v = np.full(N_PARALLEL, 0.5, dtype)            # sigmoid's output: its slope is 0.25
    dy = np.full(N_PARALLEL, TINY[dtype], dtype)
    dx = np.ones(N_PARALLEL, dtype)
    act_k.backward(code, v, dy, dx, param, threads)
    _expect_flushed(dx, 0.25 * float(TINY[dtype]), flush)


@pytest.mark.parametrize("threads", [1, 2])
def test_adam_moments(dtype, threads, flush):
    n = N_PARALLEL
    p = np.ones(n, dtype)
    g = np.full(n, TINY[dtype], dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    optimizers.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, num_threads=threads)
    _expect_flushed(m, 0.1 * float(TINY[dtype]), flush)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d(dtype, threads, flush):
    x = np.full((3, 4, 9, 9), TINY[dtype], dtype)
    w = np.full((5, 4, 3, 3), 0.5, dtype)
    out = np.ones((3, 5, 7, 7), dtype)
    matmul.conv2d_forward(x, w, np.zeros(5, dtype), out, num_threads=threads)
    _expect_flushed(out, 36 * 0.5 * float(TINY[dtype]), flush)


def test_model_predict(dtype, flush):
    model = ranvier.Sequential([ranvier.Dense(37, 11, dtype=dtype)])
    dense = model.layers[0]
    dense.weight.data[...] = 0.5
    dense.bias.data[...] = 0.0
    out = model.predict(np.full((64, 37), TINY[dtype], dtype))
    _expect_flushed(out, 37 * 0.5 * float(TINY[dtype]), flush)


def test_normal_data_unchanged_by_the_mode(dtype, rng):
    """Flushing only touches subnormals: on normal data both modes agree bitwise."""
    a, b = rng.standard_normal((67, 31)).astype(dtype), rng.standard_normal((31, 45)).astype(dtype)
    outs = []
    for mode in (True, False):
        ranvier.set_flush_denormal(mode)
        out = np.empty((67, 45), dtype)
        matmul.gemm(a, b, out, num_threads=2)
        outs.append(out)
    ranvier.set_flush_denormal(True)
    np.testing.assert_array_equal(outs[0], outs[1])


# -- the caller's state ---------------------------------------------------------------------------
def _caller_words(default):
    """Words a caller may hold: the default, its own flushing, gradual underflow with a status
    flag already raised (x86: precision), and round-toward-zero."""
    if X86:
        plain = default & ~FLUSH_BITS
        return [default, plain | FLUSH_BITS, plain | 0x20, plain | 0x6000]
    return [default, default | FLUSH_BITS, (default & ~FLUSH_BITS) | (3 << 22)]


@pytest.mark.quick
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_entry_point_restores_the_callers_word(name, dtype, flush, caller_word):
    for word in _caller_words(caller_word):
        _runtime._set_fp_control_word(word)
        _call(name, dtype)   # builds its arrays with NumPy, then calls the kernel
        after = _runtime._fp_control_word()
        _runtime._set_fp_control_word(caller_word)
        assert after & CONTROL == word & CONTROL, (
            f"{name} left {after:#x}, the caller had {word:#x}")


def test_status_flags_are_the_callers_own(dtype, flush, caller_word):
    """The flags a kernel raises go with its state: the caller sees the word it had, bit for bit
    (its own flags included), with nothing from NumPy in between."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((300, 41)).astype(dtype), rng.standard_normal((41, 90)).astype(dtype)
    a[0, :] = TINY[dtype]
    out = np.empty((300, 90), dtype)
    for word in _caller_words(caller_word & CONTROL) + [caller_word | 0x1 if X86 else caller_word]:
        _runtime._set_fp_control_word(word)
        matmul.gemm(a, b, out, num_threads=2)          # inexact, and subnormal products
        after = _runtime._fp_control_word()
        _runtime._set_fp_control_word(caller_word)
        assert after == word, f"gemm left {after:#x}, the caller had {word:#x}"


def test_a_model_under_any_caller_word(flush, caller_word):
    """fit and predict leave the caller's word as it was, and run in the kernels' own mode
    whatever the caller's: under a caller's round-toward-zero, training stays finite and
    predict's outputs are bitwise those under the default word."""
    model = ranvier.Sequential([ranvier.Dense(13, 17), ranvier.Tanh(), ranvier.Dense(17, 3),
                                ranvier.Softmax()])
    model.compile(loss="cross_entropy", optimizer="adam")
    x = np.random.default_rng(0).standard_normal((40, 13)).astype(np.float32)
    y = np.arange(40) % 3
    expected = model.predict(x)
    for word in _caller_words(caller_word):
        _runtime._set_fp_control_word(word)
        got = model.predict(x)
        after = _runtime._fp_control_word()
        _runtime._set_fp_control_word(caller_word)
        assert after & CONTROL == word & CONTROL, f"predict left {after:#x}, the caller had {word:#x}"
        np.testing.assert_array_equal(got, expected)
    for word in _caller_words(caller_word):
        _runtime._set_fp_control_word(word)
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        after = _runtime._fp_control_word()
        _runtime._set_fp_control_word(caller_word)
        assert after & CONTROL == word & CONTROL, f"fit left {after:#x}, the caller had {word:#x}"
        assert np.all(np.isfinite(history.history["loss"]))


def test_workers_left_as_they_were(dtype, flush):
    """The OpenMP workers adopt the mode for a region and put theirs back: a pool shared with
    other libraries (NumPy's BLAS, torch) sees no change."""
    before = _runtime._team_fp_control_words(2)
    k = 37
    a = np.full((512, k), TINY[dtype], dtype)
    out = np.empty((512, 257), dtype)
    matmul.gemm(a, np.full((k, 257), 0.5, dtype), out, num_threads=2)
    p = np.ones(N_PARALLEL, dtype)
    optimizers.adam_step(p, p * TINY[dtype], np.zeros_like(p), np.zeros_like(p), 1e-3, 0.9,
                         0.999, 1e-8, 0.0, 1, num_threads=2)
    matmul.conv2d_forward(np.ones((4, 4, 9, 9), dtype), np.ones((5, 4, 3, 3), dtype), None,
                          np.empty((4, 5, 7, 7), dtype), num_threads=2)
    after = _runtime._team_fp_control_words(2)
    assert after[1:] == before[1:]                     # the worker, bit for bit
    assert after[0] & CONTROL == before[0] & CONTROL   # the caller, NumPy ran in between


def test_workers_take_the_mode_whatever_theirs():
    """A worker whose own word has flushing off still flushes inside a kernel, and one with
    flushing on still runs gradual underflow when ranvier's flushing is off and the caller's is."""
    default = _runtime._fp_control_word()
    tiny = TINY[np.dtype(np.float32)]
    for kernel_flush, caller_flush in [(True, False), (False, False), (False, True)]:
        ranvier.set_flush_denormal(kernel_flush)
        word = (default & ~FLUSH_BITS) | (FLUSH_BITS if caller_flush else 0)
        _runtime._set_fp_control_word(word)
        dy = np.full(N_PARALLEL, tiny, np.float32)
        dx = np.ones(N_PARALLEL, np.float32)
        code, param = ranvier.Sigmoid().fused_activation
        act_k.backward(code, np.full(N_PARALLEL, 0.5, np.float32), dy, dx, param, 2)
        _runtime._set_fp_control_word(default)
        ranvier.set_flush_denormal(True)
        _expect_flushed(dx, 0.25 * float(tiny), kernel_flush or caller_flush)


# -- the switch ------------------------------------------------------------------------------------
def test_set_flush_denormal_returns_support_and_refuses_non_bools():
    assert ranvier.get_flush_denormal() is True       # the default
    assert ranvier.set_flush_denormal(False) is True  # this CPU supports it (module skip above)
    assert ranvier.get_flush_denormal() is False
    ranvier.set_flush_denormal(True)
    for bad in ("yes", 1.0, None):
        with pytest.raises(TypeError, match="mode"):
            ranvier.set_flush_denormal(bad)


def test_show_config_reports_the_mode(capsys):
    ranvier.show_config()
    assert "denormals:       flushed to zero in kernels" in capsys.readouterr().out
    ranvier.set_flush_denormal(False)
    try:
        ranvier.show_config()
    finally:
        ranvier.set_flush_denormal(True)
    assert "denormals:       gradual underflow" in capsys.readouterr().out


@pytest.mark.parametrize("value, expected", [("0", "False"), ("1", "True"), ("", "True"),
                                             ("false", "False")])
def test_environment_variable(value, expected):
    env = dict(os.environ, RANVIER_FLUSH_DENORMAL=value)
    out = subprocess.run([sys.executable, "-c", "import ranvier; print(ranvier.get_flush_denormal())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected


def test_environment_variable_refuses_other_values():
    env = dict(os.environ, RANVIER_FLUSH_DENORMAL="sometimes")
    r = subprocess.run([sys.executable, "-c", "import ranvier"], env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "RANVIER_FLUSH_DENORMAL must be 0 or 1" in r.stderr
