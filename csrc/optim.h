/* Optimizer updates (torch.optim semantics) as single passes over contiguous (param, grad, state)
 * arrays. One translation unit per instruction set (optim_generic.c, optim_avx2.c,
 * optim_avx512.c) is compiled with its own flags from optim_impl.h, so the loops vectorise
 * (sqrt and divide included) for the CPU at hand; optim.c gives the table for the active one. Each call works
 * on one thread: callers split arrays into chunks for threads. */
#ifndef RANVIER_OPTIM_H
#define RANVIER_OPTIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Hyper-parameters of one SGD step, already rounded to the update's dtype where it matters. */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
} ranvier_sgd_params;

/* Hyper-parameters of one Adam step: step_size = lr / (1 - beta1^t), inv_sqrt_bc2 =
 * 1 / sqrt(1 - beta2^t), decay = 1 - lr * weight_decay (AdamW); one_minus_* formed in double. */
typedef struct {
    double beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, step_size,
        inv_sqrt_bc2, decay;
    int decoupled;
} ranvier_adam_params;

/* The updates of one instruction set. momentum_buf may be NULL when momentum == 0;
 * max_exp_avg_sq is NULL unless AMSGrad. */
typedef struct ranvier_optim_kernels {
    void (*sgd_f32)(const ranvier_sgd_params *h, float *param, const float *grad,
                    float *momentum_buf, ptrdiff_t n);
    void (*sgd_f64)(const ranvier_sgd_params *h, double *param, const double *grad,
                    double *momentum_buf, ptrdiff_t n);
    void (*adam_f32)(const ranvier_adam_params *h, float *param, const float *grad,
                     float *exp_avg, float *exp_avg_sq, float *max_exp_avg_sq, ptrdiff_t n);
    void (*adam_f64)(const ranvier_adam_params *h, double *param, const double *grad,
                     double *exp_avg, double *exp_avg_sq, double *max_exp_avg_sq, ptrdiff_t n);
} ranvier_optim_kernels;

/* The table for an ISA (isa.h); the generic one where this CPU cannot run it. */
const ranvier_optim_kernels *ranvier_optim_kernels_for(int isa);

extern const ranvier_optim_kernels ranvier_optim_generic;
#if RANVIER_HAVE_X86_SIMD
extern const ranvier_optim_kernels ranvier_optim_avx2, ranvier_optim_avx512;
#endif

#ifdef __cplusplus
}
#endif
#endif
