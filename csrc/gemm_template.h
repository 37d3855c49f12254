/* The BLIS algorithm for one (dtype, ISA) pair. Included by gemm_<isa>.c with:
 *   REAL            float or double (REAL_IS_DOUBLE 0 or 1)
 *   TAG             name suffix of this instance, e.g. s_avx2 (gives ranvier_sgemm_avx2 via GEMM_NAME)
 *   GEMM_NAME       the exported function name
 *   CONV_FORWARD_NAME, CONV_BACKWARD_NAME  the exported convolution passes (conv_template.h)
 *   MR, NR          register tile (rows of A, columns of B), compile-time constants
 * The cache blocks are run-time values (gemm_blocking.h), this instance's ranvier_gemm_shape
 * (gemm.h): the A block MC x KC sits in L2, the B panel KC x NC in L3. A call reads them once.
 *
 * Loops, outermost first: jc over NC column panels of B and C, pc over KC slices of k (each packs
 * B~), ic over MC row blocks of A (each packs A~), then the MR x NR tiles. Packing zero-pads edge
 * panels so the kernel always computes a full tile; only the store handles m < MR or n < NR.
 *
 * Threads share the packed buffers and split the packing and the tile loop statically. Every tile
 * of C is computed by one thread, summing k in the same order, so results do not depend on the
 * number of threads.
 *
 * The Dense epilogue (+ bias, then the activation) runs the activation table's loops
 * (activation_kernels.h), compiled with this unit's flags like the elementwise kernels, so a
 * fused Dense + activation equals the Dense followed by the activation layer, bit for bit. */


#include "gemm_tile.h"

#ifndef RANVIER_GEMM_TEMPLATE_ONCE
#define RANVIER_GEMM_TEMPLATE_ONCE
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#include <xmmintrin.h>
#define RV_HAVE_SSE2 1
#else
#define RV_HAVE_SSE2 0
#endif
#endif

/* Micro-kernels: kc rank-1 updates of an R x C accumulator the compiler keeps in registers
 * (fixed trip counts, so the i/j loops unroll and the j loop vectorises for the unit's ISA), then
 * the R x C block is written (or, with ``accumulate``, added) to dst with leading dimension ld:
 * straight into C when the tile is full width and needs no scaling, else into a scratch tile that
 * store_tile then applies. Edge tiles run a kernel with only the rows that exist (R < MR) and,
 * when at most NR/2 columns exist, half the width: a 10-wide output layer costs 16 lanes instead
 * of 32, and the 2 leftover rows of a 10-row product 2 broadcasts instead of MR.
 *
 * Each (R, C) has two entry points over one inlined body: uk_ reads packed panels (A~ column by
 * column with MR rows, B~ row by row with NR columns: constant strides), sup_ reads A in place
 * through its strides and B in place along rows of stride rsb. Small products take the sup_ path
 * and skip packing, which for them costs as much as the arithmetic (BLIS calls it "sup"). */
#ifndef RV_DEFINE_UKERNEL
#if defined(__GNUC__) || defined(__clang__)
#define RV_ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define RV_ALWAYS_INLINE static __forceinline
#else
#define RV_ALWAYS_INLINE static inline
#endif
#define RV_DEFINE_UKERNEL(R, C)                                                                 \
    RV_ALWAYS_INLINE void FN(ukbody_##R##_##C)(ptrdiff_t kc, const REAL *restrict a,           \
                                               ptrdiff_t rsa, ptrdiff_t csa,                   \
                                               const REAL *restrict b, ptrdiff_t rsb,          \
                                               REAL *restrict dst, ptrdiff_t ld,               \
                                               int accumulate)                                 \
    {                                                                                          \
        REAL acc[R * C];                                                                       \
        for (int t = 0; t < R * C; ++t) acc[t] = 0;                                            \
        for (ptrdiff_t p = 0; p < kc; ++p) {                                                   \
            const REAL *ap = a + p * csa, *bp = b + p * rsb;                                   \
            for (int i = 0; i < R; ++i) {                                                      \
                const REAL ai = ap[i * rsa];                                                   \
                RV_PRAGMA_SIMD                                                                 \
                for (int j = 0; j < C; ++j) acc[i * C + j] += ai * bp[j];                      \
            }                                                                                  \
        }                                                                                      \
        RV_STORE_ACC(acc, R, C, dst, ld, accumulate);                                          \
    }                                                                                          \
    static void FN(uk_##R##_##C)(ptrdiff_t kc, const REAL *a, ptrdiff_t rsa, ptrdiff_t csa,    \
                                 const REAL *b, ptrdiff_t rsb, REAL *dst, ptrdiff_t ld,        \
                                 int accumulate)                                               \
    {                                                                                          \
        (void)rsa, (void)csa, (void)rsb;                                                       \
        FN(ukbody_##R##_##C)(kc, a, 1, MR, b, NR, dst, ld, accumulate);                        \
    }                                                                                          \
    static void FN(sup_##R##_##C)(ptrdiff_t kc, const REAL *a, ptrdiff_t rsa, ptrdiff_t csa,   \
                                  const REAL *b, ptrdiff_t rsb, REAL *dst, ptrdiff_t ld,       \
                                  int accumulate)                                              \
    {                                                                                          \
        FN(ukbody_##R##_##C)(kc, a, rsa, csa, b, rsb, dst, ld, accumulate);                    \
    }
#endif

/* One full-width and one half-width kernel per row count 1..MR (MR <= 8 in every unit). */
#define RV_UKERNEL_PAIR(R) RV_DEFINE_UKERNEL(R, NR) RV_DEFINE_UKERNEL(R, NRH)
#define NRH (NR / 2)
RV_UKERNEL_PAIR(1)
RV_UKERNEL_PAIR(2)
RV_UKERNEL_PAIR(3)
RV_UKERNEL_PAIR(4)
#if MR >= 5
RV_UKERNEL_PAIR(5)
RV_UKERNEL_PAIR(6)
#endif
#if MR >= 7
RV_UKERNEL_PAIR(7)
RV_UKERNEL_PAIR(8)
#endif
#if MR != 4 && MR != 6 && MR != 8
#error "gemm_template.h: MR must be 4, 6 or 8"
#endif

/* This instance's tile and blocks, which ranvier_gemm_set_blocking (gemm.c) sets from the caches;
 * until then blocks that are valid for any tile. */
static ranvier_gemm_shape FN(shape) = {MR, NR, {MR * 16, 256, NR * 128}};

typedef void (*FN(ukernel_fn))(ptrdiff_t, const REAL *, ptrdiff_t, ptrdiff_t, const REAL *,
                               ptrdiff_t, REAL *, ptrdiff_t, int);

/* The kernel for a tile with ``rows`` (1..MR) rows and ``cols`` (1..NR) columns, reading packed
 * panels or (sup) the operands in place. */
static FN(ukernel_fn) FN(pick_ukernel)(ptrdiff_t rows, ptrdiff_t cols, int sup)
{
    static const FN(ukernel_fn) table[2][2][MR] = {
        {{FN(uk_1_NR), FN(uk_2_NR), FN(uk_3_NR), FN(uk_4_NR),
#if MR >= 5
          FN(uk_5_NR), FN(uk_6_NR),
#endif
#if MR >= 7
          FN(uk_7_NR), FN(uk_8_NR),
#endif
         },
         {FN(uk_1_NRH), FN(uk_2_NRH), FN(uk_3_NRH), FN(uk_4_NRH),
#if MR >= 5
          FN(uk_5_NRH), FN(uk_6_NRH),
#endif
#if MR >= 7
          FN(uk_7_NRH), FN(uk_8_NRH),
#endif
         }},
        {{FN(sup_1_NR), FN(sup_2_NR), FN(sup_3_NR), FN(sup_4_NR),
#if MR >= 5
          FN(sup_5_NR), FN(sup_6_NR),
#endif
#if MR >= 7
          FN(sup_7_NR), FN(sup_8_NR),
#endif
         },
         {FN(sup_1_NRH), FN(sup_2_NRH), FN(sup_3_NRH), FN(sup_4_NRH),
#if MR >= 5
          FN(sup_5_NRH), FN(sup_6_NRH),
#endif
#if MR >= 7
          FN(sup_7_NRH), FN(sup_8_NRH),
#endif
         }},
    };
    return table[sup != 0][cols <= NRH][rows - 1];
}

/* dst[p * R + r] = src[r * ld + p] for r < rows, p < kc; rows rows..R-1 are zero. This is the
 * packing of an operand whose k index is the contiguous one (row-major A, or B = W.T as in
 * X @ W.T): a transpose, done 4 x 4 (float) or 2 x 2 (double) in SSE registers. */
static void FN(pack_transpose)(ptrdiff_t rows, ptrdiff_t kc, const REAL *src, ptrdiff_t ld,
                               ptrdiff_t R, REAL *restrict dst)
{
    ptrdiff_t r = 0;
#if RV_HAVE_SSE2 && !REAL_IS_DOUBLE
    for (; r + 4 <= rows; r += 4) {
        const float *s0 = src + r * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
        ptrdiff_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            __m128 x0 = _mm_loadu_ps(s0 + p), x1 = _mm_loadu_ps(s1 + p);
            __m128 x2 = _mm_loadu_ps(s2 + p), x3 = _mm_loadu_ps(s3 + p);
            _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
            _mm_storeu_ps(dst + (p + 0) * R + r, x0);
            _mm_storeu_ps(dst + (p + 1) * R + r, x1);
            _mm_storeu_ps(dst + (p + 2) * R + r, x2);
            _mm_storeu_ps(dst + (p + 3) * R + r, x3);
        }
        for (; p < kc; ++p) {
            dst[p * R + r] = s0[p];
            dst[p * R + r + 1] = s1[p];
            dst[p * R + r + 2] = s2[p];
            dst[p * R + r + 3] = s3[p];
        }
    }
#elif RV_HAVE_SSE2
    for (; r + 2 <= rows; r += 2) {
        const double *s0 = src + r * ld, *s1 = s0 + ld;
        ptrdiff_t p = 0;
        for (; p + 2 <= kc; p += 2) {
            __m128d x0 = _mm_loadu_pd(s0 + p), x1 = _mm_loadu_pd(s1 + p);
            _mm_storeu_pd(dst + p * R + r, _mm_unpacklo_pd(x0, x1));
            _mm_storeu_pd(dst + (p + 1) * R + r, _mm_unpackhi_pd(x0, x1));
        }
        for (; p < kc; ++p) {
            dst[p * R + r] = s0[p];
            dst[p * R + r + 1] = s1[p];
        }
    }
#endif
    for (; r < rows; ++r) {
        const REAL *sr = src + r * ld;
        for (ptrdiff_t p = 0; p < kc; ++p) dst[p * R + r] = sr[p];
    }
    if (rows < R)
        for (ptrdiff_t p = 0; p < kc; ++p)
            for (ptrdiff_t q = rows; q < R; ++q) dst[p * R + q] = (REAL)0;
}

/* One MR-row micro-panel of A (rows i0.., k slice p0..p0+kc), stored column by column. */
static void FN(pack_a)(ptrdiff_t mr, ptrdiff_t kc, const REAL *a, ptrdiff_t rsa, ptrdiff_t csa,
                       REAL *restrict dst)
{
    if (csa == 1) { /* rows contiguous along k: a transpose */
        FN(pack_transpose)(mr, kc, a, rsa, MR, dst);
        return;
    }
    if (mr < MR) memset(dst, 0, sizeof(REAL) * MR * kc);
    if (rsa == 1) { /* columns contiguous (A = dY.T): a copy of mr values per k, inlined (a
                       * memcpy call per 32 bytes cost more than the copy) */
        if (mr == MR)
            for (ptrdiff_t p = 0; p < kc; ++p)
                for (int i = 0; i < MR; ++i) dst[p * MR + i] = a[p * csa + i];
        else
            for (ptrdiff_t p = 0; p < kc; ++p)
                for (ptrdiff_t i = 0; i < mr; ++i) dst[p * MR + i] = a[p * csa + i];
        return;
    }
    for (ptrdiff_t p = 0; p < kc; ++p) {
        const REAL *col = a + p * csa;
        for (ptrdiff_t i = 0; i < mr; ++i) dst[p * MR + i] = col[i * rsa];
    }
}

/* One NR-column micro-panel of B (k slice of length kc), stored row by row. */
static void FN(pack_b)(ptrdiff_t kc, ptrdiff_t nr, const REAL *b, ptrdiff_t rsb, ptrdiff_t csb,
                       REAL *restrict dst)
{
    if (rsb == 1 && csb != 1) { /* columns contiguous along k (B = W.T): a transpose */
        FN(pack_transpose)(nr, kc, b, csb, NR, dst);
        return;
    }
    if (nr < NR) memset(dst, 0, sizeof(REAL) * NR * kc);
    if (csb == 1) { /* rows contiguous (B = X or W): a copy of nr values per k, inlined */
        if (nr == NR)
            for (ptrdiff_t p = 0; p < kc; ++p)
                for (int j = 0; j < NR; ++j) dst[p * NR + j] = b[p * rsb + j];
        else
            for (ptrdiff_t p = 0; p < kc; ++p)
                for (ptrdiff_t j = 0; j < nr; ++j) dst[p * NR + j] = b[p * rsb + j];
        return;
    }
    for (ptrdiff_t p = 0; p < kc; ++p) {
        const REAL *row = b + p * rsb;
        for (ptrdiff_t j = 0; j < nr; ++j) dst[p * NR + j] = row[j * csb];
    }
}


/* One tile of C from its A and B panels (packed, or read in place), done the same way on both
 * paths: straight from registers into C when no scaling is needed (then the Dense epilogue after
 * the last k slice), else through the scratch tile ab and store_tile. */
static inline void FN(compute_tile)(ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t kc, int sup,
                                    const REAL *ap, ptrdiff_t rsa, ptrdiff_t csa, const REAL *bp,
                                    ptrdiff_t ldb, REAL alpha, REAL beta_pc, int last, REAL *ct,
                                    ptrdiff_t rsc, ptrdiff_t csc, const REAL *bias,
                                    ranvier_act act, REAL *ab)
{
    const FN(ukernel_fn) kernel = FN(pick_ukernel)(rows, cols, sup);
    if (csc == 1 && alpha == (REAL)1 && (beta_pc == (REAL)0 || beta_pc == (REAL)1) &&
        (cols == NR || cols == NRH)) {
        kernel(kc, ap, rsa, csa, bp, ldb, ct, rsc, beta_pc != (REAL)0);
        if (last && (bias || act.code != RANVIER_ACT_NONE))
            FN(epilogue)(rows, cols, ct, rsc, bias, act);
    } else {
        kernel(kc, ap, rsa, csa, bp, ldb, ab, NR, 0);
        FN(store_tile)(rows, cols, alpha, ab, beta_pc, ct, rsc, csc, last, bias, act);
    }
}

/* The jc/pc/ic loops and the tile loop. Called inside a parallel region (its ``omp for`` loops
 * then split the packing and the tiles among the team) or, for one thread, directly: an orphaned
 * ``omp for`` runs serially, and no team is created (that costs about a microsecond per call,
 * as much as a whole batch-sized product). */
static void FN(gemm_loops)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, REAL alpha, const REAL *a,
                           ptrdiff_t rsa, ptrdiff_t csa, const REAL *b, ptrdiff_t rsb,
                           ptrdiff_t csb, REAL beta, REAL *c, ptrdiff_t rsc, ptrdiff_t csc,
                           const REAL *bias, ranvier_act act, ranvier_gemm_blocking blk,
                           REAL *a_pack, REAL *b_pack)
{
    REAL ab[MR * NR]
#if defined(__GNUC__) || defined(__clang__)
        __attribute__((aligned(64)))
#endif
        ;
    const ptrdiff_t kstep = FN(k_step)(k, blk.kc);
    for (ptrdiff_t jc = 0; jc < n; jc += blk.nc) {
        const ptrdiff_t nc = rv_min(blk.nc, n - jc);
        const ptrdiff_t nb_panels = (nc + NR - 1) / NR;
        for (ptrdiff_t pc = 0; pc < k; pc += kstep) {
            const ptrdiff_t kc = rv_min(kstep, k - pc);
            const REAL beta_pc = (pc == 0) ? beta : (REAL)1;
            const int last = pc + kc >= k;
#pragma omp for schedule(static)
            for (ptrdiff_t jp = 0; jp < nb_panels; ++jp) {
                const ptrdiff_t j0 = jc + jp * NR;
                FN(pack_b)(kc, rv_min(NR, n - j0), b + pc * rsb + j0 * csb, rsb, csb,
                           b_pack + jp * NR * kc);
            }
            for (ptrdiff_t ic = 0; ic < m; ic += blk.mc) {
                const ptrdiff_t mc = rv_min(blk.mc, m - ic);
                const ptrdiff_t na_panels = (mc + MR - 1) / MR;
#pragma omp for schedule(static)
                for (ptrdiff_t ip = 0; ip < na_panels; ++ip) {
                    const ptrdiff_t i0 = ic + ip * MR;
                    FN(pack_a)(rv_min(MR, m - i0), kc, a + i0 * rsa + pc * csa, rsa, csa,
                               a_pack + ip * MR * kc);
                }
                /* Tiles in column-panel-major order: neighbours share the B micro-panel. */
                const ptrdiff_t ntiles = na_panels * nb_panels;
#pragma omp for schedule(static)
                for (ptrdiff_t t = 0; t < ntiles; ++t) {
                    const ptrdiff_t jp = t / na_panels, ip = t % na_panels;
                    const ptrdiff_t i0 = ic + ip * MR, j0 = jc + jp * NR;
                    const ptrdiff_t rows = rv_min(MR, m - i0), cols = rv_min(NR, n - j0);
                    FN(compute_tile)(rows, cols, kc, 0, a_pack + ip * MR * kc, 1, MR,
                                     b_pack + jp * NR * kc, NR, alpha, beta_pc, last,
                                     c + i0 * rsc + j0 * csc, rsc, csc, bias ? bias + j0 : NULL,
                                     act, ab);
                }
            }
        }
    }
}

/* gemm_loops' arguments, for rv_gemm_run_packed (gemm_tile.h). */
typedef struct FN(job) {
    ptrdiff_t m, n, k;
    REAL alpha;
    const REAL *a;
    ptrdiff_t rsa, csa;
    const REAL *b;
    ptrdiff_t rsb, csb;
    REAL beta;
    REAL *c;
    ptrdiff_t rsc, csc;
    const REAL *bias;
    ranvier_act act;
    ranvier_gemm_blocking blk;
} FN(job);

static void FN(run_job)(const void *job, void *a_pack, void *b_pack)
{
    const FN(job) *g = (const FN(job) *)job;
    FN(gemm_loops)(g->m, g->n, g->k, g->alpha, g->a, g->rsa, g->csa, g->b, g->rsb, g->csb,
                   g->beta, g->c, g->rsc, g->csc, g->bias, g->act, g->blk, (REAL *)a_pack,
                   (REAL *)b_pack);
}

/* Small products (always on one thread, operands in L2): A is never packed (the kernels read it
 * through its strides), nor is B when its rows are contiguous (csb == 1). A column panel of B is
 * copied into a zero-padded panel only when its rows are strided (B = W.T, as in X @ W.T: a
 * transpose) or ragged (neither NR nor NR/2 wide, so that no kernel reads past a row).
 *
 * k is cut into the same slices as in gemm_loops and every tile goes through compute_tile. */
static void FN(gemm_sup)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, REAL alpha, const REAL *a,
                         ptrdiff_t rsa, ptrdiff_t csa, const REAL *b, ptrdiff_t rsb,
                         ptrdiff_t csb, REAL beta, REAL *c, ptrdiff_t rsc, ptrdiff_t csc,
                         const REAL *bias, ranvier_act act, ranvier_gemm_blocking blk)
{
    REAL ab[MR * NR]
#if defined(__GNUC__) || defined(__clang__)
        __attribute__((aligned(64)))
#endif
        ;
    REAL panel[RANVIER_GEMM_KC_MAX * NR] /* blk.kc is at most this */
#if defined(__GNUC__) || defined(__clang__)
        __attribute__((aligned(64)))
#endif
        ;
    const ptrdiff_t kstep = FN(k_step)(k, blk.kc);
    for (ptrdiff_t pc = 0; pc < k; pc += kstep) {
        const ptrdiff_t kc = rv_min(kstep, k - pc);
        const REAL beta_pc = (pc == 0) ? beta : (REAL)1;
        const int last = pc + kc >= k;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += NR) {
            const ptrdiff_t cols = rv_min(NR, n - j0);
            const REAL *bp = b + pc * rsb + j0 * csb;
            ptrdiff_t ldb = rsb;
            if (csb != 1 || (cols != NR && cols != NRH)) {
                FN(pack_b)(kc, cols, bp, rsb, csb, panel);
                bp = panel;
                ldb = NR;
            }
            for (ptrdiff_t i0 = 0; i0 < m; i0 += MR) {
                const ptrdiff_t rows = rv_min(MR, m - i0);
                FN(compute_tile)(rows, cols, kc, 1, a + i0 * rsa + pc * csa, rsa, csa, bp, ldb,
                                 alpha, beta_pc, last, c + i0 * rsc + j0 * csc, rsc, csc,
                                 bias ? bias + j0 : NULL, act, ab);
            }
        }
    }
}

int GEMM_NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, REAL alpha, const REAL *a, ptrdiff_t rsa,
              ptrdiff_t csa, const REAL *b, ptrdiff_t rsb, ptrdiff_t csb, REAL beta, REAL *c,
              ptrdiff_t rsc, ptrdiff_t csc, const REAL *bias, ranvier_act act, int nthreads)
{
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == (REAL)0) {
        FN(scale_c)(m, n, beta, c, rsc, csc, bias, act);
        return 0;
    }
    /* A parallel region costs microseconds; small products run on the calling thread. */
    /* Which path a product takes depends on its shape alone, never on the thread count asked
     * for, so results are bitwise identical for any number of threads. */
    const ranvier_gemm_blocking blk = FN(shape).blocking;
    const double work = (double)m * (double)n * (double)k;
    if (work < RANVIER_GEMM_PARALLEL_MIN_WORK) {
        nthreads = 1;
        const double bytes = ((double)m * k + (double)k * n + (double)m * n) * sizeof(REAL);
        if (bytes <= ranvier_gemm_sup_max_bytes) {
            FN(gemm_sup)(m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act,
                         blk);
            return 0;
        }
    }
    /* The slices are at most blk.kc deep; MC and NC are multiples of MR and NR, so the panels of
     * a block fill these exactly. */
    const ptrdiff_t kc_max = rv_min(blk.kc, k);
    const ptrdiff_t mc_max = rv_min(blk.mc, (m + MR - 1) / MR * MR);
    const ptrdiff_t nc_max = rv_min(blk.nc, (n + NR - 1) / NR * NR);
    const FN(job) job = {m, n, k, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc, bias, act,
                         blk};
    return rv_gemm_run_packed(nthreads, sizeof(REAL) * (size_t)mc_max * kc_max,
                              sizeof(REAL) * (size_t)nc_max * kc_max, FN(run_job), &job);
}

#include "conv_template.h"

#undef FN
#undef RV_ACTFN
#undef NRH
#undef REAL
#undef REAL_IS_DOUBLE
#undef TAG
#undef GEMM_NAME
#undef CONV_FORWARD_NAME
#undef CONV_BACKWARD_NAME
#undef MR
#undef NR

