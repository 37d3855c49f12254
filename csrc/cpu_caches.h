/* The data caches of this CPU as the GEMM blocking needs them (gemm_blocking.h): the size and
 * associativity of L1d and L2, and the L3 with the number of logical CPUs that share it.
 *
 * Detected once per process: on Linux from sysfs (cpu0's cache/index* entries), then on x86 from
 * CPUID (any system), then from glibc's sysconf, each filling what the ones before did not give;
 * where none of them answers (macOS and Windows on Arm) the defaults below apply.
 * A field that stays 0 is unknown; ranvier_cpu_caches_or_defaults fills it, and replaces values
 * too odd to be true, so the blocking is derived from plausible numbers whatever was read. */
#ifndef RANVIER_CPU_CACHES_H
#define RANVIER_CPU_CACHES_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ranvier_cpu_caches {
    long long l1d_bytes;
    int l1d_ways;
    long long l2_bytes;
    int l2_ways;
    long long l3_bytes;
    int l3_ways;
    int l3_shared_by;   /* logical CPUs sharing the L3 (its per-core share is l3_bytes / this) */
    const char *source; /* where the numbers came from: the methods that gave any, joined by
                         * "+" ("sysfs", "cpuid", "sysconf", "sysfs+cpuid", ...), or "none" */
} ranvier_cpu_caches;

/* The caches of cpu0, detected at the first call and cached; _runtime.pyx makes that call at
 * import, under the GIL. Never NULL. */
const ranvier_cpu_caches *ranvier_cpu_caches_detected(void);

/* One way of reading them, for tests: fills the fields of *c that are still 0 with what it finds;
 * 1 when it found anything, 0 when it has nothing (or does not exist on this system). */
enum { RANVIER_CACHES_SYSFS, RANVIER_CACHES_CPUID, RANVIER_CACHES_SYSCONF };
int ranvier_cpu_caches_read(int method, ranvier_cpu_caches *c);

/* What is assumed where nothing (or nothing plausible) is known: a 32 KiB 8-way L1d, a 1 MiB
 * 16-way L2 and 2 MiB of 16-way L3 per core, the middle of today's x86 and Arm server cores. */
#define RANVIER_DEFAULT_L1D_BYTES (32LL * 1024)
#define RANVIER_DEFAULT_L1D_WAYS 8
#define RANVIER_DEFAULT_L2_BYTES (1024LL * 1024)
#define RANVIER_DEFAULT_L2_WAYS 16
#define RANVIER_DEFAULT_L3_BYTES_PER_CORE (2LL * 1024 * 1024)
#define RANVIER_DEFAULT_L3_WAYS 16

/* A size is plausible between 1 KiB and 4 GiB; ways between 1 and size / 64 (one 64-byte line
 * per way at least; "fully associative" reported as 0 counts as unknown). */
static inline long long rv_cache_bytes_or(long long bytes, long long fallback)
{
    return (bytes >= 1024 && bytes <= (4LL << 30)) ? bytes : fallback;
}
static inline int rv_cache_ways_or(int ways, long long bytes, int fallback)
{
    if (ways >= 1 && (long long)ways <= bytes / 64) return ways;
    /* the fallback may not fit a tiny cache either */
    return (long long)fallback <= bytes / 64 ? fallback : (int)(bytes / 64 > 0 ? bytes / 64 : 1);
}

/* c with every unknown or implausible field replaced by a default; source is kept. An unknown
 * L3 becomes the default per-core share on one core. */
static inline ranvier_cpu_caches ranvier_cpu_caches_or_defaults(ranvier_cpu_caches c)
{
    c.l1d_bytes = rv_cache_bytes_or(c.l1d_bytes, RANVIER_DEFAULT_L1D_BYTES);
    c.l1d_ways = rv_cache_ways_or(c.l1d_ways, c.l1d_bytes, RANVIER_DEFAULT_L1D_WAYS);
    c.l2_bytes = rv_cache_bytes_or(c.l2_bytes, RANVIER_DEFAULT_L2_BYTES);
    c.l2_ways = rv_cache_ways_or(c.l2_ways, c.l2_bytes, RANVIER_DEFAULT_L2_WAYS);
    if (c.l3_shared_by < 1 || c.l3_shared_by > 65536) c.l3_shared_by = 1;
    if (rv_cache_bytes_or(c.l3_bytes, 0) == 0) {
        c.l3_bytes = RANVIER_DEFAULT_L3_BYTES_PER_CORE;
        c.l3_shared_by = 1;
        c.l3_ways = 0;
    }
    c.l3_ways = rv_cache_ways_or(c.l3_ways, c.l3_bytes, RANVIER_DEFAULT_L3_WAYS);
    return c;
}

#ifdef __cplusplus
}
#endif
#endif
