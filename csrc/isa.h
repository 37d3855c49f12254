/* The instruction sets ranvier's kernels are built for, in one list, and how a kernel family
 * picks its table of functions for one of them.
 *
 * Every kernel family (gemm, elementwise, optim) compiles one translation unit per ISA with that
 * ISA's flags, each exporting a table `<prefix>_<isa>` of the family's struct type, and looks the
 * table up with the function RANVIER_DEFINE_TABLE_FOR defines. Which ISA is active is not kept
 * here: it lives in one place, the _runtime extension (set_isa / active_isa), and is passed to
 * <family>_for(isa) on each call, so every extension follows the same choice. */
#ifndef RANVIER_ISA_H
#define RANVIER_ISA_H

/* X(CODE, name, code), widest last; each level has every instruction of the ones before it.
 * avx512_bf16 is AVX-512 plus VDPBF16PS: only the bf16 GEMM (gemm_bf16.h) has kernels of its
 * own for it, every other family runs its avx512 table there. A next level (AMX: TDPBF16PS, once
 * the process has asked Linux for the tile state) would follow it in the same way: its probe in
 * runtime.c, its bf16 GEMM table in gemm_bf16.c. */
#define RANVIER_ISAS(X)                                                                          \
    X(GENERIC, generic, 0)                                                                       \
    X(AVX2, avx2, 1)                                                                             \
    X(AVX512, avx512, 2)                                                                         \
    X(AVX512_BF16, avx512_bf16, 3)

/* Whether this build compiled the AVX512-BF16 unit (setup.py probes the compiler); a build
 * without the probe (another build system) assumes the x86 units are all there. */
#ifndef RANVIER_HAVE_AVX512BF16
#define RANVIER_HAVE_AVX512BF16 RANVIER_HAVE_X86_SIMD
#endif

#define RV_ISA_ENUM(CODE, name, code) RANVIER_ISA_##CODE = code,
enum { RANVIER_ISAS(RV_ISA_ENUM) RANVIER_ISA_COUNT };
#undef RV_ISA_ENUM

#ifdef __cplusplus
extern "C" {
#endif
extern const char *const ranvier_isa_names[RANVIER_ISA_COUNT];
/* 1 when this build and CPU (and OS) can run isa. */
int ranvier_isa_supported(int isa);
/* The widest supported ISA. */
int ranvier_isa_best(void);
#ifdef __cplusplus
}
#endif

/* const T *fn(int isa): the family's table for isa; the generic table for an ISA this build or
 * CPU cannot run (so a bad code never reaches an illegal instruction). */
#if RANVIER_HAVE_X86_SIMD
#define RANVIER_DEFINE_TABLE_FOR(T, fn, prefix)                                                  \
    const T *fn(int isa)                                                                         \
    {                                                                                            \
        if (!ranvier_isa_supported(isa)) return &prefix##_generic;                               \
        switch (isa) {                                                                           \
        case RANVIER_ISA_AVX512_BF16:                                                            \
        case RANVIER_ISA_AVX512: return &prefix##_avx512;                                        \
        case RANVIER_ISA_AVX2: return &prefix##_avx2;                                            \
        default: return &prefix##_generic;                                                       \
        }                                                                                        \
    }
#else
#define RANVIER_DEFINE_TABLE_FOR(T, fn, prefix)                                                  \
    const T *fn(int isa)                                                                         \
    {                                                                                            \
        (void)isa;                                                                               \
        return &prefix##_generic;                                                                \
    }
#endif

#endif
