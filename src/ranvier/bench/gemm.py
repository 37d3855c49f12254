"""GEMM throughput: ranvier's BLIS-style kernel vs NumPy (its BLAS) vs PyTorch, side by side.

Shapes: the nine products of a 784-256-128-10 MLP training step (for each Dense layer, forward
X @ W.T, backward dY @ W and dY.T @ X) at several batch sizes, and square matrices. Every library
multiplies the same arrays into a preallocated output through transposed views (no copies):
ranvier ``gemm[dtype](a, b, out, trans_a=, trans_b=, num_threads=n)`` (the specialised entry, no
fused-type dispatch), NumPy ``np.matmul(a, b, out=out)``, PyTorch ``torch.matmul(a, b, out=out)`` on
``torch.from_numpy`` tensors. Reports GFLOP/s (2mnk / seconds per call, median and min-max) and
ranvier's throughput ratio to each library.

When ranvier has the fused Dense kernels (``dense_forward``: GEMM with a bias + ReLU epilogue), the
"dense+relu" rows compare it with NumPy ``matmul`` + ``add`` + ``maximum`` and PyTorch
``addmm`` + ``relu_`` on the same buffers.

    ranvier bench --full --only gemm [--threads 1,2]
"""
import numpy as np

from ._common import Threads, compared_torch, optional_import, time_row

MLP = (784, 256, 128, 10)
LIBS = ("ranvier", "numpy", "torch")


def mlp_products(batch):
    """(name, layer, m, n, k, trans_a, trans_b, a_shape, b_shape) of the nine products."""
    out = []
    for li, (fin, fout) in enumerate(zip(MLP[:-1], MLP[1:]), start=1):
        out.append((f"L{li} fwd X@W.T", li, batch, fout, fin, False, True, (batch, fin),
                    (fout, fin)))
        out.append((f"L{li} bwd dY@W", li, batch, fin, fout, False, False, (batch, fout),
                    (fout, fin)))
        out.append((f"L{li} bwd dY.T@X", li, fout, fin, batch, True, False, (batch, fout),
                    (batch, fin)))
    return out


def square(n):
    return (f"square {n}", 0, n, n, n, False, False, (n, n), (n, n))


def shape_list(quick, batches=None, squares=None):
    batches = batches if batches is not None else ((32,) if quick else (32, 128, 512))
    squares = squares if squares is not None else ((256,) if quick else (256, 512, 1024, 2048))
    shapes = []
    for b in batches:
        for p in mlp_products(b):
            shapes.append(("mlp", b) + p)
    for n in squares:
        shapes.append(("square", None) + square(n))
    return shapes


def _kernel_entry(fused, dtype):
    """The specialised cyfunction for one dtype (no per-call fused-type dispatch)."""
    key = "float" if dtype == np.float32 else "double"
    try:
        return fused[key]
    except (TypeError, KeyError):
        return fused


def make_calls(kind_tuple, dtype, n_threads, rng, torch):
    """Callables per library for one product, all on the same arrays."""
    from ranvier._kernels import matmul

    (_, _, name, _, m, n, k, ta, tb, ashape, bshape) = kind_tuple
    a = rng.standard_normal(ashape).astype(dtype)
    b = rng.standard_normal(bshape).astype(dtype)
    out = np.empty((m, n), dtype)
    gemm = _kernel_entry(matmul.gemm, dtype)
    av = a.T if ta else a
    bv = b.T if tb else b
    calls = {
        "ranvier": lambda: gemm(a, b, out, trans_a=ta, trans_b=tb, num_threads=n_threads),
        "numpy": lambda: np.matmul(av, bv, out=out),
    }
    if torch is not None:
        at, bt, ot = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        atv = at.t() if ta else at
        btv = bt.t() if tb else bt
        calls["torch"] = lambda: torch.matmul(atv, btv, out=ot)
    # correctness guard: a benchmark of a wrong product is worthless
    calls["ranvier"]()
    ref = (av.astype(np.float64) @ bv.astype(np.float64))
    tol = 1e-3 if dtype == np.float32 else 1e-9
    err = float(np.max(np.abs(out - ref)) / (np.max(np.abs(ref)) + 1e-30))
    return calls, err < tol * max(1.0, k / 256), err


def make_dense_calls(batch, fin, fout, dtype, n_threads, rng, torch):
    """Fused Dense forward (GEMM + bias + ReLU) per library; None if ranvier lacks the kernel."""
    from ranvier._kernels import matmul

    if not hasattr(matmul, "dense_forward"):
        return None
    act_relu = getattr(matmul, "ACT_RELU", 1)
    dense = _kernel_entry(matmul.dense_forward, dtype)
    x = rng.standard_normal((batch, fin)).astype(dtype)
    w = rng.standard_normal((fout, fin)).astype(dtype)
    bias = rng.standard_normal(fout).astype(dtype)
    out = np.empty((batch, fout), dtype)
    dense(x, w, bias, out, act=act_relu, num_threads=n_threads)
    ref = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + bias, 0)
    err = float(np.max(np.abs(out - ref)) / (np.max(np.abs(ref)) + 1e-30))
    wt = w.T

    def np_dense():
        np.matmul(x, wt, out=out)
        np.add(out, bias, out=out)
        np.maximum(out, 0, out=out)

    calls = {"ranvier": lambda: dense(x, w, bias, out, act=act_relu, num_threads=n_threads),
             "numpy": np_dense}
    if torch is not None:
        xt, wtt, bt, ot = (torch.from_numpy(x), torch.from_numpy(w).t(), torch.from_numpy(bias),
                           torch.from_numpy(out))

        def torch_dense():
            torch.addmm(bt, xt, wtt, out=ot)
            ot.relu_()

        calls["torch"] = torch_dense
    return calls, err < (1e-3 if dtype == np.float32 else 1e-9), err


def sampling(quick, repeats=None, target_s=None, settle_s=None):
    """(repeats, seconds per sample, settle seconds) of the GEMM sections where not given: few and
    short for ``quick``."""
    return (repeats or (3 if quick else 7), target_s or (0.003 if quick else 0.025),
            (0.0 if quick else 0.15) if settle_s is None else settle_s)


def run(quick=False, threads=(1, 2), repeats=None, target_s=None, settle_s=None, log=print,
        batches=None, squares=None, dtypes=(np.float32, np.float64), libs=LIBS):
    """``batches``: the MLP products at these batch sizes; ``squares``: these square sizes
    (defaults by ``quick``); ``libs``: PyTorch's column only when "torch" is in it."""
    rows, notes = [], []
    torch = compared_torch(libs, notes)
    repeats, target_s, settle_s = sampling(quick, repeats, target_s, settle_s)
    tc = Threads()
    if optional_import("threadpoolctl") is None:
        notes.append("threadpoolctl is not installed: NumPy's BLAS ran with its default thread "
                     "count at every thread setting.")
    shapes = shape_list(quick, batches, squares)
    last = {}  # the library timed last (time_row)
    for nt in threads:
        tc.set(nt)
        for dt in dtypes:
            rng = np.random.default_rng(0)
            todo = [(s, "gemm") for s in shapes]
            batches = sorted({s[1] for s in shapes if s[0] == "mlp"})
            todo += [(("dense", b, f"L{li} dense+relu X@W.T+b", li, b, fout, fin, False, True,
                       (b, fin), (fout, fin)), "dense")
                     for b in batches
                     for li, (fin, fout) in enumerate(zip(MLP[:-2], MLP[1:-1]), start=1)]
            for shp, what in todo:
                kind, batch, name, layer, m, n, k = shp[:7]
                if what == "gemm":
                    made = make_calls(shp, dt, nt, rng, torch)
                else:
                    made = make_dense_calls(batch, k, n, dt, nt, rng, torch)
                    if made is None:
                        continue
                calls, ok, err = made
                row = {"kind": kind, "batch": batch, "name": name, "layer": layer, "m": m,
                       "n": n, "k": k, "dtype": np.dtype(dt).name, "threads": nt,
                       "flops": 2.0 * m * n * k, "ranvier_max_rel_err": err, "ranvier_ok": ok}
                time_row(row, calls, LIBS, row["flops"], "gflops", nt, repeats, target_s,
                         settle_s, last)
                rows.append(row)
                log(f"  gemm {row['dtype']:7s} t={nt} {name:24s} m={m:5d} n={n:5d} k={k:5d}  "
                    + "  ".join(f"{lib} {row[lib]['gflops']:7.1f}" for lib in LIBS if row.get(lib))
                    + ("" if ok else f"  [ranvier WRONG: rel err {err:.2e}]"))
    notes.append("GFLOP/s = 2mnk / median seconds per call; each sample times a calibrated loop "
                 f"of calls (~{target_s * 1e3:.0f} ms), {repeats} samples.")
    if any(r["kind"] == "dense" for r in rows):
        notes.append("dense+relu rows: ranvier's fused dense_forward (bias + ReLU in the GEMM "
                     "epilogue) vs NumPy matmul+add+maximum vs PyTorch addmm+relu_, same buffers.")
    return {"rows": rows, "repeats": repeats, "target_s": target_s, "settle_s": settle_s,
            "notes": notes}
