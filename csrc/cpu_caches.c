/* Cache detection (cpu_caches.h): Linux's sysfs, x86's CPUID, glibc's sysconf, in that order;
 * each fills only what the ones before left unknown. */
#include "cpu_caches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <unistd.h>

/* The first line of a small text file, without its newline; 0 when it cannot be read. */
static int read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *ok = fgets(buf, (int)len, f);
    fclose(f);
    if (!ok) return 0;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 1;
}

/* "48K", "1024K", "32M", "65536": bytes, or 0 when unparsable. */
static long long parse_size(const char *text)
{
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text || v <= 0 || v > (1LL << 40)) return 0;
    switch (*end) {
    case 'K': case 'k': return v << 10;
    case 'M': case 'm': return v << 20;
    case 'G': case 'g': return v << 30;
    case '\0': return v;
    default: return 0;
    }
}

/* Number of CPUs in a list such as "0-7,64-71"; 0 when unparsable. */
static int count_cpu_list(const char *text)
{
    long count = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || lo < 0) return 0;
        p = end;
        if (*p == '-') {
            ++p;
            hi = strtol(p, &end, 10);
            if (end == p || hi < lo) return 0;
            p = end;
        }
        count += hi - lo + 1;
        if (count > 1 << 20) return 0;
        if (*p == ',') ++p;
        else if (*p) return 0;
    }
    return (int)count;
}

/* cpu0's cache/index<i> entries: data and unified caches of levels 1 to 3. */
static int from_sysfs(ranvier_cpu_caches *c)
{
    int found = 0;
    for (int i = 0; i < 16; ++i) {
        char dir[96], path[160], line[256];
        snprintf(dir, sizeof dir, "/sys/devices/system/cpu/cpu0/cache/index%d", i);
        snprintf(path, sizeof path, "%s/level", dir);
        if (!read_line(path, line, sizeof line)) continue;
        const int level = atoi(line);
        snprintf(path, sizeof path, "%s/type", dir);
        if (!read_line(path, line, sizeof line) || strcmp(line, "Instruction") == 0) continue;
        snprintf(path, sizeof path, "%s/size", dir);
        const long long bytes = read_line(path, line, sizeof line) ? parse_size(line) : 0;
        snprintf(path, sizeof path, "%s/ways_of_associativity", dir);
        const int ways = read_line(path, line, sizeof line) ? atoi(line) : 0;
        if (bytes <= 0 || level < 1 || level > 3) continue;
        found = 1;
        if (level == 1 && c->l1d_bytes == 0) {
            c->l1d_bytes = bytes;
            c->l1d_ways = ways;
        } else if (level == 2 && c->l2_bytes == 0) {
            c->l2_bytes = bytes;
            c->l2_ways = ways;
        } else if (level == 3 && c->l3_bytes == 0) {
            c->l3_bytes = bytes;
            c->l3_ways = ways;
            snprintf(path, sizeof path, "%s/shared_cpu_list", dir);
            c->l3_shared_by = read_line(path, line, sizeof line) ? count_cpu_list(line) : 0;
        }
    }
    return found;
}

static long long sysconf_or_0(int name)
{
    long v = sysconf(name);
    return v > 0 ? (long long)v : 0;
}

/* glibc's sysconf, for the fields sysfs and CPUID left unknown. glibc reports the L3
 * of the whole package without saying how many CPUs share it: all the online ones are assumed. */
static int from_sysconf(ranvier_cpu_caches *c)
{
    int found = 0;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL3_CACHE_ASSOC)
#define RV_FILL(field, name)                                                                     \
    if (c->field == 0 && (c->field = sysconf_or_0(name)) != 0) found = 1;
    RV_FILL(l1d_bytes, _SC_LEVEL1_DCACHE_SIZE)
    RV_FILL(l1d_ways, _SC_LEVEL1_DCACHE_ASSOC)
    RV_FILL(l2_bytes, _SC_LEVEL2_CACHE_SIZE)
    RV_FILL(l2_ways, _SC_LEVEL2_CACHE_ASSOC)
    if (c->l3_bytes == 0 && (c->l3_bytes = sysconf_or_0(_SC_LEVEL3_CACHE_SIZE)) != 0) {
        found = 1;
        c->l3_ways = (int)sysconf_or_0(_SC_LEVEL3_CACHE_ASSOC);
        c->l3_shared_by = (int)sysconf_or_0(_SC_NPROCESSORS_ONLN);
    }
#undef RV_FILL
#else
    (void)c;
#endif
    return found;
}
#endif

#if RANVIER_HAVE_X86_SIMD
#include "runtime.h"

/* The deterministic cache parameters: leaf 4 (Intel), 0x8000001D (AMD and Hygon, with the
 * topology extensions), one subleaf per cache. What they call the number of CPUs sharing a cache
 * is the number of CPU ids reserved for it, which may round the true count up. */
static int from_cpuid(ranvier_cpu_caches *c)
{
    unsigned r[4], leaf = 0;
    ranvier_cpuid_count(0, 0, r);
    const unsigned max_leaf = r[0];
    /* ebx holds the vendor's first 4 letters: "Auth"enticAMD, "Hygo"nGenuine */
    const int amd = (r[1] == 0x68747541u || r[1] == 0x6f677948u);
    if (amd) {
        ranvier_cpuid_count(0x80000000u, 0, r);
        if (r[0] >= 0x8000001Du) {
            ranvier_cpuid_count(0x80000001u, 0, r);
            if ((r[2] >> 22) & 1) leaf = 0x8000001Du;
        }
    } else if (max_leaf >= 4) {
        leaf = 4;
    }
    if (!leaf) return 0;
    int found = 0;
    for (unsigned sub = 0; sub < 16; ++sub) {
        ranvier_cpuid_count(leaf, sub, r);
        const unsigned type = r[0] & 0x1f, level = (r[0] >> 5) & 0x7;
        if (type == 0) break;   /* no more caches */
        if (type == 2) continue; /* instructions */
        const long long ways = ((r[1] >> 22) & 0x3ff) + 1, parts = ((r[1] >> 12) & 0x3ff) + 1;
        const long long line = (r[1] & 0xfff) + 1, sets = (long long)r[2] + 1;
        const int shared_by = (int)((r[0] >> 14) & 0xfff) + 1;
        const int fully_associative = (r[0] >> 9) & 1;
        const long long bytes = ways * parts * line * sets;
        const int way_count = fully_associative ? 0 : (int)ways;
#define RV_FILL(field, value)                                                                    \
    if (c->field == 0 && (c->field = (value)) != 0) found = 1;
        if (level == 1) {
            RV_FILL(l1d_bytes, bytes)
            RV_FILL(l1d_ways, way_count)
        } else if (level == 2) {
            RV_FILL(l2_bytes, bytes)
            RV_FILL(l2_ways, way_count)
        } else if (level == 3) {
            RV_FILL(l3_bytes, bytes)
            RV_FILL(l3_ways, way_count)
            RV_FILL(l3_shared_by, shared_by)
        }
#undef RV_FILL
    }
    return found;
}
#endif

int ranvier_cpu_caches_read(int method, ranvier_cpu_caches *c)
{
    switch (method) {
#if defined(__linux__)
    case RANVIER_CACHES_SYSFS: return from_sysfs(c);
    case RANVIER_CACHES_SYSCONF: return from_sysconf(c);
#endif
#if RANVIER_HAVE_X86_SIMD
    case RANVIER_CACHES_CPUID: return from_cpuid(c);
#endif
    default: return 0;
    }
}

static ranvier_cpu_caches detect(void)
{
    static char source[64];
    static const struct { int method; const char *name; } methods[] = {
        {RANVIER_CACHES_SYSFS, "sysfs"}, {RANVIER_CACHES_CPUID, "cpuid"},
        {RANVIER_CACHES_SYSCONF, "sysconf"}};
    ranvier_cpu_caches c;
    memset(&c, 0, sizeof c);
    source[0] = '\0';
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; ++i)
        if (ranvier_cpu_caches_read(methods[i].method, &c)) {
            if (source[0]) strcat(source, "+");
            strcat(source, methods[i].name);
        }
    c.source = source[0] ? source : "none";
    /* ways that do not fit their size (a misread file) count as unknown */
    if (c.l1d_ways < 0 || c.l1d_ways > 4096) c.l1d_ways = 0;
    if (c.l2_ways < 0 || c.l2_ways > 4096) c.l2_ways = 0;
    if (c.l3_ways < 0 || c.l3_ways > 4096) c.l3_ways = 0;
    return c;
}

const ranvier_cpu_caches *ranvier_cpu_caches_detected(void)
{
    static ranvier_cpu_caches cached;
    static int done = 0;
    if (!done) {
        cached = detect();
        done = 1;
    }
    return &cached;
}
