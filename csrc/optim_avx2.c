/* Optimizer updates compiled for the avx2 instruction set (see optim_impl.h). */
#define OPT_ISA avx2
#include "optim_impl.h"
