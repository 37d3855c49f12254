"""bfloat16 conversions (csrc/bf16.h, _kernels/bf16.pyx) bit for bit against the float64
reference of round-to-nearest-even (_reference.bf16_bits) and PyTorch's, on every ISA, at 1 and
2 threads: random bit patterns over the whole float32 range, and the cases that decide a
rounding (ties, the largest finite values, infinities, NaNs, subnormals, signed zeros)."""
import numpy as np
import pytest

import _reference as ref
from ranvier._kernels import bf16

# Past one conversion chunk (65536), so two threads each take a share, and awkward sizes.
SIZES = [1, 7, 17, 255, 65537, 3 * 65536 + 5]


def _edge_cases():
    bits = [0x00000000, 0x80000000,                   # +-0
            0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # ties to even (down, up), around
            0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF,       # largest bf16, the midpoint above, max f32
            0xFF7F8000, 0x7F800000, 0xFF800000,       # -midpoint, +-inf
            0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FFFFFFF, 0xFF80FFFF,  # quiet/signalling NaNs
            0x00000001, 0x00008000, 0x00018000, 0x007FFFFF, 0x807F8000,  # subnormals, their ties
            0x00800000, 0x3F800000, 0xBF7FFFFF]       # smallest normal, 1, just under -1
    return np.array(bits, np.uint32).view(np.float32)


def _inputs(n, rng):
    x = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = _edge_cases()
    x[:min(n, len(edges))] = edges[:n]
    return x


@pytest.mark.quick
@pytest.mark.parametrize("n", SIZES)
def test_to_bf16_rounds_to_nearest_even(n, rng, isa, num_threads):
    x = _inputs(n, rng)
    out = np.empty(n, np.uint16)
    bf16.to_bf16(x, out, num_threads)
    np.testing.assert_array_equal(out, ref.bf16_bits(x))


@pytest.mark.parametrize("n", SIZES)
def test_from_bf16_is_exact(n, rng, isa, num_threads):
    bits = rng.integers(0, 2 ** 16, n, dtype=np.int64).astype(np.uint16)
    out = np.empty(n, np.float32)
    bf16.from_bf16(bits, out, num_threads)
    np.testing.assert_array_equal(out.view(np.uint32), ref.bf16_value(bits).view(np.uint32))


def test_round_trip_keeps_every_bf16(isa):
    """Every one of the 65,536 bf16 values widens and rounds back to itself (NaNs quiet)."""
    bits = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    wide = np.empty(bits.size, np.float32)
    bf16.from_bf16(bits, wide)
    back = np.empty(bits.size, np.uint16)
    bf16.to_bf16(wide, back)
    nan = np.isnan(wide)
    np.testing.assert_array_equal(back[~nan], bits[~nan])
    np.testing.assert_array_equal(back[nan], bits[nan] | 0x40)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = _inputs(100_003, rng)
    x = x[~np.isnan(x)]                  # torch makes every NaN its canonical 0x7FC0
    out = np.empty(x.size, np.uint16)
    bf16.to_bf16(x, out)
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(out, expected)


def test_bad_arguments():
    x = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="out"):
        bf16.to_bf16(x, np.empty(4, np.uint16))
    with pytest.raises(ValueError):
        bf16.to_bf16(x, x.view(np.uint16)[:5])           # overlaps x
    with pytest.raises(ValueError):
        bf16.to_bf16(np.ones(5), np.empty(5, np.uint16))  # float64
