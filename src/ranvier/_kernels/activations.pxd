from ranvier._kernels._elementwise cimport ranvier_ew_kernels


# The elementwise kernels of the active ISA, for other extensions (losses) to call.
cdef const ranvier_ew_kernels *ew_kernels() noexcept nogil
