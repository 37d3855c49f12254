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

    python benchmarks/bench_conv.py [--threads 1,2] [--batch 64]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fair_blas_env  # noqa: E402

fair_blas_env()

import numpy as np  # noqa: E402

from _common import Threads, cpu_model, optional_import, time_calls  # noqa: E402

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import ranvier

    torch = optional_import("torch")
    threads = Threads()
    rng = np.random.default_rng(0)
    n = args.batch
    print(f"# Conv2d per layer, float32, batch {n}; {cpu_model()}; ranvier ISA "
          f"{ranvier.get_isa()}; torch {torch.__version__ if torch else 'absent'}")
    print(f"{'layer':32s} {'thr':>3s} {'pass':8s} {'ranvier ms':>11s} {'GF/s':>6s} "
          f"{'torch ms':>9s} {'GF/s':>6s} {'r/t time':>8s}")
    for name, (cin, h, wd), cout, k, s, p in LAYERS:
        oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        y = np.empty((n, cout, oh, ow), np.float32)
        geo = dict(stride=(s, s), padding=(p, p))
        flops = _flops(n, cin, cout, k, oh, ow)
        for nt in (int(t) for t in args.threads.split(",")):
            threads.set(nt)
            mine = {key: time_calls(fn, args.repeats)["median"]
                    for key, fn in _ranvier(x, w, b, y, geo, nt).items()}
            mine["bwd-data"] = max(mine["bwd-all"] - mine["bwd-w"], 0.0)
            theirs = ({key: time_calls(fn, args.repeats)["median"]
                       for key, fn in _torch(torch, x, w, b, geo).items()} if torch else {})
            for key in ("fwd", "bwd-data", "bwd-w", "bwd-all"):
                m, t = mine[key], theirs.get(key)
                per = 2 if key == "bwd-all" else 1
                gf = lambda sec: per * flops / sec / 1e9 if sec else float("nan")  # noqa: E731
                tcol = f"{t * 1e3:9.3f} {gf(t):6.1f} {m / t:8.2f}" if t else ""
                print(f"{name:32s} {nt:3d} {key:8s} {m * 1e3:11.3f} {gf(m):6.1f} {tcol}")
    threads.set(1)


if __name__ == "__main__":
    main()
