/* The per-ISA instances of the elementwise kernels. Included by elementwise_<isa>.c with EW_ISA
 * set to the suffix; each such file is compiled with its own instruction-set flags and exports
 * its kernels as the table ranvier_ew_<isa>. The activation loops come from the activation table
 * (activation_kernels.h); this file only gives them the table's signatures. */
#include "activation_kernels.h"
#include "elementwise.h"

#define EW_CAT2(a, b) a##_##b
#define EW_CAT(a, b) EW_CAT2(a, b)
#define EW_NAME(name) EW_CAT(name, EW_ISA)

#define EW_WRAP(T, sfx)                                                                          \
    static void EW_NAME(act_forward_##sfx)(ranvier_act a, const T *x, T *y, ptrdiff_t n)        \
    {                                                                                            \
        rv_act_forward_##sfx(a, x, y, n);                                                        \
    }                                                                                            \
    static void EW_NAME(act_backward_##sfx)(ranvier_act a, const T *v, const T *dy, T *dx,      \
                                            ptrdiff_t n)                                         \
    {                                                                                            \
        rv_act_backward_##sfx(a, v, dy, dx, n);                                                  \
    }                                                                                            \
    static void EW_NAME(bias_act_##sfx)(ranvier_act a, const T *z, const T *b, T *y,            \
                                        ptrdiff_t rows, ptrdiff_t cols)                          \
    {                                                                                            \
        rv_bias_act_##sfx(a, z, cols, b, y, cols, rows, cols);                                   \
    }                                                                                            \
    static void EW_NAME(dense_grad_##sfx)(ranvier_act a, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, \
                                          ptrdiff_t j1, const T *v, const T *dy, T *dz, T *db)   \
    {                                                                                            \
        rv_dense_grad_##sfx(a, n, d, j0, j1, v, dy, dz, db);                                     \
    }
EW_WRAP(float, f32)
EW_WRAP(double, f64)
#undef EW_WRAP

/* softmax + cross-entropy, once per dtype */
#include "softmax_ce_rows.h"
#define CE_T float
#define CE_P(name) EW_CAT(name, f32)
#define CE_FN(name) EW_CAT(EW_NAME(name), f32)
#include "softmax_ce_template.h"
#undef CE_T
#undef CE_P
#undef CE_FN
#define CE_T double
#define CE_P(name) EW_CAT(name, f64)
#define CE_FN(name) EW_CAT(EW_NAME(name), f64)
#include "softmax_ce_template.h"
#undef CE_T
#undef CE_P
#undef CE_FN

/* bfloat16 conversions: integer work on the bits, vectorised by this unit's flags */
#include "bf16.h"
static void EW_NAME(to_bf16)(const float *x, uint16_t *y, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; ++i) y[i] = ranvier_f32_to_bf16(x[i]);
}
static void EW_NAME(from_bf16)(const uint16_t *x, float *y, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; ++i) y[i] = ranvier_bf16_to_f32(x[i]);
}

const ranvier_ew_kernels EW_NAME(ranvier_ew) = {
    EW_NAME(act_forward_f32),  EW_NAME(act_forward_f64),  EW_NAME(act_backward_f32),
    EW_NAME(act_backward_f64), EW_NAME(bias_act_f32),     EW_NAME(bias_act_f64),
    EW_NAME(dense_grad_f32),   EW_NAME(dense_grad_f64),   EW_CAT(EW_NAME(softmax_ce), f32),
    EW_CAT(EW_NAME(softmax_ce), f64), EW_NAME(to_bf16),       EW_NAME(from_bf16),
};
