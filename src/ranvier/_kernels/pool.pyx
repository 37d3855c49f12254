"""Pooling over NCHW images (csrc/pool.h): max pooling with its argmax, average pooling and
adaptive average pooling, forward and backward, float32/float64.

The N * C planes are spread over the threads (OpenMP, static schedule); each plane is done by one
thread in a fixed order, so results are bitwise identical for any thread count. Nothing is
allocated: the caller passes every output. Geometry as PyTorch's MaxPool2d / AvgPool2d
(ceil_mode=False): ``kernel_size``, ``stride`` and ``padding`` are pairs (h, w), stride >= 1 and
padding at most half the kernel; the output's shape must be the one they give.
"""
from libc.stdint cimport int64_t

from ranvier._kernels._tasks cimport run_tasks, task_count, task_len
from ranvier._kernels._checks cimport Span, check_apart, check_threads, shape4, span4

ctypedef fused real:
    float
    double

cdef extern from "pool.h":
    ctypedef struct ranvier_pool_axis:
        Py_ssize_t in_len, out_len, k, s, p
        int adaptive, include_pad
    void rv_maxpool_plane_f32(const ranvier_pool_axis *, const ranvier_pool_axis *,
                              const float *, float *, int64_t *) noexcept nogil
    void rv_maxpool_plane_f64(const ranvier_pool_axis *, const ranvier_pool_axis *,
                              const double *, double *, int64_t *) noexcept nogil
    Py_ssize_t rv_maxpool_backward_plane_f32(Py_ssize_t, Py_ssize_t, const float *,
                                             const int64_t *, float *) noexcept nogil
    Py_ssize_t rv_maxpool_backward_plane_f64(Py_ssize_t, Py_ssize_t, const double *,
                                             const int64_t *, double *) noexcept nogil
    void rv_avgpool_plane_f32(const ranvier_pool_axis *, const ranvier_pool_axis *,
                              const float *, float *) noexcept nogil
    void rv_avgpool_plane_f64(const ranvier_pool_axis *, const ranvier_pool_axis *,
                              const double *, double *) noexcept nogil
    void rv_avgpool_backward_plane_f32(const ranvier_pool_axis *, const ranvier_pool_axis *,
                                       const float *, float *) noexcept nogil
    void rv_avgpool_backward_plane_f64(const ranvier_pool_axis *, const ranvier_pool_axis *,
                                       const double *, double *) noexcept nogil


# -- geometry -------------------------------------------------------------------------------------

cdef tuple _pair(str fn, str what, object v):
    if not isinstance(v, tuple) or len(v) != 2:
        raise ValueError(f"{fn}: {what} must be a pair (h, w), got {v!r}")
    return v


cdef int _fixed_axes(str fn, tuple xs, tuple ys, object kernel_size, object stride,
                     object padding, bint include_pad, ranvier_pool_axis *ah,
                     ranvier_pool_axis *aw) except -1:
    """The axes of a kernel_size/stride/padding pooling of x (shape xs) into y (shape ys);
    ValueError naming fn and the shapes unless they agree."""
    k, s, p = _pair(fn, "kernel_size", kernel_size), _pair(fn, "stride", stride), \
        _pair(fn, "padding", padding)
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(f"{fn}: kernel_size and stride must be >= 1 and padding >= 0, got "
                         f"kernel_size={k}, stride={s}, padding={p}")
    if xs[2] < 1 or xs[3] < 1:
        raise ValueError(f"{fn}: x of shape {xs} has an empty plane")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding {p} must be at most half the kernel size {k}")
    cdef ranvier_pool_axis *axes[2]
    axes[0], axes[1] = ah, aw
    cdef int d
    for d in range(2):
        if xs[2 + d] + 2 * p[d] < k[d]:
            raise ValueError(f"{fn}: kernel {k} is larger than the padded input "
                             f"({xs[2] + 2 * p[0]}, {xs[3] + 2 * p[1]}) of x with shape {xs}")
        axes[d].in_len, axes[d].k, axes[d].s, axes[d].p = xs[2 + d], k[d], s[d], p[d]
        axes[d].out_len = (xs[2 + d] + 2 * p[d] - k[d]) // s[d] + 1
        axes[d].adaptive, axes[d].include_pad = 0, include_pad
    want = (xs[0], xs[1], ah.out_len, aw.out_len)
    if ys != want:
        raise ValueError(f"{fn}: the output has shape {ys}; pooling x of shape {xs} with "
                         f"kernel_size={k}, stride={s}, padding={p} gives {want}")
    return 0


cdef int _adaptive_axes(str fn, tuple xs, tuple ys, ranvier_pool_axis *ah,
                        ranvier_pool_axis *aw) except -1:
    """The axes of an adaptive pooling of x (shape xs) to y's plane size (shape ys)."""
    if ys[:2] != xs[:2]:
        raise ValueError(f"{fn}: the output has shape {ys}, x has {xs}: the batch and channel "
                         f"sizes must agree")
    if min(xs[2], xs[3], ys[2], ys[3]) < 1:
        raise ValueError(f"{fn}: x of shape {xs} and the output of shape {ys} need a height and "
                         f"width of at least 1")
    cdef ranvier_pool_axis *axes[2]
    axes[0], axes[1] = ah, aw
    cdef int d
    for d in range(2):
        axes[d].in_len, axes[d].out_len = xs[2 + d], ys[2 + d]
        axes[d].k, axes[d].s, axes[d].p = 0, 0, 0
        axes[d].adaptive, axes[d].include_pad = 1, 1
    return 0


# -- the planes over the threads -------------------------------------------------------------------
cdef enum:
    MAX_FORWARD = 0
    MAX_BACKWARD = 1
    AVG_FORWARD = 2
    AVG_BACKWARD = 3
    MAX_TASKS = 256     # planes are grouped into at most this many tasks (one count each)


cdef struct _Planes:
    # One pass over `planes` planes, `per` to a task: src planes of psrc elements into dst planes
    # of pdst; max pooling's indices (written forward, read backward) and, backward, the count of
    # indices outside their plane per task.
    int op
    bint f64
    const ranvier_pool_axis *ah
    const ranvier_pool_axis *aw
    Py_ssize_t planes, per, psrc, pdst
    const void *src
    void *dst
    int64_t *indices
    Py_ssize_t *bad


cdef inline void _planes_chunk(const _Planes *j, real *dst, Py_ssize_t t) noexcept nogil:
    cdef const real *src = <const real *>j.src
    cdef Py_ssize_t i, bad = 0
    for i in range(t * j.per, t * j.per + task_len(j.planes, j.per, t)):
        if j.op == MAX_FORWARD:
            if real is float:
                rv_maxpool_plane_f32(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst,
                                     j.indices + i * j.pdst)
            else:
                rv_maxpool_plane_f64(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst,
                                     j.indices + i * j.pdst)
        elif j.op == MAX_BACKWARD:   # src = dy, whose planes are the indices' planes
            if real is float:
                bad += rv_maxpool_backward_plane_f32(j.pdst, j.psrc, src + i * j.psrc,
                                                     j.indices + i * j.psrc, dst + i * j.pdst)
            else:
                bad += rv_maxpool_backward_plane_f64(j.pdst, j.psrc, src + i * j.psrc,
                                                     j.indices + i * j.psrc, dst + i * j.pdst)
        elif j.op == AVG_BACKWARD:
            if real is float:
                rv_avgpool_backward_plane_f32(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst)
            else:
                rv_avgpool_backward_plane_f64(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst)
        elif real is float:
            rv_avgpool_plane_f32(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst)
        else:
            rv_avgpool_plane_f64(j.ah, j.aw, src + i * j.psrc, dst + i * j.pdst)
    if j.bad != NULL:
        j.bad[t] = bad


cdef void _planes_task(const void *job, Py_ssize_t t) noexcept nogil:
    cdef const _Planes *j = <const _Planes *>job
    if j.f64:
        _planes_chunk(j, <double *>j.dst, t)
    else:
        _planes_chunk(j, <float *>j.dst, t)


cdef Py_ssize_t _run_planes(int op, const ranvier_pool_axis *ah, const ranvier_pool_axis *aw,
                            const real *src, real *dst, int64_t *indices, Py_ssize_t planes,
                            Py_ssize_t psrc, Py_ssize_t pdst, int num_threads) noexcept nogil:
    """The pass over every plane; returns how many indices lay outside their plane (backward)."""
    cdef Py_ssize_t bad[MAX_TASKS]
    cdef Py_ssize_t t, ntasks, total = 0
    cdef _Planes j
    j.op, j.f64, j.ah, j.aw, j.planes = op, real is double, ah, aw, planes
    j.per = task_count(planes, MAX_TASKS)
    j.psrc, j.pdst, j.src, j.dst, j.indices = psrc, pdst, src, dst, indices
    j.bad = bad if op == MAX_BACKWARD else NULL
    ntasks = task_count(planes, j.per)
    run_tasks(_planes_task, &j, ntasks, num_threads)
    if op == MAX_BACKWARD:
        for t in range(ntasks):
            total += bad[t]
    return total


cdef int _check_indices(const char *fn, tuple indices_shape, tuple want, str of) except -1:
    if indices_shape != want:
        raise ValueError(f"{fn.decode()}: indices has shape {indices_shape}, expected {want} "
                         f"(the shape of {of})")
    return 0


# -- max pooling ----------------------------------------------------------------------------------

def maxpool2d_forward(const real[:, :, :, ::1] x not None, real[:, :, :, ::1] out not None,
                      int64_t[:, :, :, ::1] indices not None, tuple kernel_size, tuple stride,
                      tuple padding, int num_threads=1):
    """out = the maximum of each window of x, indices = its position in its plane (h * W + w,
    as torch's return_indices); a NaN in a window gives NaN."""
    cdef const char *fn = "maxpool2d_forward"
    cdef ranvier_pool_axis ah, aw
    cdef Py_ssize_t planes, pin, pout
    check_threads(fn, num_threads)
    xs, ys = shape4(x), shape4(out)
    _fixed_axes("maxpool2d_forward", xs, ys, kernel_size, stride, padding, 1, &ah, &aw)
    _check_indices(fn, shape4(indices), ys, "out")
    cdef Span outs[2]
    cdef Span ins[1]
    outs[0], outs[1], ins[0] = span4("out", out), span4("indices", indices), span4("x", x)
    check_apart(fn, outs, 2, ins, 1)
    planes, pin, pout = xs[0] * xs[1], xs[2] * xs[3], ys[2] * ys[3]
    if planes == 0:
        return
    cdef const real *px = &x[0, 0, 0, 0]
    cdef real *po = &out[0, 0, 0, 0]
    cdef int64_t *pi = &indices[0, 0, 0, 0]
    with nogil:
        _run_planes(MAX_FORWARD, &ah, &aw, px, po, pi, planes, pin, pout, num_threads)


def maxpool2d_backward(const real[:, :, :, ::1] dy not None,
                       const int64_t[:, :, :, ::1] indices not None,
                       real[:, :, :, ::1] dx not None, int num_threads=1):
    """dx = dy scattered through maxpool2d_forward's indices into planes of dx's size (zero
    elsewhere, added where windows share their maximum). An index outside its plane is a
    ValueError (nothing is written outside dx)."""
    cdef const char *fn = "maxpool2d_backward"
    cdef Py_ssize_t planes, pin, pout, bad
    check_threads(fn, num_threads)
    ys, xs = shape4(dy), shape4(dx)
    _check_indices(fn, shape4(indices), ys, "dy")
    if xs[:2] != ys[:2]:
        raise ValueError(f"maxpool2d_backward: dx has shape {xs}, dy has {ys}: the batch and "
                         f"channel sizes must agree")
    cdef Span outs[1]
    cdef Span ins[2]
    outs[0], ins[0], ins[1] = span4("dx", dx), span4("dy", dy), span4("indices", indices)
    check_apart(fn, outs, 1, ins, 2)
    planes, pin, pout = xs[0] * xs[1], xs[2] * xs[3], ys[2] * ys[3]
    if planes == 0 or pin == 0:
        if pout > 0 and planes > 0:
            raise ValueError(f"maxpool2d_backward: dx of shape {xs} has empty planes for "
                             f"indices of shape {ys}")
        return
    cdef const real *pdy = &dy[0, 0, 0, 0]
    # read only: the pass takes one indices pointer for both directions
    cdef int64_t *pi = <int64_t *>&indices[0, 0, 0, 0] if pout > 0 else NULL
    cdef real *pdx = &dx[0, 0, 0, 0]
    with nogil:
        bad = _run_planes(MAX_BACKWARD, NULL, NULL, pdy, pdx, pi, planes, pout, pin, num_threads)
    if bad:
        raise ValueError(f"maxpool2d_backward: {bad} indices lie outside the planes of dx "
                         f"(shape {xs}); they must come from maxpool2d_forward on x of that shape")


# -- average pooling ------------------------------------------------------------------------------

cdef _avg(const char *fn, const real[:, :, :, ::1] src, real[:, :, :, ::1] dst,
          ranvier_pool_axis *ah, ranvier_pool_axis *aw, bint backward, int num_threads):
    """The average-pooling pass over every plane: forward (src = x, dst = out) or backward
    (src = dy, dst = dx), with the axes already checked against the shapes."""
    cdef Py_ssize_t planes, psrc, pdst
    cdef Span d = span4("dx" if backward else "out", dst)
    cdef Span s = span4("dy" if backward else "x", src)
    check_apart(fn, &d, 1, &s, 1)
    planes = dst.shape[0] * dst.shape[1]
    psrc, pdst = src.shape[2] * src.shape[3], dst.shape[2] * dst.shape[3]
    if planes == 0:
        return
    cdef const real *ps = &src[0, 0, 0, 0]
    cdef real *pd = &dst[0, 0, 0, 0]
    with nogil:
        _run_planes(AVG_BACKWARD if backward else AVG_FORWARD, ah, aw, ps, pd, NULL, planes, psrc,
                    pdst, num_threads)


def avgpool2d_forward(const real[:, :, :, ::1] x not None, real[:, :, :, ::1] out not None,
                      tuple kernel_size, tuple stride, tuple padding,
                      bint count_include_pad=True, int num_threads=1):
    """out = the mean of each window of x; the divisor is the kernel's area
    (count_include_pad, torch's default) or the number of inputs the window covers."""
    cdef ranvier_pool_axis ah, aw
    check_threads("avgpool2d_forward", num_threads)
    _fixed_axes("avgpool2d_forward", shape4(x), shape4(out), kernel_size, stride,
                padding, count_include_pad, &ah, &aw)
    _avg("avgpool2d_forward", x, out, &ah, &aw, False, num_threads)


def avgpool2d_backward(const real[:, :, :, ::1] dy not None, real[:, :, :, ::1] dx not None,
                       tuple kernel_size, tuple stride, tuple padding,
                       bint count_include_pad=True, int num_threads=1):
    """dx = the gradient of avgpool2d_forward (same geometry) for the output gradient dy."""
    cdef ranvier_pool_axis ah, aw
    check_threads("avgpool2d_backward", num_threads)
    _fixed_axes("avgpool2d_backward", shape4(dx), shape4(dy), kernel_size, stride,
                padding, count_include_pad, &ah, &aw)
    _avg("avgpool2d_backward", dy, dx, &ah, &aw, True, num_threads)


def adaptive_avgpool2d_forward(const real[:, :, :, ::1] x not None,
                               real[:, :, :, ::1] out not None, int num_threads=1):
    """out = the mean of each of PyTorch's adaptive bins of x, as many as out's plane has
    (out of shape (N, C, 1, 1): global average pooling)."""
    cdef ranvier_pool_axis ah, aw
    check_threads("adaptive_avgpool2d_forward", num_threads)
    _adaptive_axes("adaptive_avgpool2d_forward", shape4(x), shape4(out), &ah, &aw)
    _avg("adaptive_avgpool2d_forward", x, out, &ah, &aw, False, num_threads)


def adaptive_avgpool2d_backward(const real[:, :, :, ::1] dy not None,
                                real[:, :, :, ::1] dx not None, int num_threads=1):
    """dx = the gradient of adaptive_avgpool2d_forward from x of dx's shape to dy's."""
    cdef ranvier_pool_axis ah, aw
    check_threads("adaptive_avgpool2d_backward", num_threads)
    _adaptive_axes("adaptive_avgpool2d_backward", shape4(dx), shape4(dy), &ah, &aw)
    _avg("adaptive_avgpool2d_backward", dy, dx, &ah, &aw, True, num_threads)
