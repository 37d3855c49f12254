/* Portable bf16 GEMM compiled for AVX-512 (its float32 GEMM's flags and 8 x 32 tile): what an
 * AVX-512 CPU without AVX512-BF16 runs, and RANVIER_ISA=avx512 on one with it. */
#include "gemm_bf16.h"

#define TAG bf16_avx512
#define GEMM_NAME ranvier_gemm_bf16_avx512
#define TABLE_NAME ranvier_gemm_bf16_table_avx512
#define PATH_NAME "portable (avx512)"
#define MR 8
#define NR 32
#define RV_BF16_DPBF16 0
#include "gemm_bf16_template.h"
