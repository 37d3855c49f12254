from ranvier._kernels._elementwise cimport ranvier_act, ranvier_ew_kernels


# The elementwise kernels of the active ISA, for other extensions (losses) to call.
cdef const ranvier_ew_kernels *ew_kernels() noexcept nogil
# An activation of the table as the kernels take it; ValueError for a code not in the table.
cdef ranvier_act make_act(int code, double param) except *
