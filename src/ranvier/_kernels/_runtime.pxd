# The active instruction set, the one choice every kernel module reads (set_isa in _runtime.pyx).
cdef int active_isa() noexcept nogil
