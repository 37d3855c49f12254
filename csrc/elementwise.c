/* The elementwise kernels' table for an ISA (isa.h). */
#include "elementwise.h"
#include "isa.h"

RANVIER_DEFINE_TABLE_FOR(ranvier_ew_kernels, ranvier_ew_kernels_for, ranvier_ew)
