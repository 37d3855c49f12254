#include "runtime.h"
#include "activations.h"
#include "isa.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

/* The pause is built for libgomp (gcc) only; setup.py's probe sets RANVIER_HAVE_OMP_PAUSE when the
 * runtime has it. LLVM's libomp (clang, icx) has the call too, but re-initialises itself in a
 * forked child and its hard pause was not tested beside other threads' regions, so those builds
 * take the child-side fallback (_config.py: the child stays on one thread). */
#if defined(_OPENMP) && defined(RANVIER_HAVE_OMP_PAUSE) && RANVIER_HAVE_OMP_PAUSE \
    && defined(__GNUC__) && !defined(__clang__)
#define RANVIER_FORK_RELEASE 1
#else
#define RANVIER_FORK_RELEASE 0
#endif

int ranvier_fork_release_supported(void)
{
    return RANVIER_FORK_RELEASE;
}

int ranvier_fork_prepare(void)
{
#if RANVIER_FORK_RELEASE
    return omp_pause_resource_all(omp_pause_hard) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

#if RANVIER_HAVE_X86_SIMD
#if defined(_MSC_VER)
#include <intrin.h>
#include <immintrin.h>
#else
#include <cpuid.h>
#endif
#endif

int ranvier_openmp_enabled(void)
{
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

int ranvier_omp_max_threads(void)
{
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int ranvier_omp_num_procs(void)
{
#if defined(_OPENMP)
    return omp_get_num_procs();
#else
    return 1;
#endif
}

#if RANVIER_HAVE_X86_SIMD
void ranvier_cpuid_count(unsigned leaf, unsigned sub, unsigned r[4])
{
#if defined(_MSC_VER)
    int regs[4];
    __cpuidex(regs, (int)leaf, (int)sub);
    for (int i = 0; i < 4; ++i) r[i] = (unsigned)regs[i];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

/* XGETBV(0): which register states the OS saves on a context switch. */
static unsigned long long xgetbv0(void)
{
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#endif
}

/* bit 0: AVX2+FMA usable, bit 1: AVX-512 F/DQ/VL usable, bit 2: AVX512-BF16 usable too.
 * Computed once. */
static int x86_features(void)
{
    static int cached = -1;
    if (cached >= 0) return cached;
    int feats = 0;
    unsigned r[4];
    ranvier_cpuid_count(0, 0, r);
    unsigned max_leaf = r[0];
    ranvier_cpuid_count(1, 0, r);
    int osxsave = (r[2] >> 27) & 1, fma = (r[2] >> 12) & 1, avx = (r[2] >> 28) & 1;
    if (osxsave && avx && max_leaf >= 7) {
        unsigned long long xcr0 = xgetbv0();
        int ymm_ok = (xcr0 & 0x6) == 0x6;             /* SSE + AVX state */
        int zmm_ok = ymm_ok && (xcr0 & 0xE0) == 0xE0;  /* opmask + ZMM_Hi256 + Hi16_ZMM */
        ranvier_cpuid_count(7, 0, r);
        int avx2 = (r[1] >> 5) & 1;
        int avx512f = (r[1] >> 16) & 1, avx512dq = (r[1] >> 17) & 1, avx512vl = (r[1] >> 31) & 1;
        if (ymm_ok && avx2 && fma) feats |= 1;
        if (zmm_ok && (feats & 1) && avx512f && avx512dq && avx512vl) feats |= 2;
        /* AVX512-BF16: leaf 7 subleaf 1, EAX bit 5 (subleaf 1 exists when subleaf 0's EAX >= 1) */
        if ((feats & 2) && r[0] >= 1) {
            ranvier_cpuid_count(7, 1, r);
            if ((r[0] >> 5) & 1) feats |= 4;
        }
    }
    cached = feats;
    return feats;
}
int ranvier_cpu_has_avx2_fma(void) { return x86_features() & 1; }
int ranvier_cpu_has_avx512(void) { return (x86_features() >> 1) & 1; }
int ranvier_cpu_has_avx512_bf16(void) { return (x86_features() >> 2) & 1; }
#else
int ranvier_cpu_has_avx2_fma(void) { return 0; }
int ranvier_cpu_has_avx512(void) { return 0; }
int ranvier_cpu_has_avx512_bf16(void) { return 0; }
#endif

/* -- the ISA list (isa.h) -------------------------------------------------------------------- */
#define RV_ISA_NAME(CODE, name, code) #name,
const char *const ranvier_isa_names[RANVIER_ISA_COUNT] = {RANVIER_ISAS(RV_ISA_NAME)};
#undef RV_ISA_NAME

int ranvier_isa_supported(int isa)
{
    switch (isa) {
    case RANVIER_ISA_GENERIC: return 1;
    case RANVIER_ISA_AVX2: return ranvier_cpu_has_avx2_fma();
    case RANVIER_ISA_AVX512: return ranvier_cpu_has_avx512();
    case RANVIER_ISA_AVX512_BF16: /* the CPU has it, and so does this build (setup.py's probe) */
        return RANVIER_HAVE_AVX512BF16 && ranvier_cpu_has_avx512_bf16();
    default: return 0;
    }
}

int ranvier_isa_best(void)
{
    for (int isa = RANVIER_ISA_COUNT - 1; isa > 0; --isa)
        if (ranvier_isa_supported(isa)) return isa;
    return RANVIER_ISA_GENERIC;
}

/* -- the activation table's names (activations.h) ------------------------------------------- */
#define RV_ACT_INFO(CODE, name, code, needs) {#name, code, RANVIER_ACT_NEEDS_##needs},
const ranvier_act_info ranvier_act_table[RANVIER_ACT_COUNT] = {RANVIER_ACTIVATIONS(RV_ACT_INFO)};
#undef RV_ACT_INFO
