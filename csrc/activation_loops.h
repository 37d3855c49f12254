/* Every loop over the activation table (activations.h), for one dtype. Included twice by
 * activation_kernels.h, with RV_T (float or double) and RV_SFX (f32 or f64) defined; each
 * translation unit that includes it is compiled for one instruction set, and all of them inline
 * the same per-element functions, so the elementwise kernels, the GEMM epilogue and the Dense
 * backward give bitwise-equal results on a given ISA.
 *
 * Defines (static, so each ISA's unit has its own copy):
 *   rv_act_1_<sfx>(a, v)                           one element (strided stores)
 *   rv_act_forward_<sfx>(a, x, y, n)               y = act(x); y may be x
 *   rv_act_backward_<sfx>(a, v, dy, dx, n)         dx = dy * act'(v); dx may be dy
 *   rv_bias_act_<sfx>(a, z, ldz, b, y, ldy, rows, cols)  y = act(z + b) row by row (b may be NULL:
 *                                                  then y = act(z)); y may be z
 *   rv_dense_grad_<sfx>(a, n, d, j0, j1, v, dy, dz, db)  the Dense backward's first pass */

#define RV_CAT3_(a, b, c) a##b##c
#define RV_CAT3(a, b, c) RV_CAT3_(a, b, c)
#define RV_TFN(name) RV_CAT3(rv_, name, RV_SFX)          /* rv_<name><sfx> */
#define RV_ACT_FWD(name) RV_CAT3(rv_, name, RV_CAT3(_, RV_SFX, ))
#define RV_ACT_GRAD(name) RV_CAT3(rv_, name, RV_CAT3(_grad_, RV_SFX, ))

static inline RV_T RV_TFN(act_1_)(ranvier_act a, RV_T v)
{
    const RV_T p = (RV_T)a.param;
    switch (a.code) {
#define RV_CASE(CODE, name, code, needs)                                                         \
    case RANVIER_ACT_##CODE: return RV_ACT_FWD(name)(v, p);
        RANVIER_ACTIVATIONS(RV_CASE)
#undef RV_CASE
    }
    return v;
}

static inline void RV_TFN(act_forward_)(ranvier_act a, const RV_T *x, RV_T *y, ptrdiff_t n)
{
    const RV_T p = (RV_T)a.param;
    switch (a.code) {
#define RV_CASE(CODE, name, code, needs)                                                         \
    case RANVIER_ACT_##CODE:                                                                     \
        RV_SIMD for (ptrdiff_t i = 0; i < n; ++i) y[i] = RV_ACT_FWD(name)(x[i], p);             \
        break;
        RANVIER_ACTIVATIONS(RV_CASE)
#undef RV_CASE
    }
}

static inline void RV_TFN(act_backward_)(ranvier_act a, const RV_T *v, const RV_T *dy, RV_T *dx,
                                         ptrdiff_t n)
{
    const RV_T p = (RV_T)a.param;
    switch (a.code) {
#define RV_CASE(CODE, name, code, needs)                                                         \
    case RANVIER_ACT_##CODE:                                                                     \
        RV_SIMD for (ptrdiff_t i = 0; i < n; ++i) dx[i] = RV_ACT_GRAD(name)(v[i], dy[i], p);    \
        break;
        RANVIER_ACTIVATIONS(RV_CASE)
#undef RV_CASE
    }
}

/* Four rows per pass over b: with one row per pass, re-reading b (a cache-resident 16 KiB for
 * 4096 columns) beside the two streams to memory cost a quarter of the speed. */
static inline void RV_TFN(bias_act_)(ranvier_act a, const RV_T *z, ptrdiff_t ldz,
                                     const RV_T *restrict b, RV_T *y, ptrdiff_t ldy,
                                     ptrdiff_t rows, ptrdiff_t cols)
{
    const RV_T p = (RV_T)a.param;
    const ptrdiff_t c = cols;
    if (b == NULL) {
        for (ptrdiff_t r = 0; r < rows; ++r) RV_TFN(act_forward_)(a, z + r * ldz, y + r * ldy, c);
        return;
    }
    switch (a.code) {
#define RV_CASE(CODE, name, code, needs)                                                         \
    case RANVIER_ACT_##CODE: {                                                                   \
        ptrdiff_t r = 0;                                                                         \
        for (; r + 4 <= rows; r += 4) {                                                          \
            const RV_T *z0 = z + r * ldz, *z1 = z0 + ldz, *z2 = z1 + ldz, *z3 = z2 + ldz;         \
            RV_T *y0 = y + r * ldy, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;              \
            RV_SIMD for (ptrdiff_t i = 0; i < c; ++i)                                            \
            {                                                                                    \
                const RV_T bi = b[i];                                                            \
                y0[i] = RV_ACT_FWD(name)(z0[i] + bi, p);                                         \
                y1[i] = RV_ACT_FWD(name)(z1[i] + bi, p);                                         \
                y2[i] = RV_ACT_FWD(name)(z2[i] + bi, p);                                         \
                y3[i] = RV_ACT_FWD(name)(z3[i] + bi, p);                                         \
            }                                                                                    \
        }                                                                                        \
        for (; r < rows; ++r) {                                                                  \
            const RV_T *zr = z + r * ldz;                                                        \
            RV_T *yr = y + r * ldy;                                                              \
            RV_SIMD for (ptrdiff_t i = 0; i < c; ++i) yr[i] = RV_ACT_FWD(name)(zr[i] + b[i], p); \
        }                                                                                        \
        break;                                                                                   \
    }
        RANVIER_ACTIVATIONS(RV_CASE)
#undef RV_CASE
    }
}

/* The first pass of a Dense layer's backward for columns j0..j1 (at most RANVIER_COLSUM_BLOCK):
 *     dz[i, j] = act'(v[i, j]) applied to dy[i, j]  (v: the layer's output or pre-activation)
 *     db[j]    = sum_i dz[i, j]                     (in double, rows in order)
 * dz may be NULL (no activation: dz would equal dy), db may be NULL (no bias). The activation is
 * switched once per call, so each inner loop is a plain sweep along a row. */
#ifndef RANVIER_COLSUM_BLOCK
#define RANVIER_COLSUM_BLOCK 64
#endif
static inline void RV_TFN(dense_grad_)(ranvier_act a, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0,
                                       ptrdiff_t j1, const RV_T *v, const RV_T *dy, RV_T *dz,
                                       RV_T *db)
{
    const RV_T p = (RV_T)a.param;
    double acc[RANVIER_COLSUM_BLOCK];
    for (ptrdiff_t j = 0; j < j1 - j0; ++j) acc[j] = 0.0;
    if (dz == NULL) { /* bias gradient alone */
        for (ptrdiff_t i = 0; i < n; ++i) {
            const RV_T *restrict gi = dy + i * d;
            for (ptrdiff_t j = j0; j < j1; ++j) acc[j - j0] += (double)gi[j];
        }
    } else {
        switch (a.code) {
#define RV_CASE(CODE, name, code, needs)                                                         \
    case RANVIER_ACT_##CODE:                                                                     \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                      \
            const RV_T *restrict vi = v + i * d, *restrict gi = dy + i * d;                      \
            RV_T *restrict zi = dz + i * d;                                                      \
            for (ptrdiff_t j = j0; j < j1; ++j) {                                                \
                const RV_T g = RV_ACT_GRAD(name)(vi[j], gi[j], p);                               \
                zi[j] = g;                                                                       \
                acc[j - j0] += (double)g;                                                        \
            }                                                                                    \
        }                                                                                        \
        break;
            RANVIER_ACTIVATIONS(RV_CASE)
#undef RV_CASE
        }
    }
    if (db != NULL)
        for (ptrdiff_t j = j0; j < j1; ++j) db[j] = (RV_T)acc[j - j0];
}

#undef RV_TFN
#undef RV_ACT_FWD
#undef RV_ACT_GRAD
