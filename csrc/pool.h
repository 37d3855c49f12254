/* Pooling over the (H, W) planes of NCHW images: max (keeping the argmax for the backward pass),
 * average and adaptive average, float and double (pool_template.h, included once per type).
 * Each function does one plane; the caller (_kernels/pool.pyx) spreads the N * C planes over
 * threads. A plane is done start to finish by one thread in a fixed order, so results are the
 * same for any thread count; nothing is allocated.
 *
 * Windows along one axis (ranvier_pool_axis), as PyTorch computes them (ceil_mode=False):
 *   fixed     output o covers [o * s - p, o * s - p + k) of the padded axis, clipped to the input;
 *             the average divides by k (count_include_pad) or by the clipped length;
 *   adaptive  output o covers [floor(o * in / out), ceil((o + 1) * in / out)).
 * The divisor of a 2-D window is the product of its axes' lengths. */
#ifndef RANVIER_POOL_H
#define RANVIER_POOL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    ptrdiff_t in_len, out_len;   /* input and output length along the axis */
    ptrdiff_t k, s, p;    /* kernel, stride, padding (fixed windows) */
    int adaptive;         /* windows from in and out alone */
    int include_pad;      /* a fixed window's length counts its padding */
} ranvier_pool_axis;

/* The input range [*lo, *hi) that output o reads, and the length the average divides by. */
static inline void rv_pool_window(const ranvier_pool_axis *a, ptrdiff_t o, ptrdiff_t *lo,
                                  ptrdiff_t *hi, ptrdiff_t *len)
{
    ptrdiff_t l, h;
    if (a->adaptive) {
        l = (o * a->in_len) / a->out_len;
        h = ((o + 1) * a->in_len + a->out_len - 1) / a->out_len;
        *len = h - l;
    } else {
        l = o * a->s - a->p;
        h = l + a->k;
        if (l < 0) l = 0;
        if (h > a->in_len) h = a->in_len;
        *len = a->include_pad ? a->k : h - l;
    }
    *lo = l;
    *hi = h;
}

/* A fixed, unpadded window of length 2: inside the axis for every output. */
static inline int rv_pool_axis_k2_unpadded(const ranvier_pool_axis *a)
{
    return !a->adaptive && a->k == 2 && a->p == 0;
}

/* m = v where mask (0 or all ones) is set, by the bits: a select the compiler cannot turn back
 * into a branch. */
#define RV_POOL_SELECT(m, v, mask)                                                               \
    do {                                                                                         \
        union { RV_T f; RV_POOL_BITS u; } m_ = {m}, v_ = {v};                                    \
        m_.u = (v_.u & (RV_POOL_BITS)(mask)) | (m_.u & ~(RV_POOL_BITS)(mask));                   \
        (m) = m_.f;                                                                              \
    } while (0)

#define RV_POOL_CAT_(a, b) a##b
#define RV_POOL_CAT(a, b) RV_POOL_CAT_(a, b)

#define RV_T float
#define RV_POOL_BITS uint32_t
#define RV_SFX _f32
#include "pool_template.h"
#undef RV_T
#undef RV_POOL_BITS
#undef RV_SFX

#define RV_T double
#define RV_POOL_BITS uint64_t
#define RV_SFX _f64
#include "pool_template.h"
#undef RV_T
#undef RV_POOL_BITS
#undef RV_SFX

#endif
