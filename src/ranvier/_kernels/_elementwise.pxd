# Declarations of csrc/elementwise.h. The kernels are linked into the activations extension only;
# other modules reach them through activations.ew_kernels() (activations.pxd), so one ISA choice
# (activations.set_isa, ranvier.set_isa) covers them all.
from libc.stdint cimport int64_t


cdef extern from "elementwise.h" nogil:
    ctypedef struct ranvier_ce_args:
        const void *z
        void *g
        double *row_loss
        const int64_t *labels
        const void *t
        signed char *hit
        const double *w
        double scale, eps_c, keep, wsum
        Py_ssize_t d
        int plain

    ctypedef struct ranvier_ew_kernels:
        void (*act_forward_f32)(int act, const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*act_forward_f64)(int act, const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*act_backward_f32)(int act, const float *y, const float *dy, float *dx,
                                 Py_ssize_t n) noexcept nogil
        void (*act_backward_f64)(int act, const double *y, const double *dy, double *dx,
                                 Py_ssize_t n) noexcept nogil
        void (*bias_act_f32)(int act, const float *z, const float *b, float *y, Py_ssize_t rows,
                             Py_ssize_t cols) noexcept nogil
        void (*bias_act_f64)(int act, const double *z, const double *b, double *y,
                             Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
        void (*softmax_ce_f32)(const ranvier_ce_args *a, Py_ssize_t r0,
                               Py_ssize_t r1) noexcept nogil
        void (*softmax_ce_f64)(const ranvier_ce_args *a, Py_ssize_t r0,
                               Py_ssize_t r1) noexcept nogil

    const ranvier_ew_kernels *ranvier_ew()
    int ranvier_elementwise_get_isa()
    int ranvier_elementwise_set_isa(int isa)

cdef extern from "gemm.h":
    enum:
        RANVIER_ACT_NONE
        RANVIER_ACT_RELU
        RANVIER_ACT_SIGMOID
        RANVIER_ACT_TANH
