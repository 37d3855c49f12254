/* bfloat16, the upper half of a float32 (sign, 8-bit exponent, 7-bit mantissa): float32's range
 * at 8 bits of precision, the operand type of AVX512-BF16 and AMX. Stored as uint16_t.
 *
 * float32 -> bf16 rounds to nearest, ties to even, on the bits: adding 0x7FFF plus the lowest
 * kept bit carries into the kept half exactly when the dropped half is above one half, or is one
 * half and the kept half is odd. Finite values past the largest bf16 round to infinity, as in
 * IEEE arithmetic; subnormals stay subnormal (the conversion is integer work, untouched by
 * flush-to-zero). A NaN stays a NaN of the same sign and payload with the quiet bit set (rounding
 * could otherwise carry a signalling NaN's payload into infinity). bf16 -> float32 is exact. */
#ifndef RANVIER_BF16_H
#define RANVIER_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t ranvier_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float ranvier_bf16_to_f32(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
