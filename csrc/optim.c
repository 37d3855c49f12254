/* The optimizer updates' table for an ISA (isa.h). */
#include "isa.h"
#include "optim.h"

RANVIER_DEFINE_TABLE_FOR(ranvier_optim_kernels, ranvier_optim_kernels_for, ranvier_optim)
