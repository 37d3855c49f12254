/* The per-ISA instances of the activation kernels. Included by elementwise_<isa>.c with EW_ISA
 * set to the suffix; each such file is compiled with its own instruction-set flags. */
#include "elementwise.h"
#include "gemm.h" /* RANVIER_ACT_* codes */

#define EW_CAT2(a, b) a##_##b
#define EW_CAT(a, b) EW_CAT2(a, b)
#define EW_NAME(name) EW_CAT(name, EW_ISA)

void EW_NAME(ranvier_act_forward_f32)(int act, const float *x, float *y, ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_f32(x, y, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_f32(x, y, n); break;
    case RANVIER_ACT_TANH: rv_tanh_f32(x, y, n); break;
    default: if (x != y) memcpy(y, x, sizeof(float) * (size_t)n);
    }
}

void EW_NAME(ranvier_act_forward_f64)(int act, const double *x, double *y, ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_f64(x, y, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_f64(x, y, n); break;
    case RANVIER_ACT_TANH: rv_tanh_f64(x, y, n); break;
    default: if (x != y) memcpy(y, x, sizeof(double) * (size_t)n);
    }
}

void EW_NAME(ranvier_act_backward_f32)(int act, const float *y, const float *dy, float *dx,
                                       ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_backward_f32(y, dy, dx, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_backward_f32(y, dy, dx, n); break;
    case RANVIER_ACT_TANH: rv_tanh_backward_f32(y, dy, dx, n); break;
    default: if (dy != dx) memcpy(dx, dy, sizeof(float) * (size_t)n);
    }
}

void EW_NAME(ranvier_act_backward_f64)(int act, const double *y, const double *dy, double *dx,
                                       ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_backward_f64(y, dy, dx, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_backward_f64(y, dy, dx, n); break;
    case RANVIER_ACT_TANH: rv_tanh_backward_f64(y, dy, dx, n); break;
    default: if (dy != dx) memcpy(dx, dy, sizeof(double) * (size_t)n);
    }
}
