/* bf16 GEMM on VDPBF16PS (compiled with the AVX-512 flags and -mavx512bf16; run only where the CPU
 * reports AVX512-BF16). 8 x 32 tile: 16 zmm accumulators. */
#include "gemm_bf16.h"

#define TAG bf16_avx512_bf16
#define GEMM_NAME ranvier_gemm_bf16_avx512_bf16
#define TABLE_NAME ranvier_gemm_bf16_table_avx512_bf16
#define PATH_NAME "avx512_bf16 (VDPBF16PS)"
#define MR 8
#define NR 32
#define RV_BF16_DPBF16 1
#include "gemm_bf16_template.h"
