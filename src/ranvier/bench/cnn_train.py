"""CNN training steps: ranvier's fit vs PyTorch's training loop, and the GEMM floor of the shapes.

Nets (float32, ReLU, Adam lr 1e-3, softmax cross-entropy, batch 64, NCHW 28x28 images):
  lenet5          Conv 1->6 k5 p2, MaxPool 2, Conv 6->16 k5, MaxPool 2, Dense 400-120-84-10
  examples/mnist  PyTorch's examples/mnist layers without dropout: Conv 1->32 k3, Conv 32->64 k3,
                  MaxPool 2, Dense 9216-128-10
Both libraries start from the same weights (ranvier's layers, started as PyTorch starts them, copied
into torch.nn) and take the same batches in order (no shuffling); each timed repeat restarts from
those weights with a fresh optimizer, after one warm-up run. The training loss after the run shows
the two did the same work.

GEMM floor: the seconds the step's products take when each runs alone through ranvier's GEMM, on
the same thread count: per convolution (as one product over the batch, channels-last) the forward
(N*oh*ow x out x in*k*k), the input gradient (N*oh*ow x in*k*k x out; not for the first layer,
whose input needs none) and the weight gradient (out x in*k*k x N*oh*ow); per Dense the three
products of an MLP layer. A step near its floor has nothing left to cut but the GEMM itself.

    ranvier bench --full --only cnn [--threads 1,2] [--data-dir DIR]
"""

import numpy as np

from ._common import (Threads, compared_torch, load_mnist, settle, synthetic_mnist,
                      time_calls, timeit)

BATCH, LR = 64, 1e-3
# (kind, args): conv (in, out, kernel, padding), pool (size), dense (in, out)
NETS = {
    "lenet5": {"steps": 200, "layers": [("conv", 1, 6, 5, 2), ("pool", 2), ("conv", 6, 16, 5, 0),
                                         ("pool", 2), ("dense", 400, 120), ("dense", 120, 84),
                                         ("dense", 84, 10)]},
    "examples/mnist": {"steps": 50, "layers": [("conv", 1, 32, 3, 0), ("conv", 32, 64, 3, 0),
                                                ("pool", 2), ("dense", 9216, 128),
                                                ("dense", 128, 10)]},
}


def _ranvier_net(spec, seed):
    """The ranvier Sequential of a spec: ReLU after every conv and every Dense but the last."""
    import ranvier as rv

    rng = np.random.default_rng(seed)
    layers, last = [], max(i for i, l in enumerate(spec) if l[0] == "dense")
    for i, (kind, *a) in enumerate(spec):
        if kind == "conv":
            layers += [rv.Conv2d(a[0], a[1], a[2], padding=a[3], seed=rng), rv.ReLU()]
        elif kind == "pool":
            layers.append(rv.MaxPool2d(a[0]))
        else:
            if not any(isinstance(l, rv.Flatten) for l in layers):
                layers.append(rv.Flatten())
            layers.append(rv.Dense(a[0], a[1], init="torch", seed=rng))
            if i != last:
                layers.append(rv.ReLU())
    return rv.Sequential(layers)


def _torch_net(torch, model):
    """The same layers in torch.nn, with the ranvier model's weights copied in."""
    import ranvier as rv

    nn, mods = torch.nn, []
    for l in model.layers:
        if isinstance(l, rv.Conv2d):
            m = nn.Conv2d(l.in_channels, l.out_channels, l.kernel_size, padding=l.padding)
        elif isinstance(l, rv.Dense):
            m = nn.Linear(l.in_features, l.out_features)
        elif isinstance(l, rv.MaxPool2d):
            m = nn.MaxPool2d(l.kernel_size)
        elif isinstance(l, rv.Flatten):
            m = nn.Flatten()
        else:
            m = nn.ReLU()
        if isinstance(l, (rv.Conv2d, rv.Dense)):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(l.weight.data))
                m.bias.copy_(torch.from_numpy(l.bias.data))
        mods.append(m)
    return nn.Sequential(*mods)


class _Ranvier:
    def __init__(self, model):
        import ranvier as rv

        self.rv, self.model = rv, model
        self.start = {k: v.copy() for k, v in model.state_dict().items()}
        self.loss = rv.CrossEntropyLoss()

    def run(self, X, y):
        """Restart from the first weights and train one pass over X in batches; the last loss."""
        self.model.load_state_dict(self.start)
        opt = self.rv.Adam(self.model.parameters(), lr=LR)
        h = self.model.fit(X, y, loss=self.loss, optimizer=opt, epochs=1, batch_size=BATCH,
                           shuffle=False, verbose=0)
        return float(h.history["loss"][-1])


class _Torch:
    def __init__(self, torch, model):
        self.torch, self.net = torch, _torch_net(torch, model)
        self.start = {k: v.clone() for k, v in self.net.state_dict().items()}
        self.loss = torch.nn.CrossEntropyLoss()

    def run(self, X, y):
        torch = self.torch
        self.net.load_state_dict(self.start)
        opt = torch.optim.Adam(self.net.parameters(), lr=LR)
        tx, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        total, n = 0.0, 0
        for lo in range(0, len(X), BATCH):
            opt.zero_grad(set_to_none=True)
            loss = self.loss(self.net(tx[lo:lo + BATCH]), ty[lo:lo + BATCH])
            loss.backward()
            opt.step()
            size = min(BATCH, len(X) - lo)
            total, n = total + loss.item() * size, n + size
        return total / n   # the epoch's mean loss over samples, as fit's history reports it


def gemm_shapes(spec, batch=BATCH, image=(1, 28, 28)):
    """The (m, n, k) products of one training step, in order, with the pass each belongs to."""
    _, h, w = image
    shapes, first = [], True
    for kind, *a in spec:
        if kind == "conv":
            cin, cout, k, p = a
            h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
            rows, red = batch * h * w, cin * k * k
            shapes.append(("fwd", rows, cout, red))
            if not first:
                shapes.append(("bwd-data", rows, red, cout))
            shapes.append(("bwd-w", cout, red, rows))
        elif kind == "pool":
            h, w = h // a[0], w // a[0]
        else:
            fin, fout = a
            shapes.append(("fwd", batch, fout, fin))
            if not first:
                shapes.append(("bwd-data", batch, fin, fout))
            shapes.append(("bwd-w", fout, fin, batch))
        first = False
    return shapes


def gemm_floor(spec, nt, repeats, rng):
    """Seconds per training step of the spec's products through ranvier's GEMM on nt threads."""
    from ranvier._kernels import matmul as mm

    total, flops = 0.0, 0.0
    for _, m, n, k in gemm_shapes(spec):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        total += time_calls(lambda: mm.gemm(a, b, out, num_threads=nt), repeats)["median"]
        flops += 2.0 * m * n * k
    return total, flops


def _images(data_dir, n):
    X, y, _, _, source = (load_mnist(data_dir) if data_dir
                          else synthetic_mnist(n_train=n, n_test=1))
    return np.ascontiguousarray(X[:n].reshape(-1, 1, 28, 28)), y[:n], source


def run(threads=(1, 2), data_dir=None, repeats=3, step_scale=1.0, log=print,
        libs=("ranvier", "torch")):
    """One row per (net, threads): seconds per run of ``steps`` training steps for ranvier and
    PyTorch (median, min, max of ``repeats``), ranvier's time over PyTorch's, and the GEMM floor."""
    rows, notes = [], []
    torch = compared_torch(libs, notes)
    tc = Threads()
    rng = np.random.default_rng(0)
    most = max(max(1, int(v["steps"] * step_scale)) for v in NETS.values())
    X_all, y_all, source = _images(data_dir, most * BATCH)
    for name, net in NETS.items():
        steps = max(1, int(net["steps"] * step_scale))
        X, y = X_all[:steps * BATCH], y_all[:steps * BATCH]
        model = _ranvier_net(net["layers"], seed=0)
        libs_here = {"ranvier": _Ranvier(model)}
        if torch is not None:
            libs_here["torch"] = _Torch(torch, model)
        for nt in threads:
            tc.set(nt)
            row = {"net": name, "threads": nt, "steps": steps, "batch": BATCH}
            for lib, trainer in libs_here.items():
                settle(0.2 if nt > 1 else 0.0)
                trainer.run(X[:5 * BATCH], y[:5 * BATCH])  # warm-up: a short run
                last = {}
                t = timeit(lambda: last.update(loss=trainer.run(X, y)), repeats, warmup=0)
                row[lib] = dict(t, loss=last["loss"], ms_per_step=t["median"] / steps * 1e3)
            floor, flops = gemm_floor(net["layers"], nt, repeats, rng)
            row["gemm_floor_ms_per_step"], row["gflop_per_step"] = floor * 1e3, flops / 1e9
            row["vs_floor"] = row["ranvier"]["ms_per_step"] / row["gemm_floor_ms_per_step"]
            if "torch" in row:
                row["time_ratio_vs_torch"] = row["ranvier"]["median"] / row["torch"]["median"]
            rows.append(row)
            log(f"  cnn {name:15s} t={nt} ranvier {row['ranvier']['ms_per_step']:7.2f} ms/step"
                + (f"  torch {row['torch']['ms_per_step']:7.2f}" if "torch" in row else "")
                + f"  floor {row['gemm_floor_ms_per_step']:7.2f}")
    tc.set(1)
    return {"rows": rows, "batch": BATCH, "repeats": repeats, "data": source,
            "nets": {k: v["layers"] for k, v in NETS.items()}, "notes": notes}
