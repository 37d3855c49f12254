"""GEMM float32 GFLOP/s of two or more builds (or blockings) side by side, interleaved.

Each arm is a source tree built in place, optionally with RANVIER_GEMM_BLOCKING forced; each runs
in one long-lived child process (``PYTHONPATH=<tree>/src``) that times whatever product the driver
names next. The driver visits the products in turn and, for each repeat, asks every arm once, in
an order that rotates, so that a busy machine slows every arm alike. Reported: the median GFLOP/s
per arm over the repeats, and the median over the repeats of each arm's speed relative to the
first arm's in the same repeat (a paired ratio, steadier than a ratio of medians) with, in
brackets, the ratio of the fastest repeats. The products are ``ranvier bench``'s (bench/gemm.py:
the nine of a 784-256-128-10 MLP step per batch size, and squares), on one thread unless told
otherwise.

    python benchmarks/compare_blocking.py old=../wt-blocking-old new=. \\
        [forced=.:192,256,4096] [--repeats 7] [--batches 32,128,512] [--squares 256,512,1024,2048]
        [--isa avx2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
from ranvier._kernels import matmul
from ranvier.bench.gemm import make_calls
threads = int(sys.argv[1])
calls = {}
for line in sys.stdin:
    shape = tuple(tuple(x) if isinstance(x, list) else x for x in json.loads(line))
    if shape not in calls:
        made, ok, err = make_calls(shape, np.float32, threads, np.random.default_rng(0), None)
        if not ok:
            raise SystemExit(f"wrong product {shape}: relative error {err}")
        calls[shape] = made["ranvier"]
    call = calls[shape]
    call()
    inner, elapsed = 1, 0.0
    while True:   # enough calls for ~30 ms, so the clock's resolution does not matter
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        elapsed = time.perf_counter() - t0
        if elapsed >= 0.03:
            break
        inner = max(inner * 2, int(inner * 0.04 / max(elapsed, 1e-9)))
    blocking = (matmul._gemm_blocking()["float32"] if hasattr(matmul, "_gemm_blocking")
                else "compile-time")   # a build from before run-time blocking
    print(json.dumps({"seconds": elapsed / inner, "blocking": blocking}), flush=True)
"""


def start_arm(spec, threads, isa):
    """label=tree[:MC,KC,NC] -> (label, child process)."""
    label, _, rest = spec.partition("=")
    tree, _, blocking = rest.partition(":")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"),
               OMP_NUM_THREADS=str(threads))
    env.pop("RANVIER_GEMM_BLOCKING", None)
    env.pop("RANVIER_ISA", None)
    if isa:
        env["RANVIER_ISA"] = isa
    if blocking:
        env["RANVIER_GEMM_BLOCKING"] = blocking
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(threads)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return label, proc


def ask(proc, shape):
    proc.stdin.write(json.dumps(shape) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("an arm's child died")
    return json.loads(line)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arms", nargs="+", help="label=tree[:MC,KC,NC]")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--isa", help="RANVIER_ISA for every arm (default: the best one)")
    p.add_argument("--batches", default="32,128,512")
    p.add_argument("--squares", default="256,512,1024,2048")
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from ranvier.bench.gemm import shape_list

    ints = lambda s: tuple(int(v) for v in s.split(",") if v)  # noqa: E731
    shapes = shape_list(False, ints(args.batches), ints(args.squares))
    arms = [start_arm(spec, args.threads, args.isa) for spec in args.arms]
    labels = [label for label, _ in arms]
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for shape in shapes:
        (_, batch, name, _, m, n, k) = shape[:7]
        times = {label: [] for label in labels}
        blocks = {}
        for r in range(args.repeats):
            for i in range(len(arms)):
                label, proc = arms[(i + r) % len(arms)]
                got = ask(proc, shape)
                times[label].append(got["seconds"])
                blocks[label] = got["blocking"]
        gflops = {label: 2.0 * m * n * k / statistics.median(t) / 1e9
                  for label, t in times.items()}
        rows.append({"name": name, "batch": batch, "m": m, "n": n, "k": k, "gflops": gflops,
                     "seconds": times, "blocking": blocks})
        # each repeat's arms ran back to back: their ratio sees the same machine state
        paired = {label: statistics.median(t0 / t for t0, t in zip(times[labels[0]], times[label]))
                  for label in labels[1:]}
        # and the fastest repeat of each, the one least disturbed by other work
        best = {label: min(times[labels[0]]) / min(times[label]) for label in labels[1:]}
        rows[-1].update(paired_ratio=paired, best_ratio=best)
        ratios = "  ".join(f"{label}/{labels[0]} {paired[label]:.3f} (best {best[label]:.3f})"
                           for label in labels[1:])
        cells = "  ".join(f"{label} {gflops[label]:7.1f}" for label in labels)
        tag = f"b{batch} {name}" if batch else name
        print(f"{tag:<22} {m:>5}x{n:<5}x{k:<5} GFLOP/s {cells}   {ratios}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    for label, _ in arms:
        print(f"{label}: float32 blocking {rows[-1]['blocking'][label]}")
    for _, proc in arms:
        proc.stdin.close()
        proc.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arms": args.arms, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
