/* Run-time choice of the optimizer kernels: the widest instruction set this CPU supports. */
#include "optim.h"
#include "gemm.h" /* RANVIER_ISA_* codes */
#include "runtime.h"

typedef void (*sgd32)(const ranvier_sgd_params *, float *, const float *, float *, ptrdiff_t);
typedef void (*sgd64)(const ranvier_sgd_params *, double *, const double *, double *, ptrdiff_t);
typedef void (*adam32)(const ranvier_adam_params *, float *, const float *, float *, float *,
                       float *, ptrdiff_t);
typedef void (*adam64)(const ranvier_adam_params *, double *, const double *, double *, double *,
                       double *, ptrdiff_t);

static int opt_isa = -1;
static sgd32 s32 = ranvier_sgd_f32_generic;
static sgd64 s64 = ranvier_sgd_f64_generic;
static adam32 a32 = ranvier_adam_f32_generic;
static adam64 a64 = ranvier_adam_f64_generic;

int ranvier_optim_set_isa(int isa)
{
    switch (isa) {
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_ISA_AVX512:
        if (!ranvier_cpu_has_avx512()) return -1;
        s32 = ranvier_sgd_f32_avx512; s64 = ranvier_sgd_f64_avx512;
        a32 = ranvier_adam_f32_avx512; a64 = ranvier_adam_f64_avx512;
        break;
    case RANVIER_ISA_AVX2:
        if (!ranvier_cpu_has_avx2_fma()) return -1;
        s32 = ranvier_sgd_f32_avx2; s64 = ranvier_sgd_f64_avx2;
        a32 = ranvier_adam_f32_avx2; a64 = ranvier_adam_f64_avx2;
        break;
#endif
    case RANVIER_ISA_GENERIC:
        s32 = ranvier_sgd_f32_generic; s64 = ranvier_sgd_f64_generic;
        a32 = ranvier_adam_f32_generic; a64 = ranvier_adam_f64_generic;
        break;
    default: return -1;
    }
    opt_isa = isa;
    return 0;
}

int ranvier_optim_get_isa(void)
{
    if (opt_isa < 0 && ranvier_optim_set_isa(RANVIER_ISA_AVX512) != 0 &&
        ranvier_optim_set_isa(RANVIER_ISA_AVX2) != 0)
        ranvier_optim_set_isa(RANVIER_ISA_GENERIC);
    return opt_isa;
}

void ranvier_sgd_f32(const ranvier_sgd_params *h, float *p, const float *g, float *buf,
                     ptrdiff_t n)
{
    if (opt_isa < 0) ranvier_optim_get_isa();
    s32(h, p, g, buf, n);
}
void ranvier_sgd_f64(const ranvier_sgd_params *h, double *p, const double *g, double *buf,
                     ptrdiff_t n)
{
    if (opt_isa < 0) ranvier_optim_get_isa();
    s64(h, p, g, buf, n);
}
void ranvier_adam_f32(const ranvier_adam_params *h, float *p, const float *g, float *m, float *v,
                      float *vmax, ptrdiff_t n)
{
    if (opt_isa < 0) ranvier_optim_get_isa();
    a32(h, p, g, m, v, vmax, n);
}
void ranvier_adam_f64(const ranvier_adam_params *h, double *p, const double *g, double *m,
                      double *v, double *vmax, ptrdiff_t n)
{
    if (opt_isa < 0) ranvier_optim_get_isa();
    a64(h, p, g, m, v, vmax, n);
}
