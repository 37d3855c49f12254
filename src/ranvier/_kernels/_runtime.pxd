# The active instruction set, the one choice every kernel module reads (set_isa in _runtime.pyx).
cdef int active_isa() noexcept nogil
# Whether kernels flush denormals (set_flush_denormal in _runtime.pyx); read through _fpenv.pxd.
cdef int flush_denormal() noexcept nogil
# The CPU's data caches, detected once (csrc/cpu_caches.h); the GEMM derives its blocks from them.
cdef extern from "cpu_caches.h":
    ctypedef struct ranvier_cpu_caches:
        long long l1d_bytes
        int l1d_ways
        long long l2_bytes
        int l2_ways
        long long l3_bytes
        int l3_ways
        int l3_shared_by
        const char *source
cdef const ranvier_cpu_caches *detected_caches() noexcept nogil
