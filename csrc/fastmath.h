/* Scalar math that vectorises: branch-free float e^x, sigmoid and tanh (selects instead of
 * branches, a polynomial instead of the C library's scalar expf), and the pragma helpers the loops
 * over them use. Shared by the activation table (activations.h), softmax + cross-entropy and the
 * GEMM epilogue, so each function exists once.
 *
 * float32 uses rv_expf (Cephes-style: range reduction by ln 2, degree-6 polynomial, 2^n built from
 * the exponent bits; about 1 ulp over its range) and a rational tanh; float64 keeps the C
 * library's exp and tanh, where accuracy matters more than speed. */
#ifndef RANVIER_FASTMATH_H
#define RANVIER_FASTMATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define RV_PRAGMA(x) __pragma(x)
#else
#define RV_PRAGMA(x) _Pragma(#x)
#endif
#define RV_SIMD RV_PRAGMA(omp simd)

/* e^x for float on [RV_EXPF_LO, RV_EXPF_HI] (or NaN), branch-free so loops over it vectorise.
 * x = n ln2 + r, |r| <= ln2/2, with ln2 split in two so n * LN2_HI is exact; n is rounded to
 * nearest by adding and subtracting 1.5 * 2^23; e^r by a degree-7 polynomial (Cephes' expf
 * coefficients); 2^n built in the exponent field. About 1 ulp. The constants are shared with the
 * vector version in softmax_ce_rows.h. */
#define RV_EXPF_HI 88.3762626647949f
#define RV_EXPF_LO -87.3365447504f
#define RV_EXPF_LOG2E 1.44269504088896341f
#define RV_EXPF_MAGIC 12582912.0f
#define RV_EXPF_LN2_HI 0.693359375f
#define RV_EXPF_LN2_LO -2.12194440e-4f
#define RV_EXPF_P0 1.9875691500e-4f
#define RV_EXPF_P1 1.3981999507e-3f
#define RV_EXPF_P2 8.3334519073e-3f
#define RV_EXPF_P3 4.1665795894e-2f
#define RV_EXPF_P4 1.6666665459e-1f
#define RV_EXPF_P5 5.0000001201e-1f
static inline float rv_expf_core(float x)
{
    /* n = round(x log2 e), read from the low mantissa bits of x log2 e + 1.5 * 2^23 (unsigned
     * arithmetic: for a NaN x the bits are garbage but defined, and NaN * 2^n stays NaN; a float
     * to int conversion of NaN, or a shift of a negative int, would be undefined behaviour). */
    const float zb = x * RV_EXPF_LOG2E + RV_EXPF_MAGIC;
    const float z = zb - RV_EXPF_MAGIC;
    uint32_t zb_bits;
    memcpy(&zb_bits, &zb, sizeof zb_bits);
    const uint32_t n = zb_bits - 0x4B400000u; /* the bits of RV_EXPF_MAGIC */
    float r = x - z * RV_EXPF_LN2_HI;
    r = r - z * RV_EXPF_LN2_LO;
    const float r2 = r * r;
    float p = RV_EXPF_P0;
    p = p * r + RV_EXPF_P1;
    p = p * r + RV_EXPF_P2;
    p = p * r + RV_EXPF_P3;
    p = p * r + RV_EXPF_P4;
    p = p * r + RV_EXPF_P5;
    p = p * r2 + r + 1.0f;
    /* multiply by 2^n through the exponent field */
    const uint32_t bits = (n + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* e^x for any float. Past the ends of float's range the result is exactly inf or 0 (selected,
 * not branched); NaN stays NaN (x < lo and x > hi are false for it). */
static inline float rv_expf(float x_in)
{
    float x = x_in > RV_EXPF_HI ? RV_EXPF_HI : x_in;
    x = x < RV_EXPF_LO ? RV_EXPF_LO : x;
    const float result = rv_expf_core(x);
    return x_in > RV_EXPF_HI ? HUGE_VALF : (x_in < RV_EXPF_LO ? 0.0f : result);
}

/* e^x for x <= 0 (or NaN), as softmax needs after subtracting the row max. x is clamped at
 * -127 ln 2, where n = -127 makes the 2^n factor's bits exactly 0.0f: every x below -126.5 ln 2
 * (e^x < 8.3e-39, under FLT_MIN) gives 0 with no final select, a third fewer instructions than
 * rv_expf. NaN stays NaN (x < lo is false for it, and NaN * anything is NaN). */
#define RV_EXPF_ZERO_BELOW -88.0296919311f
static inline float rv_expf_nonpos(float x)
{
    return rv_expf_core(x < RV_EXPF_ZERO_BELOW ? RV_EXPF_ZERO_BELOW : x);
}

static inline float rv_sigmoidf(float x)
{
    /* 1 / (1 + e^-x): for x << 0, e^-x is inf and the result exactly 0. */
    return 1.0f / (1.0f + rv_expf(-x));
}

/* tanh for float: x P(x^2) / Q(x^2), degrees 10 / 6 in x, a minimax fit of relative error 3.2e-8
 * on [0, 7.9] (fitted for ranvier by linear programming on the differential-correction scheme);
 * |x| > 7.9 gives exactly +-1 (tanh(7.9) is 1 - 2.3 eps). One division and no exp: half the
 * instructions of 1 - 2 / (e^{2x} + 1) with its small-|x| polynomial. Float rounding of the
 * evaluation dominates: every float in [1e-30, 10] is within 2.6 eps relative (3.1 eps without
 * FMA, the generic build), checked exhaustively against double tanh; the tests hold 4 eps. NaN
 * stays NaN (ax > SAT is false for it), tanh(-0) = -0. */
#define RV_TANHF_SAT 7.9f
static inline float rv_tanhf(float x)
{
    const float ax = fabsf(x);
    const float a = ax > RV_TANHF_SAT ? RV_TANHF_SAT : ax;
    const float t = a * a;
    float p = 2.350927959e-11f;
    p = p * t - 1.469898958e-08f;
    p = p * t + 9.876732292e-06f;
    p = p * t + 2.985736355e-03f;
    p = p * t + 1.297917515e-01f;
    p = p * t + 1.0f;
    float q = 2.371791197e-04f;
    q = q * t + 2.402759530e-02f;
    q = q * t + 4.631249905e-01f;
    q = q * t + 1.0f;
    return copysignf(ax > RV_TANHF_SAT ? 1.0f : a * p / q, x);
}

#endif
