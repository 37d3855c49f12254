"""Elementwise and fused kernels: ranvier vs NumPy (ufuncs with out= buffers) vs PyTorch.

Operations (float32, as a Dense/activation layer runs them in training):
  bias+relu fwd   z += b (in place, as after the GEMM); y = relu(z)
  relu bwd        dx = dy * (y > 0)
  sigmoid fwd     y = 1 / (1 + exp(-x))
  tanh fwd        y = tanh(x)
  softmax-CE      per-row loss and grad = (softmax(z) - onehot) / n from logits and int labels
at a batch-sized shape and a large one. GB/s counts the bytes the operation must move at least
(each input read once, each output written once; the bias and labels are negligible), the same
count for every library, so GB/s ratios are time ratios. The machine's copy bandwidth is measured
the same way (``np.copyto`` of an array of the same shape: 2 x size bytes) for the "% of copy"
column.

NumPy's ufuncs run on one thread whatever the limit; ranvier uses ``threads_for(size)`` threads
(one below its parallel threshold, as its layers do); PyTorch uses ``torch.set_num_threads``.

``run(baseline=mods)`` adds a column for another build's kernel modules (activations, losses,
matmul) loaded by the caller, so a change is measured side by side with what it replaces.

    ranvier bench --full --only elementwise [--threads 1,2]
"""
import numpy as np

from ._common import Threads, compared_torch, settle, time_calls, time_row

LIBS = ("ranvier", "numpy", "torch")
BASE = "ranvier_base"  # the --baseline build's column
OPS = ("bias+relu fwd", "relu bwd", "sigmoid fwd", "tanh fwd", "softmax-CE")


def _entry(fused, dtype):
    try:
        return fused["float" if dtype == np.float32 else "double"]
    except (TypeError, KeyError):
        return fused


def _threads_for(size, n):
    try:
        from ranvier._config import threads_for

        return threads_for(size)
    except ImportError:
        return n


def _activation(activations, name, kind, dtype):
    """f(x, out, nt) (forward) or f(v, dy, dx, nt) (backward) for one activation: the activation
    table's generic kernel, or the named one of a build from before the table (--baseline)."""
    table = getattr(activations, "ACTIVATIONS", None)
    if table is None:
        return _entry(getattr(activations, f"{name}_{kind}"), dtype)
    generic, code = _entry(getattr(activations, kind), dtype), table[name]
    return lambda *arrays_nt: generic(code, *arrays_nt[:-1], 0.0, arrays_nt[-1])


def _fused_bias_relu(matmul, activations):
    """A purely elementwise fused bias + ReLU kernel, if ranvier has one by now (name-based)."""
    table = getattr(activations, "ACTIVATIONS", None)
    if table is not None:
        fused = activations.bias_forward
        return "activations.bias_forward(relu)", (
            lambda z, b, y, nt=1, num_threads=None: _entry(fused, z.dtype.type)(
                table["relu"], z, b, y, 0.0, nt if num_threads is None else num_threads))
    for mod in (activations, matmul):
        for name in dir(mod):
            low = name.lower()
            if "bias" in low and "relu" in low and "backward" not in low and "grad" not in low:
                return f"{mod.__name__.rsplit('.', 1)[-1]}.{name}", getattr(mod, name)
    return None, None


def ranvier_calls(mods, a, dtype, nt):
    """{op: callable} running ranvier's kernels from ``mods`` (activations, losses, matmul) on
    the arrays in ``a``, and {op: the path taken}."""
    activations, losses, matmul = mods["activations"], mods["losses"], mods["matmul"]
    x1, z1, y1, dy1, dx1 = (a[k].reshape(-1) for k in ("x", "z", "y", "dy", "dx"))
    relu_f = _activation(activations, "relu", "forward", dtype)
    relu_b = _activation(activations, "relu", "backward", dtype)
    sig_f = _activation(activations, "sigmoid", "forward", dtype)
    tanh_f = _activation(activations, "tanh", "forward", dtype)
    bias_add = _entry(matmul.bias_add, dtype)
    sce = _entry(losses.softmax_cross_entropy_labels, dtype)
    z, b, y = a["z"], a["b"], a["y"]
    paths = {}
    fused_name, fused = _fused_bias_relu(matmul, activations)
    rv_bias_relu = None
    if fused is not None:
        fused = _entry(fused, dtype)
        for call in (lambda: fused(z, b, y, num_threads=nt), lambda: fused(z, b, y, nt)):
            try:
                call()
                rv_bias_relu = call
                paths["bias+relu fwd"] = f"fused {fused_name}"
                break
            except Exception:
                continue
    if rv_bias_relu is None:
        def rv_bias_relu():
            bias_add(z, b, nt)
            relu_f(z1, y1, nt)
        paths["bias+relu fwd"] = "matmul.bias_add + activations.relu_forward"
    paths["softmax-CE"] = "losses.softmax_cross_entropy_labels (loss + grad, one pass)"
    calls = {
        "bias+relu fwd": rv_bias_relu,
        "relu bwd": lambda: relu_b(y1, dy1, dx1, nt),
        "sigmoid fwd": lambda: sig_f(x1, y1, nt),
        "tanh fwd": lambda: tanh_f(x1, y1, nt),
        "softmax-CE": lambda: sce(a["x"], a["labels"], a["grad"], a["row_loss"], a["scale"], nt),
    }
    return calls, paths


def make_ops(shape, dtype, n_threads, rng, torch, baseline=None):
    """{op: (bytes, {lib: callable})} on shared arrays; plus the ranvier path used per op."""
    from ranvier._kernels import activations, losses, matmul

    rows, cols = shape
    size = rows * cols
    isz = np.dtype(dtype).itemsize
    nt = _threads_for(size, n_threads)
    x = rng.uniform(-4, 4, shape).astype(dtype)
    z = x.copy()
    b = (rng.uniform(-1, 1, cols) * 1e-6).astype(dtype)  # tiny: repeated in-place adds stay put
    y = np.maximum(x, 0)  # relu(x): the saved output relu bwd reads (bias+relu rewrites it)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.empty_like(x)
    labels = rng.integers(0, cols, rows).astype(np.int64)
    grad = np.empty_like(x)
    row_loss = np.empty(rows, np.float64)
    scale = 1.0 / rows
    arrays = dict(x=x, z=z, b=b, y=y, dy=dy, dx=dx, labels=labels, grad=grad, row_loss=row_loss,
                  scale=scale)
    rv, paths = ranvier_calls({"activations": activations, "losses": losses, "matmul": matmul},
                              arrays, dtype, nt)
    base = ranvier_calls(baseline, arrays, dtype, nt)[0] if baseline else {}

    def np_bias_relu():
        np.add(z, b, out=z)
        np.maximum(z, 0, out=y)

    # NumPy sigmoid as written by hand: 1 / (1 + exp(-x)) through one out= buffer.
    def np_sigmoid():
        np.negative(x, out=y)
        np.exp(y, out=y)
        np.add(y, 1, out=y)
        np.reciprocal(y, out=y)

    ar = np.arange(rows)
    mx = np.empty((rows, 1), dtype)
    sm = np.empty((rows, 1), dtype)

    def np_sce():
        np.max(x, axis=1, keepdims=True, out=mx)
        np.subtract(x, mx, out=grad)
        np.exp(grad, out=grad)
        np.sum(grad, axis=1, keepdims=True, out=sm)
        np.divide(grad, sm, out=grad)
        row_loss[:] = -np.log(grad[ar, labels])
        grad[ar, labels] -= 1
        np.multiply(grad, scale, out=grad)
        return row_loss.sum()

    ops = {
        "bias+relu fwd": (2 * size * isz, {"numpy": np_bias_relu}),
        "relu bwd": (3 * size * isz, {"numpy": lambda: np.multiply(dy, y > 0, out=dx)}),
        "sigmoid fwd": (2 * size * isz, {"numpy": np_sigmoid}),
        "tanh fwd": (2 * size * isz, {"numpy": lambda: np.tanh(x, out=y)}),
        "softmax-CE": (2 * size * isz, {"numpy": np_sce}),
    }
    for op, (_, calls) in ops.items():
        calls["ranvier"] = rv[op]
        if op in base:
            calls[BASE] = base[op]
    if torch is not None:
        tx, tz, tb, ty, tdy, tdx = (torch.from_numpy(a) for a in (x, z, b, y, dy, dx))
        tl = torch.from_numpy(labels)
        F = torch.nn.functional

        def t_bias_relu():
            torch.add(tz, tb, out=tz)
            torch.clamp_min(tz, 0, out=ty)

        def t_relu_bwd():
            # what autograd's ReLU backward runs: threshold_backward(grad, output, 0)
            torch.ops.aten.threshold_backward(tdy, ty, 0, grad_input=tdx)

        def t_sce():
            # what a training step runs: cross_entropy forward + its backward (autograd)
            logits = tx.detach().requires_grad_()
            loss = F.cross_entropy(logits, tl, reduction="mean")
            loss.backward()
            return loss

        try:
            t_relu_bwd()
        except Exception:
            def t_relu_bwd():
                torch.mul(tdy, ty > 0, out=tdx)

        ops["bias+relu fwd"][1]["torch"] = t_bias_relu
        ops["relu bwd"][1]["torch"] = t_relu_bwd
        ops["sigmoid fwd"][1]["torch"] = lambda: torch.sigmoid(tx, out=ty)
        ops["tanh fwd"][1]["torch"] = lambda: torch.tanh(tx, out=ty)
        ops["softmax-CE"][1]["torch"] = t_sce
    copy_dst = np.empty_like(x)
    copy = (2 * size * isz, lambda: np.copyto(copy_dst, x))
    return ops, copy, paths, nt


def run(quick=False, threads=(1, 2), repeats=None, target_s=None, settle_s=None, log=print,
        shapes=None, baseline=None, libs=LIBS):
    rows, copies, notes, paths = [], [], [], {}
    torch = compared_torch(libs, notes)
    libs = LIBS + ((BASE,) if baseline else ())
    repeats = repeats or (3 if quick else 7)
    target_s = target_s or (0.003 if quick else 0.03)
    settle_s = (0.0 if quick else 0.15) if settle_s is None else settle_s
    shapes = shapes or (((32, 256), (1024, 1024)) if quick else ((32, 256), (4096, 4096)))
    dtype = np.float32
    tc = Threads()
    last = {}  # the library timed last (time_row)
    for nt in threads:
        tc.set(nt)
        for shape in shapes:
            rng = np.random.default_rng(0)
            ops, (copy_bytes, copy_fn), paths, rv_nt = make_ops(shape, dtype, nt, rng, torch,
                                                                baseline)
            settle(settle_s if nt > 1 else 0)
            tcopy = time_calls(copy_fn, repeats=repeats, target_s=target_s)
            copy_gbs = copy_bytes / tcopy["median"] / 1e9
            copies.append({"shape": list(shape), "threads": nt, "bytes": copy_bytes,
                           "time": tcopy, "gbs": copy_gbs})
            for op in OPS:
                nbytes, calls = ops[op]
                row = {"op": op, "shape": list(shape), "dtype": np.dtype(dtype).name,
                       "threads": nt, "ranvier_threads_used": rv_nt, "bytes": nbytes,
                       "copy_gbs": copy_gbs}
                time_row(row, calls, libs, nbytes, "gbs", nt, repeats, target_s, settle_s,
                         last)
                row["ranvier_pct_of_copy"] = 100 * row["ranvier"]["gbs"] / copy_gbs
                if row.get(BASE):
                    row[f"{BASE}_pct_of_copy"] = 100 * row[BASE]["gbs"] / copy_gbs
                rows.append(row)
                log(f"  elementwise t={nt} {str(shape):12s} {op:14s} "
                    + "  ".join(f"{lib} {row[lib]['gbs']:7.1f} GB/s"
                                f" {row[lib]['median'] * 1e6:9.2f} us" for lib in libs
                                if row.get(lib))
                    + f"  (copy {copy_gbs:.1f} GB/s)")
    notes.append("GB/s = minimal bytes moved (inputs read once + outputs written once) / median "
                 "seconds; the same byte count for every library.")
    notes.append("PyTorch softmax-CE runs F.cross_entropy forward + backward through autograd "
                 "(what "
                 "its training step executes, allocations included); ranvier and NumPy write into "
                 "preallocated buffers.")
    notes.append("NumPy ufuncs are single-threaded: its 2-thread numbers measure the same code.")
    if baseline:
        notes.append(f"{BASE}: the --baseline build's kernels, timed in the same process.")
    return {"rows": rows, "copy": copies, "ranvier_paths": paths, "repeats": repeats,
            "target_s": target_s, "notes": notes}
