/* The bf16 GEMM's table for an ISA (isa.h) and the setting of its instances' cache blocks. */
#include "gemm_bf16.h"

const ranvier_gemm_bf16_kernels *ranvier_gemm_bf16_kernels_for(int isa)
{
    if (!ranvier_isa_supported(isa)) return &ranvier_gemm_bf16_table_generic;
    switch (isa) {
#if RANVIER_HAVE_X86_SIMD
#if RANVIER_HAVE_AVX512BF16
    case RANVIER_ISA_AVX512_BF16: return &ranvier_gemm_bf16_table_avx512_bf16;
#endif
    case RANVIER_ISA_AVX512: return &ranvier_gemm_bf16_table_avx512;
    case RANVIER_ISA_AVX2: return &ranvier_gemm_bf16_table_avx2;
#endif
    default: return &ranvier_gemm_bf16_table_generic;
    }
}

void ranvier_gemm_bf16_set_blocking(const ranvier_cpu_caches *caches,
                                    const ranvier_gemm_blocking *forced)
{
    for (int isa = 0; isa < RANVIER_ISA_COUNT; ++isa)
        if (ranvier_isa_supported(isa))
            ranvier_gemm_shape_set_blocking(ranvier_gemm_bf16_kernels_for(isa)->shape, caches,
                                            forced, 2);
}
