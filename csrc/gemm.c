/* The GEMM table for an ISA (isa.h), and the small-product cut-off the tests can move. */
#include "gemm.h"

double ranvier_gemm_sup_max_bytes = 512.0 * 1024.0;

RANVIER_DEFINE_TABLE_FOR(ranvier_gemm_kernels, ranvier_gemm_kernels_for, ranvier_gemm)
