/* Row primitives of the fused softmax + cross-entropy (softmax_ce_template.h), per dtype:
 *   ce_row_max_T(z, d)                       max of a row
 *   ce_row_exp_sum_T(z, m, g, d, zn, &mn)    g = exp(z - m), returns sum(g) in double, and
 *                                            mn = max of row zn (the next row, or z again)
 *   ce_scale_T(g, c, d)                      g *= c
 * float: explicit vectors (simd.h) and a polynomial exp; double: plain loops and libm's exp.
 *
 * Folding the next row's max into the exp loop lets its loads from memory overlap this row's
 * arithmetic; a separate max pass reads z from memory with nothing to overlap (~1.5x slower on a
 * 4096 x 4096 problem). */
#include "simd.h"

/* Plain loops, for double (libm's exp) and for float where there are no vector types. omp simd
 * vectorises the reductions (a plain if-max loop does not). A NaN may or may not win the max; the
 * exp pass makes the row NaN either way. */
#define CE_PLAIN_ROWS(T, SUF, EXP)                                                             \
    static inline T ce_row_max_##SUF(const T *z, ptrdiff_t d)                                  \
    {                                                                                          \
        T m = z[0];                                                                            \
        RV_PRAGMA(omp simd reduction(max : m))                                                 \
        for (ptrdiff_t j = 1; j < d; ++j) m = z[j] > m ? z[j] : m;                             \
        return m;                                                                              \
    }                                                                                          \
    static inline double ce_row_exp_sum_##SUF(const T *z, T m, T *g, ptrdiff_t d, const T *zn, \
                                              T *m_next)                                       \
    {                                                                                          \
        double s = 0.0;                                                                        \
        T mn = zn[0];                                                                          \
        RV_PRAGMA(omp simd reduction(+ : s) reduction(max : mn))                               \
        for (ptrdiff_t j = 0; j < d; ++j) {                                                    \
            const T e = EXP(z[j] - m);                                                         \
            g[j] = e;                                                                          \
            s += (double)e;                                                                    \
            mn = zn[j] > mn ? zn[j] : mn;                                                      \
        }                                                                                      \
        *m_next = mn;                                                                          \
        return s;                                                                              \
    }                                                                                          \
    static inline void ce_scale_##SUF(T *g, T c, ptrdiff_t d)                                  \
    {                                                                                          \
        RV_SIMD for (ptrdiff_t j = 0; j < d; ++j) g[j] *= c;                                   \
    }

CE_PLAIN_ROWS(double, f64, exp)
#if RV_NF == 1
CE_PLAIN_ROWS(float, f32, rv_expf_nonpos)
#else
/* e^x for x <= 0 or NaN, as rv_expf_nonpos in fastmath.h, on a vector. */
static inline rv_vf ce_vexpf_nonpos(rv_vf x)
{
    x = rv_max(rv_set1(RV_EXPF_ZERO_BELOW), x); /* NaN x: max returns x */
    const rv_vf z = rv_sub(rv_fma(x, rv_set1(RV_EXPF_LOG2E), rv_set1(RV_EXPF_MAGIC)),
                           rv_set1(RV_EXPF_MAGIC));
    rv_vf r = rv_fnma(z, rv_set1(RV_EXPF_LN2_HI), x);
    r = rv_fnma(z, rv_set1(RV_EXPF_LN2_LO), r);
    const rv_vf r2 = rv_mul(r, r);
    rv_vf p = rv_set1(RV_EXPF_P0);
    p = rv_fma(p, r, rv_set1(RV_EXPF_P1));
    p = rv_fma(p, r, rv_set1(RV_EXPF_P2));
    p = rv_fma(p, r, rv_set1(RV_EXPF_P3));
    p = rv_fma(p, r, rv_set1(RV_EXPF_P4));
    p = rv_fma(p, r, rv_set1(RV_EXPF_P5));
    p = rv_fma(p, r2, rv_add(r, rv_set1(1.0f)));
    return rv_mul(p, rv_exp2i(z));
}

static inline float ce_row_max_f32(const float *z, ptrdiff_t d)
{
    rv_vf m = rv_set1(-HUGE_VALF);
    ptrdiff_t j = 0;
    for (; j + RV_NF <= d; j += RV_NF) m = rv_max(rv_loadu(z + j), m);
    if (j < d) m = rv_max(rv_load_tail(z + j, d - j, -HUGE_VALF), m);
    return rv_hmax(m);
}

static inline double ce_row_exp_sum_f32(const float *z, float m, float *g, ptrdiff_t d,
                                        const float *zn, float *m_next)
{
    const rv_vf vm = rv_set1(m);
    rv_vf mn = rv_set1(-HUGE_VALF);
    rv_vd s_lo = rv_dzero(), s_hi = rv_dzero();
    ptrdiff_t j = 0;
    for (; j + RV_NF <= d; j += RV_NF) {
        const rv_vf e = ce_vexpf_nonpos(rv_sub(rv_loadu(z + j), vm));
        rv_storeu(g + j, e);
        rv_dacc(&s_lo, &s_hi, e);
        mn = rv_max(rv_loadu(zn + j), mn);
    }
    if (j < d) { /* lanes past the row load -inf: exp gives 0, max ignores them */
        const rv_vf e = ce_vexpf_nonpos(rv_sub(rv_load_tail(z + j, d - j, -HUGE_VALF), vm));
        rv_store_tail(g + j, e, d - j);
        rv_dacc(&s_lo, &s_hi, e);
        mn = rv_max(rv_load_tail(zn + j, d - j, -HUGE_VALF), mn);
    }
    *m_next = rv_hmax(mn);
    return rv_dsum(s_lo, s_hi);
}

static inline void ce_scale_f32(float *g, float c, ptrdiff_t d)
{
    const rv_vf vc = rv_set1(c);
    ptrdiff_t j = 0;
    for (; j + RV_NF <= d; j += RV_NF) rv_storeu(g + j, rv_mul(rv_loadu(g + j), vc));
    if (j < d) rv_store_tail(g + j, rv_mul(rv_load_tail(g + j, d - j, 0.0f), vc), d - j);
}

#endif
