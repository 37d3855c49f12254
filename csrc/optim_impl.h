/* The per-ISA instances of the optimizer updates. Included by optim_<isa>.c with OPT_ISA set to
 * the suffix. The arithmetic is exactly that of torch.optim's single-tensor path written in the
 * parameter's dtype; the only double step is the L2 term g + wd * p (float32 rounding there
 * would cost ~1e-3 relative error when wd * p cancels g). The hot loops have no branches: each
 * variant (weight decay or not, momentum or not, AMSGrad or not) is its own loop. */
#include <math.h>
#include "optim.h"

#define OPT_CAT2(a, b) a##_##b
#define OPT_CAT(a, b) OPT_CAT2(a, b)
#define OPT_NAME(name) OPT_CAT(name, OPT_ISA)
#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

#define RV_DEFINE_OPTIM(REAL, SUF, SQRT)                                                        \
    static inline REAL rv_decayed_##SUF(REAL g, REAL p, double wd)                              \
    {                                                                                           \
        return (REAL)((double)g + wd * (double)p);                                              \
    }                                                                                           \
                                                                                                \
    static void OPT_NAME(ranvier_sgd_##SUF)(const ranvier_sgd_params *h, REAL *restrict param,         \
                                     const REAL *restrict grad, REAL *restrict buf,             \
                                     ptrdiff_t n)                                               \
    {                                                                                           \
        const REAL lr = (REAL)h->lr, mom = (REAL)h->momentum;                                   \
        const REAL damp = (REAL)(1.0 - h->dampening);                                           \
        const double wd = (double)(REAL)h->weight_decay;                                        \
        if (h->momentum == 0.0) {                                                               \
            if (wd != 0.0)                                                                      \
                for (ptrdiff_t i = 0; i < n; ++i)                                               \
                    param[i] -= lr * rv_decayed_##SUF(grad[i], param[i], wd);                   \
            else                                                                                \
                for (ptrdiff_t i = 0; i < n; ++i) param[i] -= lr * grad[i];                     \
            return;                                                                             \
        }                                                                                       \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                     \
            const REAL g = wd != 0.0 ? rv_decayed_##SUF(grad[i], param[i], wd) : grad[i];       \
            const REAL b = h->first_step ? g : mom * buf[i] + damp * g;                         \
            buf[i] = b;                                                                         \
            param[i] -= lr * (h->nesterov ? g + mom * b : b);                                   \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void OPT_NAME(ranvier_adam_##SUF)(const ranvier_adam_params *h, REAL *restrict param,       \
                                      const REAL *restrict grad, REAL *restrict m,              \
                                      REAL *restrict v, REAL *restrict vmax, ptrdiff_t n)       \
    {                                                                                           \
        const REAL b1 = (REAL)h->beta1, b2 = (REAL)h->beta2;                                    \
        const REAL omb1 = (REAL)h->one_minus_beta1, omb2 = (REAL)h->one_minus_beta2;            \
        const REAL eps = (REAL)h->eps, step_size = (REAL)h->step_size;                          \
        const REAL isb2 = (REAL)h->inv_sqrt_bc2, decay = (REAL)h->decay;                        \
        const double wd = (double)(REAL)h->weight_decay;                                        \
        const int l2 = wd != 0.0 && !h->decoupled, shrink = wd != 0.0 && h->decoupled;          \
        if (!l2 && !shrink && !vmax) { /* the common case: one branch-free vector loop */       \
            for (ptrdiff_t i = 0; i < n; ++i) {                                                 \
                const REAL g = grad[i];                                                         \
                const REAL mi = b1 * m[i] + omb1 * g, vi = b2 * v[i] + omb2 * g * g;            \
                m[i] = mi;                                                                      \
                v[i] = vi;                                                                      \
                param[i] -= step_size * mi / (SQRT(vi) * isb2 + eps);                           \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                     \
            REAL g = grad[i];                                                                   \
            if (shrink) param[i] *= decay;                                                      \
            if (l2) g = rv_decayed_##SUF(g, param[i], wd);                                      \
            const REAL mi = b1 * m[i] + omb1 * g;                                               \
            REAL vi = b2 * v[i] + omb2 * g * g;                                                 \
            m[i] = mi;                                                                          \
            v[i] = vi;                                                                          \
            if (vmax) {                                                                         \
                /* torch.maximum: a NaN in either wins */                                       \
                const REAL top = (vmax[i] >= vi || vmax[i] != vmax[i]) ? vmax[i] : vi;          \
                vmax[i] = top;                                                                  \
                vi = top;                                                                       \
            }                                                                                   \
            param[i] -= step_size * mi / (SQRT(vi) * isb2 + eps);                               \
        }                                                                                       \
    }

RV_DEFINE_OPTIM(float, f32, sqrtf)
RV_DEFINE_OPTIM(double, f64, sqrt)

const ranvier_optim_kernels OPT_NAME(ranvier_optim) = {
    OPT_NAME(ranvier_sgd_f32), OPT_NAME(ranvier_sgd_f64), OPT_NAME(ranvier_adam_f32),
    OPT_NAME(ranvier_adam_f64),
};
