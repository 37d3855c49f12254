"""bfloat16 kernels: conversions and the mixed-precision GEMM.

Conversions (csrc/bf16.h): ``to_bf16(x, out)`` rounds float32 to bfloat16 (nearest, ties to even;
NaN kept, quieted), stored as uint16; ``from_bf16(x, out)`` widens them back exactly. The kernels
of the active ISA from the elementwise table, in CHUNK-sized pieces shared out to the threads
(_tasks.pxd); the output must not overlap the input. Integer work on the bits only: the
floating-point mode the task runner sets changes nothing here.

GEMM (csrc/gemm_bf16.h): ``gemm(a, b, out, ...)`` is matmul.gemm with bfloat16 operands, float32
accumulation and a float32 ``out``. Each operand is uint16 (bf16 bits) or float32, rounded to bf16
as to_bf16 does while it is packed (the same result as rounding it first, without the copy). The
table of the active ISA runs it: VDPBF16PS on avx512_bf16, the portable kernel elsewhere
(``_gemm_path()``). Its cache blocks follow matmul's (derived, or forced with
matmul._set_gemm_blocking / RANVIER_GEMM_BLOCKING).
"""
from libc.stdint cimport uint16_t

from ranvier._kernels._checks cimport (
    Span, check_apart, check_len, check_shape, check_strided, check_threads, span1, span_strided)
from ranvier._kernels._elementwise cimport (
    RANVIER_ACT_NONE, ranvier_act, ranvier_ew_kernels, ranvier_ew_kernels_for)
from ranvier._kernels._fpenv cimport fp_enter, ranvier_fp_leave, ranvier_fpstate
from ranvier._kernels._runtime cimport active_isa, detected_caches, ranvier_cpu_caches
from ranvier._kernels.activations cimport make_act
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


# -- the GEMM ------------------------------------------------------------------------------------
cdef extern from "gemm_bf16.h":
    ctypedef struct ranvier_gemm_blocking:
        Py_ssize_t mc, kc, nc
    ctypedef struct ranvier_gemm_shape:
        int mr, nr
        ranvier_gemm_blocking blocking
    ctypedef struct ranvier_bf16_operand:
        const void *p
        Py_ssize_t rs, cs
        int f32
    ctypedef int (*ranvier_gemm_bf16_fn)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                                         ranvier_bf16_operand a, ranvier_bf16_operand b,
                                         float beta, float *c, Py_ssize_t rsc, Py_ssize_t csc,
                                         const float *bias, ranvier_act act,
                                         int nthreads) noexcept nogil
    ctypedef struct ranvier_gemm_bf16_kernels:
        ranvier_gemm_bf16_fn gemm
        ranvier_gemm_shape *shape
        const char *path
    const ranvier_gemm_bf16_kernels *ranvier_gemm_bf16_kernels_for(int isa) nogil
    void ranvier_gemm_bf16_set_blocking(const ranvier_cpu_caches *caches,
                                        const ranvier_gemm_blocking *forced) nogil

ctypedef fused _operand_t:
    float
    uint16_t


cdef bint _is_float32(const char *fn, const char *name, x, bint bits_ok) except -1:
    """True for a 2-D float32 array, False for a 2-D uint16 one (bf16 bits, when bits_ok);
    TypeError or ValueError naming the argument otherwise."""
    dt = getattr(x, "dtype", None)
    f32 = dt is not None and dt.kind == "f" and dt.itemsize == 4
    if not (f32 or (bits_ok and dt is not None and dt.kind == "u" and dt.itemsize == 2)):
        want = "a float32 array, or a uint16 array of bfloat16 bits" if bits_ok else "float32"
        raise TypeError(f"{fn.decode()}: {name.decode()} must be {want}, got "
                        f"{dt if dt is not None else type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{fn.decode()}: {name.decode()} must be 2-D, got {x.ndim}-D")
    return f32


cdef ranvier_bf16_operand _operand(const char *name, const _operand_t[:, :] x, bint trans,
                                   Py_ssize_t *shape, Span *span) except *:
    """op(x) (x.T when trans: strides swapped, nothing copied) as the C GEMM takes it, its shape
    and the bytes it spans."""
    cdef Py_ssize_t isz = sizeof(_operand_t)
    cdef ranvier_bf16_operand o
    check_strided("gemm", name, x.shape[0], x.shape[1], x.strides[0], x.strides[1], isz, False)
    o.p = &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL
    o.f32 = _operand_t is float
    o.rs, o.cs = x.strides[0] // isz, x.strides[1] // isz
    shape[0], shape[1] = x.shape[0], x.shape[1]
    if trans:
        o.rs, o.cs = o.cs, o.rs
        shape[0], shape[1] = shape[1], shape[0]
    span[0] = span_strided(name, x)
    return o


cdef object _take(const char *name, x, bint trans, ranvier_bf16_operand *o, Py_ssize_t *shape,
                  Span *span):
    """The float32 or uint16 view of argument x as _operand reads it; the caller holds the view
    while the kernel runs."""
    cdef const float[:, :] f
    cdef const uint16_t[:, :] h
    if _is_float32("gemm", name, x, True):
        f = x
        o[0] = _operand(name, f, trans, shape, span)
        return f
    h = x
    o[0] = _operand(name, h, trans, shape, span)
    return h


def gemm(a not None, b not None, out not None, bint trans_a=False, bint trans_b=False,
         double alpha=1.0, double beta=0.0, int num_threads=1, *, const float[::1] bias=None,
         int act=RANVIER_ACT_NONE, double param=0.0):
    """out := act(alpha * op(a) @ op(b) + beta * out + bias), op(x) = x.T when trans_x: bfloat16
    operands, float32 sums and ``out``. ``a`` and ``b`` are each a float32 array (rounded to bf16,
    nearest even, as it is packed) or a uint16 array of bf16 bits, of any strides; ``out`` is a
    float32 array apart from them. ``bias`` (float32, one per column of out) and the activation
    ``act`` (a code of activations.ACTIVATIONS, with its ``param``) are the Dense epilogue, as
    matmul.dense_forward's; by default none."""
    cdef ranvier_fpstate fp = 0
    cdef float[:, :] o
    cdef ranvier_bf16_operand pa, pb
    cdef Py_ssize_t sa[2]
    cdef Py_ssize_t sb[2]
    sa[0] = sa[1] = sb[0] = sb[1] = 0  # set by _take; the compiler cannot see it
    cdef Span dst
    cdef Span src[3]
    cdef int rc
    check_threads("gemm", num_threads)
    cdef ranvier_act ep = make_act("gemm", act, param)
    _is_float32("gemm", "out", out, False)
    o = out
    check_strided("gemm", "out", o.shape[0], o.shape[1], o.strides[0], o.strides[1], sizeof(float),
                  True)
    view_a = _take("a", a, trans_a, &pa, sa, &src[0])  # the views are held until we return
    view_b = _take("b", b, trans_b, &pb, sb, &src[1])
    cdef Py_ssize_t m = sa[0], k = sa[1], n = sb[1]
    check_len("gemm", "op(b)'s rows", sb[0], k, "the columns of op(a)")
    check_shape("gemm", "out", o.shape[0], o.shape[1], m, n, "op(a)'s rows, op(b)'s columns")
    if bias is not None:
        check_len("gemm", "bias", bias.shape[0], n, "the columns of out")
    src[2] = span1("bias", bias)
    dst = span_strided("out", o)
    check_apart("gemm", &dst, 1, src, 3)
    if m == 0 or n == 0:
        return
    cdef const float *pbias = &bias[0] if bias is not None else NULL
    with nogil:
        fp = fp_enter()
        rc = ranvier_gemm_bf16_kernels_for(active_isa()).gemm(
            m, n, k, <float>alpha, pa, pb, <float>beta, &o[0, 0], o.strides[0] // sizeof(float),
            o.strides[1] // sizeof(float), pbias, ep, num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("gemm: could not allocate packing buffers")


# -- configuration, not kernels (hence the underscores) -------------------------------------------
def _gemm_path():
    """The bf16 GEMM path the active ISA runs: 'avx512_bf16 (VDPBF16PS)' or 'portable (<isa>)'."""
    return ranvier_gemm_bf16_kernels_for(active_isa()).path.decode()


def _gemm_blocking():
    """The active path's tile and blocks: {"mr", "nr", "mc", "kc", "nc"} (kc counts k, not
    pairs)."""
    cdef const ranvier_gemm_shape *s = ranvier_gemm_bf16_kernels_for(active_isa()).shape
    return {"mr": s.mr, "nr": s.nr, "mc": s.blocking.mc, "kc": s.blocking.kc,
            "nc": s.blocking.nc}


def _apply_gemm_blocking(forced):
    """Blocks of every bf16 instance: fitted from ``forced`` (mc, kc, nc), or derived from the
    caches with None. matmul calls it whenever its own blocks change (_follow_gemm_blocking)."""
    cdef ranvier_gemm_blocking f
    if forced is None:
        ranvier_gemm_bf16_set_blocking(detected_caches(), NULL)
        return
    f.mc, f.kc, f.nc = forced
    ranvier_gemm_bf16_set_blocking(detected_caches(), &f)


from ranvier._kernels import matmul as _matmul

_matmul._follow_gemm_blocking(_apply_gemm_blocking)
