# The active instruction set, the one choice every kernel module reads (set_isa in _runtime.pyx).
cdef int active_isa() noexcept nogil
# Whether kernels flush denormals (set_flush_denormal in _runtime.pyx); read through _fpenv.pxd.
cdef int flush_denormal() noexcept nogil
