"""``ranvier bench``: ranvier vs NumPy (its BLAS), PyTorch and scikit-learn, side by side in one
run, on this machine.

By default (about a minute) it times the GEMM at the products of a 784-256-128-10 MLP (float32,
batch 128) and one MNIST-shaped training epoch (synthetic data, nothing downloaded; Adam, batch
128) with ranvier and a plain NumPy MLP, and PyTorch and scikit-learn when they are installed, at
ranvier's thread count, and prints a table of times and ratios with the CPU, ISA and thread count.
``--full`` runs the whole suite, each section at 1 and 2 threads (``--threads``), medians of
repeated runs with min-max:
  1. GEMM          gemm.py         GFLOP/s of the MLP's products and of squares
  2. elementwise   elementwise.py  GB/s of activations, bias+ReLU, softmax-CE vs copy
  3. end to end    e2e.py          digits and MNIST training: time, accuracy, peak RSS
  4. convolutions  conv.py         Conv2d per layer, forward and both gradients, vs PyTorch
  5. CNN training  cnn_train.py    LeNet-5 and examples/mnist training steps vs PyTorch, GEMM floor
  6. scikit-learn  sklearn_fit.py  MLPClassifier.fit, adam and lbfgs, ranvier.sklearn vs sklearn
  7. bf16 GEMM     gemm_bf16.py    GFLOP/s of bf16 products: ranvier bf16 vs float32 vs PyTorch bf16
``--quick`` is a smoke test of the full suite (tiny sizes and repeats). ``--json FILE`` and
``--plot FILE.png`` (matplotlib) write the results; ``--out-dir DIR`` writes results.json,
results.md and results.png there (``make bench``: ``benchmarks/results/<cpu kind>/``). PyTorch,
scikit-learn, threadpoolctl and matplotlib are optional: a missing one loses its column (or the
chart), with a note.

    ranvier bench                                  # about a minute
    ranvier bench --full --data-dir DIR            # 10-15 minutes on 2 cores, real MNIST from DIR
    ranvier bench --full --only gemm,e2e --threads 1
"""
import argparse
import datetime
import os
import signal
import sys
import time
import traceback

import numpy as np

from . import cnn_train, conv, e2e, elementwise, gemm, gemm_bf16, report, sklearn_fit
from ._common import fair_blas_env, machine_record, optional_import, versions, write_json

SECTIONS = ("gemm", "elementwise", "e2e", "conv", "cnn", "sklearn", "bf16")


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class _Progress:
    """One tick per measured row, on stderr: a tqdm bar when tqdm is installed, else a line."""

    def __init__(self, enabled):
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(desc="ranvier bench", unit="row", file=sys.stderr,
                                dynamic_ncols=True, mininterval=0.2)

    def __call__(self, line):
        if self.bar is not None:
            self.bar.set_postfix_str(line.strip()[:60], refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _parse(argv):
    ap = argparse.ArgumentParser(prog="ranvier bench", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the whole suite (10-15 minutes)")
    mode.add_argument("--quick", action="store_true",
                      help="a smoke test of the whole suite: tiny sizes and repeats")
    ap.add_argument("--threads", default=None,
                    help="thread counts to compare, e.g. 1,2 (default: ranvier's thread count; "
                         "1,2 with --full)")
    ap.add_argument("--only", default=None,
                    help=f"comma-separated sections, of {','.join(SECTIONS)} (default: gemm,e2e; "
                         "all with --full)")
    ap.add_argument("--data-dir", default=None,
                    help="directory with the MNIST IDX files for the end-to-end section (default: "
                         "synthetic MNIST-shaped data)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", default=None, metavar="FILE",
                    help="write a PNG chart of the results (needs matplotlib)")
    ap.add_argument("--out-dir", default=None,
                    help="write results.json, results.md and results.png to this directory")
    ap.add_argument("--note", default="", help="a remark printed at the top of results.md")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="wall-clock budget in minutes (default 14 with --full, none otherwise; "
                         "0: none). On a slow or busy machine the end-to-end section cuts "
                         "repeats, then skips configs, to fit, and says so in the results.")
    ap.add_argument("--libs", default=",".join(e2e.LIBS),
                    help=f"libraries to compare, of {','.join(e2e.LIBS)} (default: all that are "
                         "installed; ranvier always runs)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    args.mode = "full" if args.full else "quick" if args.quick else "default"
    args.libs = ("ranvier",) + tuple(l for l in e2e.LIBS[1:] if l in args.libs.split(","))
    if args.threads is not None:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip().isdigit()]
    only = [s.strip() for s in (args.only or (",".join(SECTIONS) if args.mode != "default"
                                              else "gemm,e2e")).split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad or args.threads == [] or min(args.threads or [1]) < 1:
        ap.error(f"--only takes {SECTIONS}, --threads positive ints; got {args.only!r}, "
                 f"{','.join(map(str, args.threads)) if args.threads is not None else None!r}")
    args.only = only
    return args


def _runners(args, threads, deadline, log):
    """The sections to run for this mode."""
    if args.mode == "default":
        return {
            "gemm": lambda: gemm.run(threads=threads, batches=(128,), squares=(),
                                     dtypes=(np.float32,), repeats=3, target_s=0.01,
                                     settle_s=0.0, log=log, libs=args.libs),
            "elementwise": lambda: elementwise.run(quick=True, threads=threads, log=log,
                                                   libs=args.libs),
            "e2e": lambda: e2e.run(threads=threads, data_dir=args.data_dir, repeats=1,
                                   mnist_repeats=1, batches=(128,), tasks=("mnist",),
                                   optimizers=("adam",), deadline=deadline, log=log,
                                   libs=args.libs),
            "conv": lambda: conv.run(threads=threads, batch=16, repeats=2, log=log,
                                     libs=args.libs),
            "cnn": lambda: cnn_train.run(threads=threads, data_dir=args.data_dir, repeats=1,
                                         step_scale=0.1, log=log, libs=args.libs),
            "sklearn": lambda: sklearn_fit.run(threads=threads, data_dir=args.data_dir,
                                               n_train=2000, epochs=2, lbfgs_iter=10,
                                               repeats=1, log=log, libs=args.libs),
            "bf16": lambda: gemm_bf16.run(threads=threads, batches=(128,), squares=(1024,),
                                          repeats=3, target_s=0.01, settle_s=0.0, log=log,
                                          libs=args.libs),
        }
    quick = args.mode == "quick"
    return {
        "gemm": lambda: gemm.run(quick=quick, threads=threads, log=log, libs=args.libs),
        "elementwise": lambda: elementwise.run(quick=quick, threads=threads, log=log,
                                               libs=args.libs),
        "e2e": lambda: e2e.run(quick=quick, threads=threads, data_dir=args.data_dir,
                               deadline=deadline, log=log, libs=args.libs),
        "conv": lambda: conv.run(threads=threads, batch=16 if quick else 64,
                                 repeats=2 if quick else 5, log=log, libs=args.libs),
        "cnn": lambda: cnn_train.run(threads=threads, data_dir=args.data_dir,
                                     repeats=1 if quick else 3, step_scale=0.05 if quick else 1.0,
                                     log=log, libs=args.libs),
        "sklearn": lambda: sklearn_fit.run(threads=threads, data_dir=args.data_dir,
                                           n_train=1000 if quick else 10_000,
                                           epochs=1 if quick else 5,
                                           lbfgs_iter=3 if quick else 30,
                                           repeats=1 if quick else 3, log=log, libs=args.libs),
        "bf16": lambda: gemm_bf16.run(quick=quick, threads=threads, log=log, libs=args.libs),
    }


def main(argv=None, own_process=False):
    """``own_process``: this process was started to run the benchmarks (the command line), so it
    may re-execute itself without the OpenBLAS overrides; called from other code (a notebook, a
    test) it never replaces the caller's process, and the results say which overrides stayed."""
    args = _parse(argv)   # bad arguments end here, before anything runs or re-executes
    if own_process:
        fair_blas_env()   # re-executes this process when OpenBLAS overrides are set
    import ranvier

    if args.threads is None:
        threads = [1, 2] if args.mode != "default" else [ranvier.get_num_threads()]
    else:
        threads = args.threads
    only = args.only
    # SIGTERM unwinds like Ctrl-C: running subprocesses are killed, temporary files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    optional_import("torch")  # loaded before the machine record, so its version shows
    t_start = time.perf_counter()
    budget_min = args.budget_min if args.budget_min is not None else (
        14 if args.mode == "full" else 0)
    deadline = t_start + budget_min * 60 - 15 if budget_min > 0 else None
    res = {
        "config": {"mode": args.mode, "quick": args.mode == "quick", "threads": threads,
                   "sections": only, "argv": list(argv if argv is not None else sys.argv[1:]),
                   "data_dir": args.data_dir, "note": args.note, "budget_min": budget_min,
                   "started": datetime.datetime.now().isoformat(timespec="seconds"),
                   "loadavg_start": _loadavg(), "section_wall_s": {}},
        "machine": dict(machine_record(), versions=versions()),
    }
    missing = [k for k, v in res["machine"]["versions"].items()
               if v is None and k in ("torch", "sklearn", "threadpoolctl", "matplotlib")]
    if missing:
        print(f"not installed (their columns are skipped): {', '.join(missing)}")
    print(f"ranvier bench ({args.mode}) on {res['machine']['cpu']} "
          f"({res['machine']['cpu_kind']}), threads {threads}, "
          f"ISA {res['machine']['ranvier_isa']}, load average {res['config']['loadavg_start']}",
          flush=True)

    progress = _Progress(not args.no_progress)
    runners = _runners(args, threads, deadline, progress)
    json_path = args.json or (os.path.join(args.out_dir, "results.json") if args.out_dir
                              else None)
    failed = []
    try:
        for name in SECTIONS:
            if name not in only:
                continue
            t0 = time.perf_counter()
            try:
                res[name] = runners[name]()
            except Exception as e:  # keep the other sections' results
                traceback.print_exc()
                res[name] = {"rows": [], "error": f"{type(e).__name__}: {e}"}
                failed.append(name)
            res["config"]["section_wall_s"][name] = round(time.perf_counter() - t0, 1)
            res["config"]["wall_s"] = time.perf_counter() - t_start
            if json_path:
                write_json(json_path, res)  # after every section: a crash keeps what was measured
    finally:
        progress.close()

    res["config"]["wall_s"] = time.perf_counter() - t_start
    res["config"]["loadavg_end"] = _loadavg()
    res["machine"]["blas"] = machine_record()["blas"]  # every BLAS loaded by now (SciPy's too)
    print(report.render_md(res))
    written = []
    if json_path:
        write_json(json_path, res)
        written.append(json_path)
    if args.out_dir:
        for n in report.render(res, args.out_dir):
            print(n)
        written.append(os.path.join(args.out_dir, "results.{md,png}"))
    if args.plot:
        why = report.render_png(res, args.plot)
        print(why if why else f"wrote {args.plot}")
    if written:
        print(f"wrote {', '.join(written)} ({res['config']['wall_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
