/* The elementwise kernel family: activations forward and backward, bias + activation, the Dense
 * backward's activation/bias-gradient pass (all generated from the activation table,
 * activations.h), the fused softmax + cross-entropy (softmax_ce_template.h) and the bfloat16
 * conversions (bf16.h). One table of
 * kernels per instruction set (elementwise_<isa>.c); ranvier_ew_kernels_for(isa) returns it. */
#ifndef RANVIER_ELEMENTWISE_H
#define RANVIER_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>

#include "activations.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One fused softmax + cross-entropy problem (rows x d, C-contiguous), for
 * ranvier_ew()->softmax_ce_<dtype>(args, r0, r1), which handles rows [r0, r1):
 *   row_loss[i] = -sum_j u_ij log softmax(z_i)_j,   g_i = scale * (softmax(z_i) * sum(u_i) - u_i)
 * with the effective target u: labels (t NULL): u_ij = w_j (eps_c + keep [j == labels[i]]);
 * probabilities: u_ij = w_j (keep t_ij + eps_c). w NULL means all 1 (then wsum = d). plain marks
 * labels without weights or smoothing (eps_c 0, keep 1), the fast path; hit (labels only, may be
 * NULL) gets 1 where the first argmax of the row is the label. */
typedef struct ranvier_ce_args {
    const void *z;         /* logits (rows, d), float or double */
    void *g;               /* gradient (rows, d), same dtype */
    double *row_loss;      /* (rows,) */
    const int64_t *labels; /* (rows,) in [0, d), checked by the caller; or NULL with t */
    const void *t;         /* targets (rows, d), same dtype; NULL for labels */
    signed char *hit;      /* (rows,) or NULL */
    const double *w;       /* (d,) class weights or NULL */
    double scale, eps_c, keep, wsum;
    ptrdiff_t d;
    int plain;
} ranvier_ce_args;

/* The kernels of one instruction set (activation_loops.h says what each computes). */
typedef struct ranvier_ew_kernels {
    void (*act_forward_f32)(ranvier_act a, const float *x, float *y, ptrdiff_t n);
    void (*act_forward_f64)(ranvier_act a, const double *x, double *y, ptrdiff_t n);
    void (*act_backward_f32)(ranvier_act a, const float *v, const float *dy, float *dx,
                             ptrdiff_t n);
    void (*act_backward_f64)(ranvier_act a, const double *v, const double *dy, double *dx,
                             ptrdiff_t n);
    void (*bias_act_f32)(ranvier_act a, const float *z, const float *b, float *y, ptrdiff_t rows,
                         ptrdiff_t cols);
    void (*bias_act_f64)(ranvier_act a, const double *z, const double *b, double *y,
                         ptrdiff_t rows, ptrdiff_t cols);
    void (*dense_grad_f32)(ranvier_act a, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1,
                           const float *v, const float *dy, float *dz, float *db);
    void (*dense_grad_f64)(ranvier_act a, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1,
                           const double *v, const double *dy, double *dz, double *db);
    void (*softmax_ce_f32)(const ranvier_ce_args *a, ptrdiff_t r0, ptrdiff_t r1);
    void (*softmax_ce_f64)(const ranvier_ce_args *a, ptrdiff_t r0, ptrdiff_t r1);
    /* bfloat16 conversions (bf16.h): y[i] = bf16(x[i]), rounded to nearest even; and back. */
    void (*to_bf16)(const float *x, uint16_t *y, ptrdiff_t n);
    void (*from_bf16)(const uint16_t *x, float *y, ptrdiff_t n);
} ranvier_ew_kernels;

/* The table for an ISA (RANVIER_ISA_*, isa.h) this CPU supports; the generic one otherwise. */
const ranvier_ew_kernels *ranvier_ew_kernels_for(int isa);

extern const ranvier_ew_kernels ranvier_ew_generic;
#if RANVIER_HAVE_X86_SIMD
extern const ranvier_ew_kernels ranvier_ew_avx2, ranvier_ew_avx512;
#endif
#ifdef __cplusplus
}
#endif
#endif
