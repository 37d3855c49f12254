/* Elementwise activation kernels on a contiguous chunk, written so the compiler vectorises them:
 * omp simd loops, no branches in the loop body (selects instead), and a polynomial expf instead
 * of the C library's scalar one. Cython's prange hands each thread whole chunks. Also the
 * declarations of the fused softmax + cross-entropy (softmax_ce_template.h) and the per-ISA
 * kernel table.
 *
 * float32 uses rv_expf (Cephes-style: range reduction by ln 2, degree-6 polynomial, 2^n built from
 * the exponent bits; about 1 ulp over its range) and a rational tanh; float64 keeps the C
 * library's exp and tanh, where accuracy matters more than speed. */
#ifndef RANVIER_ELEMENTWISE_H
#define RANVIER_ELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

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

/* The loops below allow y to be x (in place): each element is read before the same element is
 * written, and omp simd (not restrict) tells the compiler there is no other dependence, so the
 * in-place call vectorises too. Any other overlap is the caller's error. */
#if defined(_MSC_VER) && !defined(__clang__)
#define RV_PRAGMA(x) __pragma(x)
#else
#define RV_PRAGMA(x) _Pragma(#x)
#endif
#define RV_SIMD RV_PRAGMA(omp simd)

/* Forward loops of one activation (f = rv_<act>_1, its value at one element): y = f(x), and
 * y[i, :] = f(z[i, :] + b) for a block of rows, the bias add fused into the activation. The bias
 * loop takes four rows per pass over b: with one row per pass, re-reading b (a cache-resident
 * 16 KiB for 4096 columns) beside the two streams to memory cost a quarter of the speed. */
#define RV_FORWARD_LOOPS(act, T, f)                                                              \
    static inline void rv_##act(const T *x, T *y, ptrdiff_t n)                                 \
    {                                                                                          \
        RV_SIMD for (ptrdiff_t i = 0; i < n; ++i) y[i] = f(x[i]);                              \
    }                                                                                          \
    static inline void rv_bias_##act(const T *z, const T *restrict b, T *y, ptrdiff_t rows,    \
                                     ptrdiff_t cols)                                           \
    {                                                                                          \
        const ptrdiff_t c = cols;                                                              \
        ptrdiff_t r = 0;                                                                       \
        for (; r + 4 <= rows; r += 4, z += 4 * c, y += 4 * c) {                                \
            RV_SIMD for (ptrdiff_t i = 0; i < c; ++i)                                          \
            {                                                                                  \
                const T bi = b[i];                                                             \
                y[i] = f(z[i] + bi);                                                           \
                y[c + i] = f(z[c + i] + bi);                                                   \
                y[2 * c + i] = f(z[2 * c + i] + bi);                                           \
                y[3 * c + i] = f(z[3 * c + i] + bi);                                           \
            }                                                                                  \
        }                                                                                      \
        for (; r < rows; ++r, z += c, y += c) {                                                \
            RV_SIMD for (ptrdiff_t i = 0; i < c; ++i) y[i] = f(z[i] + b[i]);                   \
        }                                                                                      \
    }
#define RV_BACKWARD(name, T, expr)                                                               \
    static inline void name(const T *y, const T *dy, T *dx, ptrdiff_t n)                       \
    {                                                                                          \
        RV_SIMD for (ptrdiff_t i = 0; i < n; ++i)                                              \
        {                                                                                      \
            const T v = y[i], g = dy[i];                                                       \
            dx[i] = (expr);                                                                    \
        }                                                                                      \
    }
/* An activation from a per-element expression of v: the function and its forward loops. */
#define RV_ACTIVATION(act, T, expr)                                                              \
    static inline T rv_##act##_1(T v) { return (expr); }                                       \
    RV_FORWARD_LOOPS(act, T, rv_##act##_1)

/* ReLU as torch: the forward keeps NaN (v < 0 is false for it; v > 0 ? v : 0 mapped it to 0), and
 * the backward passes the gradient where y is NaN, as threshold_backward(dy, y, 0) does. Neither
 * costs an instruction. */
RV_ACTIVATION(relu_f32, float, v < 0.0f ? 0.0f : v)
RV_ACTIVATION(relu_f64, double, v < 0.0 ? 0.0 : v)
RV_BACKWARD(rv_relu_backward_f32, float, v <= 0.0f ? 0.0f : g)
RV_BACKWARD(rv_relu_backward_f64, double, v <= 0.0 ? 0.0 : g)

RV_ACTIVATION(sigmoid_f32, float, rv_sigmoidf(v))
RV_ACTIVATION(sigmoid_f64, double, v >= 0.0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)))
RV_BACKWARD(rv_sigmoid_backward_f32, float, g * v * (1.0f - v))
RV_BACKWARD(rv_sigmoid_backward_f64, double, g * v * (1.0 - v))

RV_ACTIVATION(tanh_f32, float, rv_tanhf(v))
RV_ACTIVATION(tanh_f64, double, tanh(v))
RV_BACKWARD(rv_tanh_backward_f32, float, g * (1.0f - v * v))
RV_BACKWARD(rv_tanh_backward_f64, double, g * (1.0 - v * v))

RV_ACTIVATION(none_f32, float, v)
RV_ACTIVATION(none_f64, double, v)

#undef RV_FORWARD_LOOPS
#undef RV_BACKWARD
#undef RV_ACTIVATION

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

/* The kernels of one instruction set. act is a RANVIER_ACT_* code from gemm.h; backward takes the
 * forward output y; bias_act computes y[i, :] = act(z[i, :] + b) for rows x cols (y may be z). */
typedef struct ranvier_ew_kernels {
    void (*act_forward_f32)(int act, const float *x, float *y, ptrdiff_t n);
    void (*act_forward_f64)(int act, const double *x, double *y, ptrdiff_t n);
    void (*act_backward_f32)(int act, const float *y, const float *dy, float *dx, ptrdiff_t n);
    void (*act_backward_f64)(int act, const double *y, const double *dy, double *dx,
                             ptrdiff_t n);
    void (*bias_act_f32)(int act, const float *z, const float *b, float *y, ptrdiff_t rows,
                         ptrdiff_t cols);
    void (*bias_act_f64)(int act, const double *z, const double *b, double *y, ptrdiff_t rows,
                         ptrdiff_t cols);
    void (*softmax_ce_f32)(const ranvier_ce_args *a, ptrdiff_t r0, ptrdiff_t r1);
    void (*softmax_ce_f64)(const ranvier_ce_args *a, ptrdiff_t r0, ptrdiff_t r1);
} ranvier_ew_kernels;

/* The kernels of the ISA in use (elementwise.c): the best one this CPU runs, unless
 * ranvier_elementwise_set_isa chose another. Each extension linking elementwise.c has its own
 * choice. */
const ranvier_ew_kernels *ranvier_ew(void);
/* 0 generic, 1 avx2, 2 avx512 (as RANVIER_ISA_*); set returns -1 when unsupported. */
int ranvier_elementwise_get_isa(void);
int ranvier_elementwise_set_isa(int isa);

extern const ranvier_ew_kernels ranvier_ew_generic;
#if RANVIER_HAVE_X86_SIMD
extern const ranvier_ew_kernels ranvier_ew_avx2, ranvier_ew_avx512;
#endif
#ifdef __cplusplus
}
#endif
#endif
