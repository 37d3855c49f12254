"""bfloat16 GEMM throughput: ranvier's bf16 GEMM vs ranvier's float32 GEMM vs PyTorch's bfloat16
matmul, side by side.

Shapes: the MLP products of gemm.py (784-256-128-10, forward and both gradients) and squares
(512, 1024, 2048 by default). ranvier bf16 is ``bf16.gemm`` on uint16 arrays of bf16 bits (float32
sums, float32 ``out``); ranvier float32 is ``matmul.gemm`` on the same products in float32;
PyTorch is ``torch.matmul(a, b, out=out)`` on bfloat16 tensors (its ``out`` is bfloat16 too). All
through transposed views, no copies. Reports GFLOP/s (2mnk / seconds per call, median and min-max),
ranvier bf16's ratio to each, and the bf16 path that ran (``_gemm_path()``: the VDPBF16PS kernel
or the portable one).

    ranvier bench --full --only bf16 [--threads 1,2]
"""
import numpy as np

from ._common import Threads, compared_torch, time_row
from .gemm import sampling, shape_list

LIBS = ("ranvier", "ranvier_f32", "torch")


def _bits(x):
    from ranvier._kernels import bf16

    out = np.empty(x.size, np.uint16)
    bf16.to_bf16(np.ascontiguousarray(x).ravel(), out)
    return out.reshape(x.shape)


def make_calls(kind_tuple, n_threads, rng, torch):
    """Callables per library for one product, and ranvier bf16's check: its largest error
    relative to the error bound of float32 sums of the bf16 values (k + 3 roundings of u = 2^-24
    times |A| @ |B|; test_kernels_bf16_gemm.py derives it) must be at most 1."""
    from ranvier._kernels import bf16, matmul

    (_, _, name, _, m, n, k, ta, tb, ashape, bshape) = kind_tuple
    a = rng.standard_normal(ashape).astype(np.float32)
    b = rng.standard_normal(bshape).astype(np.float32)
    ah, bh = _bits(a), _bits(b)
    out = np.empty((m, n), np.float32)
    out32 = np.empty((m, n), np.float32)
    gemm32 = matmul.gemm["float"]
    calls = {
        "ranvier": lambda: bf16.gemm(ah, bh, out, trans_a=ta, trans_b=tb, num_threads=n_threads),
        "ranvier_f32": lambda: gemm32(a, b, out32, trans_a=ta, trans_b=tb,
                                      num_threads=n_threads),
    }
    if torch is not None:
        at, bt = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
        ot = torch.empty((m, n), dtype=torch.bfloat16)
        atv, btv = (at.t() if ta else at), (bt.t() if tb else bt)
        calls["torch"] = lambda: torch.matmul(atv, btv, out=ot)
    calls["ranvier"]()
    a64 = (ah.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    b64 = (bh.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    a64, b64 = (a64.T if ta else a64), (b64.T if tb else b64)
    bound = (k + 3) * 2.0 ** -24 * (np.abs(a64) @ np.abs(b64))
    err = float(np.max(np.abs(out - a64 @ b64) / bound))
    return calls, err <= 1.0, err


def run(quick=False, threads=(1, 2), repeats=None, target_s=None, settle_s=None, log=print,
        batches=None, squares=None, libs=("ranvier", "torch")):
    """``batches``: the MLP products at these batch sizes; ``squares``: these square sizes
    (defaults by ``quick``); ``libs``: PyTorch's column only when "torch" is in it."""
    from ranvier._kernels import bf16

    rows, notes = [], []
    torch = compared_torch(libs, notes)
    repeats, target_s, settle_s = sampling(quick, repeats, target_s, settle_s)
    squares = squares if squares is not None else ((256,) if quick else (512, 1024, 2048))
    tc = Threads()
    shapes = shape_list(quick, batches, squares)
    last = {}
    for nt in threads:
        tc.set(nt)
        rng = np.random.default_rng(0)
        for shp in shapes:
            kind, batch, name, layer, m, n, k = shp[:7]
            calls, ok, err = make_calls(shp, nt, rng, torch)
            row = {"kind": kind, "batch": batch, "name": name, "layer": layer, "m": m, "n": n,
                   "k": k, "dtype": "bfloat16", "threads": nt, "flops": 2.0 * m * n * k,
                   "bf16_path": bf16._gemm_path(), "ranvier_err_over_bound": err,
                   "ranvier_ok": ok}
            time_row(row, calls, LIBS, row["flops"], "gflops", nt, repeats, target_s, settle_s,
                     last)
            rows.append(row)
            log(f"  bf16 t={nt} {name:24s} m={m:5d} n={n:5d} k={k:5d}  "
                + "  ".join(f"{lib} {row[lib]['gflops']:7.1f}" for lib in LIBS if row.get(lib))
                + ("" if ok else f"  [ranvier WRONG: error {err:.2f}x its bound]"))
    notes.append(f"ranvier bf16 ran the {bf16._gemm_path()} path; PyTorch's bfloat16 matmul "
                 "rounds its output to bfloat16, ranvier's is float32.")
    notes.append("GFLOP/s = 2mnk / median seconds per call; each sample times a calibrated loop "
                 f"of calls (~{target_s * 1e3:.0f} ms), {repeats} samples.")
    return {"rows": rows, "path": bf16._gemm_path(), "repeats": repeats, "target_s": target_s,
            "settle_s": settle_s, "notes": notes}
