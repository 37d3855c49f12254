/* ranvier's GEMM against OpenBLAS (NumPy's copy, loaded with dlopen) on one thread, timed in CPU
 * time of the calling thread (CLOCK_THREAD_CPUTIME_ID). Time spent waiting for a shared core is
 * not counted, so the ratios hold on a busy machine where wall-clock timings do not. Built and run
 * by gemm_cpu_time.py. Prints, per product, the median time per call of each and their ratio. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"

/* scipy-openblas's 64-bit-integer CBLAS entry (NumPy >= 2 wheels). */
typedef void (*cblas_sgemm_fn)(int order, int transa, int transb, long m, long n, long k,
                               float alpha, const float *a, long lda, const float *b, long ldb,
                               float beta, float *c, long ldc);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112, REPEATS = 15 };

/* The products of a dense layer: X @ W.T (forward), dY @ W (input gradient), dY.T @ X (weight
 * gradient), for (m, n, k) = the shape of C and the inner dimension. */
enum { FWD, BWD_DATA, BWD_WEIGHT };
static const char *FORM_NAMES[] = {"X@W.T", "dY@W", "dY.T@X"};
typedef struct { int m, n, k, form; } product;

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *x, const void *y)
{
    long long a = *(const long long *)x, b = *(const long long *)y;
    return (a > b) - (a < b);
}

static int active_isa; /* chosen in main */

static void run_ranvier(const product *p, const float *a, const float *b, float *c)
{
    const int m = p->m, n = p->n, k = p->k;
    const ranvier_sgemm_fn sgemm = ranvier_gemm_kernels_for(active_isa)->sgemm;
    const ranvier_act none = {RANVIER_ACT_NONE, 0.0};
    if (p->form == FWD) /* a: X (m x k), b: W (n x k) */
        sgemm(m, n, k, 1, a, k, 1, b, 1, k, 0, c, n, 1, NULL, none, 1);
    else if (p->form == BWD_DATA) /* a: dY (m x k), b: W (k x n) */
        sgemm(m, n, k, 1, a, k, 1, b, n, 1, 0, c, n, 1, NULL, none, 1);
    else /* a: dY (k x m), b: X (k x n) */
        sgemm(m, n, k, 1, a, 1, m, b, n, 1, 0, c, n, 1, NULL, none, 1);
}

static void run_openblas(cblas_sgemm_fn gemm, const product *p, const float *a, const float *b,
                         float *c)
{
    const int m = p->m, n = p->n, k = p->k;
    if (p->form == FWD)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, 1, a, k, b, k, 0, c, n);
    else if (p->form == BWD_DATA)
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1, a, k, b, n, 0, c, n);
    else
        gemm(ROW_MAJOR, TRANS, NO_TRANS, m, n, k, 1, a, m, b, n, 0, c, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s libscipy_openblas.so [m,n,k,form ...]\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW);
    cblas_sgemm_fn openblas = lib ? (cblas_sgemm_fn)dlsym(lib, "scipy_cblas_sgemm64_") : NULL;
    void (*set_threads)(int) = lib ? (void (*)(int))dlsym(lib, "scipy_openblas_set_num_threads64_")
                                   : NULL;
    if (!openblas || !set_threads) {
        fprintf(stderr, "cannot load OpenBLAS from %s\n", argv[1]);
        return 1;
    }
    set_threads(1);
    const char *isa = getenv("RANVIER_GEMM_ISA"); /* an isa.h name; default: the best */
    active_isa = ranvier_isa_best();
    if (isa) {
        active_isa = -1;
        for (int i = 0; i < RANVIER_ISA_COUNT; ++i)
            if (!strcmp(isa, ranvier_isa_names[i])) active_isa = i;
        if (active_isa < 0 || !ranvier_isa_supported(active_isa)) {
            fprintf(stderr, "this CPU cannot run the %s kernel\n", isa);
            return 1;
        }
    }
    ranvier_gemm_set_blocking(ranvier_cpu_caches_detected(), NULL); /* as matmul.pyx at import */
    const ranvier_gemm_blocking blk = ranvier_gemm_kernels_for(active_isa)->sgemm_shape->blocking;
    printf("ranvier GEMM kernel: %s (MC %td, KC %td, NC %td)\n", ranvier_isa_names[active_isa],
           blk.mc, blk.kc, blk.nc);
    double log_ratio_sum = 0;
    int count = 0;
    printf("%-7s %16s %14s %14s %8s\n", "form", "m x n x k", "ranvier us", "OpenBLAS us",
           "ratio");
    for (int arg = 2; arg < argc; ++arg) {
        product p;
        if (sscanf(argv[arg], "%d,%d,%d,%d", &p.m, &p.n, &p.k, &p.form) != 4) return 2;
        float *a = malloc(sizeof(float) * (size_t)p.m * p.k);
        float *b = malloc(sizeof(float) * (size_t)p.n * p.k);
        float *c = malloc(sizeof(float) * (size_t)p.m * p.n);
        for (long i = 0; i < (long)p.m * p.k; ++i) a[i] = (float)rand() / RAND_MAX - 0.5f;
        for (long i = 0; i < (long)p.n * p.k; ++i) b[i] = (float)rand() / RAND_MAX - 0.5f;
        const long calls = (long)(2e8 / (2.0 * p.m * p.n * p.k)) + 1; /* ~2 ms per sample */
        long long t[2][REPEATS];
        for (int r = 0; r < REPEATS; ++r) /* interleaved, so drifts hit both alike */
            for (int which = 0; which < 2; ++which) {
                const long long t0 = cpu_ns();
                for (long i = 0; i < calls; ++i) {
                    if (which == 0) run_ranvier(&p, a, b, c);
                    else run_openblas(openblas, &p, a, b, c);
                }
                t[which][r] = (cpu_ns() - t0) / calls;
            }
        qsort(t[0], REPEATS, sizeof(long long), cmp_ll);
        qsort(t[1], REPEATS, sizeof(long long), cmp_ll);
        const double ours = t[0][REPEATS / 2], theirs = t[1][REPEATS / 2];
        char shape[48];
        snprintf(shape, sizeof shape, "%dx%dx%d", p.m, p.n, p.k);
        printf("%-7s %16s %14.2f %14.2f %7.2fx\n", FORM_NAMES[p.form], shape, ours / 1e3,
               theirs / 1e3, theirs / ours);
        log_ratio_sum += log(theirs / ours);
        ++count;
        free(a), free(b), free(c);
    }
    if (count) printf("geometric mean of OpenBLAS time / ranvier time: %.2fx\n",
                      exp(log_ratio_sum / count));
    return 0;
}
