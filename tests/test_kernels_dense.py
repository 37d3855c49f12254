"""Fused Dense kernels (GEMM + bias + activation epilogue; activation gradient + bias gradient +
two GEMMs) against a float64 NumPy reference and against the unfused path; the training plan
against layer-by-layer training; no array allocation per training step."""

import numpy as np
import pytest
import _reference as ref64
from _assert import assert_fit_allocates_nothing
from conftest import eps, readonly

import ranvier as rv
from ranvier import _plan
from ranvier._kernels import matmul as mm
from ranvier._kernels.activations import ACTIVATIONS
from ranvier._workspace import Workspace

ACTS = {name: ACTIVATIONS[name] for name in ("none", "relu", "sigmoid", "tanh")}
ACT_LAYERS = {"relu": rv.ReLU, "sigmoid": rv.Sigmoid, "tanh": rv.Tanh}
SHAPES = [(1, 1, 1), (7, 5, 3), (33, 17, 31), (32, 64, 10), (65, 129, 33), (129, 257, 64),
          # edge tiles: 2..6 leftover rows, outputs on a half/full register tile width, and a k
          # over one KC = 256 slice (the epilogue runs on the last slice only)
          (6, 16, 16), (12, 40, 8), (3, 300, 48), (4, 7, 24), (10, 9, 4),
          # one input feature: W.T has unit column stride, so the unpacked small-product path
          # runs the epilogue (ragged and exact tile widths)
          (9, 1, 20), (9, 1, 16), (17, 1, 33)]


def _bound(a, b, k, dtype):
    """Elementwise error bound of a k-term dot product computed in dtype: ~k eps |a| @ |b|."""
    return 4 * (k + 2) * eps(dtype) * (np.abs(a) @ np.abs(b)) + 10 * eps(dtype)


@pytest.mark.parametrize("n,fin,fout", SHAPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_dense_forward_matches_reference(rng, dtype, isa, gemm_path, n, fin, fout, act):
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    b = rng.standard_normal(fout).astype(dtype)
    for nt in (1, 2):
        out = np.full((n, fout), np.nan, dtype)  # must be overwritten, never read
        mm.dense_forward(readonly(x), readonly(w), readonly(b), out, ACTS[act], 0.0, nt)
        z = x.astype(np.float64) @ w.T.astype(np.float64) + b
        tol = _bound(np.c_[x, np.ones(n)], np.r_[w.T, b[None]], fin + 1, dtype)
        # the activations are 1-Lipschitz, so the pre-activation bound carries over
        np.testing.assert_array_less(np.abs(out - ref64.activation(act, z)), tol + 4 * eps(dtype))


@pytest.mark.parametrize("n,fin,fout", SHAPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_dense_backward_matches_reference(rng, dtype, isa, gemm_path, n, fin, fout, act):
    x = rng.standard_normal((n, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    y = ref64.activation(act, rng.standard_normal((n, fout))).astype(dtype)
    dy = rng.standard_normal((n, fout)).astype(dtype)
    g = dy.astype(np.float64) * ref64.activation_grad_from_output(act, y.astype(np.float64))
    results = []
    for nt in (1, 2):
        dz = np.full((n, fout), np.nan, dtype)
        dw = np.full((fout, fin), np.nan, dtype)
        db = np.full(fout, np.nan, dtype)
        dx = np.full((n, fin), np.nan, dtype)
        mm.dense_backward(readonly(x), readonly(w), readonly(y), readonly(dy), dz, dw, db, dx,
                          ACTS[act], 0.0, nt)
        np.testing.assert_array_less(np.abs(dw - g.T @ x), _bound(g.T, x, n, dtype))
        np.testing.assert_array_less(np.abs(dx - g @ w), _bound(g, w, fout, dtype))
        np.testing.assert_array_less(np.abs(db - g.sum(0)),
                                     4 * (n + 2) * eps(dtype) * np.abs(g).sum(0) + 10 * eps(dtype))
        results.append((dw.copy(), db.copy(), dx.copy()))
    for a, b in zip(*results):  # fixed partitioning: the thread count does not change a bit
        np.testing.assert_array_equal(a, b)


def test_dense_backward_without_input_grad_or_bias(rng, dtype):
    x = rng.standard_normal((9, 4)).astype(dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    dy = rng.standard_normal((9, 3)).astype(dtype)
    dw = np.empty((3, 4), dtype)
    mm.dense_backward(x, w, dy, dy, None, dw, None, None, ACTS["none"], 0.0, 1)
    np.testing.assert_allclose(dw, dy.T.astype(float) @ x, rtol=50 * eps(dtype))


def test_dense_kernels_reject_mismatched_shapes():
    x = np.ones((4, 3), np.float32)
    w = np.ones((2, 5), np.float32)
    with pytest.raises(ValueError, match="dense_forward: w's columns has 5 entries, expected 3"):
        mm.dense_forward(x, w, None, np.empty((4, 2), np.float32))
    with pytest.raises(ValueError, match="bias"):
        mm.dense_forward(x, np.ones((2, 3), np.float32), np.ones(3, np.float32),
                         np.empty((4, 2), np.float32))


def _mlp(dtype, act_layer, seed=0):
    rng = np.random.default_rng(seed)
    return rv.Sequential([rv.Dense(12, 16, seed=rng, dtype=dtype), act_layer(),
                          rv.Dense(16, 8, seed=rng, dtype=dtype), act_layer(),
                          rv.Dense(8, 4, seed=rng, dtype=dtype)])


FUSABLE = [rv.ReLU, rv.Sigmoid, rv.Tanh, lambda: rv.LeakyReLU(0.2), lambda: rv.ELU(0.7), rv.GELU,
           rv.SiLU]


@pytest.mark.quick
@pytest.mark.parametrize("act_layer", FUSABLE)
def test_fused_plan_equals_layer_by_layer_bitwise(rng, dtype, isa, act_layer):
    """One fused step (the plan's DenseRun: activation in the GEMM epilogue, activation gradient
    folded into the bias-gradient pass) gives the same bits as the Dense and activation layers
    run one by one, for every activation of the table, on every ISA."""
    x = rng.standard_normal((23, 12)).astype(dtype)
    labels = rng.integers(0, 4, 23)
    fused, plain = _mlp(dtype, act_layer), _mlp(dtype, act_layer)
    loss_a, loss_b = rv.CrossEntropyLoss(), rv.CrossEntropyLoss()
    blocks = _plan.build_plan(fused.layers, Workspace())
    assert len(blocks) == 1 and isinstance(blocks[0], _plan.DenseRunBlock)  # one native run
    out_a = _plan.run_forward(blocks, x)
    la, _ = loss_a._train_forward(out_a, labels)
    _plan.run_backward(blocks, loss_a.backward())
    h = x
    for layer in plain.layers:
        h = layer.forward(h)
    lb, _ = loss_b._train_forward(h, labels)
    g = loss_b.backward()
    for layer in reversed(plain.layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(out_a, h)
    assert la == lb
    for (name, pa), (_, pb) in zip(fused.named_parameters(), plain.named_parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=name)


def test_training_step_allocates_no_arrays_after_first_batch(rng):
    """Once the first batch has run, a training step allocates no array memory: batches are
    gathered into reused buffers and every block and loss writes into its own workspace, kept
    across fit calls. Batch-sized arrays here are >= 2 MB, so a single per-step allocation would
    lift the traced peak past the 1 MB left for per-fit and per-epoch bookkeeping."""
    X = rng.standard_normal((4096, 256)).astype(np.float32)
    y = rng.integers(0, 4, 4096)
    model = rv.Sequential([rv.Dense(256, 512, seed=1), rv.ReLU(), rv.Dense(512, 4, seed=2)])
    for opt in (rv.SGD(model.parameters(), lr=0.01, momentum=0.9), rv.Adam(model.parameters())):
        assert_fit_allocates_nothing(model, X, y, type(opt).__name__, optimizer=opt,
                                     batch_size=2048)


def _run_and_reference(dtype, rng, acts=("relu", "tanh", "none")):
    """A DenseRun over three layers (through the plan's block, which binds the layers' arrays and
    the workspace's buffers to it), and the same layers as plain Dense objects."""
    sizes = [(9, 13), (13, 6), (6, 3)]
    dense = [rv.Dense(i, o, seed=k, dtype=dtype) for k, (i, o) in enumerate(sizes)]
    layers = []
    for d, a in zip(dense, acts):
        layers += [d] + ([ACT_LAYERS[a]()] if a != "none" else [])
    return dense, _BlockRun(_plan.DenseRunBlock(layers, Workspace(), 0))


class _BlockRun:
    """The block with DenseRun's call signature (num_threads defaulting to 1)."""

    def __init__(self, block):
        self.block = block

    def forward(self, x, num_threads=1):
        return self.block.forward(x, num_threads)

    def backward(self, dy, need_input_grad, num_threads=1):
        return self.block.backward(dy, need_input_grad, num_threads)


def _reference_step(dense, acts, x, dy):
    """float64 forward output, weight and bias gradients and dL/dx of the same stack."""
    hs, h = [x.astype(np.float64)], x.astype(np.float64)
    for d, a in zip(dense, acts):
        h = ref64.activation(a, h @ d.weight.data.T.astype(np.float64) + d.bias.data)
        hs.append(h)
    g = dy.astype(np.float64)
    grads = []
    for i in range(len(dense) - 1, -1, -1):
        g = g * ref64.activation_grad_from_output(acts[i], hs[i + 1])
        grads.append((g.T @ hs[i], g.sum(0)))
        g = g @ dense[i].weight.data.astype(np.float64)
    return hs[-1], grads[::-1], g


@pytest.mark.quick
def test_dense_run_matches_reference(rng, dtype, isa, num_threads):
    acts = ("relu", "tanh", "none")
    dense, run = _run_and_reference(dtype, rng, acts)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for n in (1, 7, 33, 7):  # batch sizes change, then come back to a bound one
        x = rng.standard_normal((n, 9)).astype(dtype)
        dy = rng.standard_normal((n, 3)).astype(dtype)
        out = run.forward(x, num_threads)
        dx = run.backward(dy, True, num_threads)
        ref_out, ref_grads, ref_dx = _reference_step(dense, acts, x, dy)
        np.testing.assert_allclose(out, ref_out, rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
        for d, (gw, gb) in zip(dense, ref_grads):
            np.testing.assert_allclose(d.weight.grad, gw, rtol=tol, atol=tol)
            np.testing.assert_allclose(d.bias.grad, gb, rtol=tol, atol=tol)
        assert run.backward(dy, False, num_threads) is None  # a first run: no dL/dx


def test_dense_run_sees_replaced_parameters(rng):
    dense, run = _run_and_reference(np.float64, rng)
    x = rng.standard_normal((5, 9))
    run.forward(x)
    dense[1].weight.data = rng.standard_normal((6, 13))  # replaced, not written in place
    out = run.forward(x)
    np.testing.assert_allclose(out, _reference_step(dense, ("relu", "tanh", "none"), x,
                                                    np.zeros((5, 3)))[0], rtol=1e-12)
    dense[0].weight.data = np.ones((13, 9), np.float32)  # wrong dtype: refused, not misread
    with pytest.raises(TypeError, match="layer 0 weight"):
        run.forward(x)


def test_dense_run_rejects_bad_calls(rng):
    dense, run = _run_and_reference(np.float32, rng)
    with pytest.raises(RuntimeError, match="before forward"):
        run.backward(np.zeros((2, 3), np.float32), True)
    with pytest.raises(ValueError, match="x must be"):
        run.forward(np.zeros((2, 8), np.float32))        # wrong width
    with pytest.raises(ValueError, match="x must be"):
        run.block.run.forward(np.zeros((2, 9), np.float64))  # wrong dtype (the block converts)
    run.forward(np.zeros((2, 9), np.float32))
    with pytest.raises(ValueError, match=r"dy must be .* shape \(2, 3\)"):
        run.backward(np.zeros((3, 3), np.float32), True)   # not the last forward's rows
    with pytest.raises(ValueError, match="dy must be"):
        run.block.run.backward(np.zeros((2, 3), np.float32)[:, ::-1], True)
    with pytest.raises(ValueError, match="features"):
        mm.DenseRun([(4, 5, True), (6, 2, True)], [(ACTS["none"], 0.0)] * 2, np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        mm.DenseRun([(4, 5, True)], [(99, 0.0)], np.float32)


def test_dense_run_empty_batch_zeroes_gradients(rng):
    dense, run = _run_and_reference(np.float32, rng)
    for d in dense:
        d.weight.grad[...] = 7
        d.bias.grad[...] = 7
    out = run.forward(np.zeros((0, 9), np.float32))
    assert out.shape == (0, 3)
    run.backward(np.zeros((0, 3), np.float32), True)
    for d in dense:
        assert not d.weight.grad.any() and not d.bias.grad.any()


def test_plan_splits_runs_at_other_layers_and_dtypes():
    layers = [rv.Dense(4, 5), rv.ReLU(), rv.Dense(5, 5), rv.Dropout(0.1), rv.Dense(5, 3),
              rv.Sigmoid()]
    blocks = _plan.build_plan(layers, Workspace())
    assert [type(b).__name__ for b in blocks] == ["DenseRunBlock", "LayerBlock", "DenseRunBlock"]
    assert len(blocks[0].dense) == 2 and len(blocks[2].dense) == 1
    mixed = _plan.build_plan([rv.Dense(4, 5, dtype=np.float32), rv.Dense(5, 3, dtype=np.float64)],
                             Workspace())
    assert len(mixed) == 2


def test_fused_relu_keeps_nan_as_torch(dtype, gemm_path):
    """relu(NaN) is NaN in the GEMM epilogue, and the fused backward passes dy where y is NaN
    (torch's threshold_backward), as the unfused ReLU kernels do."""
    x = np.ones((3, 4), dtype)
    x[1, 2] = np.nan
    w = np.ones((5, 4), dtype)
    out = np.empty((3, 5), dtype)
    mm.dense_forward(x, w, np.zeros(5, dtype), out, ACTS["relu"], 0.0, 1)
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()
    y = np.array([[np.nan, -1.0, 2.0]], dtype)
    dy = np.array([[3.0, 4.0, 5.0]], dtype)
    dz = np.empty_like(y)
    dw = np.empty((3, 2), dtype)
    mm.dense_backward(np.ones((1, 2), dtype), np.ones((3, 2), dtype), y, dy, dz, dw,
                      np.empty(3, dtype), None, ACTS["relu"], 0.0, 1)
    np.testing.assert_array_equal(dz, [[3.0, 0.0, 5.0]])
