/* Denormals flushed to zero while a kernel runs, and the caller's floating-point state restored
 * after it.
 *
 * Why: an operation on a subnormal float costs Intel cores a microcode assist of ~100 cycles.
 * Adam's moment estimates decay into subnormals as gradients shrink, and an epoch can then spend
 * most of its time in assists (3-4x slower, measured on Sapphire Rapids). Setting flush-to-zero
 * (results that would be subnormal become 0) and denormals-are-zero (subnormal inputs read as 0)
 * removes them, as TensorFlow does by default.
 *
 * The mode is per thread and NumPy code runs on the caller's thread, so a kernel call sets it on
 * entry and puts the caller's state back on return (ranvier_fp_enter / ranvier_fp_leave), and
 * each OpenMP worker adopts the calling thread's mode for the length of a parallel region
 * (ranvier_fp_flush_bits before the region, ranvier_fp_adopt / ranvier_fp_leave inside it), so
 * a pool shared with other libraries is left as it was found.
 *
 * x86: MXCSR bits FTZ (15) and DAZ (6). aarch64: FPCR.FZ (24), which does both. Elsewhere the
 * functions do nothing. */
#ifndef RANVIER_FPENV_H
#define RANVIER_FPENV_H

typedef unsigned long long ranvier_fpstate;

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define RANVIER_FP_FLUSH_BITS 0x8040ull
static inline ranvier_fpstate ranvier_fp_read(void) { return _mm_getcsr(); }
static inline void ranvier_fp_write(ranvier_fpstate v) { _mm_setcsr((unsigned int)v); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define RANVIER_FP_FLUSH_BITS (1ull << 24)
static inline ranvier_fpstate ranvier_fp_read(void)
{
    unsigned long long v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return v;
}
static inline void ranvier_fp_write(ranvier_fpstate v)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(v));
}
#else
#define RANVIER_FP_FLUSH_BITS 0ull
static inline ranvier_fpstate ranvier_fp_read(void) { return 0; }
static inline void ranvier_fp_write(ranvier_fpstate v) { (void)v; }
#endif

/* Marks a saved state that must be written back (the register is at most 32 bits wide on x86
 * and bits 63:32 of FPCR are reserved, so bit 63 is free). */
#define RANVIER_FP_CHANGED (1ull << 63)

/* The flush bits of this thread's state (what workers adopt). */
static inline ranvier_fpstate ranvier_fp_flush_bits(void)
{
    return ranvier_fp_read() & RANVIER_FP_FLUSH_BITS;
}

/* Sets this thread's flush bits to exactly `bits`; returns what ranvier_fp_leave restores. */
static inline ranvier_fpstate ranvier_fp_adopt(ranvier_fpstate bits)
{
    const ranvier_fpstate saved = ranvier_fp_read();
    if ((saved & RANVIER_FP_FLUSH_BITS) == bits) return saved;
    ranvier_fp_write((saved & ~RANVIER_FP_FLUSH_BITS) | bits);
    return saved | RANVIER_FP_CHANGED;
}

/* On entry to a kernel: flush when `flush` (ranvier.set_flush_denormal), else leave the caller's
 * mode as it is (gradual underflow when the caller has not set flushing itself). */
static inline ranvier_fpstate ranvier_fp_enter(int flush)
{
    if (!flush) return ranvier_fp_read();
    return ranvier_fp_adopt(RANVIER_FP_FLUSH_BITS);
}

/* Puts back the state ranvier_fp_enter/ranvier_fp_adopt found, when they changed it (the status
 * flags a kernel raised go with it: the caller sees its own). */
static inline void ranvier_fp_leave(ranvier_fpstate saved)
{
    if (saved & RANVIER_FP_CHANGED) ranvier_fp_write(saved & ~RANVIER_FP_CHANGED);
}

#endif
