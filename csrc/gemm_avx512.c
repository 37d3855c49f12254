/* GEMM for AVX-512 F/DQ/VL (compiled with -mavx512f..., run only where the CPU and OS support it).
 * 12 x 32 float / 12 x 16 double tiles: 24 of the 32 zmm registers hold the accumulator. */
#include "gemm.h"

#define REAL float
#define TAG s_avx512
#define GEMM_NAME ranvier_sgemm_avx512
#define MR 12
#define NR 32
#define MC 192
#define KC 256
#define NC 4096
#include "gemm_template.h"

#define REAL double
#define TAG d_avx512
#define GEMM_NAME ranvier_dgemm_avx512
#define MR 12
#define NR 16
#define MC 96
#define KC 256
#define NC 4096
#include "gemm_template.h"
