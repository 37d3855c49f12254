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
    void ranvier_dense_grad_f32(Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1,
                                const float *y, const float *dy, float *dz, float *db,
                                int act) nogil
    void ranvier_dense_grad_f64(Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1,
                                const double *y, const double *dy, double *dz, double *db,
                                int act) nogil
    double ranvier_gemm_sup_max_bytes
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


def _set_unpacked_max_bytes(double nbytes):
    """For tests: products below the parallel cut-off with at most this many bytes of operands
    skip packing (0 forces the packed path everywhere, inf the unpacked one for every product
    below the cut-off). Returns the previous limit."""
    global ranvier_gemm_sup_max_bytes
    before = ranvier_gemm_sup_max_bytes
    ranvier_gemm_sup_max_bytes = nbytes
    return before


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


cdef inline void _grad_block(const real *y, const real *dy, real *dz, Py_ssize_t n,
                             Py_ssize_t d, Py_ssize_t blk, real *db, int act) noexcept nogil:
    # Column block blk of the fused pass (C, per ISA): dz = dy * act'(y) and db = column sums of
    # dz in double; without dz (no activation), db alone.
    cdef Py_ssize_t j0 = blk * COLSUM_BLOCK, j1 = min((blk + 1) * COLSUM_BLOCK, d)
    if real is float:
        ranvier_dense_grad_f32(n, d, j0, j1, y, dy, dz, db, act)
    else:
        ranvier_dense_grad_f64(n, d, j0, j1, y, dy, dz, db, act)


# Forward and backward over a table of Dense layers: dense_backward runs it for one layer,
# DenseRun for a whole stack.
cdef struct _LayerPtrs:
    Py_ssize_t fin, fout
    int act
    void *w
    void *b      # NULL without bias
    void *dw
    void *db     # NULL without bias
    void *out    # (n, fout) for the bound batch size
    void *dz     # (n, fout), NULL when act is none (dy itself is the pre-activation gradient)
    void *dx     # (n, fin), the next lower layer's dy


cdef inline int _run_forward(_LayerPtrs *L, int nl, Py_ssize_t n, const real *x,
                             int nt) noexcept nogil:
    cdef int i
    cdef const real *inp = x
    for i in range(nl):
        if _gemm(n, L[i].fout, L[i].fin, 1, inp, L[i].fin, 1, <const real *>L[i].w, 1, L[i].fin,
                 0, <real *>L[i].out, L[i].fout, 1, <const real *>L[i].b, L[i].act, nt) != 0:
            return -1
        inp = <const real *>L[i].out
    return 0


cdef inline int _run_backward(_LayerPtrs *L, int nl, Py_ssize_t n, const real *x,
                              const real *dy, bint first_dx, int nt) noexcept nogil:
    cdef int i
    cdef Py_ssize_t blk, nblocks
    cdef const real *g
    cdef const real *inp
    for i in range(nl - 1, -1, -1):
        nblocks = (L[i].fout + COLSUM_BLOCK - 1) // COLSUM_BLOCK
        if L[i].dz != NULL or L[i].db != NULL:
            if nt > 1 and nblocks > 1 and n * L[i].fout >= 131072:
                for blk in prange(nblocks, schedule="static", num_threads=nt):
                    _grad_block(<const real *>L[i].out, dy, <real *>L[i].dz, n, L[i].fout, blk,
                                <real *>L[i].db, L[i].act)
            else:
                for blk in range(nblocks):
                    _grad_block(<const real *>L[i].out, dy, <real *>L[i].dz, n, L[i].fout, blk,
                                <real *>L[i].db, L[i].act)
        g = <const real *>L[i].dz if L[i].dz != NULL else dy
        inp = <const real *>L[i - 1].out if i > 0 else x
        # dW (fout, fin) = g.T @ input
        if _gemm(L[i].fout, L[i].fin, n, 1, g, 1, L[i].fout, inp, L[i].fin, 1, 0,
                 <real *>L[i].dw, L[i].fin, 1, NULL, RANVIER_ACT_NONE, nt) != 0:
            return -1
        if i > 0 or first_dx:
            # dX (n, fin) = g @ W
            if _gemm(n, L[i].fin, L[i].fout, 1, g, L[i].fout, 1, <const real *>L[i].w, L[i].fin,
                     1, 0, <real *>L[i].dx, L[i].fin, 1, NULL, RANVIER_ACT_NONE, nt) != 0:
                return -1
        dy = <const real *>L[i].dx
    return 0


def dense_backward(const real[:, ::1] x, const real[:, ::1] w, const real[:, ::1] y,
                   const real[:, ::1] dy, real[:, ::1] dz, real[:, ::1] dw, real[::1] db,
                   real[:, ::1] dx, int act=RANVIER_ACT_NONE, int num_threads=1):
    """Backward of out = act(x @ w.T + b), given y = out and dy = dL/dout:
        dz = dy * act'(y) and db = sum_rows(dz)   (one pass; dz unused when act is none)
        dw = dz.T @ x,  dx = dz @ w               (dx may be None for a first layer)
    Column sums are taken in double, by column blocks, so they do not depend on thread count."""
    cdef Py_ssize_t n = x.shape[0], fin = x.shape[1], fout = w.shape[0]
    cdef int rc = 0
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
    # One layer through the same native pass DenseRun trains with.
    cdef _LayerPtrs L
    cdef bint want_dx = dx is not None
    L.fin, L.fout, L.act = fin, fout, act
    L.w = <void *>&w[0, 0]
    L.b = NULL
    L.dw = <void *>&dw[0, 0]
    L.db = <void *>&db[0] if db is not None else NULL
    L.out = <void *>&y[0, 0]
    L.dz = <void *>&dz[0, 0] if act != RANVIER_ACT_NONE else NULL
    L.dx = <void *>&dx[0, 0] if want_dx else NULL
    with nogil:
        rc = _run_backward(&L, 1, n, &x[0, 0], &dy[0, 0], want_dx, num_threads)
    if rc != 0:
        raise MemoryError("dense_backward: could not allocate packing buffers")


# -- A run of Dense layers in one call ---------------------------------------------------------

cimport numpy as cnp
from libc.stdlib cimport free, malloc

import numpy as np

cnp.import_array()


cdef class DenseRun:
    """Consecutive Dense layers (each with an optional fused ReLU/sigmoid/tanh) trained as one
    block: ``forward`` and ``backward`` are one native call each for the whole run, over
    workspaces kept per batch size. Weights, biases and their gradients are read from the layers'
    Parameters (identity-checked on every call, so replacing ``param.data`` is seen); the
    returned arrays are overwritten by the next call.

    Layer by layer, each layer and direction costs a Python call, buffer checks and a native call
    (~3 us); a small network's whole step is a few tens of us of arithmetic."""

    cdef list dense, acts, bound
    cdef dict workspaces
    cdef tuple ws
    cdef int nl, is_double
    cdef Py_ssize_t n
    cdef _LayerPtrs *L
    cdef object dtype, x

    def __cinit__(self):
        self.L = NULL

    def __init__(self, dense_layers, act_codes):
        self.dense = list(dense_layers)
        self.acts = [int(a) for a in act_codes]
        self.nl = len(self.dense)
        if self.nl == 0 or len(self.acts) != self.nl:
            raise ValueError("DenseRun needs one activation code per Dense layer")
        self.dtype = self.dense[0].weight.data.dtype
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"DenseRun: unsupported dtype {self.dtype}")
        self.is_double = self.dtype == np.float64
        self.L = <_LayerPtrs *>malloc(sizeof(_LayerPtrs) * self.nl)
        if self.L == NULL:
            raise MemoryError()
        self.workspaces = {}
        self.x = None
        self._bind_params()
        self._bind_rows(0)

    def __dealloc__(self):
        free(self.L)

    @property
    def in_features(self):
        return self.L[0].fin

    cdef bint _params_unchanged(self):
        cdef int i
        cdef tuple t
        for i in range(self.nl):
            d = self.dense[i]
            t = self.bound[i]
            if d.weight.data is not t[0] or d.weight.grad is not t[1]:
                return False
            if d.bias is not None and (d.bias.data is not t[2] or d.bias.grad is not t[3]):
                return False
        return True

    cdef _bind_params(self):
        """Point the layer table at the layers' current parameters (checked)."""
        cdef int i
        params = []
        fin_prev = None
        for i in range(self.nl):
            d = self.dense[i]
            w, dw = d.weight.data, d.weight.grad
            b = d.bias.data if d.bias is not None else None
            db = d.bias.grad if d.bias is not None else None
            for name, a in (("weight", w), ("weight grad", dw), ("bias", b), ("bias grad", db)):
                if a is not None and (not isinstance(a, np.ndarray) or a.dtype != self.dtype
                                      or not a.flags.c_contiguous or not a.flags.writeable):
                    raise ValueError(f"DenseRun: layer {i} {name} must be a writeable "
                                     f"C-contiguous {self.dtype} array")
            if w.ndim != 2 or dw.shape != w.shape:
                raise ValueError(f"DenseRun: layer {i} weight and its gradient do not agree")
            fout, fin = w.shape
            if b is not None and (b.shape != (fout,) or db.shape != (fout,)):
                raise ValueError(f"DenseRun: layer {i} bias must have {fout} entries")
            if fin_prev is not None and fin != fin_prev:
                raise ValueError(f"DenseRun: layer {i} takes {fin} features, the layer before "
                                 f"gives {fin_prev}")
            fin_prev = fout
            if self.workspaces and (fin != self.L[i].fin or fout != self.L[i].fout):
                self.workspaces = {}  # new shapes: the old workspaces no longer fit
                self.n = -1
            self.L[i].fin, self.L[i].fout, self.L[i].act = fin, fout, self.acts[i]
            self.L[i].w = cnp.PyArray_DATA(w)
            self.L[i].dw = cnp.PyArray_DATA(dw)
            self.L[i].b = cnp.PyArray_DATA(b) if b is not None else NULL
            self.L[i].db = cnp.PyArray_DATA(db) if db is not None else NULL
            params.append((w, dw, b, db))
        self.bound = params

    cdef _bind_rows(self, Py_ssize_t n):
        """Point the layer table at the workspaces for n rows (made on first use)."""
        cdef int i
        ws = self.workspaces.get(n)
        if ws is None:
            if len(self.workspaces) > 4:  # batch sizes come and go only with partial batches
                self.workspaces.clear()
            ws = tuple((np.empty((n, self.L[i].fout), self.dtype),
                        np.empty((n, self.L[i].fout), self.dtype)
                        if self.acts[i] != RANVIER_ACT_NONE else None,
                        np.empty((n, self.L[i].fin), self.dtype)) for i in range(self.nl))
            self.workspaces[n] = ws
        for i in range(self.nl):
            out, dz, dx = ws[i]
            self.L[i].out = cnp.PyArray_DATA(out)
            self.L[i].dz = cnp.PyArray_DATA(dz) if dz is not None else NULL
            self.L[i].dx = cnp.PyArray_DATA(dx)
        self.ws = ws
        self.n = n

    cdef _check_rows(self, object a, Py_ssize_t cols, str name):
        if (not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != self.dtype
                or not a.flags.c_contiguous or a.shape[1] != cols):
            raise ValueError(f"DenseRun: {name} must be a C-contiguous {self.dtype} array with "
                             f"{cols} columns")

    def forward(self, x, int num_threads=1):
        """The run's output for x (n, in_features); overwritten by the next forward."""
        if not self._params_unchanged():
            self._bind_params()
        self._check_rows(x, self.L[0].fin, "x")
        cdef Py_ssize_t n = x.shape[0]
        if n != self.n:
            self._bind_rows(n)
        self.x = x  # kept for backward: the caller's buffer must not change in between
        cdef void *px = cnp.PyArray_DATA(x)
        cdef int rc = 0
        if n > 0:
            with nogil:
                if self.is_double:
                    rc = _run_forward(self.L, self.nl, n, <const double *>px, num_threads)
                else:
                    rc = _run_forward(self.L, self.nl, n, <const float *>px, num_threads)
        if rc != 0:
            raise MemoryError("DenseRun: could not allocate GEMM packing buffers")
        return self.ws[self.nl - 1][0]

    def backward(self, dy, bint need_input_grad, int num_threads=1):
        """Writes every weight and bias gradient from dy (n, out_features) of the last forward;
        returns dL/dx, or None when not needed (the first layers of a model)."""
        if self.x is None:
            raise RuntimeError("DenseRun.backward called before forward")
        if not self._params_unchanged():
            raise RuntimeError("DenseRun: parameters were replaced between forward and backward")
        self._check_rows(dy, self.L[self.nl - 1].fout, "dy")
        cdef Py_ssize_t n = dy.shape[0]
        if n != self.n:
            raise ValueError(f"DenseRun: dy has {n} rows, the last forward had {self.n}")
        cdef void *px = cnp.PyArray_DATA(self.x)
        cdef void *pdy = cnp.PyArray_DATA(dy)
        cdef int rc = 0
        if n == 0:  # a sum over no rows: every gradient is zero
            for _, dw, _, db in self.bound:
                dw.fill(0)
                if db is not None:
                    db.fill(0)
        else:
            with nogil:
                if self.is_double:
                    rc = _run_backward(self.L, self.nl, n, <const double *>px,
                                       <const double *>pdy, need_input_grad, num_threads)
                else:
                    rc = _run_backward(self.L, self.nl, n, <const float *>px, <const float *>pdy,
                                       need_input_grad, num_threads)
        if rc != 0:
            raise MemoryError("DenseRun: could not allocate GEMM packing buffers")
        return self.ws[0][2] if need_input_grad else None
