"""Data-parallel training over MPI: one epoch of an MNIST-shaped MLP (784-256-128-10, Adam, global
batch 256, 60000 rows) on 1 process x 1 thread and on 2 ranks x 1 thread, ranvier
(``fit(distributed=True)``) next to PyTorch (one process, and DistributedDataParallel with gloo).
Also the communication per step: an Allreduce of ranvier's gradient buffer, alone, on 2 ranks.

    python benchmarks/bench_mpi.py [--epochs 2] [--skip-torch]      (make bench-mpi)

Every run is a fresh process tree launched with mpiexec (the one next to this Python, from the
mpich wheel), OMP_NUM_THREADS=1 per rank; each prints its per-epoch times as one JSON line.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

N, SIZES, BATCH = 60000, (784, 256, 128, 10), 256


def _data():
    rng = np.random.default_rng(0)
    X = rng.random((N, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], N)
    return X, y


def _worker_ranvier(epochs, distributed):
    import ranvier as rv

    rv.set_num_threads(1)
    X, y = _data()
    rng = np.random.default_rng(1)
    model = rv.Sequential([rv.Dense(784, 256, seed=rng), rv.ReLU(), rv.Dense(256, 128, seed=rng),
                           rv.ReLU(), rv.Dense(128, 10, seed=rng)])
    class CPUTime(rv.Callback):
        cpu = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.cpu.append(time.process_time() - self.t0)

    history = model.fit(X, y, loss=rv.CrossEntropyLoss(), optimizer="adam", epochs=epochs,
                        batch_size=BATCH, seed=0, verbose=0, distributed=distributed,
                        callbacks=[CPUTime()])
    # the epochs alone, as for torch below; the CPU time of rank 0 (MPICH waits by polling, so a
    # wait in the all-reduce counts): on a machine shared with other work, the wall time of 2 ranks
    # depends on what the others leave, the CPU time much less
    out = {"epoch_s": history.epoch_time, "cpu_s": CPUTime.cpu}
    if distributed:
        from mpi4py import MPI

        from ranvier import distributed as dist

        comm = dist.init()
        n = sum(p.data.size for p in model.parameters()) + 3  # the step's buffer
        buf = np.zeros(n, np.float32)
        laps = []
        for _ in range(200):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            laps.append(time.perf_counter() - t0)
        out["allreduce_us"] = float(np.median(laps[20:]) * 1e6)
        out["allreduce_floats"] = n
        if not dist.is_main():
            return
    print(json.dumps(out), flush=True)


def _worker_torch(epochs, distributed):
    import torch

    torch.set_num_threads(1)
    rank, world = 0, 1
    if distributed:
        import torch.distributed as tdist

        rank, world = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        tdist.init_process_group("gloo", rank=rank, world_size=world)
    X, y = _data()
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model = torch.nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, cpu = [], []
    for e in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.from_numpy(np.random.default_rng(e).permutation(N))
        for s in range(0, N, BATCH):
            idx = order[s:s + BATCH]
            share = -(-len(idx) // world)
            idx = idx[rank * share:(rank + 1) * share]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if rank == 0:
        print(json.dumps({"epoch_s": times, "cpu_s": cpu}), flush=True)
    if distributed:
        tdist.destroy_process_group()


def _run(n, lib, epochs):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--epochs", str(epochs)]
    if n > 1:
        cmd = [mpiexec, "-n", str(n)] + cmd + ["--distributed"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--worker", choices=("ranvier", "torch"))
    ap.add_argument("--distributed", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker = _worker_ranvier if args.worker == "ranvier" else _worker_torch
        return worker(args.epochs, args.distributed)
    load = os.getloadavg()[0]
    libs = ["ranvier"] + ([] if args.skip_torch else ["torch"])
    rows = []
    for lib in libs:
        one, two = _run(1, lib, args.epochs), _run(2, lib, args.epochs)
        rows.append((lib, one, two))
    print(f"one epoch, {N} rows, {'-'.join(map(str, SIZES))} MLP, Adam, global batch {BATCH}, "
          "1 thread per rank; seconds per epoch (wall, and CPU of rank 0), each epoch listed; "
          f"load average before: {load:.2f}")
    print("| library | 1 process wall | 2 ranks wall | ratio (best) | 1 process CPU | "
          "2 ranks CPU (rank 0) | ratio (best) |")
    print("|---|---|---|---|---|---|---|")
    for lib, one, two in rows:
        fmt = ", ".join
        cells = []
        for key in ("epoch_s", "cpu_s"):
            cells += [fmt(f"{t:.3f}" for t in one[key]), fmt(f"{t:.3f}" for t in two[key]),
                      f"{min(two[key]) / min(one[key]):.2f}x"]
        print(f"| {lib}{' (DDP, gloo)' if lib == 'torch' else ''} | {' | '.join(cells)} |")
    two = rows[0][2]
    steps = -(-N // BATCH)
    print(f"ranvier's Allreduce per step ({two['allreduce_floats']:,} float32, alone, 2 ranks): "
          f"{two['allreduce_us']:.0f} us median, {two['allreduce_us'] * steps / 1e6:.3f} s per "
          f"epoch of {steps} steps")


if __name__ == "__main__":
    main()
