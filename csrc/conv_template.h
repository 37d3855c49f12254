/* 2-D convolution (PyTorch's Conv2d: NCHW images, weight (out, in/groups, kh, kw)) on this unit's
 * GEMM. Included at the end of gemm_template.h, so REAL, FN and GEMM_NAME are this unit's.
 *
 * Per image and group, with K = in/groups * kh * kw and P = out_h * out_w:
 *   forward          y[co, p]  = act(bias[co] + sum_k w[co, k] cols[k, p])
 *   backward, data   dcols     = w.T @ dz, then dx += col2im(dcols)
 *   backward, weight dw       += dz @ cols.T,   db += sum_p dz[co, p]
 * where cols[k, p] is the input under kernel tap k = (c, i, j) (PyTorch's weight order) at output
 * pixel p, zero in the padding. cols lives in a per-thread scratch of K x P values: one image's
 * worth, so it stays in L2 for the GEMM that reads it right after it is written.
 *
 * Images are independent in the forward and data passes (any thread takes any image). The weight
 * gradient sums over images: a fixed number of image chunks (depending on the batch only) each sum
 * their images in order into their own partial, and the partials are added in chunk order, so the
 * result is the same for any number of threads. */

#ifndef RV_THREAD_NUM_DEFINED
#define RV_THREAD_NUM_DEFINED
#if defined(_OPENMP)
#include <omp.h>
static int rv_thread_num(void) { return omp_get_thread_num(); }
#else
static int rv_thread_num(void) { return 0; }
#endif
#endif

/* cols[k, p] for the channels [c0, c0 + cin) of one image x (C x H x W). */
static void FN(im2col)(const ranvier_conv_geom *g, const REAL *x, ptrdiff_t c0, ptrdiff_t cin,
                       REAL *restrict cols)
{
    const ptrdiff_t H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, P = OH * OW;
    for (ptrdiff_t c = 0; c < cin; ++c) {
        const REAL *xc = x + (c0 + c) * H * W;
        for (ptrdiff_t i = 0; i < g->k_h; ++i)
            for (ptrdiff_t j = 0; j < g->k_w; ++j) {
                REAL *row = cols + ((c * g->k_h + i) * g->k_w + j) * P;
                for (ptrdiff_t oh = 0; oh < OH; ++oh) {
                    REAL *out = row + oh * OW;
                    const ptrdiff_t ih = oh * g->stride_h - g->pad_h + i * g->dil_h;
                    if (ih < 0 || ih >= H) {
                        for (ptrdiff_t ow = 0; ow < OW; ++ow) out[ow] = (REAL)0;
                        continue;
                    }
                    const REAL *xr = xc + ih * W;
                    const ptrdiff_t iw0 = j * g->dil_w - g->pad_w, sw = g->stride_w;
                    /* ow range whose column iw0 + ow * sw lies inside the row */
                    ptrdiff_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
                    ptrdiff_t hi = iw0 >= W ? 0 : (W - 1 - iw0) / sw + 1;
                    if (hi > OW) hi = OW;
                    if (lo > hi) lo = hi;
                    for (ptrdiff_t ow = 0; ow < lo; ++ow) out[ow] = (REAL)0;
                    if (sw == 1)
                        memcpy(out + lo, xr + iw0 + lo, sizeof(REAL) * (size_t)(hi - lo));
                    else
                        for (ptrdiff_t ow = lo; ow < hi; ++ow) out[ow] = xr[iw0 + ow * sw];
                    for (ptrdiff_t ow = hi; ow < OW; ++ow) out[ow] = (REAL)0;
                }
            }
    }
}

/* dx[c0 + c] += the sum of cols over the taps that read each input pixel (im2col's adjoint). */
static void FN(col2im_add)(const ranvier_conv_geom *g, const REAL *cols, ptrdiff_t c0,
                           ptrdiff_t cin, REAL *dx)
{
    const ptrdiff_t H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, P = OH * OW;
    for (ptrdiff_t c = 0; c < cin; ++c) {
        REAL *dxc = dx + (c0 + c) * H * W;
        for (ptrdiff_t i = 0; i < g->k_h; ++i)
            for (ptrdiff_t j = 0; j < g->k_w; ++j) {
                const REAL *row = cols + ((c * g->k_h + i) * g->k_w + j) * P;
                for (ptrdiff_t oh = 0; oh < OH; ++oh) {
                    const ptrdiff_t ih = oh * g->stride_h - g->pad_h + i * g->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    REAL *dr = dxc + ih * W;
                    const REAL *in = row + oh * OW;
                    const ptrdiff_t iw0 = j * g->dil_w - g->pad_w, sw = g->stride_w;
                    ptrdiff_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
                    ptrdiff_t hi = iw0 >= W ? 0 : (W - 1 - iw0) / sw + 1;
                    if (hi > OW) hi = OW;
                    for (ptrdiff_t ow = lo; ow < hi; ++ow) dr[iw0 + ow * sw] += in[ow];
                }
            }
    }
}

/* Scratch for ``threads`` threads: the cols of one image and group each (NULL: out of memory).
 * Allocated before the parallel region, so no thread can miss a worksharing loop on failure. */
static REAL *FN(conv_scratch)(const ranvier_conv_geom *g, int threads, size_t *per_thread)
{
    const size_t k = (size_t)(g->in_c / g->groups) * g->k_h * g->k_w;
    /* rounded up to a cache line, so threads never share one */
    *per_thread = (k * (size_t)(g->out_h * g->out_w) + 15) / 16 * 16;
    return (REAL *)rv_aligned_alloc(sizeof(REAL) * *per_thread * (size_t)threads);
}

/* Each image function returns 0, or -1 when a GEMM could not allocate its packing buffers. */
static int FN(conv_forward_image)(const ranvier_conv_geom *g, const REAL *x, const REAL *w,
                                  const REAL *bias, ranvier_act act, REAL *y, REAL *cols)
{
    int rc = 0;
    const ptrdiff_t G = g->groups, cin = g->in_c / G, cout = g->out_c / G;
    const ptrdiff_t K = cin * g->k_h * g->k_w, P = g->out_h * g->out_w;
    for (ptrdiff_t gi = 0; gi < G; ++gi) {
        REAL *yg = y + gi * cout * P;
        FN(im2col)(g, x, gi * cin, cin, cols);
        /* The bias is per output channel, a row of y: written first, then the product is added
         * (beta = 1), and the activation runs in the GEMM's epilogue. */
        if (bias)
            for (ptrdiff_t co = 0; co < cout; ++co)
                for (ptrdiff_t p = 0; p < P; ++p) yg[co * P + p] = bias[gi * cout + co];
        rc |= GEMM_NAME(cout, P, K, (REAL)1, w + gi * cout * K, K, 1, cols, P, 1,
                        bias ? (REAL)1 : (REAL)0, yg, P, 1, NULL, act, 1);
    }
    return rc;
}

static int FN(conv_backward_data_image)(const ranvier_conv_geom *g, const REAL *w,
                                        const REAL *dz, REAL *dx, REAL *cols)
{
    int rc = 0;
    const ptrdiff_t G = g->groups, cin = g->in_c / G, cout = g->out_c / G;
    const ptrdiff_t K = cin * g->k_h * g->k_w, P = g->out_h * g->out_w;
    const ranvier_act none = {RANVIER_ACT_NONE, 0.0};
    memset(dx, 0, sizeof(REAL) * (size_t)(g->in_c * g->in_h * g->in_w));
    for (ptrdiff_t gi = 0; gi < G; ++gi) {
        /* dcols (K x P) = w_g.T (K x cout) @ dz_g (cout x P) */
        rc |= GEMM_NAME(K, P, cout, (REAL)1, w + gi * cout * K, 1, K, dz + gi * cout * P, P, 1,
                        (REAL)0, cols, P, 1, NULL, none, 1);
        FN(col2im_add)(g, cols, gi * cin, cin, dx);
    }
    return rc;
}

/* dw (+)= dz @ cols.T and db (+)= row sums of dz, for one image; ``accumulate`` 0 overwrites. */
static int FN(conv_backward_weight_image)(const ranvier_conv_geom *g, const REAL *x,
                                          const REAL *dz, REAL *dw, REAL *db, int accumulate,
                                          REAL *cols)
{
    int rc = 0;
    const ptrdiff_t G = g->groups, cin = g->in_c / G, cout = g->out_c / G;
    const ptrdiff_t K = cin * g->k_h * g->k_w, P = g->out_h * g->out_w;
    const ranvier_act none = {RANVIER_ACT_NONE, 0.0};
    for (ptrdiff_t gi = 0; gi < G; ++gi) {
        FN(im2col)(g, x, gi * cin, cin, cols);
        rc |= GEMM_NAME(cout, K, P, (REAL)1, dz + gi * cout * P, P, 1, cols, 1, P,
                        accumulate ? (REAL)1 : (REAL)0, dw + gi * cout * K, K, 1, NULL, none, 1);
    }
    if (db)
        for (ptrdiff_t co = 0; co < g->out_c; ++co) {
            const REAL *row = dz + co * P;
            REAL s = 0;
            for (ptrdiff_t p = 0; p < P; ++p) s += row[p];
            db[co] = accumulate ? db[co] + s : s;
        }
    return rc;
}

int CONV_FORWARD_NAME(const ranvier_conv_geom *g, ptrdiff_t n, const REAL *x, const REAL *w,
                      const REAL *bias, ranvier_act act, REAL *y, int nthreads)
{
    const ptrdiff_t x_img = g->in_c * g->in_h * g->in_w, y_img = g->out_c * g->out_h * g->out_w;
    if (n < 2) nthreads = 1;
    size_t per_thread;
    REAL *scratch = FN(conv_scratch)(g, nthreads, &per_thread);
    if (!scratch) return -1;
    int failed = 0;
    const ranvier_fpstate fp_bits = ranvier_fp_flush_bits();
#pragma omp parallel num_threads(nthreads) if (nthreads > 1) reduction(| : failed)
    {
        const ranvier_fpstate fp = ranvier_fp_adopt(fp_bits); /* the caller's flush mode */
        REAL *cols = scratch + (size_t)rv_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < n; ++i)
            failed |= FN(conv_forward_image)(g, x + i * x_img, w, bias, act, y + i * y_img, cols);
        ranvier_fp_leave(fp);
    }
    rv_aligned_free(scratch);
    return failed ? -1 : 0;
}

/* Chunks of the batch whose weight-gradient partials are summed in order (a function of n only). */
static ptrdiff_t FN(wgrad_chunks)(ptrdiff_t n)
{
    return n < RANVIER_CONV_WGRAD_CHUNKS ? n : RANVIER_CONV_WGRAD_CHUNKS;
}

/* dx (may be NULL: not needed), dw and db (may be NULL: no bias) from dz, the gradient of the
 * convolution's output (before any activation). */
int CONV_BACKWARD_NAME(const ranvier_conv_geom *g, ptrdiff_t n, const REAL *x, const REAL *w,
                       const REAL *dz, REAL *dx, REAL *dw, REAL *db, int nthreads)
{
    const ptrdiff_t x_img = g->in_c * g->in_h * g->in_w, y_img = g->out_c * g->out_h * g->out_w;
    const ptrdiff_t w_size = g->out_c * (g->in_c / g->groups) * g->k_h * g->k_w;
    const ptrdiff_t chunks = FN(wgrad_chunks)(n);
    if (n == 0) { /* no images: the gradients of the weights are zero */
        memset(dw, 0, sizeof(REAL) * (size_t)w_size);
        if (db) memset(db, 0, sizeof(REAL) * (size_t)g->out_c);
        return 0;
    }
    /* partials of chunks 1.. (chunk 0 writes dw and db directly) */
    REAL *partial = NULL;
    if (chunks > 1) {
        partial = (REAL *)rv_aligned_alloc(sizeof(REAL) * (size_t)(chunks - 1) *
                                           (size_t)(w_size + g->out_c));
        if (!partial) return -1;
    }
    if (n < 2) nthreads = 1;
    size_t per_thread;
    REAL *scratch = FN(conv_scratch)(g, nthreads, &per_thread);
    if (!scratch) {
        rv_aligned_free(partial);
        return -1;
    }
    int failed = 0;
    const ranvier_fpstate fp_bits = ranvier_fp_flush_bits();
#pragma omp parallel num_threads(nthreads) if (nthreads > 1) reduction(| : failed)
    {
        const ranvier_fpstate fp = ranvier_fp_adopt(fp_bits); /* the caller's flush mode */
        REAL *cols = scratch + (size_t)rv_thread_num() * per_thread;
        if (dx) {
#pragma omp for schedule(static) nowait
            for (ptrdiff_t i = 0; i < n; ++i)
                failed |= FN(conv_backward_data_image)(g, w, dz + i * y_img, dx + i * x_img, cols);
        }
#pragma omp for schedule(static)
        for (ptrdiff_t c = 0; c < chunks; ++c) {
            REAL *dwc = c == 0 ? dw : partial + (c - 1) * (w_size + g->out_c);
            REAL *dbc = db ? (c == 0 ? db : dwc + w_size) : NULL;
            const ptrdiff_t i0 = c * n / chunks, i1 = (c + 1) * n / chunks;
            for (ptrdiff_t i = i0; i < i1; ++i)
                failed |= FN(conv_backward_weight_image)(g, x + i * x_img, dz + i * y_img, dwc,
                                                         dbc, i > i0, cols);
        }
        ranvier_fp_leave(fp);
    }
    rv_aligned_free(scratch);
    if (!failed)
        for (ptrdiff_t c = 1; c < chunks; ++c) {
            const REAL *pc = partial + (c - 1) * (w_size + g->out_c);
            for (ptrdiff_t t = 0; t < w_size; ++t) dw[t] += pc[t];
            if (db)
                for (ptrdiff_t co = 0; co < g->out_c; ++co) db[co] += pc[w_size + co];
        }
    rv_aligned_free(partial);
    return failed ? -1 : 0;
}
