"""ranvier's benchmark suite: ranvier vs NumPy (its BLAS), PyTorch and scikit-learn in one run.

Sections, each at 1 and 2 threads (``--threads``), medians of repeated runs with min-max:
  1. GEMM             bench_gemm.py         GFLOP/s of the MLP's products and of squares
  2. elementwise      bench_elementwise.py  GB/s of activations, bias+ReLU, softmax-CE vs copy
  3. end to end       bench_e2e.py          digits and MNIST training: time, accuracy, peak RSS
Writes ``results.json`` (everything, with the machine record), ``results.md`` (one table per
section) and ``results.png`` to ``benchmarks/results/<cpu kind>/`` (e.g. ``amd-zen5``, read from
the CPU's family and model; ``<cpu kind>/quick/`` with ``--quick``, so a smoke test never
overwrites real numbers), so each kind of machine keeps its own figures. PyTorch, scikit-learn, threadpoolctl
and matplotlib are optional: a missing one loses its column (or the chart), with a note.

    python benchmarks/run_all.py            # full: about 10-15 minutes on 2 cores
    python benchmarks/run_all.py --quick    # smoke test: tiny sizes and repeats, under a minute
    python benchmarks/run_all.py --only gemm,e2e --threads 1 --data-dir /path/to/mnist
"""
import argparse
import datetime
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fair_blas_env  # noqa: E402

fair_blas_env()

import numpy as np  # noqa: E402, F401  (NumPy loads its BLAS after the environment is fair)

import bench_e2e  # noqa: E402
import bench_elementwise  # noqa: E402
import bench_gemm  # noqa: E402
import report  # noqa: E402
from _common import (DEFAULT_MNIST_DIR, RESULTS_DIR, machine_record, optional_import,  # noqa: E402
                     versions, write_json)

SECTIONS = ("gemm", "elementwise", "e2e")


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: tiny sizes and repeats (results/<cpu kind>/quick/)")
    ap.add_argument("--threads", default="1,2", help="thread counts to compare (default 1,2)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    ap.add_argument("--data-dir", default=DEFAULT_MNIST_DIR,
                    help=f"directory with the MNIST IDX files (default {DEFAULT_MNIST_DIR})")
    ap.add_argument("--out-dir", default=None,
                    help="where to write results.{json,md,png} (default benchmarks/results/<cpu "
                         "kind>, or its quick/ with --quick)")
    ap.add_argument("--note", default="", help="a remark printed at the top of results.md")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="wall-clock budget in minutes (default 14 for the full run, none with "
                         "--quick; 0: none). On a slow or busy machine the end-to-end section "
                         "cuts repeats, then skips configs, to fit, and says so in the results.")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: running subprocesses are killed, temporary files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad or not threads or min(threads) < 1:
        ap.error(f"--only takes {SECTIONS}, --threads positive ints; got {args.only!r}, "
                 f"{args.threads!r}")
    out_dir = args.out_dir or (os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR)
    json_path = os.path.join(out_dir, "results.json")

    optional_import("torch")  # loaded before the machine record, so its version shows
    t_start = time.perf_counter()
    budget_min = args.budget_min if args.budget_min is not None else (0 if args.quick else 14)
    deadline = t_start + budget_min * 60 - 15 if budget_min > 0 else None
    res = {
        "config": {"quick": args.quick, "threads": threads, "sections": only,
                   "argv": sys.argv[1:], "data_dir": args.data_dir, "note": args.note,
                   "budget_min": budget_min,
                   "started": datetime.datetime.now().isoformat(timespec="seconds"),
                   "loadavg_start": _loadavg(), "section_wall_s": {}},
        "machine": dict(machine_record(), versions=versions()),
    }
    missing = [k for k, v in res["machine"]["versions"].items()
               if v is None and k in ("torch", "sklearn", "threadpoolctl", "matplotlib")]
    if missing:
        print(f"not installed (their columns are skipped): {', '.join(missing)}")
    print(f"ranvier benchmarks ({'quick' if args.quick else 'full'}), threads {threads}, "
          f"GEMM ISA {res['machine']['ranvier_isa']}, "
          f"load average {res['config']['loadavg_start']}")

    runners = {
        "gemm": lambda: bench_gemm.run(quick=args.quick, threads=threads),
        "elementwise": lambda: bench_elementwise.run(quick=args.quick, threads=threads),
        "e2e": lambda: bench_e2e.run(quick=args.quick, threads=threads, data_dir=args.data_dir,
                                     deadline=deadline),
    }
    failed = []
    for name in SECTIONS:
        if name not in only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            res[name] = runners[name]()
        except Exception as e:  # keep the other sections' results
            traceback.print_exc()
            res[name] = {"rows": [], "error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        res["config"]["section_wall_s"][name] = round(time.perf_counter() - t0, 1)
        print(f"== {name}: {res['config']['section_wall_s'][name]:.0f} s", flush=True)
        res["config"]["wall_s"] = time.perf_counter() - t_start
        write_json(json_path, res)  # after every section: a crash keeps what was measured

    res["config"]["wall_s"] = time.perf_counter() - t_start
    res["config"]["loadavg_end"] = _loadavg()
    res["machine"]["blas"] = machine_record()["blas"]  # every BLAS loaded by now (SciPy's too)
    write_json(json_path, res)
    skipped = report.render(res, out_dir)
    for n in skipped:
        print(n)
    print(f"wrote results.json, results.md{'' if skipped else ' and results.png'} in {out_dir} "
          f"({res['config']['wall_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
