"""Conv2d per layer: ranvier's native kernels vs torch.nn.functional.conv2d and its autograd.

Layers (float32, batch 64, NCHW): LeNet-5's two convolutions and PyTorch's examples/mnist two.
Per layer and thread count, the median seconds per call (min-max) and GFLOP/s (2 * multiply-adds
of the convolution, the same for each pass) of
  fwd       ranvier conv2d_forward (bias in the epilogue)   torch F.conv2d (no grad)
  bwd-w     conv2d_backward without dx (dw, db)              autograd.grad(y, [w, b])
  bwd-all   conv2d_backward with dx (dx, dw, db)             autograd.grad(y, [x, w, b])
  bwd-data  bwd-all - bwd-w (ranvier computes dw with every backward call)
                                                             autograd.grad(y, [x])
Each library works on the same arrays (torch.from_numpy); torch's graph is built once and kept.

    ranvier bench --full --only conv [--threads 1,2]
"""
import numpy as np

from ._common import Threads, compared_torch, time_calls

# name, (c_in, h, w), c_out, kernel, stride, padding
LAYERS = [
    ("lenet conv1 1->6 k5 p2 28x28", (1, 28, 28), 6, 5, 1, 2),
    ("lenet conv2 6->16 k5 14x14", (6, 14, 14), 16, 5, 1, 0),
    ("mnist conv1 1->32 k3 28x28", (1, 28, 28), 32, 3, 1, 0),
    ("mnist conv2 32->64 k3 26x26", (32, 26, 26), 64, 3, 1, 0),
]


def _flops(n, cin, cout, k, oh, ow):
    return 2.0 * n * cout * oh * ow * cin * k * k


def _ranvier(x, w, b, y, geo, nt):
    from ranvier._kernels import matmul as mm

    dy = np.ones_like(y)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    return {
        "fwd": lambda: mm.conv2d_forward(x, w, b, y, num_threads=nt, **geo),
        "bwd-w": lambda: mm.conv2d_backward(x, w, dy, None, dw, db, num_threads=nt, **geo),
        "bwd-all": lambda: mm.conv2d_backward(x, w, dy, dx, dw, db, num_threads=nt, **geo),
    }


def _torch(torch, x, w, b, geo):
    F = torch.nn.functional
    tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    kw = dict(stride=geo["stride"], padding=geo["padding"])
    ty = F.conv2d(tx, tw, tb, **kw)
    g = torch.ones_like(ty)

    def fwd():
        with torch.no_grad():
            F.conv2d(tx, tw, tb, **kw)

    grad = torch.autograd.grad
    return {
        "fwd": fwd,
        "bwd-w": lambda: grad(ty, [tw, tb], g, retain_graph=True),
        "bwd-all": lambda: grad(ty, [tx, tw, tb], g, retain_graph=True),
        "bwd-data": lambda: grad(ty, [tx], g, retain_graph=True),
    }


PASSES = ("fwd", "bwd-data", "bwd-w", "bwd-all")


def run(threads=(1, 2), batch=64, repeats=5, log=print, libs=("ranvier", "torch")):
    """One row per (layer, threads, pass): ranvier's and PyTorch's median seconds per call
    (time_calls records), GFLOP/s and ranvier's time over PyTorch's."""
    rows, notes = [], []
    torch = compared_torch(libs, notes)
    tc = Threads()
    rng = np.random.default_rng(0)
    for name, (cin, h, wd), cout, k, s, p in LAYERS:
        oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        x = rng.standard_normal((batch, cin, h, wd)).astype(np.float32)
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        y = np.empty((batch, cout, oh, ow), np.float32)
        geo = dict(stride=(s, s), padding=(p, p))
        flops = _flops(batch, cin, cout, k, oh, ow)
        for nt in threads:
            tc.set(nt)
            mine = {key: time_calls(fn, repeats) for key, fn in _ranvier(x, w, b, y, geo, nt).items()}
            est = max(mine["bwd-all"]["median"] - mine["bwd-w"]["median"], 0.0)
            mine["bwd-data"] = {"median": est, "min": est, "max": est, "derived": True}
            theirs = ({key: time_calls(fn, repeats) for key, fn in _torch(torch, x, w, b, geo).items()}
                      if torch else {})
            for key in PASSES:
                per = 2 if key == "bwd-all" else 1
                row = {"layer": name, "threads": nt, "pass": key, "batch": batch,
                       "flops": per * flops, "ranvier": mine[key], "torch": theirs.get(key)}
                for lib in ("ranvier", "torch"):
                    if row[lib] and row[lib]["median"] > 0:
                        row[lib]["gflops"] = row["flops"] / row[lib]["median"] / 1e9
                if row["torch"]:
                    row["time_ratio_vs_torch"] = mine[key]["median"] / theirs[key]["median"]
                rows.append(row)
                log(f"  conv {name:30s} t={nt} {key:8s} ranvier {mine[key]['median'] * 1e3:8.2f} ms"
                    + (f"  torch {theirs[key]['median'] * 1e3:8.2f} ms" if theirs else ""))
    tc.set(1)
    notes.append("ranvier's bwd-data is derived: its backward always computes dw, so it is the "
                 "full backward's time minus the weights-only call's.")
    return {"rows": rows, "batch": batch, "repeats": repeats, "notes": notes}
