"""ranvier's GEMM vs OpenBLAS per call, in the calling thread's CPU time (one thread each).

A developer's view below ``make bench``: it compiles csrc/ and benchmarks/native/gemm_cpu_time.c
with the same flags setup.py uses for each instruction set, loads the OpenBLAS that NumPy ships,
and times the nine products of a 784-256-128-10 MLP at batch 32, 128 and 512 (plus the digits
network's) in thread CPU time, which other processes on the machine do not inflate.

    python benchmarks/native/gemm_cpu_time.py [--isa avx512|avx2|generic] [m,n,k,form ...]

form: 0 = X @ W.T, 1 = dY @ W, 2 = dY.T @ X. Needs gcc or clang and NumPy >= 2 (scipy-openblas).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSRC = os.path.join(ROOT, "csrc")
ISA_FLAGS = {"generic": [], "avx2": ["-mavx2", "-mfma"],
             "avx512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"]}
BASE = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-DRANVIER_HAVE_OPENMP=1",
        "-DRANVIER_HAVE_X86_SIMD=1", f"-I{CSRC}"]


def mlp_products():
    out = []
    for batch in (32, 128, 512):
        for fin, fout in ((784, 256), (256, 128), (128, 10)):
            out += [(batch, fout, fin, 0), (batch, fin, fout, 1), (fout, fin, batch, 2)]
    for fin, fout in ((64, 64), (64, 10)):  # digits 64-64-64-10 at batch 32
        out += [(32, fout, fin, 0), (32, fin, fout, 1), (fout, fin, 32, 2)]
    return [",".join(map(str, p)) for p in out]


def openblas_path():
    import numpy as np

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so"))
    if not libs:
        sys.exit("NumPy's bundled scipy-openblas was not found (a NumPy >= 2 wheel is needed)")
    return libs[0]


def build(workdir, cc):
    objs = []
    for isa, flags in ISA_FLAGS.items():
        obj = os.path.join(workdir, f"gemm_{isa}.o")
        subprocess.run([cc, *BASE, *flags, "-c", os.path.join(CSRC, f"gemm_{isa}.c"), "-o", obj],
                       check=True)
        objs.append(obj)
    exe = os.path.join(workdir, "gemm_cpu_time")
    subprocess.run([cc, *BASE, os.path.join(HERE, "gemm_cpu_time.c"),
                    *(os.path.join(CSRC, f) for f in ("gemm.c", "gemm_blocking.c",
                                                       "cpu_caches.c", "runtime.c")), *objs,
                    "-ldl", "-lm", "-o", exe], check=True)
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", choices=sorted(ISA_FLAGS), help="force a kernel (default: best)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("products", nargs="*", help="m,n,k,form (default: the MLP's products)")
    args = ap.parse_args()
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # a fair OpenBLAS, as make bench
        env.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="ranvier-gemm-") as tmp:
        exe = build(tmp, args.cc)
        if args.isa:
            env["RANVIER_GEMM_ISA"] = args.isa
        subprocess.run([exe, openblas_path(), *(args.products or mlp_products())], env=env,
                       check=True)


if __name__ == "__main__":
    main()
