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
 * The rest of the word is fixed for the kernel too: round to nearest, no exception traps. The
 * kernels' exp/log rely on round-to-nearest (a caller's round-toward-zero made training return
 * NaN), and a trap a caller enabled must not kill the process from inside a kernel.
 *
 * x86: MXCSR bits FTZ (15) and DAZ (6); RANVIER_FP_KERNEL_BASE is the power-on MXCSR (all
 * exceptions masked, round to nearest, no flags). aarch64: FPCR.FZ (24), which does both;
 * the rounding mode (23:22) and the trap enables (15, 12:8) are cleared. Elsewhere the functions
 * do nothing. */
#ifndef RANVIER_FPENV_H
#define RANVIER_FPENV_H

typedef unsigned long long ranvier_fpstate;

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define RANVIER_FP_FLUSH_BITS 0x8040ull
static inline ranvier_fpstate ranvier_fp_kernel_word(ranvier_fpstate caller, ranvier_fpstate bits)
{
    (void)caller;
    return 0x1F80ull | bits;
}
static inline ranvier_fpstate ranvier_fp_read(void) { return _mm_getcsr(); }
static inline void ranvier_fp_write(ranvier_fpstate v) { _mm_setcsr((unsigned int)v); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define RANVIER_FP_FLUSH_BITS (1ull << 24)
static inline ranvier_fpstate ranvier_fp_kernel_word(ranvier_fpstate caller, ranvier_fpstate bits)
{
    return (caller & ~((3ull << 22) | 0x9F00ull | RANVIER_FP_FLUSH_BITS)) | bits;
}
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
static inline ranvier_fpstate ranvier_fp_kernel_word(ranvier_fpstate caller, ranvier_fpstate bits)
{
    (void)bits;
    return caller;
}
static inline ranvier_fpstate ranvier_fp_read(void) { return 0; }
static inline void ranvier_fp_write(ranvier_fpstate v) { (void)v; }
#endif

/* The flush bits of this thread's state (what workers adopt). */
static inline ranvier_fpstate ranvier_fp_flush_bits(void)
{
    return ranvier_fp_read() & RANVIER_FP_FLUSH_BITS;
}

/* From this thread's word `saved`, switches to the kernel's word with flush bits exactly `bits`
 * (no write when they are the same); returns `saved`, what ranvier_fp_leave restores. */
static inline ranvier_fpstate ranvier_fp_switch(ranvier_fpstate saved, ranvier_fpstate bits)
{
    const ranvier_fpstate word = ranvier_fp_kernel_word(saved, bits);
    if (word != saved) ranvier_fp_write(word);
    return saved;
}

/* A worker taking the calling thread's flush bits for the length of a parallel region. */
static inline ranvier_fpstate ranvier_fp_adopt(ranvier_fpstate bits)
{
    return ranvier_fp_switch(ranvier_fp_read(), bits);
}

/* On entry to a kernel: flush when `flush` (ranvier.set_flush_denormal), else leave the caller's
 * mode as it is (gradual underflow when the caller has not set flushing itself). */
static inline ranvier_fpstate ranvier_fp_enter(int flush)
{
    const ranvier_fpstate saved = ranvier_fp_read();  /* one read: the word and its own bits */
    return ranvier_fp_switch(saved, flush ? RANVIER_FP_FLUSH_BITS : saved & RANVIER_FP_FLUSH_BITS);
}

/* Puts back the state ranvier_fp_enter/ranvier_fp_adopt found, always: the status flags a
 * kernel raised go with it, so the caller's word is bit for bit what it was, whatever the mode
 * (one register write per call and per worker, nothing per element). */
static inline void ranvier_fp_leave(ranvier_fpstate saved)
{
    ranvier_fp_write(saved);
}

#endif
