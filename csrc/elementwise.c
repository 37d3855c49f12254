/* Run-time choice of the activation kernels: the widest instruction set this CPU supports. */
#include "elementwise.h"
#include "gemm.h"
#include "runtime.h"

typedef void (*fwd32)(int, const float *, float *, ptrdiff_t);
typedef void (*fwd64)(int, const double *, double *, ptrdiff_t);
typedef void (*bwd32)(int, const float *, const float *, float *, ptrdiff_t);
typedef void (*bwd64)(int, const double *, const double *, double *, ptrdiff_t);

static int ew_isa = -1;
static fwd32 f32 = ranvier_act_forward_f32_generic;
static fwd64 f64 = ranvier_act_forward_f64_generic;
static bwd32 b32 = ranvier_act_backward_f32_generic;
static bwd64 b64 = ranvier_act_backward_f64_generic;

int ranvier_elementwise_set_isa(int isa)
{
    switch (isa) {
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_ISA_AVX512:
        if (!ranvier_cpu_has_avx512()) return -1;
        f32 = ranvier_act_forward_f32_avx512; f64 = ranvier_act_forward_f64_avx512;
        b32 = ranvier_act_backward_f32_avx512; b64 = ranvier_act_backward_f64_avx512;
        break;
    case RANVIER_ISA_AVX2:
        if (!ranvier_cpu_has_avx2_fma()) return -1;
        f32 = ranvier_act_forward_f32_avx2; f64 = ranvier_act_forward_f64_avx2;
        b32 = ranvier_act_backward_f32_avx2; b64 = ranvier_act_backward_f64_avx2;
        break;
#endif
    case RANVIER_ISA_GENERIC:
        f32 = ranvier_act_forward_f32_generic; f64 = ranvier_act_forward_f64_generic;
        b32 = ranvier_act_backward_f32_generic; b64 = ranvier_act_backward_f64_generic;
        break;
    default: return -1;
    }
    ew_isa = isa;
    return 0;
}

int ranvier_elementwise_get_isa(void)
{
    if (ew_isa < 0) {
        if (ranvier_elementwise_set_isa(RANVIER_ISA_AVX512) != 0 &&
            ranvier_elementwise_set_isa(RANVIER_ISA_AVX2) != 0)
            ranvier_elementwise_set_isa(RANVIER_ISA_GENERIC);
    }
    return ew_isa;
}

void ranvier_act_forward_f32(int act, const float *x, float *y, ptrdiff_t n)
{
    if (ew_isa < 0) ranvier_elementwise_get_isa();
    f32(act, x, y, n);
}
void ranvier_act_forward_f64(int act, const double *x, double *y, ptrdiff_t n)
{
    if (ew_isa < 0) ranvier_elementwise_get_isa();
    f64(act, x, y, n);
}
void ranvier_act_backward_f32(int act, const float *y, const float *dy, float *dx, ptrdiff_t n)
{
    if (ew_isa < 0) ranvier_elementwise_get_isa();
    b32(act, y, dy, dx, n);
}
void ranvier_act_backward_f64(int act, const double *y, const double *dy, double *dx, ptrdiff_t n)
{
    if (ew_isa < 0) ranvier_elementwise_get_isa();
    b64(act, y, dy, dx, n);
}
