/* The activation table: every activation ranvier applies element by element, defined once.
 *
 * RANVIER_ACTIVATIONS(X) lists them as X(CODE, name, code, needs), where needs says what its
 * derivative is written in:
 *   OUTPUT  the forward output y (relu' = y > 0, sigmoid' = y (1 - y), tanh' = 1 - y^2), so a
 *           backward pass keeps only y;
 *   INPUT   the forward input x (their derivative is not a function of y alone).
 * Each entry has two per-element functions per dtype (suffix f32 / f64), p being its one scalar
 * parameter (LeakyReLU's slope, ELU's alpha; ignored by the others):
 *   T rv_<name>_<sfx>(T x, T p)          the activation
 *   T rv_<name>_grad_<sfx>(T v, T g, T p) dL/dx from v (y or x, as `needs` says) and g = dL/dy
 *
 * Everything else is generated from this list: the elementwise loops, the GEMM epilogue and the
 * Dense backward pass (activation_loops.h), the RANVIER_ACT_* codes, and the table of names that
 * the Cython and Python layers read (ranvier_act_info). Adding an activation means one line in
 * the list, its two functions below, and its Python layer class. */
#ifndef RANVIER_ACTIVATIONS_H
#define RANVIER_ACTIVATIONS_H

#include "fastmath.h"

#define RANVIER_ACTIVATIONS(X)                                                                   \
    X(NONE, none, 0, OUTPUT)                                                                     \
    X(RELU, relu, 1, OUTPUT)                                                                     \
    X(SIGMOID, sigmoid, 2, OUTPUT)                                                               \
    X(TANH, tanh, 3, OUTPUT)                                                                     \
    X(LEAKY_RELU, leaky_relu, 4, INPUT)                                                          \
    X(ELU, elu, 5, INPUT)                                                                        \
    X(GELU, gelu, 6, INPUT)                                                                      \
    X(SILU, silu, 7, INPUT)

enum { RANVIER_ACT_NEEDS_OUTPUT = 0, RANVIER_ACT_NEEDS_INPUT = 1 };

#define RV_ACT_ENUM(CODE, name, code, needs) RANVIER_ACT_##CODE = code,
enum { RANVIER_ACTIVATIONS(RV_ACT_ENUM) RANVIER_ACT_COUNT };
#undef RV_ACT_ENUM

/* An activation as the kernels take it: its code and its parameter. */
typedef struct ranvier_act {
    int code;
    double param;
} ranvier_act;

/* One row per activation, in code order, for the Cython layer (names and what the backward
 * needs); defined in runtime.c. */
typedef struct ranvier_act_info {
    const char *name;
    int code, needs;
} ranvier_act_info;
#ifdef __cplusplus
extern "C" {
#endif
extern const ranvier_act_info ranvier_act_table[RANVIER_ACT_COUNT];
#ifdef __cplusplus
}
#endif

/* -- the per-element functions ------------------------------------------------------------------
 * Associations are written out (no reliance on the compiler's choices), and every consumer
 * inlines these same functions, so a fused path and the plain path round the same way. */

static inline float rv_none_f32(float x, float p) { (void)p; return x; }
static inline double rv_none_f64(double x, double p) { (void)p; return x; }
static inline float rv_none_grad_f32(float v, float g, float p) { (void)v, (void)p; return g; }
static inline double rv_none_grad_f64(double v, double g, double p) { (void)v, (void)p; return g; }

/* ReLU as torch: NaN stays NaN forward (x < 0 is false for it), and the backward passes the
 * gradient where y is NaN, as threshold_backward(dy, y, 0) does. */
static inline float rv_relu_f32(float x, float p) { (void)p; return x < 0.0f ? 0.0f : x; }
static inline double rv_relu_f64(double x, double p) { (void)p; return x < 0.0 ? 0.0 : x; }
static inline float rv_relu_grad_f32(float y, float g, float p)
{
    (void)p;
    return y <= 0.0f ? 0.0f : g;
}
static inline double rv_relu_grad_f64(double y, double g, double p)
{
    (void)p;
    return y <= 0.0 ? 0.0 : g;
}

/* 1 / (1 + e^-x) without overflow for large |x|. */
static inline float rv_sigmoid_f32(float x, float p) { (void)p; return rv_sigmoidf(x); }
static inline double rv_sigmoid_f64(double x, double p)
{
    (void)p;
    return x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}
static inline float rv_sigmoid_grad_f32(float y, float g, float p)
{
    (void)p;
    return g * (y * (1.0f - y));
}
static inline double rv_sigmoid_grad_f64(double y, double g, double p)
{
    (void)p;
    return g * (y * (1.0 - y));
}

static inline float rv_tanh_f32(float x, float p) { (void)p; return rv_tanhf(x); }
static inline double rv_tanh_f64(double x, double p) { (void)p; return tanh(x); }
static inline float rv_tanh_grad_f32(float y, float g, float p)
{
    (void)p;
    return g * (1.0f - y * y);
}
static inline double rv_tanh_grad_f64(double y, double g, double p)
{
    (void)p;
    return g * (1.0 - y * y);
}

/* x if x > 0 else slope * x (torch.nn.LeakyReLU); at 0 the left derivative, as torch. */
static inline float rv_leaky_relu_f32(float x, float s) { return x > 0.0f ? x : x * s; }
static inline double rv_leaky_relu_f64(double x, double s) { return x > 0.0 ? x : x * s; }
static inline float rv_leaky_relu_grad_f32(float x, float g, float s)
{
    return x > 0.0f ? g : g * s;
}
static inline double rv_leaky_relu_grad_f64(double x, double g, double s)
{
    return x > 0.0 ? g : g * s;
}

/* x if x > 0 else alpha (e^x - 1), with expm1 so small |x| keeps its digits (torch.nn.ELU). */
static inline float rv_elu_f32(float x, float a) { return x > 0.0f ? x : a * expm1f(x); }
static inline double rv_elu_f64(double x, double a) { return x > 0.0 ? x : a * expm1(x); }
static inline float rv_elu_grad_f32(float x, float g, float a)
{
    return x > 0.0f ? g : (g * a) * expf(x);
}
static inline double rv_elu_grad_f64(double x, double g, double a)
{
    return x > 0.0 ? g : (g * a) * exp(x);
}

/* Exact GELU, x Phi(x) = x/2 (1 + erf(x / sqrt 2)) (torch's approximate='none'); its derivative
 * Phi(x) + x phi(x), phi the standard normal density. */
#define RV_RSQRT2 0.70710678118654752440
#define RV_RSQRT2PI 0.39894228040143267794
static inline float rv_gelu_f32(float x, float p)
{
    (void)p;
    return (0.5f * x) * (1.0f + erff(x * (float)RV_RSQRT2));
}
static inline double rv_gelu_f64(double x, double p)
{
    (void)p;
    return (0.5 * x) * (1.0 + erf(x * RV_RSQRT2));
}
static inline float rv_gelu_grad_f32(float x, float g, float p)
{
    (void)p;
    return g * (0.5f * (1.0f + erff(x * (float)RV_RSQRT2)) +
                (x * (float)RV_RSQRT2PI) * expf((-0.5f * x) * x));
}
static inline double rv_gelu_grad_f64(double x, double g, double p)
{
    (void)p;
    return g * (0.5 * (1.0 + erf(x * RV_RSQRT2)) + (x * RV_RSQRT2PI) * exp((-0.5 * x) * x));
}

/* SiLU (swish), x sigmoid(x) = x / (1 + e^-x) as torch.nn.SiLU; derivative
 * s (1 + x (1 - s)) with s = sigmoid(x). */
static inline float rv_silu_f32(float x, float p)
{
    (void)p;
    return x / (1.0f + rv_expf(-x));
}
static inline double rv_silu_f64(double x, double p)
{
    (void)p;
    return x / (1.0 + exp(-x));
}
static inline float rv_silu_grad_f32(float x, float g, float p)
{
    (void)p;
    const float s = 1.0f / (1.0f + rv_expf(-x));
    return g * (s * (1.0f + x * (1.0f - s)));
}
static inline double rv_silu_grad_f64(double x, double g, double p)
{
    (void)p;
    const double s = 1.0 / (1.0 + exp(-x));
    return g * (s * (1.0 + x * (1.0 - s)));
}

#endif
