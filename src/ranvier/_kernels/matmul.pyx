"""GEMM and the layers built on it, Dense here and Conv2d in conv.pxi. Dense: fused forward (GEMM + bias + activation
epilogue), fused backward (activation gradient + bias gradient in one pass, then two GEMMs), a run
of Dense layers as one native call (DenseRun), and the unfused bias add / bias gradient.

``gemm`` computes out := alpha * op(a) @ op(b) + beta * out where op transposes by swapping strides,
so X @ W.T, dY @ W and dY.T @ X never copy their operands. Inputs are const memoryviews (read-only
arrays work) of any strides; ``out`` may be strided too. Activations are codes of the activation
table (activations.ACTIVATIONS) with their scalar parameter.
"""
from ranvier._kernels._fpenv cimport fp_enter, ranvier_fp_leave, ranvier_fpstate
from ranvier._kernels._checks cimport (
    Span, check_apart, check_at_least, check_len, check_shape, check_strided, check_threads,
    span1, span2, span_of, span_strided)
from ranvier._kernels._elementwise cimport (
    RANVIER_ACT_NEEDS_INPUT, RANVIER_ACT_NONE, ranvier_act, ranvier_act_table,
    ranvier_ew_kernels, ranvier_ew_kernels_for)
from ranvier._kernels._runtime cimport active_isa, detected_caches, ranvier_cpu_caches
from ranvier._kernels._tasks cimport run_tasks, task_count, task_len
from ranvier._kernels.activations cimport make_act as _act

ctypedef fused real:
    float
    double

include "gemm_blocking.pxi"

cdef extern from "gemm.h":
    ctypedef int (*ranvier_sgemm_fn)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                                     const float *a, Py_ssize_t rsa, Py_ssize_t csa,
                                     const float *b, Py_ssize_t rsb, Py_ssize_t csb, float beta,
                                     float *c, Py_ssize_t rsc, Py_ssize_t csc, const float *bias,
                                     ranvier_act act, int nthreads) noexcept nogil
    ctypedef int (*ranvier_dgemm_fn)(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                                     const double *a, Py_ssize_t rsa, Py_ssize_t csa,
                                     const double *b, Py_ssize_t rsb, Py_ssize_t csb,
                                     double beta, double *c, Py_ssize_t rsc, Py_ssize_t csc,
                                     const double *bias, ranvier_act act,
                                     int nthreads) noexcept nogil
    ctypedef struct ranvier_conv_geom:
        Py_ssize_t in_c, in_h, in_w, out_c, out_h, out_w
        Py_ssize_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups
    ctypedef int (*ranvier_sconv2d_forward_fn)(const ranvier_conv_geom *g, Py_ssize_t n,
                                               const float *x, const float *w, const float *bias,
                                               ranvier_act act, float *y,
                                               int nthreads) noexcept nogil
    ctypedef int (*ranvier_dconv2d_forward_fn)(const ranvier_conv_geom *g, Py_ssize_t n,
                                               const double *x, const double *w,
                                               const double *bias, ranvier_act act, double *y,
                                               int nthreads) noexcept nogil
    ctypedef int (*ranvier_sconv2d_backward_fn)(const ranvier_conv_geom *g, Py_ssize_t n,
                                                const float *x, const float *w, const float *dz,
                                                float *dx, float *dw, float *db,
                                                int nthreads) noexcept nogil
    ctypedef int (*ranvier_dconv2d_backward_fn)(const ranvier_conv_geom *g, Py_ssize_t n,
                                                const double *x, const double *w,
                                                const double *dz, double *dx, double *dw,
                                                double *db, int nthreads) noexcept nogil
    ctypedef struct ranvier_gemm_kernels:
        ranvier_sgemm_fn sgemm
        ranvier_dgemm_fn dgemm
        ranvier_sconv2d_forward_fn sconv2d_forward
        ranvier_dconv2d_forward_fn dconv2d_forward
        ranvier_sconv2d_backward_fn sconv2d_backward
        ranvier_dconv2d_backward_fn dconv2d_backward
        ranvier_gemm_shape *sgemm_shape
        ranvier_gemm_shape *dgemm_shape
    const ranvier_gemm_kernels *ranvier_gemm_kernels_for(int isa) nogil
    double ranvier_gemm_sup_max_bytes


cdef inline bint _needs_input(int code) noexcept nogil:
    return ranvier_act_table[code].needs == RANVIER_ACT_NEEDS_INPUT


def _set_unpacked_max_bytes(double nbytes):
    """For tests: products below the parallel cut-off with at most this many bytes of operands
    skip packing (0 forces the packed path everywhere, inf the unpacked one for every product
    below the cut-off). Returns the previous limit."""
    global ranvier_gemm_sup_max_bytes
    before = ranvier_gemm_sup_max_bytes
    ranvier_gemm_sup_max_bytes = nbytes
    return before


cdef inline void _op(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t rs, Py_ssize_t cs, bint trans,
                     Py_ssize_t isz, Py_ssize_t *op_shape, Py_ssize_t *op_strides) noexcept:
    # Shape and element strides of op(v) for a view v of shape (rows, cols) and byte strides
    # (rs, cs): the transpose swaps them, nothing is copied.
    if trans:
        rows, cols, rs, cs = cols, rows, cs, rs
    op_shape[0], op_shape[1] = rows, cols
    op_strides[0], op_strides[1] = rs // isz, cs // isz


def gemm(const real[:, :] a not None, const real[:, :] b not None, real[:, :] out not None,
         bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0,
         int num_threads=1):
    """out := alpha * op(a) @ op(b) + beta * out; out must not overlap a or b."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t isz = sizeof(real)
    cdef Py_ssize_t m, k, n, rc
    cdef Py_ssize_t sa[2]
    cdef Py_ssize_t ta[2]
    cdef Py_ssize_t sb[2]
    cdef Py_ssize_t tb[2]
    check_threads("gemm", num_threads)
    check_strided("gemm", "a", a.shape[0], a.shape[1], a.strides[0], a.strides[1], isz, False)
    check_strided("gemm", "b", b.shape[0], b.shape[1], b.strides[0], b.strides[1], isz, False)
    check_strided("gemm", "out", out.shape[0], out.shape[1], out.strides[0], out.strides[1], isz,
                  True)
    _op(a.shape[0], a.shape[1], a.strides[0], a.strides[1], trans_a, isz, sa, ta)
    _op(b.shape[0], b.shape[1], b.strides[0], b.strides[1], trans_b, isz, sb, tb)
    m, k, n = sa[0], sa[1], sb[1]
    check_len("gemm", "op(b)'s rows", sb[0], k, "the columns of op(a)")
    check_shape("gemm", "out", out.shape[0], out.shape[1], m, n, "op(a)'s rows, op(b)'s columns")
    cdef Span dst = span_strided("out", out)
    cdef Span src[2]
    src[0], src[1] = span_strided("a", a), span_strided("b", b)
    check_apart("gemm", &dst, 1, src, 2)
    if m == 0 or n == 0:
        return
    cdef const real *pa = &a[0, 0] if k > 0 else NULL
    cdef const real *pb = &b[0, 0] if k > 0 else NULL
    cdef ranvier_act none = _act("gemm", RANVIER_ACT_NONE, 0.0)
    with nogil:
        fp = fp_enter()
        rc = _gemm(m, n, k, <real>alpha, pa, ta[0], ta[1], pb, tb[0], tb[1], <real>beta, &out[0, 0],
                   out.strides[0] // isz, out.strides[1] // isz, NULL, none, num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("gemm: could not allocate packing buffers")


cdef inline int _gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha, const real *a,
                      Py_ssize_t rsa, Py_ssize_t csa, const real *b, Py_ssize_t rsb,
                      Py_ssize_t csb, real beta, real *c, Py_ssize_t rsc, Py_ssize_t csc,
                      const real *bias, ranvier_act act, int nthreads) noexcept nogil:
    if real is float:
        return ranvier_gemm_kernels_for(active_isa()).sgemm(
            m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act, nthreads)
    else:
        return ranvier_gemm_kernels_for(active_isa()).dgemm(
            m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act, nthreads)


cdef int _check_bias(const char *fn, const char *name, Py_ssize_t length, const char *want,
                     Py_ssize_t d, Span written, Span read, int num_threads) except -1:
    """A bias-length vector (``name``) has d entries; the array written overlaps nothing read."""
    check_threads(fn, num_threads)
    check_len(fn, name, length, d, want)
    check_apart(fn, &written, 1, &read, 1)
    return 0


def bias_add(real[:, ::1] y not None, const real[::1] bias not None, int num_threads=1):
    """y[i, :] += bias, in place (bias must not lie in y)."""
    cdef Py_ssize_t n = y.shape[0], d = y.shape[1]
    _check_bias("bias_add", "bias", bias.shape[0], "the columns of y", d, span2("y", y),
                span1("bias", bias), num_threads)
    if n == 0 or d == 0:
        return
    cdef _Cols j = _cols(BIAS_ADD, real is double, n, d, &y[0, 0])
    j.src, j.per = &bias[0], max(1, ROWS_TASK // d)
    with nogil:
        run_tasks(_cols_task, &j, task_count(n, j.per), num_threads)


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


def bias_grad(const real[:, ::1] dy not None, real[::1] out not None, bint accumulate=False,
              int num_threads=1):
    """out[j] = sum_i dy[i, j] (or out[j] += ... with accumulate), summed in double. Threads split
    columns, so the order of the sums (and the result) is the same for any thread count."""
    cdef Py_ssize_t n = dy.shape[0], d = dy.shape[1]
    _check_bias("bias_grad", "out", out.shape[0], "the columns of dy", d, span1("out", out),
                span2("dy", dy), num_threads)
    if d == 0:
        return
    cdef const real *pdy = &dy[0, 0] if n > 0 else NULL
    cdef real *pout = &out[0]
    if n == 0 and not accumulate:
        out[:] = 0
        return
    cdef _Cols j = _cols(COLSUM, real is double, n, d, pout)
    j.src, j.accumulate = pdy, accumulate
    with nogil:
        run_tasks(_cols_task, &j, task_count(d, COLSUM_BLOCK), num_threads)


# -- the column and row passes over the threads -------------------------------------------------
cdef enum:
    BIAS_ADD = 0      # tasks of `per` rows: y += bias
    COLSUM = 1        # tasks of COLSUM_BLOCK columns: out (+)= column sums of src
    DENSE_GRAD = 2    # tasks of COLSUM_BLOCK columns: dz = dy * act'(src), db = column sums
    ROWS_TASK = 16384  # elements per BIAS_ADD task (whole rows)


cdef struct _Cols:
    int op
    bint f64
    ranvier_act act
    Py_ssize_t n, d, per    # rows, columns, rows per BIAS_ADD task
    const void *src         # the bias, the array summed, or the activation's v
    const void *dy
    void *out               # y, the sums, or dz (NULL: db alone)
    void *db
    bint accumulate


cdef inline _Cols _cols(int op, bint f64, Py_ssize_t n, Py_ssize_t d, void *out) noexcept nogil:
    cdef _Cols j
    j.op, j.f64, j.n, j.d, j.out, j.per = op, f64, n, d, out, 1
    j.act.code, j.act.param = RANVIER_ACT_NONE, 0.0
    j.src = j.dy = NULL
    j.db = NULL
    j.accumulate = False
    return j


cdef inline void _cols_chunk(const _Cols *j, real *out, Py_ssize_t t) noexcept nogil:
    cdef Py_ssize_t i, c, r0 = t * j.per, r1 = r0 + task_len(j.n, j.per, t)
    cdef const real *b = <const real *>j.src
    if j.op == BIAS_ADD:
        for i in range(r0, r1):
            for c in range(j.d):
                out[i * j.d + c] = out[i * j.d + c] + b[c]
    elif j.op == COLSUM:
        _colsum_block(b, j.n, j.d, t * COLSUM_BLOCK, min((t + 1) * COLSUM_BLOCK, j.d), out,
                      j.accumulate)
    else:
        _grad_block(j.act, b, <const real *>j.dy, out, j.n, j.d, t, <real *>j.db)


cdef void _cols_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _Cols *j = <const _Cols *>job
    if j.f64:
        _cols_chunk(j, <double *>j.out, t)
    else:
        _cols_chunk(j, <float *>j.out, t)


# -- Dense layers: a table of layers run forward and backward natively ---------------------------

cdef inline void _grad_block(ranvier_act a, const real *v, const real *dy, real *dz, Py_ssize_t n,
                             Py_ssize_t d, Py_ssize_t blk, real *db) noexcept nogil:
    # Column block blk of the fused pass: dz = dy * act'(v) and db = column sums of dz in double;
    # without dz (no activation), db alone.
    cdef Py_ssize_t j0 = blk * COLSUM_BLOCK, j1 = min((blk + 1) * COLSUM_BLOCK, d)
    if real is float:
        ranvier_ew_kernels_for(active_isa()).dense_grad_f32(a, n, d, j0, j1, v, dy, dz, db)
    else:
        ranvier_ew_kernels_for(active_isa()).dense_grad_f64(a, n, d, j0, j1, v, dy, dz, db)


cdef inline void _act_rows(ranvier_act a, const real *z, real *y, Py_ssize_t n) noexcept nogil:
    if real is float:
        ranvier_ew_kernels_for(active_isa()).act_forward_f32(a, z, y, n)
    else:
        ranvier_ew_kernels_for(active_isa()).act_forward_f64(a, z, y, n)


cdef struct _LayerPtrs:
    Py_ssize_t fin, fout
    ranvier_act act
    bint act_needs_input  # the activation's derivative is written in its input: keep pre
    void *w
    void *b      # NULL without bias
    void *dw
    void *db     # NULL without bias
    void *out    # (n, fout) for the bound batch size
    void *pre    # (n, fout) pre-activation, only when act_needs_input
    void *dz     # (n, fout), NULL when act is none (dy itself is the pre-activation gradient)
    void *dx     # (n, fin), the next lower layer's dy; NULL for a first layer without it


cdef inline int _run_forward(_LayerPtrs *L, int nl, Py_ssize_t n, const real *x,
                             int nt) noexcept nogil:
    # Each layer is one GEMM whose epilogue adds the bias and applies the activation; an
    # activation whose backward needs its input keeps the pre-activation and is applied after.
    cdef int i
    cdef const real *inp = x
    cdef ranvier_act none
    none.code, none.param = RANVIER_ACT_NONE, 0.0
    for i in range(nl):
        if L[i].act_needs_input:
            if _gemm(n, L[i].fout, L[i].fin, 1, inp, L[i].fin, 1, <const real *>L[i].w, 1,
                     L[i].fin, 0, <real *>L[i].pre, L[i].fout, 1, <const real *>L[i].b, none,
                     nt) != 0:
                return -1
            _act_rows(L[i].act, <const real *>L[i].pre, <real *>L[i].out, n * L[i].fout)
        elif _gemm(n, L[i].fout, L[i].fin, 1, inp, L[i].fin, 1, <const real *>L[i].w, 1,
                   L[i].fin, 0, <real *>L[i].out, L[i].fout, 1, <const real *>L[i].b, L[i].act,
                   nt) != 0:
            return -1
        inp = <const real *>L[i].out
    return 0


cdef inline int _run_backward(_LayerPtrs *L, int nl, Py_ssize_t n, const real *x,
                              const real *dy, bint first_dx, int nt) noexcept nogil:
    cdef int i
    cdef Py_ssize_t nblocks
    cdef const real *g
    cdef const real *inp
    cdef const real *v
    cdef ranvier_act none
    cdef _Cols grad
    none.code, none.param = RANVIER_ACT_NONE, 0.0
    for i in range(nl - 1, -1, -1):
        nblocks = (L[i].fout + COLSUM_BLOCK - 1) // COLSUM_BLOCK
        v = <const real *>(L[i].pre if L[i].act_needs_input else L[i].out)
        if L[i].dz != NULL or L[i].db != NULL:
            grad = _cols(DENSE_GRAD, real is double, n, L[i].fout, L[i].dz)
            grad.act, grad.src, grad.dy, grad.db = L[i].act, v, dy, L[i].db
            # threads only for a pass large enough to repay the team
            run_tasks(_cols_task, &grad, nblocks,
                      nt if nblocks > 1 and n * L[i].fout >= 131072 else 1)
        g = <const real *>L[i].dz if L[i].dz != NULL else dy
        inp = <const real *>L[i - 1].out if i > 0 else x
        # dW (fout, fin) = g.T @ input
        if _gemm(L[i].fout, L[i].fin, n, 1, g, 1, L[i].fout, inp, L[i].fin, 1, 0,
                 <real *>L[i].dw, L[i].fin, 1, NULL, none, nt) != 0:
            return -1
        if i > 0 or first_dx:
            # dX (n, fin) = g @ W
            if _gemm(n, L[i].fin, L[i].fout, 1, g, L[i].fout, 1, <const real *>L[i].w, L[i].fin,
                     1, 0, <real *>L[i].dx, L[i].fin, 1, NULL, none, nt) != 0:
                return -1
        dy = <const real *>L[i].dx
    return 0


cimport numpy as cnp
from libc.stdlib cimport free, malloc

import numpy as np

cnp.import_array()


cdef _check_array(str fn, object a, str what, object dtype, tuple shape, bint writeable):
    # DenseRun takes arrays (kept, not viewed per call): the memoryviews' checks, by hand.
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {what} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{fn}: {what} must be {dtype}, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{fn}: {what} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {what} must be C-contiguous")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{fn}: {what} must be writeable")


cdef inline Span _array_span(const char *name, object a):
    return span_of(name, cnp.PyArray_DATA(a), cnp.PyArray_NBYTES(a)) if a is not None else \
        span_of(name, NULL, 0)


cdef int _check_run_apart(str fn, params, buffers) except -1:
    # Every array a run writes (gradients, buffers) apart from every other array it holds.
    cdef int nl = len(params) if params is not None else len(buffers)
    cdef Span *outs = <Span *>malloc(sizeof(Span) * 6 * nl)
    cdef Span *ins = <Span *>malloc(sizeof(Span) * 2 * nl)
    cdef int i, nout = 0, nin = 0
    if outs == NULL or ins == NULL:
        free(outs)
        free(ins)
        raise MemoryError()
    try:
        for i in range(nl):
            if params is not None:
                w, b, dw, db = params[i]
                ins[nin], ins[nin + 1] = _array_span("a weight", w), _array_span("a bias", b)
                outs[nout] = _array_span("a weight gradient", dw)
                outs[nout + 1] = _array_span("a bias gradient", db)
                nin, nout = nin + 2, nout + 2
            if buffers is not None:
                out, pre, dz, dx = buffers[i]
                outs[nout], outs[nout + 1] = _array_span("an out buffer", out), \
                    _array_span("a pre buffer", pre)
                outs[nout + 2], outs[nout + 3] = _array_span("a dz buffer", dz), \
                    _array_span("a dx buffer", dx)
                nout += 4
        check_apart(fn.encode(), outs, nout, ins, nin)
    finally:
        free(outs)
        free(ins)
    return 0


def dense_forward(const real[:, ::1] x not None, const real[:, ::1] w not None,
                  const real[::1] bias, real[:, ::1] out not None, int act=RANVIER_ACT_NONE,
                  double param=0.0, int num_threads=1):
    """out = act(x @ w.T + bias) in one GEMM: bias and activation are the epilogue of each tile.
    x: (n, in), w: (out, in) as torch.nn.Linear, bias: (out,) or None, out: (n, out), apart from
    the others."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef ranvier_act a = _act("dense_forward", act, param)
    cdef Py_ssize_t n = x.shape[0], fin = x.shape[1], fout = w.shape[0], rc
    check_threads("dense_forward", num_threads)
    check_len("dense_forward", "w's columns", w.shape[1], fin, "the columns of x")
    check_shape("dense_forward", "out", out.shape[0], out.shape[1], n, fout,
                "x's rows, w's rows")
    if bias is not None:
        check_len("dense_forward", "bias", bias.shape[0], fout, "the rows of w")
    cdef Span dst = span2("out", out)
    cdef Span src[3]
    src[0], src[1], src[2] = span2("x", x), span2("w", w), span1("bias", bias)
    check_apart("dense_forward", &dst, 1, src, 3)
    if n == 0 or fout == 0:
        return
    cdef const real *pb = &bias[0] if bias is not None else NULL
    with nogil:
        fp = fp_enter()
        rc = _gemm(n, fout, fin, 1, &x[0, 0] if fin > 0 else NULL, fin, 1,
                   &w[0, 0] if fin > 0 else NULL, 1, fin, 0, &out[0, 0], fout, 1, pb, a,
                   num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("dense_forward: could not allocate packing buffers")


def dense_backward(const real[:, ::1] x not None, const real[:, ::1] w not None,
                   const real[:, ::1] v not None, const real[:, ::1] dy not None, real[:, ::1] dz,
                   real[:, ::1] dw not None, real[::1] db, real[:, ::1] dx,
                   int act=RANVIER_ACT_NONE, double param=0.0, int num_threads=1):
    """Backward of out = act(x @ w.T + b), given dy = dL/dout and v = out, or the pre-activation
    x @ w.T + b for an activation whose derivative needs its input (activations.NEEDS_OUTPUT):
        dz = dy * act'(v) and db = sum_rows(dz)   (one pass; dz unused when act is none)
        dw = dz.T @ x,  dx = dz @ w               (dx may be None for a first layer)
    Column sums are taken in double, by column blocks, so they do not depend on thread count.
    The outputs (dz, dw, db, dx) must not overlap each other or the inputs. Empty dimensions
    still write what they define: an empty batch gives zero dw and db, no outputs zero dx."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef const char *fn = "dense_backward"
    cdef ranvier_act a = _act(fn, act, param)
    cdef Py_ssize_t n = x.shape[0], fin = x.shape[1], fout = w.shape[0]
    cdef int rc = 0
    check_threads(fn, num_threads)
    check_len(fn, "w's columns", w.shape[1], fin, "the columns of x")
    check_shape(fn, "v", v.shape[0], v.shape[1], n, fout, "x's rows, w's rows")
    check_shape(fn, "dy", dy.shape[0], dy.shape[1], n, fout, "x's rows, w's rows")
    check_shape(fn, "dw", dw.shape[0], dw.shape[1], fout, fin, "the shape of w")
    if db is not None:
        check_len(fn, "db", db.shape[0], fout, "the rows of w")
    if act != RANVIER_ACT_NONE:
        if dz is None:
            raise TypeError(f"dense_backward: dz must be an array for an activation (code {act})")
        check_shape(fn, "dz", dz.shape[0], dz.shape[1], n, fout, "the shape of dy")
    if dx is not None:
        check_shape(fn, "dx", dx.shape[0], dx.shape[1], n, fin, "the shape of x")
    cdef Span outs[4]
    cdef Span ins[4]
    outs[0] = span2("dz", dz) if act != RANVIER_ACT_NONE else span_of("dz", NULL, 0)
    outs[1], outs[2], outs[3] = span2("dw", dw), span1("db", db), span2("dx", dx)
    ins[0], ins[1], ins[2], ins[3] = span2("x", x), span2("w", w), span2("v", v), span2("dy", dy)
    check_apart(fn, outs, 4, ins, 4)
    # One layer through the same native pass DenseRun trains with.
    cdef _LayerPtrs L
    cdef bint want_dx = dx is not None
    L.fin, L.fout, L.act = fin, fout, a
    L.act_needs_input = _needs_input(act)
    L.w = <void *>&w[0, 0]
    L.b = NULL
    L.dw = <void *>&dw[0, 0]
    L.db = <void *>&db[0] if db is not None else NULL
    L.out = L.pre = <void *>&v[0, 0]
    L.dz = <void *>&dz[0, 0] if act != RANVIER_ACT_NONE else NULL
    L.dx = <void *>&dx[0, 0] if want_dx else NULL
    with nogil:
        fp = fp_enter()
        rc = _run_backward(&L, 1, n, &x[0, 0], &dy[0, 0], want_dx, num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("dense_backward: could not allocate packing buffers")


cdef class DenseRun:
    """Consecutive Dense layers, each with an optional fused activation, as one native forward and
    one native backward over arrays it is given: per layer the parameters ``(w, b, dw, db)``
    (``bind_params``, b and db None without bias) and, per batch size, the buffers
    ``(out, pre, dz, dx)`` (``bind_buffers``; ``buffer_shapes`` says which are needed). It knows
    nothing of layers or Parameters: the caller rebinds when an array is replaced.

    Layer by layer, each layer and direction would cost a Python call, buffer checks and a native
    call (~3 us); a small network's whole step is a few tens of us of arithmetic."""

    cdef _LayerPtrs *L
    cdef int nl, is_double
    cdef Py_ssize_t n
    cdef object dtype, x, outs
    cdef tuple params, buffers
    cdef list acts

    def __cinit__(self):
        self.L = NULL

    def __init__(self, shapes, acts, dtype):
        """shapes: ((fin, fout, has_bias), ...) per layer; acts: ((code, param), ...)."""
        self.nl = len(shapes)
        if self.nl == 0 or len(acts) != self.nl:
            raise ValueError("DenseRun needs one activation (code, param) per layer")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"DenseRun: unsupported dtype {self.dtype}")
        self.is_double = self.dtype == np.float64
        self.L = <_LayerPtrs *>malloc(sizeof(_LayerPtrs) * self.nl)
        if self.L == NULL:
            raise MemoryError()
        cdef int i
        self.acts = []
        for i in range(self.nl):
            fin, fout, has_bias = shapes[i]
            if fin < 1 or fout < 1:
                raise ValueError(f"DenseRun: layer {i} has shape ({fin}, {fout})")
            if i > 0 and fin != self.L[i - 1].fout:
                raise ValueError(f"DenseRun: layer {i} takes {fin} features, the layer before "
                                 f"gives {self.L[i - 1].fout}")
            code, param = acts[i]
            self.L[i].fin, self.L[i].fout = fin, fout
            self.L[i].act = _act("DenseRun", code, param)
            self.L[i].act_needs_input = _needs_input(code)
            self.L[i].b = self.L[i].db = NULL
            self.acts.append((code, param, bool(has_bias)))
        self.params = self.buffers = None
        self.n = -1
        self.x = None

    def __dealloc__(self):
        free(self.L)

    cdef int _check_read(self, const char *fn, Span src) except -1:
        # src (x or dy) is read while the run writes its gradients and buffers: apart from all.
        cdef Py_ssize_t isz = 8 if self.is_double else 4, n = self.n, fin, fout
        cdef Span outs[6]
        cdef int i, k
        for i in range(self.nl):
            fin, fout = self.L[i].fin, self.L[i].fout
            outs[0] = span_of("a weight gradient", self.L[i].dw, fout * fin * isz)
            outs[1] = span_of("a bias gradient", self.L[i].db, fout * isz)
            outs[2] = span_of("an out buffer", self.L[i].out, n * fout * isz)
            outs[3] = span_of("a pre buffer", self.L[i].pre, n * fout * isz)
            outs[4] = span_of("a dz buffer", self.L[i].dz, n * fout * isz)
            outs[5] = span_of("a dx buffer", self.L[i].dx, n * fin * isz)
            for k in range(6):
                check_apart(fn, &outs[k], 1, &src, 1)
        return 0

    def buffer_shapes(self, Py_ssize_t n):
        """Per layer, the shapes of (out, pre, dz, dx) for n rows; None where not needed."""
        cdef int i
        shapes = []
        for i in range(self.nl):
            code = self.acts[i][0]
            shapes.append(((n, self.L[i].fout),
                           (n, self.L[i].fout) if self.L[i].act_needs_input else None,
                           (n, self.L[i].fout) if code != RANVIER_ACT_NONE else None,
                           (n, self.L[i].fin)))
        return shapes

    def bind_params(self, params):
        """params: ((w, b, dw, db), ...): w, dw (fout, fin); b, db (fout,) or None. The
        gradients must not overlap each other, the parameters or the bound buffers."""
        cdef int i
        fn = "DenseRun.bind_params"
        if len(params) != self.nl:
            raise ValueError(f"{fn}: {len(params)} parameter sets for {self.nl} layers")
        for i in range(self.nl):
            w, b, dw, db = params[i]
            fin, fout, has_bias = self.L[i].fin, self.L[i].fout, self.acts[i][2]
            _check_array(fn, w, f"layer {i} weight", self.dtype, (fout, fin), False)
            _check_array(fn, dw, f"layer {i} weight gradient", self.dtype, (fout, fin), True)
            if has_bias:
                _check_array(fn, b, f"layer {i} bias", self.dtype, (fout,), False)
                _check_array(fn, db, f"layer {i} bias gradient", self.dtype, (fout,), True)
            elif b is not None or db is not None:
                raise ValueError(f"{fn}: layer {i} has no bias")
        _check_run_apart(fn, params, self.buffers)
        for i in range(self.nl):
            w, b, dw, db = params[i]
            self.L[i].w = cnp.PyArray_DATA(w)
            self.L[i].dw = cnp.PyArray_DATA(dw)
            self.L[i].b = cnp.PyArray_DATA(b) if b is not None else NULL
            self.L[i].db = cnp.PyArray_DATA(db) if db is not None else NULL
        self.params = tuple(params)  # kept alive while bound

    def bind_buffers(self, Py_ssize_t n, buffers):
        """buffers: per layer (out, pre, dz, dx) for n rows, as buffer_shapes(n) says, apart
        from each other and from the bound parameters and gradients."""
        cdef int i
        fn = "DenseRun.bind_buffers"
        check_at_least(b"DenseRun.bind_buffers", b"n", n, 0)
        if len(buffers) != self.nl:
            raise ValueError(f"{fn}: {len(buffers)} buffer sets for {self.nl} layers")
        shapes = self.buffer_shapes(n)
        for i in range(self.nl):
            if len(buffers[i]) != 4:
                raise ValueError(f"{fn}: layer {i} needs (out, pre, dz, dx), got "
                                 f"{len(buffers[i])} arrays")
            for what, a, shape in zip(("out", "pre", "dz", "dx"), buffers[i], shapes[i]):
                if shape is None:
                    if a is not None:
                        raise ValueError(f"{fn}: layer {i} needs no {what} buffer")
                else:
                    _check_array(fn, a, f"layer {i} {what} buffer", self.dtype, shape, True)
        _check_run_apart(fn, self.params, buffers)
        for i in range(self.nl):
            out, pre, dz, dx = buffers[i]
            self.L[i].out = cnp.PyArray_DATA(out)
            self.L[i].pre = cnp.PyArray_DATA(pre) if pre is not None else NULL
            self.L[i].dz = cnp.PyArray_DATA(dz) if dz is not None else NULL
            self.L[i].dx = cnp.PyArray_DATA(dx)
        self.buffers = tuple(buffers)
        self.n = n
        self.x = None

    @property
    def rows(self):
        """The batch size the buffers are bound for (-1 before any)."""
        return self.n

    def forward(self, x, int num_threads=1):
        """The run's output for x (rows, in_features): the last layer's out buffer."""
        if self.params is None:
            raise RuntimeError("DenseRun.forward: bind_params first")
        if (not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != self.dtype
                or not x.flags.c_contiguous or x.shape[1] != self.L[0].fin):
            raise ValueError(f"DenseRun.forward: x must be a C-contiguous {self.dtype} array "
                             f"with {self.L[0].fin} columns")
        if x.shape[0] != self.n:
            raise ValueError(f"DenseRun.forward: x has {x.shape[0]} rows, the buffers are bound "
                             f"for {self.n}")
        cdef ranvier_fpstate fp = 0, bits = 0
        check_threads("DenseRun.forward", num_threads)
        self._check_read("DenseRun.forward", _array_span("x", x))
        self.x = x  # kept for backward: the caller's buffer must not change in between
        cdef void *px = cnp.PyArray_DATA(x)
        cdef int rc = 0
        cdef Py_ssize_t n = self.n
        if n > 0:
            with nogil:
                fp = fp_enter()
                if self.is_double:
                    rc = _run_forward(self.L, self.nl, n, <const double *>px, num_threads)
                else:
                    rc = _run_forward(self.L, self.nl, n, <const float *>px, num_threads)
                ranvier_fp_leave(fp)
        if rc != 0:
            raise MemoryError("DenseRun: could not allocate GEMM packing buffers")
        return self.buffers[self.nl - 1][0]

    def backward(self, dy, bint need_input_grad, int num_threads=1):
        """Writes every weight and bias gradient from dy (rows, out_features) of the last forward;
        returns dL/dx (the first layer's dx buffer), or None when not needed."""
        if self.x is None:
            raise RuntimeError("DenseRun.backward called before forward")
        if (not isinstance(dy, np.ndarray) or dy.ndim != 2 or dy.dtype != self.dtype
                or not dy.flags.c_contiguous or dy.shape[0] != self.n
                or dy.shape[1] != self.L[self.nl - 1].fout):
            raise ValueError(f"DenseRun.backward: dy must be a C-contiguous {self.dtype} array "
                             f"of shape ({self.n}, {self.L[self.nl - 1].fout})")
        cdef ranvier_fpstate fp = 0, bits = 0
        check_threads("DenseRun.backward", num_threads)
        self._check_read("DenseRun.backward", _array_span("dy", dy))
        cdef void *px = cnp.PyArray_DATA(self.x)
        cdef void *pdy = cnp.PyArray_DATA(dy)
        cdef int rc = 0
        cdef Py_ssize_t n = self.n
        if n == 0:  # a sum over no rows: every gradient is zero
            for _, _, dw, db in self.params:
                dw.fill(0)
                if db is not None:
                    db.fill(0)
        else:
            with nogil:
                fp = fp_enter()
                if self.is_double:
                    rc = _run_backward(self.L, self.nl, n, <const double *>px,
                                       <const double *>pdy, need_input_grad, num_threads)
                else:
                    rc = _run_backward(self.L, self.nl, n, <const float *>px, <const float *>pdy,
                                       need_input_grad, num_threads)
                ranvier_fp_leave(fp)
        if rc != 0:
            raise MemoryError("DenseRun: could not allocate GEMM packing buffers")
        return self.buffers[0][3] if need_input_grad else None


include "conv.pxi"
