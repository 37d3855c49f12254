"""GEMM, bias add and bias gradient.

``gemm`` computes out := alpha * op(a) @ op(b) + beta * out where op transposes by swapping strides,
so X @ W.T, dY @ W and dY.T @ X never copy their operands. Inputs are const memoryviews (read-only
arrays work) of any strides; ``out`` may be strided too.
"""
from cython.parallel cimport prange

ctypedef fused real:
    float
    double

cdef extern from "gemm.h":
    int ranvier_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                      const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                      const float *b, Py_ssize_t rsb, Py_ssize_t csb, float beta,
                      float *c, Py_ssize_t rsc, Py_ssize_t csc, int nthreads) nogil
    int ranvier_dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                      const double *a, Py_ssize_t rsa, Py_ssize_t csa,
                      const double *b, Py_ssize_t rsb, Py_ssize_t csb, double beta,
                      double *c, Py_ssize_t rsc, Py_ssize_t csc, int nthreads) nogil
    int ranvier_gemm_best_isa() nogil
    int ranvier_gemm_get_isa() nogil
    int ranvier_gemm_set_isa(int isa) nogil
    int ranvier_gemm_isa_supported(int isa) nogil

ISA_NAMES = ("generic", "avx2", "avx512")


def get_isa():
    """Name of the GEMM micro-kernel in use."""
    return ISA_NAMES[ranvier_gemm_get_isa()]


def best_isa():
    return ISA_NAMES[ranvier_gemm_best_isa()]


def supported_isas():
    return [name for i, name in enumerate(ISA_NAMES) if ranvier_gemm_isa_supported(i)]


def set_isa(name):
    """Force a micro-kernel ('generic', 'avx2', 'avx512'); ValueError if this CPU cannot run it."""
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {ISA_NAMES}")
    if ranvier_gemm_set_isa(ISA_NAMES.index(name)) != 0:
        raise ValueError(f"ISA {name!r} is not supported by this CPU or build; "
                         f"supported: {supported_isas()}")


def gemm(const real[:, :] a, const real[:, :] b, real[:, :] out, bint trans_a=False,
         bint trans_b=False, double alpha=1.0, double beta=0.0, int num_threads=1):
    """out := alpha * op(a) @ op(b) + beta * out. Shapes must already agree (checked here too)."""
    cdef Py_ssize_t isz = sizeof(real)
    cdef Py_ssize_t m, k, n, kb, rsa, csa, rsb, csb, rc
    if trans_a:
        m, k = a.shape[1], a.shape[0]
        rsa, csa = a.strides[1] // isz, a.strides[0] // isz
    else:
        m, k = a.shape[0], a.shape[1]
        rsa, csa = a.strides[0] // isz, a.strides[1] // isz
    if trans_b:
        kb, n = b.shape[1], b.shape[0]
        rsb, csb = b.strides[1] // isz, b.strides[0] // isz
    else:
        kb, n = b.shape[0], b.shape[1]
        rsb, csb = b.strides[0] // isz, b.strides[1] // isz
    if kb != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"gemm: shapes do not agree: op(a) is ({m}, {k}), op(b) is ({kb}, {n}), "
                         f"out is ({out.shape[0]}, {out.shape[1]})")
    if m == 0 or n == 0:
        return
    cdef const real *pa = &a[0, 0] if k > 0 else NULL
    cdef const real *pb = &b[0, 0] if k > 0 else NULL
    with nogil:
        if real is float:
            rc = ranvier_sgemm(m, n, k, <float>alpha, pa, rsa, csa, pb, rsb, csb, <float>beta,
                               &out[0, 0], out.strides[0] // isz, out.strides[1] // isz, num_threads)
        else:
            rc = ranvier_dgemm(m, n, k, alpha, pa, rsa, csa, pb, rsb, csb, beta,
                               &out[0, 0], out.strides[0] // isz, out.strides[1] // isz, num_threads)
    if rc != 0:
        raise MemoryError("gemm: could not allocate packing buffers")


def bias_add(real[:, ::1] y, const real[::1] bias, int num_threads=1):
    """y[i, :] += bias, in place."""
    cdef Py_ssize_t i, j, n = y.shape[0], d = y.shape[1]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        for j in range(d):
            y[i, j] = y[i, j] + bias[j]


cdef enum:
    COLSUM_BLOCK = 64   # columns per task: a double accumulator block that fits in L1


cdef inline void _colsum_block(const real *dy, Py_ssize_t n, Py_ssize_t ld, Py_ssize_t j0,
                               Py_ssize_t j1, real *out, bint accumulate) noexcept nogil:
    cdef double acc[COLSUM_BLOCK]
    cdef Py_ssize_t i, j
    for j in range(j1 - j0):
        acc[j] = 0.0
    for i in range(n):
        for j in range(j0, j1):
            acc[j - j0] += dy[i * ld + j]
    for j in range(j0, j1):
        if accumulate:
            out[j] = <real>(out[j] + acc[j - j0])
        else:
            out[j] = <real>acc[j - j0]


def bias_grad(const real[:, ::1] dy, real[::1] out, bint accumulate=False, int num_threads=1):
    """out[j] = sum_i dy[i, j] (or out[j] += ... with accumulate), summed in double. Threads split
    columns, so the order of the sums (and the result) is the same for any thread count."""
    cdef Py_ssize_t n = dy.shape[0], d = dy.shape[1], blk, j1
    cdef Py_ssize_t nblocks = (d + COLSUM_BLOCK - 1) // COLSUM_BLOCK
    if out.shape[0] != d:
        raise ValueError(f"bias_grad: out has {out.shape[0]} entries, dy has {d} columns")
    if d == 0:
        return
    cdef const real *pdy = &dy[0, 0] if n > 0 else NULL
    cdef real *pout = &out[0]
    if n == 0 and not accumulate:
        out[:] = 0
        return
    for blk in prange(nblocks, nogil=True, schedule="static", num_threads=num_threads):
        j1 = (blk + 1) * COLSUM_BLOCK
        if j1 > d:
            j1 = d
        _colsum_block(pdy, n, d, blk * COLSUM_BLOCK, j1, pout, accumulate)
