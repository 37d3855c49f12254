/* Optimizer updates compiled for the generic instruction set (see optim_impl.h). */
#define OPT_ISA generic
#include "optim_impl.h"
