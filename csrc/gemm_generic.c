/* Portable GEMM: plain C micro-kernel, vectorised by the compiler for the baseline ISA only
 * (SSE2 on x86-64, NEON on aarch64). Runs everywhere; the fallback when no SIMD unit matches. */
#include "gemm.h"

#define REAL float
#define REAL_IS_DOUBLE 0
#define TAG s_generic
#define GEMM_NAME ranvier_sgemm_generic
#define CONV_FORWARD_NAME ranvier_sconv2d_forward_generic
#define CONV_BACKWARD_NAME ranvier_sconv2d_backward_generic
#define MR 4
#define NR 8
#include "gemm_template.h"

#define REAL double
#define REAL_IS_DOUBLE 1
#define TAG d_generic
#define GEMM_NAME ranvier_dgemm_generic
#define CONV_FORWARD_NAME ranvier_dconv2d_forward_generic
#define CONV_BACKWARD_NAME ranvier_dconv2d_backward_generic
#define MR 4
#define NR 4
#include "gemm_template.h"

const ranvier_gemm_kernels ranvier_gemm_generic = {
    ranvier_sgemm_generic,
    ranvier_dgemm_generic,
    ranvier_sconv2d_forward_generic,
    ranvier_dconv2d_forward_generic,
    ranvier_sconv2d_backward_generic,
    ranvier_dconv2d_backward_generic,
    &shape_s_generic,
    &shape_d_generic,
};
