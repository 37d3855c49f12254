/* Runtime facts the kernels need: OpenMP availability and thread counts, and which SIMD
 * instruction sets this CPU (and OS) can run. Plain C so it builds with gcc, clang and MSVC. */
#ifndef RANVIER_RUNTIME_H
#define RANVIER_RUNTIME_H

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the extension was compiled with OpenMP, else 0 (kernels then run serially). */
int ranvier_openmp_enabled(void);
/* omp_get_max_threads() (respects OMP_NUM_THREADS and omp_set_num_threads), 1 without OpenMP. */
int ranvier_omp_max_threads(void);
/* Number of logical CPUs the OpenMP runtime sees, 1 without OpenMP. */
int ranvier_omp_num_procs(void);

/* fork(). libgomp's thread pool does not survive fork (GCC bug 60035): a child that starts a
 * parallel region with more than one thread waits for ever for pool threads that were not copied.
 * 1 when ranvier_fork_prepare can prevent that in this build (libgomp with the OpenMP 5.0
 * omp_pause_resource_all), else 0. */
int ranvier_fork_release_supported(void);
/* Called just before fork: releases the calling thread's pool (its threads exit), so the child
 * builds a fresh one when it first runs a team. libgomp keeps one pool per thread that starts
 * parallel regions, so regions other threads are running are not touched. 0 on success; -1 when
 * unsupported, or refused (the caller is inside a parallel region). */
int ranvier_fork_prepare(void);

/* CPU feature probes, cached after the first call; 0 on non-x86 machines. isa.h's
 * ranvier_isa_supported is built on them. */
int ranvier_cpu_has_avx2_fma(void);
int ranvier_cpu_has_avx512(void);   /* F + DQ + VL, with OS support for the zmm state */
int ranvier_cpu_has_avx512_bf16(void); /* AVX-512 as above, and VDPBF16PS */

#if RANVIER_HAVE_X86_SIMD
/* CPUID leaf, subleaf -> r = {eax, ebx, ecx, edx}. */
void ranvier_cpuid_count(unsigned leaf, unsigned sub, unsigned r[4]);
#endif

#ifdef __cplusplus
}
#endif
#endif
