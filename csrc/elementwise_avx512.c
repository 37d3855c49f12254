/* Elementwise kernels (activations, bias + activation, softmax + cross-entropy) compiled for
 * the avx512 instruction set (see elementwise_impl.h). */
#define EW_ISA avx512
#include "elementwise_impl.h"
