# Denormals flushed while a kernel runs (csrc/fpenv.h says why). Kernels whose work is split
# into tasks get this from the task runner (_tasks.pxd); the idioms it and any other entry
# point follow:
#   serial work, on the calling thread:
#       with nogil:
#           fp = fp_enter()
#           ...
#           ranvier_fp_leave(fp)
#   a parallel region: the calling thread reads the mode, every thread of the team adopts it:
#       bits = fp_mode()
#       with nogil, parallel(num_threads=num_threads):
#           fp = ranvier_fp_adopt(bits)
#           for i in prange(n, schedule="static"):
#               ...
#           ranvier_fp_leave(fp)
# `cdef ranvier_fpstate fp = 0, bits = 0`: Cython passes fp into a parallel block as firstprivate,
# so it is initialised to keep the compiler from warning about an unread value.
# C kernels with OpenMP regions of their own do the second inside (csrc/gemm_template.h), with
# the calling thread's bits, which the first idiom has set.
from ranvier._kernels._runtime cimport flush_denormal

cdef extern from "fpenv.h":
    ctypedef unsigned long long ranvier_fpstate
    ranvier_fpstate RANVIER_FP_FLUSH_BITS
    ranvier_fpstate ranvier_fp_enter(int flush) noexcept nogil
    ranvier_fpstate ranvier_fp_flush_bits() noexcept nogil
    ranvier_fpstate ranvier_fp_adopt(ranvier_fpstate bits) noexcept nogil
    void ranvier_fp_leave(ranvier_fpstate saved) noexcept nogil


cdef inline ranvier_fpstate fp_enter() noexcept nogil:
    return ranvier_fp_enter(flush_denormal())


cdef inline ranvier_fpstate fp_mode() noexcept nogil:
    """The flush bits every thread of a parallel region adopts: flushing, or the calling
    thread's own mode when flushing is off. Read by the calling thread before the region."""
    return RANVIER_FP_FLUSH_BITS if flush_denormal() else ranvier_fp_flush_bits()
