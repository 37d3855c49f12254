/* The GEMM table for an ISA (isa.h), the small-product cut-off the tests can move, and the
 * setting of every instance's cache blocks. */
#include "gemm.h"

double ranvier_gemm_sup_max_bytes = 512.0 * 1024.0;

RANVIER_DEFINE_TABLE_FOR(ranvier_gemm_kernels, ranvier_gemm_kernels_for, ranvier_gemm)

void ranvier_gemm_set_blocking(const ranvier_cpu_caches *caches,
                               const ranvier_gemm_blocking *forced)
{
    for (int isa = 0; isa < RANVIER_ISA_COUNT; ++isa) {
        if (!ranvier_isa_supported(isa)) continue;
        const ranvier_gemm_kernels *table = ranvier_gemm_kernels_for(isa);
        ranvier_gemm_shape_set_blocking(table->sgemm_shape, caches, forced, (int)sizeof(float));
        ranvier_gemm_shape_set_blocking(table->dgemm_shape, caches, forced, (int)sizeof(double));
    }
}
