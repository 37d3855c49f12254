/* Run-time choice of the elementwise kernels: the widest instruction set this CPU supports. */
#include "elementwise.h"
#include "gemm.h"
#include "runtime.h"

static int ew_isa = -1;
static const ranvier_ew_kernels *ew = &ranvier_ew_generic;

int ranvier_elementwise_set_isa(int isa)
{
    const ranvier_ew_kernels *k;
    switch (isa) {
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_ISA_AVX512:
        if (!ranvier_cpu_has_avx512()) return -1;
        k = &ranvier_ew_avx512;
        break;
    case RANVIER_ISA_AVX2:
        if (!ranvier_cpu_has_avx2_fma()) return -1;
        k = &ranvier_ew_avx2;
        break;
#endif
    case RANVIER_ISA_GENERIC: k = &ranvier_ew_generic; break;
    default: return -1;
    }
    ew = k;
    ew_isa = isa;
    return 0;
}

int ranvier_elementwise_get_isa(void)
{
    if (ew_isa < 0) {
        if (ranvier_elementwise_set_isa(RANVIER_ISA_AVX512) != 0 &&
            ranvier_elementwise_set_isa(RANVIER_ISA_AVX2) != 0)
            ranvier_elementwise_set_isa(RANVIER_ISA_GENERIC);
    }
    return ew_isa;
}

const ranvier_ew_kernels *ranvier_ew(void)
{
    if (ew_isa < 0) ranvier_elementwise_get_isa();
    return ew;
}
