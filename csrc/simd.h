/* A few float vector operations for the instruction set this translation unit is compiled for:
 * AVX-512 (16 lanes), AVX2 + FMA (8 lanes), or plain C (1 lane, for the generic build and non-x86
 * machines). Kernels written on them are explicit about their reductions and tails, which the
 * auto-vectoriser handled poorly for softmax (a masked select per reduction, scalar tails: 1.3x
 * slower in cache, and a 10-class row ran wholly scalar).
 *
 * rv_max(a, b) is a > b ? a : b, the x86 max: when either is NaN it returns b. */
#ifndef RANVIER_SIMD_H
#define RANVIER_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The operations whose intrinsics differ only in their prefix (_mm512 or _mm256). */
#define RV_COMMON_OPS(P, SI)                                                                     \
    static inline rv_vf rv_set1(float x) { return P##_set1_ps(x); }                             \
    static inline rv_vf rv_loadu(const float *p) { return P##_loadu_ps(p); }                    \
    static inline void rv_storeu(float *p, rv_vf v) { P##_storeu_ps(p, v); }                    \
    static inline rv_vf rv_add(rv_vf a, rv_vf b) { return P##_add_ps(a, b); }                   \
    static inline rv_vf rv_sub(rv_vf a, rv_vf b) { return P##_sub_ps(a, b); }                   \
    static inline rv_vf rv_mul(rv_vf a, rv_vf b) { return P##_mul_ps(a, b); }                   \
    static inline rv_vf rv_fma(rv_vf a, rv_vf b, rv_vf c) { return P##_fmadd_ps(a, b, c); }     \
    static inline rv_vf rv_fnma(rv_vf a, rv_vf b, rv_vf c) { return P##_fnmadd_ps(a, b, c); }   \
    static inline rv_vf rv_max(rv_vf a, rv_vf b) { return P##_max_ps(a, b); }                   \
    static inline rv_vd rv_dzero(void) { return P##_setzero_pd(); }                            \
    /* 2^n for n a float vector of integers in [-127, 127] (-127 gives 0) */                    \
    static inline rv_vf rv_exp2i(rv_vf n)                                                       \
    {                                                                                           \
        return P##_castsi##SI##_ps(P##_slli_epi32(                                              \
            P##_add_epi32(P##_cvttps_epi32(n), P##_set1_epi32(127)), 23));                      \
    }

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define RV_NF 16
typedef __m512 rv_vf;
typedef __m512d rv_vd; /* half a float vector's lanes, as doubles */
RV_COMMON_OPS(_mm512, 512)
/* lanes [0, n) from p (0 < n < RV_NF), the others `fill`; memory past p + n is not touched */
static inline rv_vf rv_load_tail(const float *p, ptrdiff_t n, float fill)
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << n) - 1u), p);
}
static inline void rv_store_tail(float *p, rv_vf v, ptrdiff_t n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
static inline float rv_hmax(rv_vf v) { return _mm512_reduce_max_ps(v); }
/* (lo, hi) += the float lanes of v, widened to double */
static inline void rv_dacc(rv_vd *lo, rv_vd *hi, rv_vf v)
{
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}
static inline double rv_dsum(rv_vd lo, rv_vd hi)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define RV_NF 8
typedef __m256 rv_vf;
typedef __m256d rv_vd;
RV_COMMON_OPS(_mm256, 256)
static inline __m256i rv_tail_mask(ptrdiff_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline rv_vf rv_load_tail(const float *p, ptrdiff_t n, float fill)
{
    const __m256i m = rv_tail_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void rv_store_tail(float *p, rv_vf v, ptrdiff_t n)
{
    _mm256_maskstore_ps(p, rv_tail_mask(n), v);
}
static inline float rv_hmax(rv_vf v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
static inline void rv_dacc(rv_vd *lo, rv_vd *hi, rv_vf v)
{
    *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
static inline double rv_dsum(rv_vd lo, rv_vd hi)
{
    const __m256d s = _mm256_add_pd(lo, hi);
    const __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

#else
#define RV_NF 1 /* no vector types: kernels use plain loops instead */
#endif

#endif
