"""Build script for ranvier's native kernels.

Everything that is not plain metadata lives here:
- the Cython extensions under src/ranvier/_kernels and the C sources in csrc/ they link;
- OpenMP detection per compiler (gcc/clang ``-fopenmp``, MSVC ``/openmp``, Apple clang with libomp),
  falling back to a serial build with a warning (``RANVIER_NO_OPENMP=1`` forces it,
  ``RANVIER_REQUIRE_OPENMP=1`` turns the fallback into an error);
- per-file ISA flags: each ``csrc/gemm_<isa>.c`` (GEMM micro-kernels), ``csrc/gemm_bf16_<isa>.c``
  (bf16 GEMM, with an avx512_bf16 unit too), ``csrc/elementwise_<isa>.c`` (activations) and
  ``csrc/optim_<isa>.c`` (SGD/Adam updates) is compiled with its own flags and the best one is
  picked at run time, so one binary runs on every x86-64 CPU;
- ``RANVIER_SANITIZE=1`` (``make sanitize``): every C/Cython object built with AddressSanitizer and
  UndefinedBehaviorSanitizer, in its own build directory (build/sanitize).
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "csrc"
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64", "x64")

# Per-ISA translation units: (name, gcc/clang flags, MSVC flags). Only x86-64 gets the SIMD ones.
ISA_UNITS = [("generic", [], [])]
if IS_X86_64:
    ISA_UNITS += [
        ("avx2", ["-mavx2", "-mfma"], ["/arch:AVX2"]),
        ("avx512", ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"], ["/arch:AVX512"]),
    ]


# Units only some families have: (family, name, gcc/clang flags, MSVC flags, probe). VDPBF16PS
# is the bf16 GEMM's alone; every other family runs its avx512 unit on such a CPU (csrc/isa.h).
# A unit is built only where its probe compiles with its flags (BF16_PROBE, below).
EXTRA_UNITS = []


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


SANITIZE = _env_flag("RANVIER_SANITIZE")
# -O1 keeps ASan's reports readable and its build quick; no recovery, so any report fails the run.
# -fno-wrapv undoes CPython's -fwrapv, which would hide signed overflow from UBSan (MSVC has no
# such flag, so the kernels must not rely on it); float-cast-overflow is not in "undefined".
SANITIZE_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all",
                  "-fno-wrapv", "-fno-omit-frame-pointer", "-g", "-O1"]


# Programs that must compile, link (and make sense) for a feature to count as present.
OMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return (n == omp_get_max_threads()) ? 0 : 1;
    }
    """
)
SIMD_PROBE = textwrap.dedent(
    """
    int main(void) {
        float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, s = 0;
        #pragma omp simd reduction(+:s)
        for (int i = 0; i < 8; ++i) s += x[i];
        return s == 36 ? 0 : 1;
    }
    """
)
# VDPBF16PS through its intrinsic: gcc >= 10, clang >= 9, MSVC 2019 16.4 and later know it.
BF16_PROBE = textwrap.dedent(
    """
    #include <immintrin.h>
    int main(void) {
        __m512 acc = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_setzero_si512(),
                                      (__m512bh)_mm512_setzero_si512());
        return (int)_mm512_reduce_add_ps(acc);
    }
    """
)
if IS_X86_64:
    EXTRA_UNITS += [("gemm_bf16", "avx512_bf16", ISA_UNITS[-1][1] + ["-mavx512bf16"],
                     ["/arch:AVX512"], BF16_PROBE)]
OMP_PAUSE_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) { return omp_pause_resource_all(omp_pause_hard); }
    """
)


class RanvierBuildExt(build_ext):
    """build_ext that detects OpenMP once and compiles ISA-specific objects with their own flags."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        self._msvc = ctype == "msvc"
        self._openmp_found = False  # set by _detect_openmp (the serial flags are not empty)
        self._omp_compile, self._omp_link = self._detect_openmp()
        base = ["/O2"] if self._msvc else ["-O3", "-fno-math-errno", "-fno-trapping-math"]
        if not self._msvc:
            base += ["-Wno-unused-function", "-Wno-unknown-pragmas"]
        sanitize_link = []
        if SANITIZE:
            if self._msvc:
                raise RuntimeError("RANVIER_SANITIZE=1 needs gcc or clang")
            # base reaches both compile paths: the Cython extensions and _isa_family_objects.
            base = [f for f in base if not f.startswith("-O")] + SANITIZE_FLAGS
            sanitize_link = SANITIZE_FLAGS
        # A compiler without the AVX512-BF16 intrinsics builds everything else: the ISA level
        # then reports unsupported (runtime.c) and the bf16 GEMM runs its portable kernel.
        self._extra_units = [u[:4] for u in EXTRA_UNITS
                             if self._probe(u[3] if self._msvc else u[2], [], u[4])]
        for family, name, *_ in EXTRA_UNITS:
            if not any(u[:2] == (family, name) for u in self._extra_units):
                print(f"ranvier: this compiler cannot build {name} code; {family} runs its "
                      "portable kernel on every CPU")
        openmp_macro = [("RANVIER_HAVE_OPENMP", "1" if self._openmp_found else "0"),
                        ("RANVIER_HAVE_OMP_PAUSE", "1" if self._omp_pause else "0"),
                        ("RANVIER_HAVE_AVX512BF16",
                         "1" if any(u[1] == "avx512_bf16" for u in self._extra_units) else "0")]
        self._isa_objects = {}
        for ext in self.extensions:
            ext.extra_compile_args = base + self._omp_compile + ext.extra_compile_args
            ext.extra_link_args = self._omp_link + sanitize_link + ext.extra_link_args
            ext.define_macros = ext.define_macros + openmp_macro + [
                ("RANVIER_HAVE_X86_SIMD", "1" if IS_X86_64 else "0"),
                ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
            ]
            for family in ISA_FAMILIES.get(ext.name.rsplit(".", 1)[-1], ()):
                ext.extra_objects = list(ext.extra_objects or []) + self._isa_family_objects(
                    family, base, openmp_macro)
        super().build_extensions()

    # -- per-ISA objects (csrc/<family>_<isa>.c), compiled once and linked where needed --
    def _isa_family_objects(self, family, base, macros):
        if family not in self._isa_objects:
            objects = []
            headers = [os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".h")]
            x86 = [("RANVIER_HAVE_X86_SIMD", "1" if IS_X86_64 else "0")]
            units = ISA_UNITS + [u[1:] for u in self._extra_units if u[0] == family]
            for isa, gnu_flags, msvc_flags in units:
                flags = base + self._omp_compile + (msvc_flags if self._msvc else gnu_flags)
                objects += self.compiler.compile(
                    [os.path.join(CSRC, f"{family}_{isa}.c")],
                    output_dir=self.build_temp,
                    macros=macros + x86,
                    include_dirs=[CSRC],
                    extra_postargs=flags,
                    depends=headers,
                )
            self._isa_objects[family] = objects
        return self._isa_objects[family]

    # -- OpenMP detection: try the compiler's flags on a tiny program that calls the runtime --
    def _detect_openmp(self):
        # omp_pause_resource_all (OpenMP 5.0; libgomp of GCC >= 11): csrc/runtime.c calls it before
        # fork so that a forked child can start its own thread pool. Older runtimes, MSVC's
        # OpenMP 2.0 and the serial build go without (a forked child then stays on one thread).
        self._omp_pause = False
        if _env_flag("RANVIER_NO_OPENMP"):
            print("ranvier: RANVIER_NO_OPENMP set, building without OpenMP (serial kernels)")
            return self._simd_only(), []
        candidates = []
        if self._msvc:
            candidates.append((["/openmp"], []))
        elif sys.platform == "darwin":
            prefix = os.environ.get("RANVIER_LIBOMP_PREFIX", "")
            inc = [f"-I{prefix}/include"] if prefix else []
            lib = [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib"] if prefix else []
            candidates.append((["-Xpreprocessor", "-fopenmp"] + inc, lib + ["-lomp"]))
            candidates.append((["-fopenmp"], ["-fopenmp"]))
        else:
            candidates.append((["-fopenmp"], ["-fopenmp"]))
        for cflags, lflags in candidates:
            if self._probe(cflags, lflags, OMP_PROBE):
                print(f"ranvier: building with OpenMP ({' '.join(cflags)})")
                self._omp_pause = self._probe(cflags, lflags, OMP_PAUSE_PROBE)
                print(f"ranvier: omp_pause_resource_all {'found' if self._omp_pause else 'missing'}")
                self._openmp_found = True
                return cflags, lflags
        msg = "ranvier: no working OpenMP found for this compiler; kernels will run on one thread."
        if _env_flag("RANVIER_REQUIRE_OPENMP"):
            raise RuntimeError(msg)
        print("WARNING: " + msg, file=sys.stderr)
        return self._simd_only(), []

    def _simd_only(self):
        """Flags of a serial build. The kernels' ``omp simd`` loops fix the order of their vector
        reductions and let a tile's rows compile to the same instructions whatever the tile's
        height; without the pragma a serial build rounds a row differently depending on the rows
        around it (1-ulp differences between predict in batches and in one go). gcc and clang
        honour the pragma alone with -fopenmp-simd, which needs no OpenMP runtime."""
        # -Werror: a compiler that accepts the flag but ignores the pragma does not count.
        if self._msvc or not self._probe(["-fopenmp-simd", "-Werror"], [], SIMD_PROBE):
            return []
        print("ranvier: serial build keeps the omp simd loops (-fopenmp-simd)")
        return ["-fopenmp-simd"]

    def _probe(self, cflags, lflags, code):
        """True when ``code`` compiles and links with these flags."""
        tmp = tempfile.mkdtemp(prefix="ranvier-probe-")
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            exe = os.path.join(tmp, "probe")
            self.compiler.link_executable(objs, exe, extra_postargs=lflags)
            return True
        except Exception:  # any compile or link error means "not this way"
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# Which per-ISA object families each extension links.
# (matmul takes the elementwise family too: the Dense backward pass and the activations applied
# after a GEMM are the same objects the activation layers run.)
ISA_FAMILIES = {"matmul": ("gemm", "elementwise"), "activations": ("elementwise",),
                "bf16": ("elementwise", "gemm_bf16"),
                "optimizers": ("optim",)}


def kernel_extension(name, c_sources=()):
    return Extension(
        f"ranvier._kernels.{name}",
        sources=[f"src/ranvier/_kernels/{name}.pyx"] + [os.path.join(CSRC, s) for s in c_sources],
        include_dirs=[CSRC, np.get_include()],
        depends=[os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".h")],
    )


extensions = [
    kernel_extension("_runtime", ["runtime.c", "cpu_caches.c"]),
    kernel_extension("matmul", ["runtime.c", "gemm.c", "gemm_blocking.c", "elementwise.c"]),
    kernel_extension("activations", ["runtime.c", "elementwise.c"]),
    kernel_extension("bf16", ["runtime.c", "elementwise.c", "gemm_bf16.c", "gemm_blocking.c"]),
    kernel_extension("losses"),
    kernel_extension("optimizers", ["runtime.c", "optim.c"]),
    kernel_extension("norm"),
    kernel_extension("pool"),
    kernel_extension("validation"),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": RanvierBuildExt},
    # A sanitized build keeps its objects apart, so it never links into (or from) a normal build.
    options={"build": {"build_base": os.path.join("build", "sanitize")}} if SANITIZE else {},
)
