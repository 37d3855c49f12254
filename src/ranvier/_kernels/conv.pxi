# Conv2d's kernels (csrc/conv_template.h: im2col per image into an L2-sized scratch, then this
# extension's GEMM, bias and activation in its epilogue). Included by matmul.pyx, so the GEMM objects
# are linked once. NCHW images, PyTorch's weight layout (out, in / groups, kh, kw).


cdef tuple _shape4(const real[:, :, :, ::1] a):
    return (a.shape[0], a.shape[1], a.shape[2], a.shape[3])


cdef ranvier_conv_geom _conv_geom(tuple xs, tuple ws, tuple ys, tuple stride, tuple padding,
                                  tuple dilation, Py_ssize_t groups, str fn) except *:
    """The geometry of a convolution from the shapes of x, w and y; ValueError unless they agree."""
    cdef ranvier_conv_geom g
    if len(stride) != 2 or len(padding) != 2 or len(dilation) != 2:
        raise ValueError(f"{fn}: stride, padding and dilation must be pairs")
    g.stride_h, g.stride_w = stride
    g.pad_h, g.pad_w = padding
    g.dil_h, g.dil_w = dilation
    if min(g.stride_h, g.stride_w, g.dil_h, g.dil_w, groups) < 1 or min(g.pad_h, g.pad_w) < 0:
        raise ValueError(f"{fn}: stride, dilation and groups must be >= 1 and padding >= 0, got "
                         f"stride={stride}, padding={padding}, dilation={dilation}, "
                         f"groups={groups}")
    g.groups = groups
    g.in_c, g.in_h, g.in_w = xs[1], xs[2], xs[3]
    g.out_c, g.k_h, g.k_w = ws[0], ws[2], ws[3]
    if g.in_c % groups or g.out_c % groups or ws[1] * groups != g.in_c:
        raise ValueError(f"{fn}: weight of shape {ws} with groups={groups} does not fit "
                         f"{g.in_c} input channels (weight.shape[1] * groups must equal them, "
                         f"and groups must divide the output channels)")
    if g.k_h < 1 or g.k_w < 1:
        raise ValueError(f"{fn}: kernel size must be positive, got weight of shape {ws}")
    span_h = g.dil_h * (g.k_h - 1) + 1
    span_w = g.dil_w * (g.k_w - 1) + 1
    if g.in_h + 2 * g.pad_h < span_h or g.in_w + 2 * g.pad_w < span_w:
        raise ValueError(f"{fn}: kernel ({g.k_h}, {g.k_w}) with dilation {dilation} is larger "
                         f"than the padded input ({g.in_h + 2 * g.pad_h}, "
                         f"{g.in_w + 2 * g.pad_w})")
    g.out_h = (g.in_h + 2 * g.pad_h - span_h) // g.stride_h + 1
    g.out_w = (g.in_w + 2 * g.pad_w - span_w) // g.stride_w + 1
    expected = (xs[0], g.out_c, g.out_h, g.out_w)
    if ys != expected:
        raise ValueError(f"{fn}: output has shape {ys}, the convolution of {xs} by {ws} gives "
                         f"{expected}")
    return g


def conv2d_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] bias,
                   real[:, :, :, ::1] out, tuple stride=(1, 1), tuple padding=(0, 0),
                   tuple dilation=(1, 1), Py_ssize_t groups=1, int act=0, double param=0.0,
                   int num_threads=1):
    """out := act(conv2d(x, w) + bias) (PyTorch's Conv2d; bias may be None), with the activation
    of the table (activations.ACTIVATIONS) applied in the GEMM epilogue."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef ranvier_conv_geom g = _conv_geom(_shape4(x), _shape4(w),
                                          _shape4(out), stride, padding, dilation, groups,
                                          "conv2d_forward")
    if bias is not None:
        check_len("conv2d_forward", "bias", bias.shape[0], g.out_c, "the output channels")
    check_threads("conv2d_forward", num_threads)
    cdef ranvier_act a = _act("conv2d_forward", act, param)
    cdef Py_ssize_t n = x.shape[0]
    cdef const real *pb = &bias[0] if bias is not None else NULL
    cdef int rc = 0
    if n == 0 or out.size == 0:
        return
    cdef Span outs[1]
    cdef Span ins[3]
    outs[0] = span_of("out", &out[0, 0, 0, 0], out.size * sizeof(real))
    ins[0] = span_of("x", &x[0, 0, 0, 0], x.size * sizeof(real))
    ins[1] = span_of("w", &w[0, 0, 0, 0], w.size * sizeof(real))
    ins[2] = span_of("bias", pb, (bias.shape[0] if bias is not None else 0) * sizeof(real))
    check_apart("conv2d_forward", outs, 1, ins, 3)
    with nogil:
        fp = fp_enter()
        if real is float:
            rc = ranvier_gemm_kernels_for(active_isa()).sconv2d_forward(
                &g, n, &x[0, 0, 0, 0], &w[0, 0, 0, 0], pb, a, &out[0, 0, 0, 0], num_threads)
        else:
            rc = ranvier_gemm_kernels_for(active_isa()).dconv2d_forward(
                &g, n, &x[0, 0, 0, 0], &w[0, 0, 0, 0], pb, a, &out[0, 0, 0, 0], num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("conv2d_forward: could not allocate scratch buffers")


def conv2d_backward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w,
                    const real[:, :, :, ::1] dz, real[:, :, :, ::1] dx, real[:, :, :, ::1] dw,
                    real[::1] db, tuple stride=(1, 1), tuple padding=(0, 0),
                    tuple dilation=(1, 1), Py_ssize_t groups=1, int num_threads=1):
    """From dz, the gradient of the convolution's output before its activation: dx (None: not
    wanted), dw and db (None: no bias), all overwritten."""
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef ranvier_conv_geom g = _conv_geom(_shape4(x), _shape4(w),
                                          _shape4(dz), stride, padding, dilation, groups,
                                          "conv2d_backward")
    if dx is not None and _shape4(dx) != _shape4(x):
        raise ValueError(f"conv2d_backward: dx has shape {_shape4(dx)}, x has "
                         f"{_shape4(x)}")
    if _shape4(dw) != _shape4(w):
        raise ValueError(f"conv2d_backward: dw has shape {_shape4(dw)}, w has "
                         f"{_shape4(w)}")
    if db is not None:
        check_len("conv2d_backward", "db", db.shape[0], g.out_c, "the output channels")
    check_threads("conv2d_backward", num_threads)
    cdef Py_ssize_t n = x.shape[0]
    cdef real *pdx = &dx[0, 0, 0, 0] if dx is not None and dx.size > 0 else NULL
    cdef real *pdb = &db[0] if db is not None else NULL
    cdef int rc = 0
    cdef Span outs[3]
    cdef Span ins[3]
    outs[0] = span_of("dx", pdx, (dx.size if dx is not None else 0) * sizeof(real))
    outs[1] = span_of("dw", &dw[0, 0, 0, 0] if dw.size > 0 else NULL, dw.size * sizeof(real))
    outs[2] = span_of("db", pdb, (db.shape[0] if db is not None else 0) * sizeof(real))
    ins[0] = span_of("x", &x[0, 0, 0, 0] if x.size > 0 else NULL, x.size * sizeof(real))
    ins[1] = span_of("w", &w[0, 0, 0, 0] if w.size > 0 else NULL, w.size * sizeof(real))
    ins[2] = span_of("dz", &dz[0, 0, 0, 0] if dz.size > 0 else NULL, dz.size * sizeof(real))
    check_apart("conv2d_backward", outs, 3, ins, 3)
    with nogil:
        fp = fp_enter()
        if real is float:
            rc = ranvier_gemm_kernels_for(active_isa()).sconv2d_backward(
                &g, n, &x[0, 0, 0, 0], &w[0, 0, 0, 0], &dz[0, 0, 0, 0], pdx, &dw[0, 0, 0, 0],
                pdb, num_threads)
        else:
            rc = ranvier_gemm_kernels_for(active_isa()).dconv2d_backward(
                &g, n, &x[0, 0, 0, 0], &w[0, 0, 0, 0], &dz[0, 0, 0, 0], pdx, &dw[0, 0, 0, 0],
                pdb, num_threads)
        ranvier_fp_leave(fp)
    if rc != 0:
        raise MemoryError("conv2d_backward: could not allocate scratch buffers")

