/* Mixed-precision GEMM: C := act(alpha * A @ B + beta * C + bias) with bfloat16 operands (bf16.h),
 * float32 accumulation and a float32 C, in the BLIS style of gemm.h (strided operands, packed
 * panels, run-time cache blocks, the same threads and epilogue).
 *
 * An operand is either bf16 bits (uint16) or float32 that is rounded to bf16 (ranvier_f32_to_bf16,
 * nearest even) while it is packed: a float32 operand gives exactly the product of its rounded
 * copy, without a buffer for that copy (the master weights of a mixed-precision layer stay
 * float32).
 *
 * Packed layout, the one VDPBF16PS takes: k in pairs (an odd k padded with a zero), each pair one
 * 32-bit word, the even-k value in its low half. A's micro-panel holds MR words per pair (each
 * broadcast to a vector), B's NR words per pair: a vector of B words times a broadcast A word adds
 * a[2p] * b[2p] + a[2p+1] * b[2p+1] into each float32 lane, the odd product first (as VDPBF16PS).
 *
 * Paths, one table per level of isa.h: avx512_bf16 runs the VDPBF16PS micro-kernel
 * (gemm_bf16_avx512_bf16.c); generic, avx2 and avx512 the portable one (plain C on the widened
 * operands, vectorised by the compiler at that unit's width). Both add the exact products of a pair
 * in the same order, so the paths agree bit for bit for the same k slicing (KC), alpha 1 and beta
 * 0 or 1; their blocks, hence the slicing, may differ (the tile is part of the blocking model). A
 * CPU with AMX would add a level to isa.h and a table here whose micro-kernel runs TDPBF16PS tiles
 * on the same B panels. */
#ifndef RANVIER_GEMM_BF16_H
#define RANVIER_GEMM_BF16_H

#include <stddef.h>

#include "activations.h"
#include "gemm_blocking.h"
#include "isa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One operand: element (i, j) of op(X) at p + i * rs + j * cs, elements of bf16 bits (f32 == 0)
 * or of float32 (f32 == 1). */
typedef struct ranvier_bf16_operand {
    const void *p;
    ptrdiff_t rs, cs;
    int f32;
} ranvier_bf16_operand;

/* bias (length n, may be NULL) and act (activations.h) form the epilogue of a Dense layer; NULL
 * and {RANVIER_ACT_NONE} for a plain product. nthreads is an upper bound: products below
 * RANVIER_GEMM_PARALLEL_MIN_WORK (gemm.h) run on one thread. Returns 0, or -1 when the packing
 * buffers could not be allocated. */
#define RANVIER_GEMM_BF16_SIGNATURE(name)                                                        \
    int name(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, ranvier_bf16_operand a,         \
             ranvier_bf16_operand b, float beta, float *c, ptrdiff_t rsc, ptrdiff_t csc,          \
             const float *bias, ranvier_act act, int nthreads)
typedef RANVIER_GEMM_BF16_SIGNATURE((*ranvier_gemm_bf16_fn));

typedef struct ranvier_gemm_bf16_kernels {
    ranvier_gemm_bf16_fn gemm;
    ranvier_gemm_shape *shape;
    const char *path; /* what show_config reports: the micro-kernel and its width */
} ranvier_gemm_bf16_kernels;

/* The table for an ISA (isa.h); the generic one where this CPU cannot run it. */
const ranvier_gemm_bf16_kernels *ranvier_gemm_bf16_kernels_for(int isa);

/* As ranvier_gemm_set_blocking (gemm.h), for the bf16 instances (2-byte elements). */
void ranvier_gemm_bf16_set_blocking(const ranvier_cpu_caches *caches,
                                    const ranvier_gemm_blocking *forced);

#define RANVIER_DECLARE_GEMM_BF16(isa)                                                           \
    RANVIER_GEMM_BF16_SIGNATURE(ranvier_gemm_bf16_##isa);                                        \
    extern const ranvier_gemm_bf16_kernels ranvier_gemm_bf16_table_##isa;
RANVIER_DECLARE_GEMM_BF16(generic)
#if RANVIER_HAVE_X86_SIMD
RANVIER_DECLARE_GEMM_BF16(avx2)
RANVIER_DECLARE_GEMM_BF16(avx512)
RANVIER_DECLARE_GEMM_BF16(avx512_bf16)
#endif

#ifdef __cplusplus
}
#endif
#endif
