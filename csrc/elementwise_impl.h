/* The per-ISA instances of the elementwise kernels. Included by elementwise_<isa>.c with EW_ISA
 * set to the suffix; each such file is compiled with its own instruction-set flags and exports
 * its kernels as the table ranvier_ew_<isa>. */
#include "elementwise.h"
#include "gemm.h" /* RANVIER_ACT_* codes */

#define EW_CAT2(a, b) a##_##b
#define EW_CAT(a, b) EW_CAT2(a, b)
#define EW_NAME(name) EW_CAT(name, EW_ISA)

/* One switch per dtype and kernel shape: ARGS are the kernel's arguments after act. */
#define EW_SWITCH(prefix, suffix, ...)                                                           \
    switch (act) {                                                                             \
    case RANVIER_ACT_RELU: prefix##relu_##suffix(__VA_ARGS__); break;                         \
    case RANVIER_ACT_SIGMOID: prefix##sigmoid_##suffix(__VA_ARGS__); break;                   \
    case RANVIER_ACT_TANH: prefix##tanh_##suffix(__VA_ARGS__); break;                         \
    default: prefix##none_##suffix(__VA_ARGS__);                                               \
    }

static void EW_NAME(act_forward_f32)(int act, const float *x, float *y, ptrdiff_t n)
{
    EW_SWITCH(rv_, f32, x, y, n)
}
static void EW_NAME(act_forward_f64)(int act, const double *x, double *y, ptrdiff_t n)
{
    EW_SWITCH(rv_, f64, x, y, n)
}
static void EW_NAME(bias_act_f32)(int act, const float *z, const float *b, float *y,
                                  ptrdiff_t rows, ptrdiff_t cols)
{
    EW_SWITCH(rv_bias_, f32, z, b, y, rows, cols)
}
static void EW_NAME(bias_act_f64)(int act, const double *z, const double *b, double *y,
                                  ptrdiff_t rows, ptrdiff_t cols)
{
    EW_SWITCH(rv_bias_, f64, z, b, y, rows, cols)
}

static void EW_NAME(act_backward_f32)(int act, const float *y, const float *dy, float *dx,
                                      ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_backward_f32(y, dy, dx, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_backward_f32(y, dy, dx, n); break;
    case RANVIER_ACT_TANH: rv_tanh_backward_f32(y, dy, dx, n); break;
    default: if (dy != dx) memcpy(dx, dy, sizeof(float) * (size_t)n);
    }
}

static void EW_NAME(act_backward_f64)(int act, const double *y, const double *dy, double *dx,
                                      ptrdiff_t n)
{
    switch (act) {
    case RANVIER_ACT_RELU: rv_relu_backward_f64(y, dy, dx, n); break;
    case RANVIER_ACT_SIGMOID: rv_sigmoid_backward_f64(y, dy, dx, n); break;
    case RANVIER_ACT_TANH: rv_tanh_backward_f64(y, dy, dx, n); break;
    default: if (dy != dx) memcpy(dx, dy, sizeof(double) * (size_t)n);
    }
}

/* softmax + cross-entropy, once per dtype */
#include "softmax_ce_rows.h"
#define CE_T float
#define CE_P(name) EW_CAT(name, f32)
#define CE_FN(name) EW_CAT(EW_NAME(name), f32)
#include "softmax_ce_template.h"
#undef CE_T
#undef CE_P
#undef CE_FN
#define CE_T double
#define CE_P(name) EW_CAT(name, f64)
#define CE_FN(name) EW_CAT(EW_NAME(name), f64)
#include "softmax_ce_template.h"
#undef CE_T
#undef CE_P
#undef CE_FN

const ranvier_ew_kernels EW_NAME(ranvier_ew) = {
    EW_NAME(act_forward_f32),     EW_NAME(act_forward_f64), EW_NAME(act_backward_f32),
    EW_NAME(act_backward_f64),    EW_NAME(bias_act_f32),    EW_NAME(bias_act_f64),
    EW_CAT(EW_NAME(softmax_ce), f32), EW_CAT(EW_NAME(softmax_ce), f64),
};
