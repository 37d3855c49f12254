/* Elementwise activation kernels on a contiguous chunk, written so the compiler vectorises them:
 * restrict pointers, no branches in the loop body (selects instead), and a polynomial expf
 * instead of the C library's scalar one. Cython's prange hands each thread whole chunks.
 *
 * float32 uses rv_expf (Cephes-style: range reduction by ln 2, degree-6 polynomial, 2^n built from
 * the exponent bits; about 1 ulp over its range) and a rational/odd-polynomial tanh; float64 keeps
 * the C library's exp and tanh, where accuracy matters more than speed. */
#ifndef RANVIER_ELEMENTWISE_H
#define RANVIER_ELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

/* e^x for float, branch-free so loops over it vectorise. Past the ends of float's range the
 * result is exactly inf or 0 (selected, not branched); NaN stays NaN. */
static inline float rv_expf(float x_in)
{
    const float hi = 88.3762626647949f, lo = -87.3365447504f;
    float x = x_in > hi ? hi : x_in;
    x = x < lo ? lo : x;
    /* x = n ln2 + r, |r| <= ln2/2 (ln2 split in two so n*C1 is exact). n is rounded to nearest
     * with the 1.5 * 2^23 trick: branch-free, so the loop vectorises on every ISA. */
    const float magic = 12582912.0f;
    const float z = (x * 1.44269504088896341f + magic) - magic;
    const int32_t n = (int32_t)z;
    float r = x - z * 0.693359375f;
    r = r - z * -2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    /* multiply by 2^n through the exponent field */
    int32_t bits = (n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float result = p * scale;
    result = x_in > hi ? HUGE_VALF : result;
    return x_in < lo ? 0.0f : result;
}

static inline float rv_sigmoidf(float x)
{
    /* 1 / (1 + e^-x): for x << 0, e^-x is inf and the result exactly 0. */
    return 1.0f / (1.0f + rv_expf(-x));
}

static inline float rv_tanhf(float x)
{
    /* |x| < 0.625: odd polynomial (no cancellation near 0); else 1 - 2 / (e^{2|x|} + 1), with the
     * sign put back. Both are computed and one selected, so the loop has no branch. */
    const float ax = fabsf(x);
    const float z = x * x;
    float small = -5.70498872745e-3f;
    small = small * z + 2.06390887954e-2f;
    small = small * z - 5.37397155531e-2f;
    small = small * z + 1.33314422036e-1f;
    small = small * z - 3.33332819422e-1f;
    small = small * z * x + x;
    const float big = 1.0f - 2.0f / (rv_expf(2.0f * ax) + 1.0f);
    return ax < 0.625f ? small : copysignf(big, x);
}

#define RV_UNARY(name, T, expr)                                                                  \
    static inline void name(const T *restrict x, T *restrict y, ptrdiff_t n)                   \
    {                                                                                          \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                    \
            const T v = x[i];                                                                  \
            y[i] = (expr);                                                                     \
        }                                                                                      \
    }
#define RV_BACKWARD(name, T, expr)                                                               \
    static inline void name(const T *restrict y, const T *restrict dy, T *restrict dx,         \
                            ptrdiff_t n)                                                       \
    {                                                                                          \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                    \
            const T v = y[i], g = dy[i];                                                       \
            dx[i] = (expr);                                                                    \
        }                                                                                      \
    }

RV_UNARY(rv_relu_f32, float, v > 0.0f ? v : 0.0f)
RV_UNARY(rv_relu_f64, double, v > 0.0 ? v : 0.0)
RV_BACKWARD(rv_relu_backward_f32, float, v > 0.0f ? g : 0.0f)
RV_BACKWARD(rv_relu_backward_f64, double, v > 0.0 ? g : 0.0)

RV_UNARY(rv_sigmoid_f32, float, rv_sigmoidf(v))
RV_UNARY(rv_sigmoid_f64, double, v >= 0.0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)))
RV_BACKWARD(rv_sigmoid_backward_f32, float, g * v * (1.0f - v))
RV_BACKWARD(rv_sigmoid_backward_f64, double, g * v * (1.0 - v))

RV_UNARY(rv_tanh_f32, float, rv_tanhf(v))
RV_UNARY(rv_tanh_f64, double, tanh(v))
RV_BACKWARD(rv_tanh_backward_f32, float, g * (1.0f - v * v))
RV_BACKWARD(rv_tanh_backward_f64, double, g * (1.0 - v * v))

#undef RV_UNARY
#undef RV_BACKWARD

/* Dispatching entry points (elementwise.c): the best of elementwise_<isa>.c for this CPU. act is a
 * RANVIER_ACT_* code from gemm.h (relu, sigmoid, tanh); backward takes the forward output y. */
#ifdef __cplusplus
extern "C" {
#endif
void ranvier_act_forward_f32(int act, const float *x, float *y, ptrdiff_t n);
void ranvier_act_forward_f64(int act, const double *x, double *y, ptrdiff_t n);
void ranvier_act_backward_f32(int act, const float *y, const float *dy, float *dx, ptrdiff_t n);
void ranvier_act_backward_f64(int act, const double *y, const double *dy, double *dx,
                              ptrdiff_t n);
/* 0 generic, 1 avx2, 2 avx512 (as RANVIER_ISA_*); set returns -1 when unsupported. */
int ranvier_elementwise_get_isa(void);
int ranvier_elementwise_set_isa(int isa);

#define RV_DECLARE_EW(isa)                                                                       \
    void ranvier_act_forward_f32_##isa(int, const float *, float *, ptrdiff_t);                 \
    void ranvier_act_forward_f64_##isa(int, const double *, double *, ptrdiff_t);               \
    void ranvier_act_backward_f32_##isa(int, const float *, const float *, float *, ptrdiff_t); \
    void ranvier_act_backward_f64_##isa(int, const double *, const double *, double *,          \
                                        ptrdiff_t);
RV_DECLARE_EW(generic)
#if RANVIER_HAVE_X86_SIMD
RV_DECLARE_EW(avx2)
RV_DECLARE_EW(avx512)
#endif
#ifdef __cplusplus
}
#endif
#endif
