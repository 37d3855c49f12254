"""OpenMP facts of this build, for thread control and show_config()."""

cdef extern from "runtime.h":
    int ranvier_openmp_enabled() nogil
    int ranvier_omp_max_threads() nogil
    int ranvier_omp_num_procs() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(ranvier_openmp_enabled())


def omp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl limits; 1 without OpenMP."""
    return ranvier_omp_max_threads()


def omp_num_procs():
    return ranvier_omp_num_procs()
