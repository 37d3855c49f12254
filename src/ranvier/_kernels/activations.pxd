from ranvier._kernels._checks cimport check_act
from ranvier._kernels._elementwise cimport ranvier_act, ranvier_ew_kernels


# The elementwise kernels of the active ISA, for other extensions (losses) to call.
cdef const ranvier_ew_kernels *ew_kernels() noexcept nogil


cdef inline ranvier_act make_act(const char *fn, int code, double param) except *:
    """An activation of the table as the kernels take it; ValueError (naming fn) for a code not
    in the table."""
    check_act(fn, code)
    cdef ranvier_act a
    a.code = code
    a.param = param
    return a
