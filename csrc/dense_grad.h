/* The first pass of a Dense layer's backward, per instruction set: for columns j0..j1 (at most
 * RANVIER_COLSUM_BLOCK of them),
 *     dz[i, j] = dy[i, j] * act'(y[i, j])     (act' written in terms of the output y)
 *     db[j]    = sum_i dz[i, j]               (in double, rows in order)
 * dz may be NULL (no activation: dz would equal dy), db may be NULL (no bias). The activation is
 * switched once per call, so each inner loop is a plain vectorisable sweep along a row.
 * Included by gemm_template.h users (gemm_<isa>.c) with REAL, FN and REAL_IS_DOUBLE defined. */
#ifndef RANVIER_COLSUM_BLOCK
#define RANVIER_COLSUM_BLOCK 64
#endif

#define RV_GRAD_ROWS(EXPR)                                                                     \
    for (ptrdiff_t i = 0; i < n; ++i) {                                                        \
        const REAL *restrict yi = y + i * d, *restrict gi = dy + i * d;                        \
        REAL *restrict zi = dz + i * d;                                                        \
        for (ptrdiff_t j = j0; j < j1; ++j) {                                                  \
            const REAL v = yi[j], g = (EXPR);                                                  \
            (void)v;                                                                           \
            zi[j] = g;                                                                         \
            acc[j - j0] += (double)g;                                                          \
        }                                                                                      \
    }

void GRAD_NAME(ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const REAL *y,
               const REAL *dy, REAL *dz, REAL *db, int act)
{
    double acc[RANVIER_COLSUM_BLOCK];
    for (ptrdiff_t j = 0; j < j1 - j0; ++j) acc[j] = 0.0;
    if (dz == NULL) { /* bias gradient alone */
        for (ptrdiff_t i = 0; i < n; ++i) {
            const REAL *restrict gi = dy + i * d;
            for (ptrdiff_t j = j0; j < j1; ++j) acc[j - j0] += (double)gi[j];
        }
    } else if (act == RANVIER_ACT_RELU) {
        RV_GRAD_ROWS(v <= (REAL)0 ? (REAL)0 : gi[j]) /* NaN passes dy, as torch */
    } else if (act == RANVIER_ACT_SIGMOID) {
        RV_GRAD_ROWS(gi[j] * (v * ((REAL)1 - v)))
    } else if (act == RANVIER_ACT_TANH) {
        RV_GRAD_ROWS(gi[j] * ((REAL)1 - v * v))
    } else {
        RV_GRAD_ROWS(gi[j])
    }
    if (db != NULL)
        for (ptrdiff_t j = j0; j < j1; ++j) db[j] = (REAL)acc[j - j0];
}

#undef RV_GRAD_ROWS
#undef GRAD_NAME
