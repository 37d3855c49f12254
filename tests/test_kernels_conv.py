"""Conv2d's native kernels (_kernels/conv.pxi, csrc/conv_template.h) against a float64 NumPy
reference and torch's autograd: forward with the fused bias + activation, the data and weight
gradients; over strides, paddings, dilations, groups, odd sizes and batch 1, on every ISA, and
bitwise the same on 1 and 2 threads."""
import numpy as np
import pytest

from ranvier._kernels import activations as _act
from ranvier._kernels import matmul as _mm

from _reference import conv2d as conv2d_ref
from _reference import conv2d_grads as conv2d_grads_ref
from _reference import conv_out_size as _out_size


# (n, c_in, h, w, c_out, kernel, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (3, 2, 11, 8, 5, (5, 3), (2, 1), (2, 0), (1, 1), 1),
    (2, 4, 13, 13, 6, (3, 3), (3, 2), (1, 2), (2, 1), 2),
    (1, 6, 9, 10, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6),    # depthwise
    (2, 6, 8, 7, 9, (2, 2), (2, 2), (0, 1), (1, 2), 3),
    (5, 7, 6, 6, 17, (1, 1), (1, 1), (0, 0), (1, 1), 1),    # a 1x1 convolution: a plain GEMM
    (2, 3, 4, 5, 2, (4, 5), (1, 1), (0, 0), (1, 1), 1),     # kernel as large as the input
    (1, 2, 3, 3, 3, (3, 3), (1, 1), (2, 2), (2, 2), 1),     # padding larger than half the kernel
    (37, 3, 10, 10, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # more images than weight chunks
    (2, 16, 17, 19, 33, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # channels just past a tile
    # each image's GEMM (64 x 196 x 288) past the size that takes the blocked path, whose
    # threads share its tiles: it must keep to its own image when images run in parallel
    (3, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
]
IDS = [f"n{c[0]}c{c[1]}_{c[2]}x{c[3]}_o{c[4]}_k{c[5][0]}{c[5][1]}_s{c[6][0]}{c[6][1]}"
       f"_p{c[7][0]}{c[7][1]}_d{c[8][0]}{c[8][1]}_g{c[9]}" for c in CASES]


def _problem(rng, dtype, case):
    n, c, h, w_, o, (kh, kw), stride, padding, dilation, groups = case
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = (rng.standard_normal((o, c // groups, kh, kw)) / np.sqrt(c // groups * kh * kw)).astype(
        dtype)
    b = rng.standard_normal(o).astype(dtype)
    oh = _out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = _out_size(w_, kw, stride[1], padding[1], dilation[1])
    return x, w, b, (n, o, oh, ow), dict(stride=stride, padding=padding, dilation=dilation,
                                         groups=groups)


def _tol(dtype, k):
    """Absolute tolerance of a k-term dot product of unit-scale values in ``dtype``."""
    return (5e-6 if dtype == np.float32 else 1e-13) * max(1.0, np.sqrt(k))


@pytest.mark.quick
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(rng, dtype, isa, case):
    x, w, b, yshape, geo = _problem(rng, dtype, case)
    for bias in (b, None):
        y = np.full(yshape, np.nan, dtype)  # every output must be written
        _mm.conv2d_forward(x, w, bias, y, **geo)
        ref = conv2d_ref(x, w, bias, geo["stride"], geo["padding"], geo["dilation"], geo["groups"])
        np.testing.assert_allclose(y, ref, rtol=0, atol=_tol(dtype, w[0].size))


@pytest.mark.quick
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_reference(rng, dtype, isa, case):
    x, w, b, yshape, geo = _problem(rng, dtype, case)
    dz = rng.standard_normal(yshape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(b.shape, np.nan, dtype)
    _mm.conv2d_backward(x, w, dz, dx, dw, db, **geo)
    rdx, rdw, rdb = conv2d_grads_ref(x, w, dz, geo["stride"], geo["padding"], geo["dilation"],
                                     geo["groups"])
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=_tol(dtype, w.shape[0] * w[0, 0].size))
    np.testing.assert_allclose(dw, rdw, rtol=0, atol=_tol(dtype, yshape[0] * yshape[2] * yshape[3]))
    np.testing.assert_allclose(db, rdb, rtol=0, atol=_tol(dtype, yshape[0] * yshape[2] * yshape[3]))
    # without dx (the first layer) and without a bias: the same weight gradient
    dw2 = np.full(w.shape, np.nan, dtype)
    _mm.conv2d_backward(x, w, dz, None, dw2, None, **geo)
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("name", sorted(_act.ACTIVATIONS))
def test_fused_activation_equals_the_activation_kernel(rng, dtype, name):
    """Bias + activation in the GEMM epilogue give bitwise what the activation kernel gives on the
    plain convolution (the one activation table)."""
    x, w, b, yshape, geo = _problem(rng, dtype, CASES[3])
    code, param = _act.ACTIVATIONS[name], 0.2
    fused = np.empty(yshape, dtype)
    _mm.conv2d_forward(x, w, b, fused, act=code, param=param, **geo)
    plain = np.empty(yshape, dtype)
    _mm.conv2d_forward(x, w, b, plain, **geo)
    expected = np.empty_like(plain)
    _act.forward(code, plain.reshape(-1), expected.reshape(-1), param, 1)
    np.testing.assert_array_equal(fused, expected)


@pytest.mark.parametrize("case", [CASES[3], CASES[9], CASES[10], CASES[11]],
                         ids=[IDS[3], IDS[9], IDS[10], IDS[11]])
def test_bitwise_equal_on_one_and_two_threads(rng, dtype, case):
    x, w, b, yshape, geo = _problem(rng, dtype, case)
    dz = rng.standard_normal(yshape).astype(dtype)
    results = []
    for nt in (1, 2):
        y = np.empty(yshape, dtype)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        _mm.conv2d_forward(x, w, b, y, num_threads=nt, **geo)
        _mm.conv2d_backward(x, w, dz, dx, dw, db, num_threads=nt, **geo)
        results.append((y, dx, dw, db))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_matches_torch_autograd(rng, torch):
    import torch.nn.functional as F

    for case in CASES[:7]:
        x, w, b, yshape, geo = _problem(rng, np.float64, case)
        dz = rng.standard_normal(yshape)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = F.conv2d(tx, tw, tb, **geo)
        ty.backward(torch.tensor(dz))
        y = np.empty(yshape)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        _mm.conv2d_forward(x, w, b, y, **geo)
        _mm.conv2d_backward(x, w, dz, dx, dw, db, **geo)
        for mine, theirs in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
            np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_no_images_give_zero_weight_gradients(dtype):
    """An empty batch: the native pass itself writes zero dw and db (a sum over no images)."""
    x, dz = np.empty((0, 3, 5, 5), dtype), np.empty((0, 4, 3, 3), dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    dx, dw, db = np.empty_like(x), np.full(w.shape, np.nan, dtype), np.full(4, np.nan, dtype)
    _mm.conv2d_backward(x, w, dz, dx, dw, db)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


def test_bad_shapes_raise(rng):
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    y = np.empty((2, 6, 6, 6), np.float32)
    with pytest.raises(ValueError, match="does not fit 4 input channels"):
        _mm.conv2d_forward(x, w, None, y)  # groups=1 needs weight.shape[1] == 4
    _mm.conv2d_forward(x, w, None, y, groups=2)
    with pytest.raises(ValueError, match=r"output has shape \(2, 6, 5, 6\)"):
        _mm.conv2d_forward(x, w, None, np.empty((2, 6, 5, 6), np.float32), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        _mm.conv2d_forward(np.ascontiguousarray(x[:, :, :2]), w, None,
                           np.empty((2, 6, 1, 6), np.float32), groups=2)
    with pytest.raises(ValueError, match="stride, dilation and groups must be >= 1"):
        _mm.conv2d_forward(x, w, None, y, stride=(0, 1), groups=2)
    with pytest.raises(ValueError, match=r"bias has 5 entries, expected 6 \(the output channels\)"):
        _mm.conv2d_forward(x, w, np.zeros(5, np.float32), y, groups=2)
    with pytest.raises(ValueError, match="dw has shape"):
        _mm.conv2d_backward(x, w, y, None, np.empty((6, 2, 3, 2), np.float32), None, groups=2)
    with pytest.raises(ValueError, match="num_threads"):
        _mm.conv2d_forward(x, w, None, y, groups=2, num_threads=0)
    square = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="out overlaps x"):
        _mm.conv2d_forward(x, square, None, x)  # in place would read what it overwrote
    with pytest.raises(ValueError, match="dx overlaps x"):
        _mm.conv2d_backward(x, square, x, x, np.empty_like(square), None)
    with pytest.raises((TypeError, ValueError)):
        _mm.conv2d_forward(x.astype(np.float64), w, None, y, groups=2)  # mixed dtypes
    with pytest.raises((TypeError, ValueError)):
        _mm.conv2d_forward(np.asfortranarray(x), w, None, y, groups=2)  # not C-contiguous


@pytest.mark.parametrize("blocking", [(1, 1, 1), (13, 7, 37)], ids=["one-tile", "odd"])
@pytest.mark.parametrize("case", [CASES[3], CASES[10]], ids=[IDS[3], IDS[10]])
def test_under_forced_gemm_blocks(rng, dtype, isa, case, blocking):
    """The convolutions run the GEMM with its cache blocks: with small forced ones every block
    loop takes many trips; the results stay within the reference's tolerance and the same on 1
    and 2 threads."""
    x, w, b, yshape, geo = _problem(rng, dtype, case)
    dz = rng.standard_normal(yshape).astype(dtype)
    before = _mm._set_gemm_blocking(blocking)
    try:
        results = []
        for nt in (1, 2):
            y = np.full(yshape, np.nan, dtype)
            dx, dw, db = (np.full(a.shape, np.nan, dtype) for a in (x, w, b))
            _mm.conv2d_forward(x, w, b, y, num_threads=nt, **geo)
            _mm.conv2d_backward(x, w, dz, dx, dw, db, num_threads=nt, **geo)
            results.append((y, dx, dw, db))
    finally:
        _mm._set_gemm_blocking(before)
    y, dx, dw, db = results[0]
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, geo["stride"], geo["padding"],
                                             geo["dilation"], geo["groups"]),
                               rtol=0, atol=_tol(dtype, w[0].size))
    rdx, rdw, rdb = conv2d_grads_ref(x, w, dz, geo["stride"], geo["padding"], geo["dilation"],
                                     geo["groups"])
    batch_terms = yshape[0] * yshape[2] * yshape[3]  # the sums of dw and db run over these
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=_tol(dtype, w.shape[0] * w[0, 0].size))
    np.testing.assert_allclose(dw, rdw, rtol=0, atol=_tol(dtype, batch_terms))
    np.testing.assert_allclose(db, rdb, rtol=0, atol=_tol(dtype, batch_terms))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
