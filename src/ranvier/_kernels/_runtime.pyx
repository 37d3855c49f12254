"""OpenMP facts of this build, for thread control and show_config(); the ISA the kernels run;
the CPU's caches; the denormal mode."""
from cython.parallel cimport parallel, threadid
from libc.string cimport memset

cdef extern from "runtime.h":
    int ranvier_openmp_enabled() nogil
    int ranvier_omp_max_threads() nogil
    int ranvier_omp_num_procs() nogil
    int ranvier_fork_release_supported() nogil
    int ranvier_fork_prepare()


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(ranvier_openmp_enabled())


def omp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl limits; 1 without OpenMP."""
    return ranvier_omp_max_threads()


def omp_num_procs():
    return ranvier_omp_num_procs()


def fork_release_supported():
    """True when fork_prepare() can release the OpenMP thread pool (libgomp with
    omp_pause_resource_all); otherwise a forked child must stay on one thread."""
    return bool(ranvier_fork_release_supported())


def fork_prepare():
    """Release the calling thread's OpenMP thread pool just before fork; True on success.
    Regions other threads are running use pools of their own and are not touched. Called with
    the GIL held: the pool's threads are idle and never take the GIL, so joining them cannot
    deadlock, and it is quick enough that releasing the GIL would gain nothing."""
    return ranvier_fork_prepare() == 0


# -- the instruction set the kernels run (one choice for every kernel family) ------------------
cdef extern from "isa.h":
    enum:
        RANVIER_ISA_COUNT
    const char *ranvier_isa_names[]
    int ranvier_isa_supported(int isa) nogil
    int ranvier_isa_best() nogil
    int RANVIER_HAVE_AVX512BF16

ISA_NAMES = tuple(ranvier_isa_names[i].decode() for i in range(RANVIER_ISA_COUNT))
cdef int _active_isa = ranvier_isa_best()


cdef int active_isa() noexcept nogil:
    return _active_isa


def supported_isas():
    """The ISAs this build and CPU can run, narrowest first."""
    return [name for i, name in enumerate(ISA_NAMES) if ranvier_isa_supported(i)]


def avx512_bf16_built():
    """Whether this build has the AVX512-BF16 kernel: setup.py leaves it out when the compiler
    cannot build it, and supported_isas() then lacks avx512_bf16 on every CPU."""
    return bool(RANVIER_HAVE_AVX512BF16)


def best_isa():
    """The widest ISA this CPU runs: the default."""
    return ISA_NAMES[ranvier_isa_best()]


def get_isa():
    """The ISA every kernel family (GEMM, elementwise, optimizer updates) runs now."""
    return ISA_NAMES[_active_isa]


def set_isa(name):
    """Run every kernel family on ``name``; ValueError (naming the choices) when unknown or when
    this CPU or build cannot run it. A failed call keeps the current ISA."""
    global _active_isa
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {ISA_NAMES}")
    code = ISA_NAMES.index(name)
    if not ranvier_isa_supported(code):
        raise ValueError(f"ISA {name!r} is not supported by this CPU or build; "
                         f"supported: {supported_isas()}")
    _active_isa = code


# -- the CPU's data caches (csrc/cpu_caches.h), which the GEMM's blocks are derived from ---------
cdef extern from "cpu_caches.h":
    const ranvier_cpu_caches *ranvier_cpu_caches_detected() nogil
    int ranvier_cpu_caches_read(int method, ranvier_cpu_caches *c) nogil
    enum:
        RANVIER_CACHES_SYSFS
        RANVIER_CACHES_CPUID
        RANVIER_CACHES_SYSCONF

# Detected here, at import (under the GIL), so that no kernel ever races to do it.
cdef const ranvier_cpu_caches *_caches = ranvier_cpu_caches_detected()


cdef const ranvier_cpu_caches *detected_caches() noexcept nogil:
    return _caches


cdef dict _caches_dict(const ranvier_cpu_caches *c, source):
    return {"l1d_bytes": c.l1d_bytes, "l1d_ways": c.l1d_ways, "l2_bytes": c.l2_bytes,
            "l2_ways": c.l2_ways, "l3_bytes": c.l3_bytes, "l3_ways": c.l3_ways,
            "l3_shared_by": c.l3_shared_by, "source": source}


def cpu_caches():
    """cpu0's data caches as detected (0 where unknown): l1d_bytes, l1d_ways, l2_bytes, l2_ways,
    l3_bytes, l3_ways, l3_shared_by (logical CPUs sharing the L3) and source (the ways of reading
    them that answered, joined by "+": "sysfs", "cpuid", "sysconf"; "none" when none did)."""
    return _caches_dict(_caches, _caches.source.decode())


def _cpu_caches_from(method):
    """For tests: what one way of reading the caches ("sysfs", "cpuid" or "sysconf") finds on its
    own, or None when it finds nothing here."""
    cdef ranvier_cpu_caches c
    codes = {"sysfs": RANVIER_CACHES_SYSFS, "cpuid": RANVIER_CACHES_CPUID,
             "sysconf": RANVIER_CACHES_SYSCONF}
    memset(&c, 0, sizeof(c))
    if not ranvier_cpu_caches_read(codes[method], &c):
        return None
    return _caches_dict(&c, method)


# -- denormals: flushed to zero while kernels run (csrc/fpenv.h) --------------------------------
cdef extern from "fpenv.h":
    ctypedef unsigned long long ranvier_fpstate
    ranvier_fpstate ranvier_fp_read() nogil
    void ranvier_fp_write(ranvier_fpstate v) nogil
    ranvier_fpstate RANVIER_FP_FLUSH_BITS

cdef int _flush_denormal = 1


cdef int flush_denormal() noexcept nogil:
    return _flush_denormal


def get_flush_denormal():
    """True when kernels run with denormals flushed to zero (the default)."""
    return bool(_flush_denormal)


def set_flush_denormal(bint flush):
    """Kernels flush denormals to zero (True) or run in the caller's own mode (False)."""
    global _flush_denormal
    _flush_denormal = flush


def flush_denormal_supported():
    """True where this CPU has a flush-to-zero mode ranvier sets (x86 SSE, aarch64)."""
    return RANVIER_FP_FLUSH_BITS != 0


def _fp_control_word():
    """For tests: this thread's MXCSR (x86) or FPCR (aarch64), read by C."""
    return ranvier_fp_read()


def _set_fp_control_word(ranvier_fpstate value):
    """For tests: write this thread's MXCSR / FPCR."""
    ranvier_fp_write(value)


def _team_fp_control_words(int num_threads):
    """For tests: the control word of each thread of a parallel region of num_threads (the OpenMP
    pool the kernels' regions use), read inside the region, by thread number."""
    cdef ranvier_fpstate words[64]
    cdef int t, n = min(max(num_threads, 1), 64)
    for t in range(n):
        words[t] = 0
    with nogil, parallel(num_threads=n):
        words[threadid()] = ranvier_fp_read()
    return [words[t] for t in range(n)]
