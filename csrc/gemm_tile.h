/* What every GEMM template shares about C and the threads, included by gemm_template.h (float
 * and double operands) and gemm_bf16_template.h (bfloat16 operands, float32 C) after they define
 *   REAL            C's element type (and the scalars'), float or double (REAL_IS_DOUBLE 0 or 1)
 *   TAG             the instance's name suffix (FN(name) gives name_TAG)
 *   NR              the register tile's width: the stride of a scratch tile ``ab``
 * Per instance: storing a tile with alpha and beta, the Dense epilogue (+ bias, activation),
 * C := act(beta C + bias) when there is nothing to multiply, and the k slicing. Once per unit: the
 * packing buffers and the team the jc/pc/ic loops run on (rv_gemm_run_packed). */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation_kernels.h"
#include "fpenv.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define RV_CAT2(a, b) a##_##b
#define RV_CAT(a, b) RV_CAT2(a, b)
#define FN(name) RV_CAT(name, TAG)
#if REAL_IS_DOUBLE
#define RV_ACTFN(name) rv_##name##f64
#else
#define RV_ACTFN(name) rv_##name##f32
#endif

#ifndef RANVIER_GEMM_TILE_ONCE
#define RANVIER_GEMM_TILE_ONCE
#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif
/* 64-byte aligned buffer (cache line, and what AVX-512 loads like best) of exactly ``bytes``, so
 * that AddressSanitizer sees a write one element past it; free with rv_aligned_free. */
#if defined(_WIN32)
#include <malloc.h>
static void *rv_aligned_alloc(size_t bytes) { return _aligned_malloc(bytes ? bytes : 1, 64); }
static void rv_aligned_free(void *p) { _aligned_free(p); }
#else
static void *rv_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
}
static void rv_aligned_free(void *p) { free(p); }
#endif
static ptrdiff_t rv_min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }
/* The end of a micro-kernel: its R x C accumulator acc written to dst (leading dimension ld),
 * or added to it when ``accumulate``. */
#define RV_STORE_ACC(acc, R, C, dst, ld, accumulate)                                             \
    do {                                                                                         \
        if (accumulate)                                                                          \
            for (int i_ = 0; i_ < (R); ++i_)                                                     \
                for (int j_ = 0; j_ < (C); ++j_) (dst)[i_ * (ld) + j_] += (acc)[i_ * (C) + j_];  \
        else                                                                                     \
            for (int i_ = 0; i_ < (R); ++i_)                                                     \
                for (int j_ = 0; j_ < (C); ++j_) (dst)[i_ * (ld) + j_] = (acc)[i_ * (C) + j_];   \
    } while (0)
#if defined(__GNUC__) || defined(__clang__) /* MSVC's OpenMP 2.0 has no simd construct */
#define RV_PRAGMA_SIMD _Pragma("omp simd")
#else
#define RV_PRAGMA_SIMD
#endif

/* Runs loops(job, a_pack, b_pack): a GEMM's jc/pc/ic loops, whose orphaned ``omp for`` loops
 * split the packing and the tiles among the threads of the team they find, with packing buffers
 * of a_bytes and b_bytes allocated for the call. More than one thread gets a team, each thread in
 * the caller's flush mode; so does one thread asked for from inside another team (a
 * convolution's loop over images), or the loops would bind to that team and hand this product's
 * tiles to threads busy with other images. Otherwise the calling thread runs them alone and no
 * team is created (that costs about a microsecond per call, as much as a whole batch-sized
 * product). Returns 0, or -1 (nothing run) when the buffers could not be allocated. */
typedef void (*rv_gemm_loops_fn)(const void *job, void *a_pack, void *b_pack);
static int rv_gemm_run_packed(int nthreads, size_t a_bytes, size_t b_bytes,
                              rv_gemm_loops_fn loops, const void *job)
{
    void *a_pack = rv_aligned_alloc(a_bytes), *b_pack = rv_aligned_alloc(b_bytes);
    int own_team = nthreads > 1;
    if (!a_pack || !b_pack) {
        rv_aligned_free(a_pack);
        rv_aligned_free(b_pack);
        return -1;
    }
#ifdef _OPENMP
    own_team = own_team || omp_in_parallel();
#endif
    if (own_team) {
        const ranvier_fpstate fp_bits = ranvier_fp_flush_bits();
#pragma omp parallel num_threads(nthreads)
        {
            const ranvier_fpstate fp = ranvier_fp_adopt(fp_bits); /* the caller's flush mode */
            loops(job, a_pack, b_pack);
            ranvier_fp_leave(fp);
        }
    } else {
        loops(job, a_pack, b_pack);
    }
    rv_aligned_free(a_pack);
    rv_aligned_free(b_pack);
    return 0;
}
#endif

/* C tile := alpha * ab + beta * C tile (+ bias, activation when ``last``), for the m x n corner
 * that exists. beta == 0 never reads C. */
static void FN(store_tile)(ptrdiff_t m, ptrdiff_t n, REAL alpha, const REAL *restrict ab, REAL beta,
                           REAL *c, ptrdiff_t rsc, ptrdiff_t csc, int last, const REAL *bias,
                           ranvier_act act)
{
    if (csc == 1) { /* the common case, separate so the compiler vectorises it */
        for (ptrdiff_t i = 0; i < m; ++i) {
            REAL *restrict ci = c + i * rsc;
            const REAL *abi = ab + i * NR;
            if (beta == (REAL)0) {
                for (ptrdiff_t j = 0; j < n; ++j) ci[j] = alpha * abi[j];
            } else if (beta == (REAL)1) {
                for (ptrdiff_t j = 0; j < n; ++j) ci[j] += alpha * abi[j];
            } else {
                for (ptrdiff_t j = 0; j < n; ++j) ci[j] = beta * ci[j] + alpha * abi[j];
            }
        }
        if (last && (bias || act.code != RANVIER_ACT_NONE))
            RV_ACTFN(bias_act_)(act, c, rsc, bias, c, rsc, m, n);
        return;
    }
    for (ptrdiff_t i = 0; i < m; ++i) {
        REAL *ci = c + i * rsc;
        const REAL *abi = ab + i * NR;
        if (beta == (REAL)0) {
            for (ptrdiff_t j = 0; j < n; ++j) ci[j * csc] = alpha * abi[j];
        } else if (beta == (REAL)1) {
            for (ptrdiff_t j = 0; j < n; ++j) ci[j * csc] += alpha * abi[j];
        } else {
            for (ptrdiff_t j = 0; j < n; ++j) ci[j * csc] = beta * ci[j * csc] + alpha * abi[j];
        }
        if (last && bias)
            for (ptrdiff_t j = 0; j < n; ++j) ci[j * csc] += bias[j];
        if (last && act.code != RANVIER_ACT_NONE)
            for (ptrdiff_t j = 0; j < n; ++j) ci[j * csc] = RV_ACTFN(act_1_)(act, ci[j * csc]);
    }
}

/* The Dense epilogue on a tile already in C (unit column stride): + bias[j], then the activation. */
static void FN(epilogue)(ptrdiff_t m, ptrdiff_t n, REAL *c, ptrdiff_t rsc, const REAL *bias,
                         ranvier_act act)
{
    RV_ACTFN(bias_act_)(act, c, rsc, bias, c, rsc, m, n);
}

/* C := act(beta * C + bias), used when there is nothing to multiply (k == 0 or alpha == 0). */
static void FN(scale_c)(ptrdiff_t m, ptrdiff_t n, REAL beta, REAL *c, ptrdiff_t rsc, ptrdiff_t csc,
                        const REAL *bias, ranvier_act act)
{
    for (ptrdiff_t i = 0; i < m; ++i)
        for (ptrdiff_t j = 0; j < n; ++j) {
            REAL *cij = c + i * rsc + j * csc;
            REAL v = (beta == (REAL)0) ? (REAL)0 : beta * *cij;
            if (bias) v += bias[j];
            *cij = RV_ACTFN(act_1_)(act, v);
        }
}

/* k in equal slices of at most KC: 784 = 4 x 196, not 3 x 256 + 16 (a 16-deep slice pays a
 * whole pass over C for little work). */
static inline ptrdiff_t FN(k_step)(ptrdiff_t k, ptrdiff_t kc_block)
{
    const ptrdiff_t slices = (k + kc_block - 1) / kc_block;
    return (k + slices - 1) / slices;
}
