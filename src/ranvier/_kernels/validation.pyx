"""Native input checks behind ``ranvier._validation``: one vectorised pass over an array instead
of NumPy temporaries (``np.isfinite(x).all()`` allocates a bool array the size of x, and a float64
sum of float32 data converts it in buffered chunks at a few GB/s)."""

ctypedef fused real:
    float
    double

cdef enum:
    SCAN_CHUNK = 65536   # elements between early-exit checks


cdef inline bint _chunk_finite(const real *x, Py_ssize_t n) noexcept nogil:
    # x - x is 0 for every finite x and NaN for inf and NaN; the OR of the comparisons
    # vectorises (no branch per element).
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        bad |= not (x[i] - x[i] == 0)
    return not bad


def all_finite(const real[::1] x not None):
    """True when no element of the 1-D contiguous x is NaN or infinite."""
    cdef Py_ssize_t lo, n = x.shape[0]
    cdef bint ok = True
    with nogil:
        lo = 0
        while lo < n and ok:
            ok = _chunk_finite(&x[lo], min(<Py_ssize_t>SCAN_CHUNK, n - lo))
            lo += SCAN_CHUNK
    return ok
