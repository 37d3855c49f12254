"""``make bench``: the whole benchmark suite (``ranvier bench --full``, src/ranvier/bench/), with
its results kept in this repository, one folder per kind of CPU:
``benchmarks/results/<cpu kind>/results.{json,md,png}`` (``.../quick/`` with ``--quick``).
Real MNIST is read from ../shared/data/mnist beside the checkout when it is there.

    python benchmarks/run_all.py [--quick] [any other option of ranvier bench]
"""
import os
import sys

from ranvier.bench import main
from ranvier.bench._common import results_dir

HERE = os.path.dirname(os.path.abspath(__file__))
MNIST = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))

if __name__ == "__main__":
    argv = sys.argv[1:]
    quick = "--quick" in argv
    if not quick and "--full" not in argv:
        argv = ["--full"] + argv
    if "--out-dir" not in argv:
        argv += ["--out-dir", results_dir(os.path.join(HERE, "results"), quick)]
    if "--data-dir" not in argv and os.path.isdir(MNIST):
        argv += ["--data-dir", MNIST]
    sys.exit(main(argv, own_process=True))
