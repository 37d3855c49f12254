"""The kernel contract: every Python-visible native entry point (src/ranvier/_kernels, checks in
_checks.pxd) refuses arguments that do not fit with a ValueError or TypeError, never writing out of
bounds (make sanitize runs this file under AddressSanitizer).

Each entry point has one valid call below (SPECS). From it the test derives the bad ones: each
dimension of each array that must agree with another argument made one larger, each array of the
fused float type given the other float type, each array given as a strided view, and
num_threads=0. A public entry point with no spec fails the coverage test, so a new kernel cannot
skip its contract."""
import importlib

import numpy as np
import pytest

MODULES = ["activations", "bf16", "losses", "matmul", "norm", "optimizers", "pool",
           "validation"]
N, D = 5, 3


class A:
    """An array argument of a spec: its shape, dtype ("real": the call's float type), and which
    dimensions must agree with another argument (all by default)."""

    def __init__(self, *shape, dtype="real", free=(), labels=False):
        self.shape, self.dtype, self.free, self.labels = shape, dtype, set(free), labels

    def make(self, real, shape=None, dtype=None, strided=False):
        shape = self.shape if shape is None else shape
        dt = np.dtype(dtype or (real if self.dtype == "real" else self.dtype))
        rng = np.random.default_rng(0)
        if self.labels:
            a = rng.integers(0, D, shape).astype(dt)
        else:
            a = (rng.random(shape) * 0.5 + 0.25).astype(dt)  # in (0, 1): fine for every kernel
        if strided:
            big = np.empty(shape[:-1] + (2 * shape[-1],), dt) if shape else np.empty(2, dt)
            view = big[..., ::2]
            view[...] = a
            return view
        return a


CONV = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)

# name -> (positional arguments, keyword arguments); A(...) entries become arrays.
SPECS = {
    "activations.forward": ([1, A(N), A(N)], {}),
    "activations.backward": ([1, A(N), A(N), A(N)], {}),
    "activations.bias_forward": ([1, A(N, D), A(D), A(N, D)], {}),
    "activations.softmax_forward": ([A(N, D), A(N, D)], {}),
    "activations.softmax_backward": ([A(N, D), A(N, D), A(N, D)], {}),
    "activations.dropout_apply": ([A(N), A(N, dtype=np.float32), 0.5, 2.0, A(N)], {}),
    "bf16.to_bf16": ([A(N, dtype=np.float32), A(N, dtype=np.uint16)], {}),
    "bf16.from_bf16": ([A(N, dtype=np.uint16), A(N, dtype=np.float32)], {}),
    "bf16.gemm": ([A(N, 4, dtype=np.float32), A(4, D, dtype=np.uint16), A(N, D, dtype=np.float32)],
                  {}),
    "losses.softmax_cross_entropy_labels": (
        [A(N, D), A(N, dtype=np.int64, labels=True), A(N, D), A(N, dtype=np.float64), 0.2], {}),
    "losses.softmax_cross_entropy_labels_weighted": (
        [A(N, D), A(N, dtype=np.int64, labels=True), A(N, D), A(N, dtype=np.float64), 0.2,
         A(D, dtype=np.float64), 0.1], {}),
    "losses.softmax_cross_entropy_probs": (
        [A(N, D), A(N, D), A(N, D), A(N, dtype=np.float64), 0.2], {}),
    "losses.softmax_cross_entropy_probs_weighted": (
        [A(N, D), A(N, D), A(N, D), A(N, dtype=np.float64), 0.2, A(D, dtype=np.float64), 0.1], {}),
    "losses.mse": ([A(N), A(N), A(N)], {}),
    "losses.bce": ([A(N), A(N), A(N)], {}),
    "losses.l1": ([A(N), A(N), A(N)], {}),
    "losses.huber": ([A(N), A(N), A(N), 1.0], {}),
    "losses.bce_with_logits": ([A(N), A(N), A(N)], {"pos_weight": A(N, dtype=np.float64)}),
    "matmul.bias_add": ([A(N, D, free=(0,)), A(D)], {}),
    "matmul.bias_grad": ([A(N, D, free=(0,)), A(D)], {}),
    "matmul.gemm": ([A(N, 4), A(4, D), A(N, D)], {}),
    "matmul.dense_forward": ([A(N, 4), A(D, 4), A(D), A(N, D)], {"act": 1}),
    "matmul.dense_backward": ([A(N, 4), A(D, 4), A(N, D), A(N, D), A(N, D), A(D, 4), A(D),
                               A(N, 4)], {"act": 1}),
    "matmul.conv2d_forward": ([A(2, 4, 6, 6), A(3, 4, 3, 3), A(3), A(2, 3, 4, 4)], CONV),
    "matmul.conv2d_backward": ([A(2, 4, 6, 6), A(3, 4, 3, 3), A(2, 3, 4, 4), A(2, 4, 6, 6),
                                A(3, 4, 3, 3), A(3)], CONV),
    "norm.batchnorm_forward_train": (
        [A(N, D, 2), A(D), A(D), 1e-5, A(D, dtype=np.float64), A(D, dtype=np.float64),
         A(D, dtype=np.float64), A(N, D, 2)], {}),
    "norm.batchnorm_forward_apply": (
        [A(N, D, 2), A(D, dtype=np.float64), A(D, dtype=np.float64), A(D, dtype=np.float64),
         A(N, D, 2)], {}),
    "norm.batchnorm_backward": (
        [A(N, D, 2), A(N, D, 2), A(D, dtype=np.float64), A(D, dtype=np.float64), A(D), True,
         A(D), A(D), A(N, D, 2)], {}),
    # x (2, 3, 5, 5) pooled 2x2 with stride 2 into (2, 3, 2, 2): any dimension one larger
    # changes the output's shape, except the adaptive planes (any size pools to any size) and
    # the planes maxpool2d_backward scatters into (its indices are checked one by one).
    "pool.maxpool2d_forward": ([A(2, 3, 5, 5), A(2, 3, 2, 2), A(2, 3, 2, 2, dtype=np.int64),
                                (2, 2), (2, 2), (0, 0)], {}),
    "pool.maxpool2d_backward": ([A(2, 3, 2, 2), A(2, 3, 2, 2, dtype=np.int64),
                                 A(2, 3, 5, 5, free=(2, 3))], {}),
    "pool.avgpool2d_forward": ([A(2, 3, 5, 5), A(2, 3, 2, 2), (2, 2), (2, 2), (0, 0)], {}),
    "pool.avgpool2d_backward": ([A(2, 3, 2, 2), A(2, 3, 5, 5), (2, 2), (2, 2), (0, 0)], {}),
    "pool.adaptive_avgpool2d_forward": ([A(2, 3, 5, 5, free=(2, 3)), A(2, 3, 2, 2, free=(2, 3))],
                                        {}),
    "pool.adaptive_avgpool2d_backward": ([A(2, 3, 2, 2, free=(2, 3)),
                                          A(2, 3, 5, 5, free=(2, 3))], {}),
    "optimizers.sgd_step": ([A(N), A(N), A(N), 0.1], {"momentum": 0.9}),
    "optimizers.adam_step": ([A(N), A(N), A(N), A(N), 0.1, 0.9, 0.999, 1e-8, 0.0, 1], {}),
    "optimizers.rmsprop_step": ([A(N), A(N), A(N), A(N), A(N), 0.1, 0.99, 1e-8],
                                {"momentum": 0.9, "centered": True}),
    "optimizers.adagrad_step": ([A(N), A(N), A(N), 0.1], {}),
    "optimizers.norm_accumulate": ([A(N, free=(0,)), 2.0], {}),
    "optimizers.scale_inplace": ([A(N, free=(0,)), 0.5], {}),
    "validation.all_finite": ([A(N, free=(0,))], {}),
}
# Entry points whose arguments are not arrays of one call (a class): checked by their own tests
# (tests/test_kernels_dense.py for DenseRun's shapes and buffers).
NOT_TABLE_DRIVEN = {"matmul.DenseRun"}
# The GEMMs take strided operands by design (X @ W.T swaps strides instead of copying).
STRIDED_OK = {"matmul.gemm", "bf16.gemm"}


def _public(module_name):
    mod = importlib.import_module(f"ranvier._kernels.{module_name}")
    return {f"{module_name}.{n}": getattr(mod, n) for n in dir(mod)
            if not n.startswith("_") and callable(getattr(mod, n))
            and getattr(getattr(mod, n), "__module__", None) == mod.__name__}


ENTRY_POINTS = {k: v for m in MODULES for k, v in _public(m).items()}


def test_every_entry_point_has_a_contract():
    assert set(ENTRY_POINTS) - NOT_TABLE_DRIVEN == set(SPECS), (
        "entry points without a spec (add one to SPECS): "
        f"{sorted(set(ENTRY_POINTS) - NOT_TABLE_DRIVEN - set(SPECS))}; specs of nothing: "
        f"{sorted(set(SPECS) - set(ENTRY_POINTS))}")


def _call(name, real, change=None):
    """Run the spec's call with float type ``real``; ``change(where, spec) -> array or None``
    replaces one array argument."""
    args, kwargs = SPECS[name]

    def build(where, v):
        if isinstance(v, A):
            replaced = change(where, v) if change else None
            return v.make(real) if replaced is None else replaced
        return v

    return ENTRY_POINTS[name](*[build(i, v) for i, v in enumerate(args)],
                              **{k: build(k, v) for k, v in kwargs.items()})


def _arrays(name):
    args, kwargs = SPECS[name]
    return [(i, v) for i, v in enumerate(args) if isinstance(v, A)] + [
        (k, v) for k, v in kwargs.items() if isinstance(v, A)]


@pytest.mark.quick
@pytest.mark.parametrize("name", sorted(SPECS))
def test_valid_call_runs(name, dtype):
    _call(name, dtype)


def _shape_cases():
    for name in sorted(SPECS):
        for where, spec in _arrays(name):
            for dim in range(len(spec.shape)):
                if dim not in spec.free:
                    yield pytest.param(name, where, dim, id=f"{name}-{where}-dim{dim}")


@pytest.mark.parametrize("name, where, dim", list(_shape_cases()))
def test_a_dimension_that_does_not_agree_raises(name, where, dim, dtype):
    def one_larger(w, spec):
        if w != where:
            return None
        shape = list(spec.shape)
        shape[dim] += 1
        return spec.make(dtype, tuple(shape))

    with pytest.raises(ValueError) as err:
        _call(name, dtype, one_larger)
    assert name.split(".")[1] in str(err.value), f"the message does not name the function: {err}"


def _array_cases(only_real=False, skip=()):
    for name in sorted(SPECS):
        if name in skip:
            continue
        arrays = _arrays(name)
        if only_real and sum(spec.dtype == "real" for _, spec in arrays) < 2:
            continue  # the one float array alone just picks the other type's kernel
        for where, spec in arrays:
            if not only_real or spec.dtype == "real":
                yield pytest.param(name, where, id=f"{name}-{where}")


@pytest.mark.parametrize("name, where", list(_array_cases(only_real=True)))
def test_the_other_float_type_raises(name, where, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises((TypeError, ValueError)):
        _call(name, dtype, lambda w, spec: spec.make(dtype, dtype=other) if w == where else None)


@pytest.mark.parametrize("name, where", list(_array_cases(skip=STRIDED_OK)))
def test_a_strided_array_raises(name, where, dtype):
    with pytest.raises((TypeError, ValueError)):
        _call(name, dtype, lambda w, spec: spec.make(dtype, strided=True) if w == where else None)


@pytest.mark.parametrize("name", sorted(n for n in SPECS if n != "validation.all_finite"))
def test_zero_threads_raises(name, dtype):
    args, kwargs = SPECS[name]
    with pytest.raises(ValueError, match="num_threads"):
        ENTRY_POINTS[name](*[v.make(dtype) if isinstance(v, A) else v for v in args],
                           **{k: v.make(dtype) if isinstance(v, A) else v
                              for k, v in kwargs.items()}, num_threads=0)
