/* Portable bf16 GEMM compiled for AVX2 + FMA (-mavx2 -mfma): float32 FMAs on the widened operands,
 * the 6 x 16 tile of the float32 AVX2 GEMM. */
#include "gemm_bf16.h"

#define TAG bf16_avx2
#define GEMM_NAME ranvier_gemm_bf16_avx2
#define TABLE_NAME ranvier_gemm_bf16_table_avx2
#define PATH_NAME "portable (avx2)"
#define MR 6
#define NR 16
#define RV_BF16_DPBF16 0
#include "gemm_bf16_template.h"
