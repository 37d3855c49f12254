/* Optimizer updates compiled for the avx512 instruction set (see optim_impl.h). */
#define OPT_ISA avx512
#include "optim_impl.h"
