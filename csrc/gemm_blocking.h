/* The GEMM's cache blocks (MC, KC, NC; gemm_template.h) as run-time values, derived from the
 * CPU's caches with the analytical model of Low, Igual, Smith and Quintana-Orti ("Analytical
 * modeling is enough for high-performance BLIS", ACM TOMS 2016), or forced for tuning.
 *
 * The model, per (dtype, micro-kernel MR x NR), in a set-associative cache with W ways of
 * size/W bytes each, where a contiguous block of B bytes occupies ceil(B / way) ways:
 * - KC: a KC x NR micro-panel of B stays in L1 while MR x KC micro-panels of A stream through it.
 *   B's ways plus A's ways may use W1 - 1 ways (one is left for the next A micro-panel coming
 *   in, so that least-recently-used replacement evicts the old A rather than B). KC is the
 *   largest that fits over all splits of the ways between A and B.
 * - MC: the MC x KC block of A stays in L2 while B micro-panels (the current and the next) and
 *   the MC x NR strip of C they update pass through it; one way is left spare as for L1.
 * - NC: the KC x NC panel of B stays in the per-core share of L3, one way left spare. A is not
 *   counted there: L3s today do not keep copies of what L2 holds.
 * MC is then a multiple of MR and NC of NR, and all three are clamped to the bounds below. */
#ifndef RANVIER_GEMM_BLOCKING_H
#define RANVIER_GEMM_BLOCKING_H

#include <stddef.h>

#include "cpu_caches.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ranvier_gemm_blocking {
    ptrdiff_t mc, kc, nc;
} ranvier_gemm_blocking;

/* KC's upper bound is a compile-time constant: the small-product path keeps a KC x NR panel of
 * B on the stack (64 KiB for AVX-512 float). The others bound the packing buffers each call
 * allocates: MC x KC of A and KC x NC of B (at most 16 and 32 MiB of doubles). */
#define RANVIER_GEMM_KC_MAX 512
#define RANVIER_GEMM_MC_MAX 4096
#define RANVIER_GEMM_NC_MAX 8192
/* The model's results are not taken below these: a shorter k slice pays a pass over C for
 * little arithmetic, a narrower B panel repacks A too often. (A forced blocking may go lower.)
 * KC: 256, as BLIS's hand-tuned Haswell configuration uses for a 32 KiB L1. With the 32-wide
 * float tile such an L1 holds B micro-panels only 160 deep beside A's, but the shorter slices did
 * not run faster on Zen 4 (benchmarks/compare_blocking.py, quiet, 1 thread: KC 256 within -5..+12%
 * of 160 on the squares 256-2048 and the MLP products, noise being about 5%), and 256 is what the
 * compile-time blocks and the earlier Zen 4 tuning used. */
#define RANVIER_GEMM_KC_MODEL_MIN 256
#define RANVIER_GEMM_NC_MODEL_MIN 512

/* One GEMM instance's register tile and the cache blocks it runs with. */
typedef struct ranvier_gemm_shape {
    int mr, nr;
    ranvier_gemm_blocking blocking;
} ranvier_gemm_shape;

/* Sets shape's blocks: ``forced`` fitted to its tile when not NULL, else the model's for its tile
 * and elements of elem_bytes bytes. */
void ranvier_gemm_shape_set_blocking(ranvier_gemm_shape *shape, const ranvier_cpu_caches *caches,
                                     const ranvier_gemm_blocking *forced, int elem_bytes);

/* The model (see above) for a micro-kernel of mr x nr elements of elem_bytes bytes; odd or
 * unknown cache facts are replaced by ranvier_cpu_caches_or_defaults first. Pure. */
ranvier_gemm_blocking ranvier_gemm_blocking_derive(const ranvier_cpu_caches *caches, int mr,
                                                   int nr, int elem_bytes);

/* A forced blocking made valid for an mr x nr kernel: each value clamped to 1..its bound, then
 * MC and NC rounded down to a multiple of MR and NR (at least one). */
ranvier_gemm_blocking ranvier_gemm_blocking_fit(ranvier_gemm_blocking forced, int mr, int nr);

#ifdef __cplusplus
}
#endif
#endif
