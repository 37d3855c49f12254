/* The analytical blocking model and the fitting of a forced blocking (gemm_blocking.h). */
#include "gemm_blocking.h"

/* How many ways of way_bytes each a contiguous block of ``bytes`` occupies. */
static long long ways_for(long long bytes, long long way_bytes)
{
    return (bytes + way_bytes - 1) / way_bytes;
}

static ptrdiff_t clamp(ptrdiff_t v, ptrdiff_t lo, ptrdiff_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* v rounded down to a multiple of step, at least step. */
static ptrdiff_t multiple_below(ptrdiff_t v, ptrdiff_t step)
{
    return v < step ? step : v / step * step;
}

/* The longest KC whose B micro-panel (KC x nr) and A micro-panel (mr x KC) share ways - 1 of
 * the L1's ways, over every split of those ways between the two. */
static ptrdiff_t kc_for_l1(long long way_bytes, int ways, int mr, int nr, int elem)
{
    long long best = 0;
    for (int a_ways = 1; a_ways <= ways - 2; ++a_ways) {
        const int b_ways = ways - 1 - a_ways;
        long long kc_a = a_ways * way_bytes / ((long long)mr * elem);
        long long kc_b = b_ways * way_bytes / ((long long)nr * elem);
        long long kc = kc_a < kc_b ? kc_a : kc_b;
        if (kc > best) best = kc;
    }
    best = best / 8 * 8; /* whole cache lines of a packed micro-panel for every MR */
    return (ptrdiff_t)(best < RANVIER_GEMM_KC_MAX ? best : RANVIER_GEMM_KC_MAX);
}

/* The largest multiple of mr whose A block (MC x kc) and C strip (MC x nr), beside two B
 * micro-panels (kc x nr) and a spare way, fit the L2's ways; 0 when not even mr rows do. */
static ptrdiff_t mc_for_l2(long long way_bytes, int ways, ptrdiff_t kc, int mr, int nr,
                           int elem)
{
    const long long b_ways = ways_for(2LL * kc * nr * elem, way_bytes);
    for (ptrdiff_t mc = multiple_below(RANVIER_GEMM_MC_MAX, mr); mc >= mr; mc -= mr) {
        const long long used = ways_for((long long)mc * kc * elem, way_bytes) +
                               ways_for((long long)mc * nr * elem, way_bytes) + b_ways + 1;
        if (used <= ways) return mc;
    }
    return 0;
}

ranvier_gemm_blocking ranvier_gemm_blocking_derive(const ranvier_cpu_caches *caches, int mr,
                                                   int nr, int elem_bytes)
{
    const ranvier_cpu_caches c = ranvier_cpu_caches_or_defaults(*caches);
    ranvier_gemm_blocking blk;

    blk.kc = kc_for_l1(c.l1d_bytes / c.l1d_ways, c.l1d_ways, mr, nr, elem_bytes);
    blk.kc = clamp(blk.kc, RANVIER_GEMM_KC_MODEL_MIN, RANVIER_GEMM_KC_MAX);

    blk.mc = mc_for_l2(c.l2_bytes / c.l2_ways, c.l2_ways, blk.kc, mr, nr, elem_bytes);
    blk.mc = clamp(blk.mc, mr, multiple_below(RANVIER_GEMM_MC_MAX, mr));

    /* ways - 1 of this core's share of every L3 way */
    const long long share = c.l3_bytes / c.l3_shared_by;
    const long long for_b = share / c.l3_ways * (c.l3_ways - 1);
    blk.nc = (ptrdiff_t)(for_b / ((long long)blk.kc * elem_bytes));
    blk.nc = clamp(multiple_below(blk.nc, nr), multiple_below(RANVIER_GEMM_NC_MODEL_MIN, nr),
                   multiple_below(RANVIER_GEMM_NC_MAX, nr));
    return blk;
}

ranvier_gemm_blocking ranvier_gemm_blocking_fit(ranvier_gemm_blocking forced, int mr, int nr)
{
    ranvier_gemm_blocking blk;
    blk.kc = clamp(forced.kc, 1, RANVIER_GEMM_KC_MAX);
    blk.mc = multiple_below(clamp(forced.mc, 1, RANVIER_GEMM_MC_MAX), mr);
    blk.nc = multiple_below(clamp(forced.nc, 1, RANVIER_GEMM_NC_MAX), nr);
    return blk;
}

void ranvier_gemm_shape_set_blocking(ranvier_gemm_shape *shape, const ranvier_cpu_caches *caches,
                                     const ranvier_gemm_blocking *forced, int elem_bytes)
{
    shape->blocking = forced ? ranvier_gemm_blocking_fit(*forced, shape->mr, shape->nr)
                             : ranvier_gemm_blocking_derive(caches, shape->mr, shape->nr,
                                                            elem_bytes);
}
