/* Portable bf16 GEMM at the baseline width (SSE2 on x86-64, NEON on aarch64); the tile of the
 * float32 generic GEMM. */
#include "gemm_bf16.h"

#define TAG bf16_generic
#define GEMM_NAME ranvier_gemm_bf16_generic
#define TABLE_NAME ranvier_gemm_bf16_table_generic
#define PATH_NAME "portable (generic)"
#define MR 4
#define NR 8
#define RV_BF16_DPBF16 0
#include "gemm_bf16_template.h"
