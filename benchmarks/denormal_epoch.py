"""Denormals and training speed: one MNIST epoch (784-256-128-10, Adam lr 1e-3, batch 32) with
ranvier's kernels flushing denormals (the default) and not (ranvier.set_flush_denormal(False)), and
PyTorch with and without torch.set_flush_denormal(True), from the same weights and batches,
interleaved, medians of 3 (min-max).

    python benchmarks/denormal_epoch.py THREADS MNIST_DIR
"""
import statistics
import sys
import time

import numpy as np
import torch

import ranvier as rv

threads, mnist_dir = int(sys.argv[1]), sys.argv[2]
rv.set_num_threads(threads); torch.set_num_threads(threads)
(X, y), _ = rv.datasets.load_mnist(mnist_dir)
X = X.reshape(len(X), -1).astype(np.float32) / np.float32(255); y = y.astype(np.int64)
rng = np.random.default_rng(0)
init = [rv.Dense(a, b, seed=rng) for a, b in ((784, 256), (256, 128), (128, 10))]
W = [(d.weight.data.copy(), d.bias.data.copy()) for d in init]
def rv_epoch(flush):
    rv.set_flush_denormal(flush)
    layers = [rv.Dense(784, 256), rv.ReLU(), rv.Dense(256, 128), rv.ReLU(), rv.Dense(128, 10)]
    for d, (w, b) in zip(layers[::2], W): d.weight.data[...] = w; d.bias.data[...] = b
    m = rv.Sequential(layers)
    t0 = time.perf_counter()
    h = m.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer=rv.Adam(m.parameters(), lr=1e-3), epochs=1, batch_size=32, seed=0, verbose=0)
    return time.perf_counter() - t0, h.history["loss"][-1]
def torch_epoch(flush):
    torch.set_flush_denormal(flush)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for lin, (w, b) in zip(net[::2], W): lin.weight.copy_(torch.from_numpy(w)); lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3); crit = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y); order = torch.from_numpy(np.random.default_rng(0).permutation(len(X)))
    t0 = time.perf_counter()
    for s in range(0, len(X), 32):
        idx = order[s:s + 32]; opt.zero_grad(set_to_none=True); loss = crit(net(Xt[idx]), yt[idx]); loss.backward(); opt.step()
    torch.set_flush_denormal(False)
    return time.perf_counter() - t0, loss.item()
res = {k: [] for k in ("rv flush", "rv gradual", "torch flush", "torch gradual")}
for _ in range(3):
    res["rv flush"].append(rv_epoch(True)[0]); res["rv gradual"].append(rv_epoch(False)[0])
    res["torch flush"].append(torch_epoch(True)[0]); res["torch gradual"].append(torch_epoch(False)[0])
rv.set_flush_denormal(True)
med = {k: statistics.median(v) for k, v in res.items()}
print(f"threads {threads}: " + ", ".join(f"{k} {v:.2f} s ({min(res[k]):.2f}-{max(res[k]):.2f})" for k, v in med.items()))
print(f"  ranvier(flush)/torch(default, gradual) {med['rv flush'] / med['torch gradual']:.2f}x; ranvier flush/gradual {med['rv flush'] / med['rv gradual']:.2f}x")
