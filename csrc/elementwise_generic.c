/* Elementwise kernels (activations, bias + activation, softmax + cross-entropy) compiled for
 * the generic instruction set (see elementwise_impl.h). */
#define EW_ISA generic
#include "elementwise_impl.h"
