/* General matrix multiply, BLIS style: C := alpha * A @ B + beta * C.
 *
 * Every operand is addressed by a row stride and a column stride (in elements), so the three
 * products backprop needs (X @ W.T, dY @ W, dY.T @ X) are the same call with different strides and
 * nothing is ever transposed in memory. When beta == 0, C is written without being read.
 *
 * One translation unit per instruction set (gemm_generic.c, gemm_avx2.c, gemm_avx512.c) is compiled
 * with its own flags from gemm_template.h; gemm.c picks the best one the CPU supports at run time. */
#ifndef RANVIER_GEMM_H
#define RANVIER_GEMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { RANVIER_ISA_GENERIC = 0, RANVIER_ISA_AVX2 = 1, RANVIER_ISA_AVX512 = 2 };

/* Activation applied in the GEMM epilogue (Dense forward): C := act(alpha*A@B + beta*C + bias). */
enum { RANVIER_ACT_NONE = 0, RANVIER_ACT_RELU = 1, RANVIER_ACT_SIGMOID = 2, RANVIER_ACT_TANH = 3 };

/* Products with fewer multiply-adds than this run on one thread. 2^21 MACs is ~40 us of one
 * core's work: a parallel region (a few us when the cores are free) pays off above it, while
 * batch-sized products below it never wait on a second thread. That wait is what makes OpenMP
 * code collapse when the machine is oversubscribed (seen here: 60 ms instead of 0.04 ms for a
 * 200 x 64 x 100 product with the other core busy). */
#ifndef RANVIER_GEMM_PARALLEL_MIN_WORK
#define RANVIER_GEMM_PARALLEL_MIN_WORK 2097152.0
#endif

/* Products below RANVIER_GEMM_PARALLEL_MIN_WORK (which always run on one thread) whose operands
 * fit in L2 together (at most this many bytes of A, B and C) skip packing A, and B when its rows
 * are contiguous: each packed panel would be reused only a few times, so packing costs as much as
 * the arithmetic. Default: half of a 1 MB L2 (Zen 4;
 * Intel client cores have 1.25-2 MB). A variable so that tests can force either path. */
extern double ranvier_gemm_sup_max_bytes;

/* Returns 0 on success, -1 when the packing buffers could not be allocated.
 * bias (length n, may be NULL) and act form the epilogue; pass NULL, RANVIER_ACT_NONE for a plain
 * GEMM. nthreads is an upper bound: small products run on one thread. */
typedef int (*ranvier_sgemm_fn)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                                const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                                const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta,
                                float *c, ptrdiff_t rsc, ptrdiff_t csc, const float *bias, int act,
                                int nthreads);
typedef int (*ranvier_dgemm_fn)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                                const double *a, ptrdiff_t rsa, ptrdiff_t csa,
                                const double *b, ptrdiff_t rsb, ptrdiff_t csb, double beta,
                                double *c, ptrdiff_t rsc, ptrdiff_t csc, const double *bias, int act,
                                int nthreads);

/* Dispatching entry points (use the active ISA). */
int ranvier_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                  const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                  const float *b, ptrdiff_t rsb, ptrdiff_t csb, float beta,
                  float *c, ptrdiff_t rsc, ptrdiff_t csc, const float *bias, int act,
                  int nthreads);
int ranvier_dgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                  const double *a, ptrdiff_t rsa, ptrdiff_t csa,
                  const double *b, ptrdiff_t rsb, ptrdiff_t csb, double beta,
                  double *c, ptrdiff_t rsc, ptrdiff_t csc, const double *bias, int act,
                  int nthreads);

/* The first pass of a Dense layer's backward for columns j0..j1 (at most 64): dz = dy * act'(y),
 * db = column sums of dz in double; dz NULL means no activation, db NULL no bias (dense_grad.h). */
void ranvier_dense_grad_f32(ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const float *y,
                            const float *dy, float *dz, float *db, int act);
void ranvier_dense_grad_f64(ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const double *y,
                            const double *dy, double *dz, double *db, int act);

/* ISA selection. set returns 0, or -1 if this build or CPU cannot run the requested ISA. */
int ranvier_gemm_best_isa(void);
int ranvier_gemm_get_isa(void);
int ranvier_gemm_set_isa(int isa);
int ranvier_gemm_isa_supported(int isa);

/* Per-ISA implementations (gemm_<isa>.c). */
#define RANVIER_DECLARE_GEMM(isa)                                                           \
    int ranvier_sgemm_##isa(ptrdiff_t, ptrdiff_t, ptrdiff_t, float, const float *, ptrdiff_t, \
                            ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t, float, float *,  \
                            ptrdiff_t, ptrdiff_t, const float *, int, int);                 \
    int ranvier_dgemm_##isa(ptrdiff_t, ptrdiff_t, ptrdiff_t, double, const double *,        \
                            ptrdiff_t, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t,     \
                            double, double *, ptrdiff_t, ptrdiff_t, const double *, int,    \
                            int);                                                           \
    void ranvier_dense_grad_f32_##isa(ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,            \
                                      const float *, const float *, float *, float *, int);  \
    void ranvier_dense_grad_f64_##isa(ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,            \
                                      const double *, const double *, double *, double *,    \
                                      int);
RANVIER_DECLARE_GEMM(generic)
#if RANVIER_HAVE_X86_SIMD
RANVIER_DECLARE_GEMM(avx2)
RANVIER_DECLARE_GEMM(avx512)
#endif

#ifdef __cplusplus
}
#endif
#endif
