/* Run-time choice of the GEMM implementation: the best ISA this CPU supports, unless a test or a
 * user forced another one through ranvier_gemm_set_isa (RANVIER_ISA in Python). */
#include "gemm.h"
#include "runtime.h"

double ranvier_gemm_sup_max_bytes = 512.0 * 1024.0;

static int active_isa = -1;
static ranvier_sgemm_fn active_s = ranvier_sgemm_generic;
static ranvier_dgemm_fn active_d = ranvier_dgemm_generic;
typedef void (*grad32_fn)(ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, const float *,
                          float *, float *, int);
typedef void (*grad64_fn)(ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, const double *,
                          const double *, double *, double *, int);
static grad32_fn active_g32 = ranvier_dense_grad_f32_generic;
static grad64_fn active_g64 = ranvier_dense_grad_f64_generic;

int ranvier_gemm_isa_supported(int isa)
{
    switch (isa) {
    case RANVIER_ISA_GENERIC: return 1;
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_ISA_AVX2: return ranvier_cpu_has_avx2_fma();
    case RANVIER_ISA_AVX512: return ranvier_cpu_has_avx512();
#endif
    default: return 0;
    }
}

int ranvier_gemm_best_isa(void)
{
    if (ranvier_gemm_isa_supported(RANVIER_ISA_AVX512)) return RANVIER_ISA_AVX512;
    if (ranvier_gemm_isa_supported(RANVIER_ISA_AVX2)) return RANVIER_ISA_AVX2;
    return RANVIER_ISA_GENERIC;
}

int ranvier_gemm_set_isa(int isa)
{
    if (!ranvier_gemm_isa_supported(isa)) return -1;
    switch (isa) {
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_ISA_AVX2:
        active_s = ranvier_sgemm_avx2; active_d = ranvier_dgemm_avx2;
        active_g32 = ranvier_dense_grad_f32_avx2; active_g64 = ranvier_dense_grad_f64_avx2;
        break;
    case RANVIER_ISA_AVX512:
        active_s = ranvier_sgemm_avx512; active_d = ranvier_dgemm_avx512;
        active_g32 = ranvier_dense_grad_f32_avx512; active_g64 = ranvier_dense_grad_f64_avx512;
        break;
#endif
    default:
        active_s = ranvier_sgemm_generic; active_d = ranvier_dgemm_generic;
        active_g32 = ranvier_dense_grad_f32_generic; active_g64 = ranvier_dense_grad_f64_generic;
        break;
    }
    active_isa = isa;
    return 0;
}

int ranvier_gemm_get_isa(void)
{
    if (active_isa < 0) ranvier_gemm_set_isa(ranvier_gemm_best_isa());
    return active_isa;
}

int ranvier_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a, ptrdiff_t rsa,
                  ptrdiff_t csa, const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta, float *c,
                  ptrdiff_t rsc, ptrdiff_t csc, const float *bias, int act, int nthreads)
{
    if (active_isa < 0) ranvier_gemm_get_isa();
    return active_s(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act, nthreads);
}

int ranvier_dgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha, const double *a,
                  ptrdiff_t rsa, ptrdiff_t csa, const double *b, ptrdiff_t rsb, ptrdiff_t csb,
                  double beta, double *c, ptrdiff_t rsc, ptrdiff_t csc, const double *bias, int act,
                  int nthreads)
{
    if (active_isa < 0) ranvier_gemm_get_isa();
    return active_d(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act, nthreads);
}

void ranvier_dense_grad_f32(ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const float *y,
                            const float *dy, float *dz, float *db, int act)
{
    if (active_isa < 0) ranvier_gemm_get_isa();
    active_g32(n, d, j0, j1, y, dy, dz, db, act);
}

void ranvier_dense_grad_f64(ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const double *y,
                            const double *dy, double *dz, double *db, int act)
{
    if (active_isa < 0) ranvier_gemm_get_isa();
    active_g64(n, d, j0, j1, y, dy, dz, db, act);
}
