/* GEMM for AVX2 + FMA (compiled with -mavx2 -mfma / arch:AVX2, run only where the CPU has them).
 * 6 x 16 float / 6 x 8 double tiles: 12 of the 16 ymm registers hold the accumulator. */
#include "gemm.h"

#define REAL float
#define REAL_IS_DOUBLE 0
#define TAG s_avx2
#define GEMM_NAME ranvier_sgemm_avx2
#define CONV_FORWARD_NAME ranvier_sconv2d_forward_avx2
#define CONV_BACKWARD_NAME ranvier_sconv2d_backward_avx2
#define MR 6
#define NR 16
#include "gemm_template.h"

#define REAL double
#define REAL_IS_DOUBLE 1
#define TAG d_avx2
#define GEMM_NAME ranvier_dgemm_avx2
#define CONV_FORWARD_NAME ranvier_dconv2d_forward_avx2
#define CONV_BACKWARD_NAME ranvier_dconv2d_backward_avx2
#define MR 6
#define NR 8
#include "gemm_template.h"

const ranvier_gemm_kernels ranvier_gemm_avx2 = {
    ranvier_sgemm_avx2,
    ranvier_dgemm_avx2,
    ranvier_sconv2d_forward_avx2,
    ranvier_dconv2d_forward_avx2,
    ranvier_sconv2d_backward_avx2,
    ranvier_dconv2d_backward_avx2,
    &shape_s_avx2,
    &shape_d_avx2,
};
