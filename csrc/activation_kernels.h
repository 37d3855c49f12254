/* The loops of activation_loops.h for float and double, once per translation unit. */
#ifndef RANVIER_ACTIVATION_KERNELS_H
#define RANVIER_ACTIVATION_KERNELS_H

#include "activations.h"

#define RV_T float
#define RV_SFX f32
#include "activation_loops.h"
#undef RV_T
#undef RV_SFX

#define RV_T double
#define RV_SFX f64
#include "activation_loops.h"
#undef RV_T
#undef RV_SFX

#endif
