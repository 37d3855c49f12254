/* The bf16 GEMM (gemm_bf16.h) for one ISA. Included by gemm_bf16_<isa>.c with:
 *   TAG             name suffix of this instance (FN(name) gives name_TAG)
 *   GEMM_NAME       the exported function, TABLE_NAME its table, PATH_NAME the table's path
 *   MR, NR          register tile (rows of A, columns of B), NR a multiple of 2
 *   RV_BF16_DPBF16  1: the VDPBF16PS micro-kernel (the unit is compiled with -mavx512bf16 and NR
 *                   is 16 or 32); 0: the portable one
 * The loops are those of gemm_template.h: jc over NC columns of B, pc over k slices (each packs
 * B~), ic over MC rows of A (each packs A~), then the MR x NR tiles, the packing and the tiles
 * shared statically among the threads; every tile is summed by one thread in the same order, so
 * the result does not depend on the thread count. Unlike the float GEMM every product is packed:
 * VDPBF16PS needs B's pairs interleaved and a float32 operand needs rounding, so there is no
 * unpacked path for small products. */
#include <stdint.h>

#include "bf16.h"
#include "gemm.h"
#include "gemm_bf16.h"

#define REAL float
#define REAL_IS_DOUBLE 0
#include "gemm_tile.h"

#ifndef RANVIER_GEMM_BF16_TEMPLATE_ONCE
#define RANVIER_GEMM_BF16_TEMPLATE_ONCE
/* One packed word: the pair (x[2q], x[2q + 1]), the even one in the low half (VDPBF16PS's
 * element 2i), and its two values widened back for the portable kernel. */
static inline uint32_t rv_pair(uint16_t even, uint16_t odd)
{
    return (uint32_t)even | (uint32_t)odd << 16;
}
static inline float rv_even(uint32_t w) { return ranvier_bf16_to_f32((uint16_t)w); }
static inline float rv_odd(uint32_t w) { return ranvier_bf16_to_f32((uint16_t)(w >> 16)); }
static inline uint16_t rv_keep_bf16(uint16_t h) { return h; }

/* A micro-panel of w lines, k slice of length kc: dst[q * w + i] = the pair (x(i, 2q),
 * x(i, 2q + 1)) for lines i < rows and pairs q < (kc + 1) / 2, where
 * x(i, t) = src[i * ls + t * ks]; lines rows..w-1, and the odd half of a last pair past kc, are
 * zero. A's panels take its rows as
 * lines (ls = rsa, ks = csa, w = MR), B's its columns (ls = csb, ks = rsb, w = NR). */
#define RV_DEFINE_PACK_PAIRS(SUFFIX, T, TO_BF16)                                                 \
    static void rv_pack_pairs_##SUFFIX(ptrdiff_t rows, ptrdiff_t kc, const T *src, ptrdiff_t ls, \
                                       ptrdiff_t ks, int w, uint32_t *restrict dst)              \
    {                                                                                            \
        const ptrdiff_t full = kc / 2, odd = kc & 1;                                             \
        if (rows < w)                                                                            \
            for (ptrdiff_t q = 0; q < full + odd; ++q)                                           \
                for (ptrdiff_t i = rows; i < w; ++i) dst[q * w + i] = 0;                         \
        if (ks == 1) { /* lines contiguous along k (A = X, B = W.T): pairs side by side */      \
            for (ptrdiff_t i = 0; i < rows; ++i) {                                               \
                const T *x = src + i * ls;                                                       \
                for (ptrdiff_t q = 0; q < full; ++q)                                             \
                    dst[q * w + i] = rv_pair(TO_BF16(x[2 * q]), TO_BF16(x[2 * q + 1]));          \
                if (odd) dst[full * w + i] = rv_pair(TO_BF16(x[kc - 1]), 0);                     \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        for (ptrdiff_t q = 0; q < full; ++q) { /* across lines: contiguous when ls == 1 */       \
            const T *x0 = src + 2 * q * ks, *x1 = x0 + ks;                                       \
            for (ptrdiff_t i = 0; i < rows; ++i)                                                 \
                dst[q * w + i] = rv_pair(TO_BF16(x0[i * ls]), TO_BF16(x1[i * ls]));              \
        }                                                                                        \
        if (odd) {                                                                               \
            const T *x0 = src + (kc - 1) * ks;                                                   \
            for (ptrdiff_t i = 0; i < rows; ++i)                                                 \
                dst[full * w + i] = rv_pair(TO_BF16(x0[i * ls]), 0);                             \
        }                                                                                        \
    }
RV_DEFINE_PACK_PAIRS(bf16, uint16_t, rv_keep_bf16)
RV_DEFINE_PACK_PAIRS(f32, float, ranvier_f32_to_bf16)

/* The panel of lines line0.. (rows of A or columns of B), k from k0, of operand x. */
static void rv_pack_panel(ranvier_bf16_operand x, ptrdiff_t line0, ptrdiff_t k0, ptrdiff_t ls,
                          ptrdiff_t ks, ptrdiff_t rows, ptrdiff_t kc, int w, uint32_t *dst)
{
    const ptrdiff_t at = line0 * ls + k0 * ks;
    if (x.f32)
        rv_pack_pairs_f32(rows, kc, (const float *)x.p + at, ls, ks, w, dst);
    else
        rv_pack_pairs_bf16(rows, kc, (const uint16_t *)x.p + at, ls, ks, w, dst);
}
#endif

/* Micro-kernels: kp pairs of the packed panels into an MR x C accumulator, then written (or, with
 * ``accumulate``, added) to dst with leading dimension ld. C is NR, or NR / 2 for a tile with at
 * most that many columns (a 10-wide output layer). B's panel has NR words per pair either way. */
#if RV_BF16_DPBF16
#include <immintrin.h>
/* __m512i's bits as VDPBF16PS's operand type (a union: compilers disagree on vector casts). */
static inline __m512bh FN(as_bh)(__m512i v)
{
    union {
        __m512i i;
        __m512bh h;
    } u;
    u.i = v;
    return u.h;
}
/* Each pair: C / 16 vectors of B words, one broadcast A word per row, one VDPBF16PS per
 * accumulator (MR x C / 16 of them in zmm registers). */
#define RV_BF16_UKERNEL(C)                                                                       \
    static void FN(uk_##C)(ptrdiff_t kp, const uint32_t *restrict a, const uint32_t *restrict b, \
                           float *restrict dst, ptrdiff_t ld, int accumulate)                    \
    {                                                                                            \
        __m512 acc[MR][C / 16];                                                                  \
        for (int i = 0; i < MR; ++i)                                                             \
            for (int v = 0; v < C / 16; ++v) acc[i][v] = _mm512_setzero_ps();                    \
        for (ptrdiff_t q = 0; q < kp; ++q) {                                                     \
            __m512bh bv[C / 16];                                                                 \
            for (int v = 0; v < C / 16; ++v)                                                     \
                bv[v] = FN(as_bh)(_mm512_loadu_si512(b + q * NR + 16 * v));                     \
            for (int i = 0; i < MR; ++i) {                                                       \
                const __m512bh ai = FN(as_bh)(_mm512_set1_epi32((int)a[q * MR + i]));           \
                for (int v = 0; v < C / 16; ++v)                                                 \
                    acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);                          \
            }                                                                                    \
        }                                                                                        \
        for (int i = 0; i < MR; ++i)                                                             \
            for (int v = 0; v < C / 16; ++v) {                                                   \
                float *d = dst + i * ld + 16 * v;                                                \
                _mm512_storeu_ps(d, accumulate ? _mm512_add_ps(_mm512_loadu_ps(d), acc[i][v])    \
                                               : acc[i][v]);                                     \
            }                                                                                    \
    }
#else
/* The pair's two products are exact in float32 (8-bit significands), so acc + a * b rounds
 * once whether or not the compiler fuses it, and adding the odd product first matches
 * VDPBF16PS bit for bit. */
#define RV_BF16_UKERNEL(C)                                                                       \
    static void FN(uk_##C)(ptrdiff_t kp, const uint32_t *restrict a, const uint32_t *restrict b, \
                           float *restrict dst, ptrdiff_t ld, int accumulate)                    \
    {                                                                                            \
        float acc[MR * C];                                                                       \
        for (int t = 0; t < MR * C; ++t) acc[t] = 0;                                             \
        for (ptrdiff_t q = 0; q < kp; ++q) {                                                     \
            const uint32_t *aq = a + q * MR, *bq = b + q * NR;                                   \
            float be[C], bo[C];                                                                  \
            RV_PRAGMA_SIMD                                                                       \
            for (int j = 0; j < C; ++j) {                                                        \
                be[j] = rv_even(bq[j]);                                                          \
                bo[j] = rv_odd(bq[j]);                                                           \
            }                                                                                    \
            for (int i = 0; i < MR; ++i) {                                                       \
                const float ae = rv_even(aq[i]), ao = rv_odd(aq[i]);                             \
                RV_PRAGMA_SIMD                                                                   \
                for (int j = 0; j < C; ++j)                                                      \
                    acc[i * C + j] = (acc[i * C + j] + ao * bo[j]) + ae * be[j];                 \
            }                                                                                    \
        }                                                                                        \
        RV_STORE_ACC(acc, MR, C, dst, ld, accumulate);                                           \
    }
#endif
#define NRH (NR / 2)
RV_BF16_UKERNEL(NR)
RV_BF16_UKERNEL(NRH)

/* This instance's tile and blocks (ranvier_gemm_bf16_set_blocking sets them from the caches);
 * until then blocks that are valid for any tile. */
static ranvier_gemm_shape FN(shape) = {MR, NR, {MR * 16, 256, NR * 128}};

/* One tile of C from its packed panels: straight from registers into C when the tile is whole
 * and needs no scaling (then the epilogue after the last k slice), else through the scratch
 * tile ab and store_tile (gemm_tile.h). */
static void FN(compute_tile)(ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t kp, const uint32_t *ap,
                             const uint32_t *bp, float alpha, float beta_pc, int last, float *ct,
                             ptrdiff_t rsc, ptrdiff_t csc, const float *bias, ranvier_act act,
                             float *ab)
{
    void (*kernel)(ptrdiff_t, const uint32_t *, const uint32_t *, float *, ptrdiff_t, int) =
        cols <= NRH ? FN(uk_NRH) : FN(uk_NR);
    if (rows == MR && csc == 1 && alpha == 1.0f && (beta_pc == 0.0f || beta_pc == 1.0f) &&
        (cols == NR || cols == NRH)) {
        kernel(kp, ap, bp, ct, rsc, beta_pc != 0.0f);
        if (last && (bias || act.code != RANVIER_ACT_NONE))
            FN(epilogue)(rows, cols, ct, rsc, bias, act);
    } else {
        kernel(kp, ap, bp, ab, NR, 0);
        FN(store_tile)(rows, cols, alpha, ab, beta_pc, ct, rsc, csc, last, bias, act);
    }
}

typedef struct FN(job) {
    ptrdiff_t m, n, k;
    float alpha, beta;
    ranvier_bf16_operand a, b;
    float *c;
    ptrdiff_t rsc, csc;
    const float *bias;
    ranvier_act act;
    ranvier_gemm_blocking blk;
    ptrdiff_t kstep; /* the k slices' length, even */
} FN(job);

/* The jc/pc/ic loops and the tile loop, run by rv_gemm_run_packed (gemm_tile.h). */
static void FN(loops)(const void *job, void *a_pack_v, void *b_pack_v)
{
    const FN(job) *g = (const FN(job) *)job;
    uint32_t *a_pack = (uint32_t *)a_pack_v, *b_pack = (uint32_t *)b_pack_v;
    float ab[MR * NR]
#if defined(__GNUC__) || defined(__clang__)
        __attribute__((aligned(64)))
#endif
        ;
    for (ptrdiff_t jc = 0; jc < g->n; jc += g->blk.nc) {
        const ptrdiff_t nc = rv_min(g->blk.nc, g->n - jc);
        const ptrdiff_t nb_panels = (nc + NR - 1) / NR;
        for (ptrdiff_t pc = 0; pc < g->k; pc += g->kstep) {
            const ptrdiff_t kc = rv_min(g->kstep, g->k - pc), kp = (kc + 1) / 2;
            const float beta_pc = (pc == 0) ? g->beta : 1.0f;
            const int last = pc + kc >= g->k;
#pragma omp for schedule(static)
            for (ptrdiff_t jp = 0; jp < nb_panels; ++jp) {
                const ptrdiff_t j0 = jc + jp * NR;
                rv_pack_panel(g->b, j0, pc, g->b.cs, g->b.rs, rv_min(NR, g->n - j0), kc, NR,
                              b_pack + jp * NR * kp);
            }
            for (ptrdiff_t ic = 0; ic < g->m; ic += g->blk.mc) {
                const ptrdiff_t mc = rv_min(g->blk.mc, g->m - ic);
                const ptrdiff_t na_panels = (mc + MR - 1) / MR;
#pragma omp for schedule(static)
                for (ptrdiff_t ip = 0; ip < na_panels; ++ip) {
                    const ptrdiff_t i0 = ic + ip * MR;
                    rv_pack_panel(g->a, i0, pc, g->a.rs, g->a.cs, rv_min(MR, g->m - i0), kc, MR,
                                  a_pack + ip * MR * kp);
                }
                /* Tiles in column-panel-major order: neighbours share the B micro-panel. */
                const ptrdiff_t ntiles = na_panels * nb_panels;
#pragma omp for schedule(static)
                for (ptrdiff_t t = 0; t < ntiles; ++t) {
                    const ptrdiff_t jp = t / na_panels, ip = t % na_panels;
                    const ptrdiff_t i0 = ic + ip * MR, j0 = jc + jp * NR;
                    FN(compute_tile)(rv_min(MR, g->m - i0), rv_min(NR, g->n - j0), kp,
                                     a_pack + ip * MR * kp, b_pack + jp * NR * kp,
                                     g->alpha, beta_pc, last, g->c + i0 * g->rsc + j0 * g->csc,
                                     g->rsc, g->csc, g->bias ? g->bias + j0 : NULL, g->act, ab);
                }
            }
        }
    }
}

int GEMM_NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, ranvier_bf16_operand a,
              ranvier_bf16_operand b, float beta, float *c, ptrdiff_t rsc, ptrdiff_t csc,
              const float *bias, ranvier_act act, int nthreads)
{
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0.0f) {
        FN(scale_c)(m, n, beta, c, rsc, csc, bias, act);
        return 0;
    }
    /* The path depends on the shape alone, never on the thread count asked for. */
    const ranvier_gemm_blocking blk = FN(shape).blocking;
    if ((double)m * (double)n * (double)k < RANVIER_GEMM_PARALLEL_MIN_WORK) nthreads = 1;
    /* Slices of whole pairs (a pair never straddles two): KC's equal slices, rounded up to even;
     * only the last may end on an odd k. */
    ptrdiff_t kstep = FN(k_step)(k, blk.kc);
    kstep += kstep & 1;
    const ptrdiff_t kp_max = (rv_min(kstep, k) + 1) / 2;
    const ptrdiff_t mc_max = rv_min(blk.mc, (m + MR - 1) / MR * MR);
    const ptrdiff_t nc_max = rv_min(blk.nc, (n + NR - 1) / NR * NR);
    const FN(job) job = {m, n, k, alpha, beta, a, b, c, rsc, csc, bias, act, blk, kstep};
    return rv_gemm_run_packed(nthreads, sizeof(uint32_t) * (size_t)mc_max * kp_max,
                              sizeof(uint32_t) * (size_t)nc_max * kp_max, FN(loops), &job);
}

const ranvier_gemm_bf16_kernels TABLE_NAME = {GEMM_NAME, &FN(shape), PATH_NAME};

#undef FN
#undef RV_ACTFN
#undef NRH
#undef REAL
#undef REAL_IS_DOUBLE
#undef TAG
#undef GEMM_NAME
#undef TABLE_NAME
#undef PATH_NAME
#undef MR
#undef NR
