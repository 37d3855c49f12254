/* General matrix multiply, BLIS style: C := alpha * A @ B + beta * C.
 *
 * Every operand is addressed by a row stride and a column stride (in elements), so the three
 * products backprop needs (X @ W.T, dY @ W, dY.T @ X) are the same call with different strides and
 * nothing is ever transposed in memory. When beta == 0, C is written without being read.
 *
 * One translation unit per instruction set (gemm_generic.c, gemm_avx2.c, gemm_avx512.c) is compiled
 * with its own flags from gemm_template.h and exports its table (ranvier_gemm_<isa>);
 * ranvier_gemm_kernels_for(isa) gives the one of the active ISA (isa.h). */
#ifndef RANVIER_GEMM_H
#define RANVIER_GEMM_H

#include <stddef.h>

#include "activations.h"
#include "gemm_blocking.h"
#include "isa.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* C := act(alpha * A @ B + beta * C + bias): bias (length n, may be NULL) and act (an entry of
 * the activation table, activations.h) form the epilogue of a Dense layer; pass NULL and
 * {RANVIER_ACT_NONE} for a plain GEMM. nthreads is an upper bound: small products run on one
 * thread. Returns 0 on success, -1 when the packing buffers could not be allocated. */
#define RANVIER_GEMM_SIGNATURE(name, T)                                                          \
    int name(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T *a, ptrdiff_t rsa,          \
             ptrdiff_t csa, const T *b, ptrdiff_t rsb, ptrdiff_t csb, T beta, T *c,             \
             ptrdiff_t rsc, ptrdiff_t csc, const T *bias, ranvier_act act, int nthreads)
typedef RANVIER_GEMM_SIGNATURE((*ranvier_sgemm_fn), float);
typedef RANVIER_GEMM_SIGNATURE((*ranvier_dgemm_fn), double);

/* One convolution's shapes (PyTorch's Conv2d), per image: input in_c x in_h x in_w, output
 * out_c x out_h x out_w, weight out_c x (in_c / groups) x k_h x k_w. The caller has checked them
 * (out_h = (in_h + 2 pad_h - dil_h (k_h - 1) - 1) / stride_h + 1, groups divides both channels). */
typedef struct ranvier_conv_geom {
    ptrdiff_t in_c, in_h, in_w, out_c, out_h, out_w;
    ptrdiff_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} ranvier_conv_geom;

/* The weight gradient sums the batch in this many chunks (fewer for a smaller batch), each in
 * order, then the chunks in order: the same result for any number of threads. */
#ifndef RANVIER_CONV_WGRAD_CHUNKS
#define RANVIER_CONV_WGRAD_CHUNKS 16
#endif

/* y := act(conv(x, w) + bias) for n images (NCHW, contiguous); bias may be NULL. */
#define RANVIER_CONV_FORWARD_SIGNATURE(name, T)                                                  \
    int name(const ranvier_conv_geom *g, ptrdiff_t n, const T *x, const T *w, const T *bias,      \
             ranvier_act act, T *y, int nthreads)
/* From dz (the gradient of the convolution's output, before its activation): dx (NULL: not
 * wanted), dw and db (NULL: no bias), overwritten. */
#define RANVIER_CONV_BACKWARD_SIGNATURE(name, T)                                                 \
    int name(const ranvier_conv_geom *g, ptrdiff_t n, const T *x, const T *w, const T *dz,        \
             T *dx, T *dw, T *db, int nthreads)
typedef RANVIER_CONV_FORWARD_SIGNATURE((*ranvier_sconv2d_forward_fn), float);
typedef RANVIER_CONV_FORWARD_SIGNATURE((*ranvier_dconv2d_forward_fn), double);
typedef RANVIER_CONV_BACKWARD_SIGNATURE((*ranvier_sconv2d_backward_fn), float);
typedef RANVIER_CONV_BACKWARD_SIGNATURE((*ranvier_dconv2d_backward_fn), double);

typedef struct ranvier_gemm_kernels {
    ranvier_sgemm_fn sgemm;
    ranvier_dgemm_fn dgemm;
    ranvier_sconv2d_forward_fn sconv2d_forward;
    ranvier_dconv2d_forward_fn dconv2d_forward;
    ranvier_sconv2d_backward_fn sconv2d_backward;
    ranvier_dconv2d_backward_fn dconv2d_backward;
    ranvier_gemm_shape *sgemm_shape, *dgemm_shape; /* also the convolutions' */
} ranvier_gemm_kernels;

/* The table for an ISA (isa.h); the generic one where this CPU cannot run it. */
const ranvier_gemm_kernels *ranvier_gemm_kernels_for(int isa);

/* Sets the cache blocks of every instance this CPU can run: ``forced`` fitted to each tile
 * (ranvier_gemm_blocking_fit) when not NULL, else derived from ``caches``. Called once at import
 * (matmul.pyx), and again by tests and tuning; a GEMM already running keeps the blocks it read
 * when it started. */
void ranvier_gemm_set_blocking(const ranvier_cpu_caches *caches,
                               const ranvier_gemm_blocking *forced);

#define RANVIER_DECLARE_GEMM(isa)                                                                \
    RANVIER_GEMM_SIGNATURE(ranvier_sgemm_##isa, float);                                          \
    RANVIER_GEMM_SIGNATURE(ranvier_dgemm_##isa, double);                                         \
    RANVIER_CONV_FORWARD_SIGNATURE(ranvier_sconv2d_forward_##isa, float);                        \
    RANVIER_CONV_FORWARD_SIGNATURE(ranvier_dconv2d_forward_##isa, double);                       \
    RANVIER_CONV_BACKWARD_SIGNATURE(ranvier_sconv2d_backward_##isa, float);                      \
    RANVIER_CONV_BACKWARD_SIGNATURE(ranvier_dconv2d_backward_##isa, double);                     \
    extern const ranvier_gemm_kernels ranvier_gemm_##isa;
RANVIER_DECLARE_GEMM(generic)
#if RANVIER_HAVE_X86_SIMD
RANVIER_DECLARE_GEMM(avx2)
RANVIER_DECLARE_GEMM(avx512)
#endif

#ifdef __cplusplus
}
#endif
#endif
