# The contract every Python-visible kernel keeps before it touches memory, in one place: thread
# counts, activation codes, lengths and shapes, and overlap between the buffers it writes and the
# others. Dtype, number of dimensions, contiguity, writability and None (`not None` in the
# signatures) are the typed memoryviews' own checks, made by Cython as the arguments arrive.
#
# Every check is a few integer comparisons on the success path (no Python object is made); the
# message, built only on failure, names the entry point (`fn`) and the argument.
cimport cython
from libc.stdint cimport int64_t, uint16_t, uintptr_t

from ranvier._kernels._elementwise cimport RANVIER_ACT_COUNT, ranvier_act_table

# Element types of the kernels' memoryviews (for the span helpers).
ctypedef fused _elem:
    float
    double
    int64_t
    signed char
    uint16_t


cdef struct Span:
    # The bytes an argument occupies, for the overlap checks: [lo, lo + nbytes), empty when
    # nbytes is 0 (an empty array or None). Addresses as integers: C orders pointers into
    # different objects only as integers.
    const char *name
    uintptr_t lo
    Py_ssize_t nbytes
    Py_ssize_t count    # its number of elements; -1 for None (or a raw span_of)


cdef inline str _s(const char *c):
    return (<bytes>c).decode()


# -- scalars -------------------------------------------------------------------------------------

cdef inline int check_at_least(const char *fn, const char *what, Py_ssize_t value,
                               Py_ssize_t least) except -1:
    if value < least:
        raise ValueError(f"{_s(fn)}: {_s(what)} must be >= {least}, got {value}")
    return 0


cdef inline int check_threads(const char *fn, int num_threads) except -1:
    # OpenMP leaves num_threads(0) or a negative count undefined.
    return check_at_least(fn, "num_threads", num_threads, 1)


cdef inline int check_act(const char *fn, int code) except -1:
    # The code indexes the C table and selects the kernel's case: anything else is not a kernel.
    cdef int i
    if code < 0 or code >= RANVIER_ACT_COUNT:
        names = [f"{ranvier_act_table[i].name.decode()}={ranvier_act_table[i].code}"
                 for i in range(RANVIER_ACT_COUNT)]
        raise ValueError(f"{_s(fn)}: unknown activation code {code}; the table has "
                         f"{', '.join(names)}")
    return 0


# -- lengths and shapes ---------------------------------------------------------------------------
# `ref` says where the expected size comes from ("the length of x"), for the message.

cdef inline int check_len(const char *fn, const char *what, Py_ssize_t got, Py_ssize_t want,
                          const char *ref) except -1:
    if got != want:
        raise ValueError(f"{_s(fn)}: {_s(what)} has {got} entries, expected {want} ({_s(ref)})")
    return 0


cdef inline int check_shape(const char *fn, const char *what, Py_ssize_t rows, Py_ssize_t cols,
                            Py_ssize_t want_rows, Py_ssize_t want_cols,
                            const char *ref) except -1:
    if rows != want_rows or cols != want_cols:
        raise ValueError(f"{_s(fn)}: {_s(what)} has shape ({rows}, {cols}), expected "
                         f"({want_rows}, {want_cols}) ({_s(ref)})")
    return 0


cdef inline int check_counts(const char *fn, const Span *s, int k, Py_ssize_t want,
                             const char *ref) except -1:
    """check_len for each of k spans (of 1-D arguments) that is not None."""
    cdef int i
    for i in range(k):
        if s[i].count >= 0:
            check_len(fn, s[i].name, s[i].count, want, ref)
    return 0


# -- memory spans and overlap ---------------------------------------------------------------------

cdef inline Span span_of(const char *name, const void *p, Py_ssize_t nbytes) noexcept nogil:
    cdef Span s
    s.name = name
    s.count = -1
    cdef bint empty = p == NULL or nbytes <= 0
    s.lo = 0 if empty else <uintptr_t>p
    s.nbytes = 0 if empty else nbytes
    return s


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Span span1(const char *name, const _elem[::1] a) noexcept:
    cdef Py_ssize_t n = a.shape[0]
    cdef Span s = span_of(name, &a[0] if n > 0 else NULL, n * <Py_ssize_t>sizeof(_elem))
    s.count = -1 if a is None else n
    return s


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Span span2(const char *name, const _elem[:, ::1] a) noexcept:
    cdef Py_ssize_t n = a.shape[0] * a.shape[1]
    cdef Span s = span_of(name, &a[0, 0] if n > 0 else NULL, n * <Py_ssize_t>sizeof(_elem))
    s.count = -1 if a is None else n
    return s


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Span span3(const char *name, const _elem[:, :, ::1] a) noexcept:
    cdef Py_ssize_t n = a.shape[0] * a.shape[1] * a.shape[2]
    cdef Span s = span_of(name, &a[0, 0, 0] if n > 0 else NULL, n * <Py_ssize_t>sizeof(_elem))
    s.count = -1 if a is None else n
    return s


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Span span4(const char *name, const _elem[:, :, :, ::1] a) noexcept:
    cdef Py_ssize_t n = a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3]
    cdef Span s = span_of(name, &a[0, 0, 0, 0] if n > 0 else NULL, n * <Py_ssize_t>sizeof(_elem))
    s.count = -1 if a is None else n
    return s


cdef inline tuple shape4(const _elem[:, :, :, ::1] a):
    """The shape of a 4-D (NCHW) argument, for comparisons and messages."""
    return (a.shape[0], a.shape[1], a.shape[2], a.shape[3])


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Span span_strided(const char *name, const _elem[:, :] a) noexcept:
    # The bytes from the lowest to the highest element, for any (negative too) strides.
    cdef Py_ssize_t k, ext, lo = 0, hi = sizeof(_elem)
    if a.shape[0] == 0 or a.shape[1] == 0:
        return span_of(name, NULL, 0)
    for k in range(2):
        ext = (a.shape[k] - 1) * a.strides[k]
        if ext < 0:
            lo += ext
        else:
            hi += ext
    return span_of(name, <const char *>&a[0, 0] + lo, hi - lo)


cdef inline bint _overlap(Span a, Span b) noexcept nogil:
    return (a.nbytes > 0 and b.nbytes > 0 and a.lo < b.lo + <uintptr_t>b.nbytes
            and b.lo < a.lo + <uintptr_t>a.nbytes)


cdef inline int check_in_place_or_apart(const char *fn, Span out, Span src) except -1:
    """An elementwise output may be its source itself (in place), never part of it."""
    if _overlap(out, src) and not (out.lo == src.lo and out.nbytes == src.nbytes):
        raise ValueError(f"{_s(fn)}: {_s(out.name)} must be {_s(src.name)} itself or not "
                         f"overlap it")
    return 0


cdef inline int check_apart(const char *fn, const Span *outs, int nout, const Span *others,
                            int nother) except -1:
    """No output shares a byte with another output or with any of ``others``."""
    cdef int i, j
    for i in range(nout):
        for j in range(i):
            if _overlap(outs[i], outs[j]):
                raise ValueError(f"{_s(fn)}: {_s(outs[i].name)} overlaps {_s(outs[j].name)}; "
                                 f"an output must not share memory with another argument")
        for j in range(nother):
            if _overlap(outs[i], others[j]):
                raise ValueError(f"{_s(fn)}: {_s(outs[i].name)} overlaps {_s(others[j].name)}; "
                                 f"an output must not share memory with another argument")
    return 0


# -- strided views (gemm) -------------------------------------------------------------------------

cdef inline int check_strided(const char *fn, const char *what, Py_ssize_t rows, Py_ssize_t cols,
                              Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t itemsize,
                              bint written) except -1:
    """Byte strides rs, cs that the kernel can step in elements; for a written view, no two
    elements at one address (two threads would write it, or a later write undo an earlier)."""
    cdef Py_ssize_t ars = rs if rs >= 0 else -rs, acs = cs if cs >= 0 else -cs
    cdef Py_ssize_t small, nsmall, big, nbig
    if rs % itemsize != 0 or cs % itemsize != 0:
        raise ValueError(f"{_s(fn)}: {_s(what)} has strides ({rs}, {cs}) bytes, not multiples of "
                         f"its item size {itemsize}")
    if not written or rows * cols <= 1:
        return 0
    small, nsmall, big, nbig = (acs, cols, ars, rows) if acs <= ars else (ars, rows, acs, cols)
    if nsmall <= 1:
        small, nsmall = big, nbig
        big, nbig = 0, 1
    if small == 0 or (nbig > 1 and big < small * nsmall):
        raise ValueError(f"{_s(fn)}: {_s(what)} (shape ({rows}, {cols}), strides ({rs}, {cs})) "
                         f"has elements that share memory")
    return 0
