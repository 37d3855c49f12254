/* Elementwise kernels (activations, bias + activation, softmax + cross-entropy) compiled for
 * the avx2 instruction set (see elementwise_impl.h). */
#define EW_ISA avx2
#include "elementwise_impl.h"
