/* The pooling loops of one plane for one element type: included by pool.h with RV_T (float or
 * double) and RV_SFX (_f32 or _f64) defined. x is an H x W plane, y/dy an OH x OW plane, indices
 * are flat within the input plane (h * W + w, as PyTorch's return_indices). */

#define RV_POOL_FN(name) RV_POOL_CAT(name, RV_SFX)

/* One input v (at flat place `at`) of a max window: it becomes the maximum when larger, or when
 * a NaN (so the last NaN wins, as in PyTorch). Masks, not branches: where the maximum lies is
 * random, and the mispredicted branches made the loop 4x slower (measured on Zen 4). */
static inline void RV_POOL_FN(rv_max_step)(RV_T *m, ptrdiff_t *best, RV_T v, ptrdiff_t at)
{
    const ptrdiff_t take = -(ptrdiff_t)((v > *m) | (v != v));   /* all ones or 0 */
    RV_POOL_SELECT(*m, v, take);
    *best = (at & take) | (*best & ~take);
}

/* rv_maxpool_plane for unpadded 2x2 windows (any stride): every window lies inside the plane,
 * so its four inputs are read in the general loop's order with no window arithmetic. */
static inline void RV_POOL_FN(rv_maxpool_plane_2x2)(const ranvier_pool_axis *ah,
                                                    const ranvier_pool_axis *aw, const RV_T *x,
                                                    RV_T *y, int64_t *idx)
{
    const ptrdiff_t in_w = aw->in_len, out_w = aw->out_len, sh = ah->s, sw = aw->s;
    for (ptrdiff_t oh = 0; oh < ah->out_len; ++oh) {
        const ptrdiff_t row = oh * sh * in_w;
        for (ptrdiff_t ow = 0; ow < out_w; ++ow) {
            const ptrdiff_t at[4] = {row + ow * sw, row + ow * sw + 1, row + in_w + ow * sw,
                                     row + in_w + ow * sw + 1};
            RV_T m = x[at[0]];
            ptrdiff_t best = at[0];
            for (int i = 1; i < 4; ++i) RV_POOL_FN(rv_max_step)(&m, &best, x[at[i]], at[i]);
            y[oh * out_w + ow] = m;
            idx[oh * out_w + ow] = best;
        }
    }
}

/* y = the maximum of each window, idx = where it is (the first of equal values; a NaN wins, the
 * last NaN of the window, as PyTorch propagates NaN). */
static inline void RV_POOL_FN(rv_maxpool_plane)(const ranvier_pool_axis *ah,
                                                const ranvier_pool_axis *aw, const RV_T *x,
                                                RV_T *y, int64_t *idx)
{
    ptrdiff_t oh, ow, h, w, h0, h1, w0, w1, len, best;
    RV_T m;
    if (rv_pool_axis_k2_unpadded(ah) && rv_pool_axis_k2_unpadded(aw)) {
        RV_POOL_FN(rv_maxpool_plane_2x2)(ah, aw, x, y, idx);
        return;
    }
    for (oh = 0; oh < ah->out_len; ++oh) {
        rv_pool_window(ah, oh, &h0, &h1, &len);
        for (ow = 0; ow < aw->out_len; ++ow) {
            rv_pool_window(aw, ow, &w0, &w1, &len);
            best = h0 * aw->in_len + w0;
            m = -(RV_T)INFINITY;
            for (h = h0; h < h1; ++h) {
                for (w = w0; w < w1; ++w)
                    RV_POOL_FN(rv_max_step)(&m, &best, x[h * aw->in_len + w], h * aw->in_len + w);
            }
            y[oh * aw->out_len + ow] = m;
            idx[oh * aw->out_len + ow] = best;
        }
    }
}

/* dx = 0, then dy scattered through the indices (added where windows share their maximum).
 * Returns the number of indices outside [0, nin), which are skipped. */
static inline ptrdiff_t RV_POOL_FN(rv_maxpool_backward_plane)(ptrdiff_t nin, ptrdiff_t nout,
                                                              const RV_T *dy, const int64_t *idx,
                                                              RV_T *dx)
{
    ptrdiff_t i, bad = 0;
    for (i = 0; i < nin; ++i) dx[i] = 0;
    for (i = 0; i < nout; ++i) {
        int64_t j = idx[i];
        if (j < 0 || j >= nin) {
            ++bad;
            continue;
        }
        dx[j] += dy[i];
    }
    return bad;
}

/* y = the mean of each window (summed in double, divided by the window's divisor). */
static inline void RV_POOL_FN(rv_avgpool_plane)(const ranvier_pool_axis *ah,
                                                const ranvier_pool_axis *aw, const RV_T *x,
                                                RV_T *y)
{
    ptrdiff_t oh, ow, h, w, h0, h1, w0, w1, lh, lw;
    double acc;
    for (oh = 0; oh < ah->out_len; ++oh) {
        rv_pool_window(ah, oh, &h0, &h1, &lh);
        for (ow = 0; ow < aw->out_len; ++ow) {
            rv_pool_window(aw, ow, &w0, &w1, &lw);
            acc = 0.0;
            for (h = h0; h < h1; ++h)
                for (w = w0; w < w1; ++w) acc += x[h * aw->in_len + w];
            y[oh * aw->out_len + ow] = (RV_T)(acc / (double)(lh * lw));
        }
    }
}

/* dx = 0, then each dy / divisor added to its window's inputs (windows in output order). */
static inline void RV_POOL_FN(rv_avgpool_backward_plane)(const ranvier_pool_axis *ah,
                                                         const ranvier_pool_axis *aw,
                                                         const RV_T *dy, RV_T *dx)
{
    ptrdiff_t oh, ow, h, w, h0, h1, w0, w1, lh, lw, i;
    RV_T g;
    for (i = 0; i < ah->in_len * aw->in_len; ++i) dx[i] = 0;
    for (oh = 0; oh < ah->out_len; ++oh) {
        rv_pool_window(ah, oh, &h0, &h1, &lh);
        for (ow = 0; ow < aw->out_len; ++ow) {
            rv_pool_window(aw, ow, &w0, &w1, &lw);
            g = (RV_T)((double)dy[oh * aw->out_len + ow] / (double)(lh * lw));
            for (h = h0; h < h1; ++h)
                for (w = w0; w < w1; ++w) dx[h * aw->in_len + w] += g;
        }
    }
}

#undef RV_POOL_FN
