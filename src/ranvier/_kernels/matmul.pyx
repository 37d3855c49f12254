"""GEMM and the Dense layer's kernels built on it: fused forward (GEMM + bias + activation
epilogue), fused backward (activation gradient + bias gradient in one pass, then two GEMMs), and the
unfused bias add / bias gradient.

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
                      float *c, Py_ssize_t rsc, Py_ssize_t csc, const float *bias, int act,
                      int nthreads) nogil
    int ranvier_dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                      const double *a, Py_ssize_t rsa, Py_ssize_t csa,
                      const double *b, Py_ssize_t rsb, Py_ssize_t csb, double beta,
                      double *c, Py_ssize_t rsc, Py_ssize_t csc, const double *bias, int act,
                      int nthreads) nogil
    int ranvier_gemm_best_isa() nogil
    int ranvier_gemm_get_isa() nogil
    int ranvier_gemm_set_isa(int isa) nogil
    int ranvier_gemm_isa_supported(int isa) nogil
    enum:
        RANVIER_ACT_NONE
        RANVIER_ACT_RELU
        RANVIER_ACT_SIGMOID
        RANVIER_ACT_TANH

# Activation codes shared with the C epilogue.
ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = (RANVIER_ACT_NONE, RANVIER_ACT_RELU,
                                             RANVIER_ACT_SIGMOID, RANVIER_ACT_TANH)

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
        rc = _gemm(m, n, k, <real>alpha, pa, rsa, csa, pb, rsb, csb, <real>beta, &out[0, 0],
                   out.strides[0] // isz, out.strides[1] // isz, NULL, RANVIER_ACT_NONE,
                   num_threads)
    if rc != 0:
        raise MemoryError("gemm: could not allocate packing buffers")


cdef inline int _gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha, const real *a,
                      Py_ssize_t rsa, Py_ssize_t csa, const real *b, Py_ssize_t rsb,
                      Py_ssize_t csb, real beta, real *c, Py_ssize_t rsc, Py_ssize_t csc,
                      const real *bias, int act, int nthreads) noexcept nogil:
    if real is float:
        return ranvier_sgemm(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias,
                             act, nthreads)
    else:
        return ranvier_dgemm(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias,
                             act, nthreads)


def bias_add(real[:, ::1] y, const real[::1] bias, int num_threads=1):
    """y[i, :] += bias, in place."""
    cdef Py_ssize_t i, j, n = y.shape[0], d = y.shape[1]
    if bias.shape[0] != d:
        raise ValueError(f"bias_add: bias has {bias.shape[0]} entries, y has {d} columns")
    if num_threads <= 1:  # no parallel region: creating a team costs ~1 us per call
        with nogil:
            for i in range(n):
                for j in range(d):
                    y[i, j] = y[i, j] + bias[j]
        return
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
    cdef Py_ssize_t n = dy.shape[0], d = dy.shape[1], blk
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
    if num_threads <= 1 or nblocks == 1:
        with nogil:
            for blk in range(nblocks):
                _colsum_block(pdy, n, d, blk * COLSUM_BLOCK, min((blk + 1) * COLSUM_BLOCK, d),
                              pout, accumulate)
        return
    for blk in prange(nblocks, nogil=True, schedule="static", num_threads=num_threads):
        _colsum_block(pdy, n, d, blk * COLSUM_BLOCK, min((blk + 1) * COLSUM_BLOCK, d), pout,
                      accumulate)


# -- Dense layer --------------------------------------------------------------------------------

def dense_forward(const real[:, ::1] x, const real[:, ::1] w, const real[::1] bias,
                  real[:, ::1] out, int act=RANVIER_ACT_NONE, int num_threads=1):
    """out = act(x @ w.T + bias) in one GEMM: bias and activation are the epilogue of each tile.
    x: (n, in), w: (out, in) as torch.nn.Linear, bias: (out,) or None, out: (n, out)."""
    cdef Py_ssize_t n = x.shape[0], fin = x.shape[1], fout = w.shape[0], rc
    if w.shape[1] != fin or out.shape[0] != n or out.shape[1] != fout:
        raise ValueError(f"dense_forward: x {tuple(x.shape)[:2]}, w {tuple(w.shape)[:2]} and out "
                         f"{tuple(out.shape)[:2]} do not agree")
    if bias is not None and bias.shape[0] != fout:
        raise ValueError(f"dense_forward: bias has {bias.shape[0]} entries, expected {fout}")
    if n == 0 or fout == 0:
        return
    cdef const real *pb = &bias[0] if bias is not None else NULL
    with nogil:
        rc = _gemm(n, fout, fin, 1, &x[0, 0] if fin > 0 else NULL, fin, 1,
                   &w[0, 0] if fin > 0 else NULL, 1, fin, 0, &out[0, 0], fout, 1, pb, act,
                   num_threads)
    if rc != 0:
        raise MemoryError("dense_forward: could not allocate packing buffers")


cdef inline real _act_grad(real y, int act) noexcept nogil:
    # Derivative of the activation written in terms of its output y.
    if act == RANVIER_ACT_RELU:
        return 1 if y > 0 else 0
    elif act == RANVIER_ACT_SIGMOID:
        return y * (1 - y)
    elif act == RANVIER_ACT_TANH:
        return 1 - y * y
    return 1


cdef inline void _act_grad_colsum_block(const real *y, const real *dy, real *dz, Py_ssize_t n,
                                        Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1, real *db,
                                        int act) noexcept nogil:
    # dz = dy * act'(y) and db = column sums of dz (in double), for columns j0..j1, one pass.
    cdef double acc[COLSUM_BLOCK]
    cdef Py_ssize_t i, j
    cdef real g
    for j in range(j1 - j0):
        acc[j] = 0.0
    for i in range(n):
        for j in range(j0, j1):
            g = dy[i * d + j] * _act_grad(y[i * d + j], act)
            dz[i * d + j] = g
            acc[j - j0] += g
    if db != NULL:
        for j in range(j0, j1):
            db[j] = <real>acc[j - j0]


cdef inline void _grad_block(const real *y, const real *dy, real *dz, Py_ssize_t n,
                             Py_ssize_t d, Py_ssize_t blk, real *db, int act) noexcept nogil:
    # Column block blk of the fused pass: dz = dy * act'(y) and db, or db alone without dz.
    cdef Py_ssize_t j0 = blk * COLSUM_BLOCK, j1 = min((blk + 1) * COLSUM_BLOCK, d)
    if dz != NULL:
        _act_grad_colsum_block(y, dy, dz, n, d, j0, j1, db, act)
    else:
        _colsum_block(dy, n, d, j0, j1, db, False)


def dense_backward(const real[:, ::1] x, const real[:, ::1] w, const real[:, ::1] y,
                   const real[:, ::1] dy, real[:, ::1] dz, real[:, ::1] dw, real[::1] db,
                   real[:, ::1] dx, int act=RANVIER_ACT_NONE, int num_threads=1):
    """Backward of out = act(x @ w.T + b), given y = out and dy = dL/dout:
        dz = dy * act'(y) and db = sum_rows(dz)   (one pass; dz unused when act is none)
        dw = dz.T @ x,  dx = dz @ w               (dx may be None for a first layer)
    Column sums are taken in double, by column blocks, so they do not depend on thread count."""
    cdef Py_ssize_t n = x.shape[0], fin = x.shape[1], fout = w.shape[0], rc = 0
    cdef Py_ssize_t nblocks = (fout + COLSUM_BLOCK - 1) // COLSUM_BLOCK, blk
    if (w.shape[1] != fin or dy.shape[0] != n or dy.shape[1] != fout or dw.shape[0] != fout
            or dw.shape[1] != fin or y.shape[0] != n or y.shape[1] != fout):
        raise ValueError("dense_backward: shapes do not agree")
    if db is not None and db.shape[0] != fout:
        raise ValueError("dense_backward: db has the wrong length")
    if act != RANVIER_ACT_NONE and (dz.shape[0] != n or dz.shape[1] != fout):
        raise ValueError("dense_backward: dz has the wrong shape")
    if dx is not None and (dx.shape[0] != n or dx.shape[1] != fin):
        raise ValueError("dense_backward: dx has the wrong shape")
    if n == 0 or fout == 0 or fin == 0:
        return
    cdef const real *g = &dy[0, 0]
    cdef real *pdb = &db[0] if db is not None else NULL
    # Threads only pay off on large activations, and a parallel region costs ~1 us even for one.
    cdef bint parallel = num_threads > 1 and nblocks > 1 and n * fout >= 131072
    cdef real *pdz = &dz[0, 0] if act != RANVIER_ACT_NONE else NULL
    if act != RANVIER_ACT_NONE or pdb != NULL:
        if parallel:
            for blk in prange(nblocks, nogil=True, schedule="static", num_threads=num_threads):
                _grad_block(&y[0, 0], g, pdz, n, fout, blk, pdb, act)
        else:
            with nogil:
                for blk in range(nblocks):
                    _grad_block(&y[0, 0], g, pdz, n, fout, blk, pdb, act)
    if pdz != NULL:
        g = pdz
    with nogil:
        # dw (fout, fin) = g.T @ x: A = g transposed (row stride 1, column stride fout).
        rc = _gemm(fout, fin, n, 1, g, 1, fout, &x[0, 0], fin, 1, 0, &dw[0, 0], fin, 1, NULL,
                   RANVIER_ACT_NONE, num_threads)
        if rc == 0 and dx is not None:
            # dx (n, fin) = g @ w
            rc = _gemm(n, fin, fout, 1, g, fout, 1, &w[0, 0], fin, 1, 0, &dx[0, 0], fin, 1, NULL,
                       RANVIER_ACT_NONE, num_threads)
    if rc != 0:
        raise MemoryError("dense_backward: could not allocate packing buffers")
