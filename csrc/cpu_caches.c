/* Cache detection (cpu_caches.h). Linux only; other systems report nothing and take the defaults. */
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
        if (bytes <= 0) continue;
        found = 1;
        if (level == 1) {
            c->l1d_bytes = bytes;
            c->l1d_ways = ways;
        } else if (level == 2) {
            c->l2_bytes = bytes;
            c->l2_ways = ways;
        } else if (level == 3) {
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

/* glibc's sysconf (from CPUID on x86), for the fields sysfs left unknown. glibc reports the L3
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

static ranvier_cpu_caches detect(void)
{
    ranvier_cpu_caches c;
    memset(&c, 0, sizeof c);
    c.source = "none";
#if defined(__linux__)
    const int sysfs = from_sysfs(&c);
    const int sc = from_sysconf(&c);
    if (sysfs || sc) c.source = sysfs ? (sc ? "sysfs+sysconf" : "sysfs") : "sysconf";
#endif
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
