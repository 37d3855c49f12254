"""bfloat16 conversions (csrc/bf16.h): ``to_bf16(x, out)`` rounds float32 to bfloat16 (nearest,
ties to even; NaN kept, quieted), stored as uint16; ``from_bf16(x, out)`` widens them back
exactly. The kernels of the active ISA from the elementwise table, in CHUNK-sized pieces shared
out to the threads (_tasks.pxd); the output must not overlap the input. Integer work on the bits
only: the floating-point mode the task runner sets changes nothing here."""
from libc.stdint cimport uint16_t

from ranvier._kernels._checks cimport Span, check_apart, check_len, check_threads, span1
from ranvier._kernels._elementwise cimport ranvier_ew_kernels, ranvier_ew_kernels_for
from ranvier._kernels._runtime cimport active_isa
from ranvier._kernels._tasks cimport run_tasks, task_count, task_len

cdef enum:
    CHUNK = 65536   # elements per task: 256 KiB of float32 read, half of it written


cdef struct _Conversion:
    bint widen
    const void *x
    void *y
    Py_ssize_t n


cdef void _convert_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _Conversion *j = <const _Conversion *>job
    cdef const ranvier_ew_kernels *k = ranvier_ew_kernels_for(active_isa())
    cdef Py_ssize_t lo = t * CHUNK, m = task_len(j.n, CHUNK, t)
    if j.widen:
        k.from_bf16(<const uint16_t *>j.x + lo, <float *>j.y + lo, m)
    else:
        k.to_bf16(<const float *>j.x + lo, <uint16_t *>j.y + lo, m)


cdef void _convert(bint widen, const void *x, void *y, Py_ssize_t n, int num_threads) noexcept nogil:
    cdef _Conversion j
    j.widen, j.x, j.y, j.n = widen, x, y, n
    run_tasks(_convert_task, &j, task_count(n, CHUNK), num_threads)


cdef int _check(const char *fn, Span x, Span out, int num_threads) except -1:
    check_threads(fn, num_threads)
    check_len(fn, "out", out.count, x.count, "the length of x")
    check_apart(fn, &out, 1, &x, 1)
    return 0


def to_bf16(const float[::1] x not None, uint16_t[::1] out not None, int num_threads=1):
    """out[i] = bfloat16(x[i]), round to nearest even, as uint16 bits."""
    _check("to_bf16", span1("x", x), span1("out", out), num_threads)
    if x.shape[0]:
        with nogil:
            _convert(False, &x[0], &out[0], x.shape[0], num_threads)


def from_bf16(const uint16_t[::1] x not None, float[::1] out not None, int num_threads=1):
    """out[i] = the float32 value of the bfloat16 bits x[i] (exact)."""
    _check("from_bf16", span1("x", x), span1("out", out), num_threads)
    if x.shape[0]:
        with nogil:
            _convert(True, &x[0], &out[0], x.shape[0], num_threads)
