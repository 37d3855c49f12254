/* GEMM for AVX-512 F/DQ/VL (compiled with -mavx512f..., run only where the CPU and OS support it).
 * 8 x 32 float / 8 x 16 double tiles: 16 of the 32 zmm registers hold the accumulator (FMA
 * latency is hidden with 4+), and batch sizes, multiples of 8, fill whole tiles. Measured on Zen 4:
 * 8 x 32 beat 12 x 32 by 15-25% on MLP products (32 x 256 x 784: 163 vs 197 us). */
#include "gemm.h"

#define REAL float
#define REAL_IS_DOUBLE 0
#define TAG s_avx512
#define GEMM_NAME ranvier_sgemm_avx512
#define CONV_FORWARD_NAME ranvier_sconv2d_forward_avx512
#define CONV_BACKWARD_NAME ranvier_sconv2d_backward_avx512
#define MR 8
#define NR 32
#include "gemm_template.h"

#define REAL double
#define REAL_IS_DOUBLE 1
#define TAG d_avx512
#define GEMM_NAME ranvier_dgemm_avx512
#define CONV_FORWARD_NAME ranvier_dconv2d_forward_avx512
#define CONV_BACKWARD_NAME ranvier_dconv2d_backward_avx512
#define MR 8
#define NR 16
#include "gemm_template.h"

const ranvier_gemm_kernels ranvier_gemm_avx512 = {
    ranvier_sgemm_avx512,
    ranvier_dgemm_avx512,
    ranvier_sconv2d_forward_avx512,
    ranvier_dconv2d_forward_avx512,
    ranvier_sconv2d_backward_avx512,
    ranvier_dconv2d_backward_avx512,
    &shape_s_avx512,
    &shape_d_avx512,
};
