# Declarations of csrc/elementwise.h and the activation table (csrc/activations.h). The kernels
# are linked into the activations, matmul and bf16 extensions; the losses reach them through
# activations.ew_kernels() (activations.pxd). Each call takes the table of the active ISA.
from libc.stdint cimport int64_t, uint16_t


cdef extern from "activations.h" nogil:
    enum:
        RANVIER_ACT_NONE
        RANVIER_ACT_COUNT
        RANVIER_ACT_NEEDS_INPUT

    ctypedef struct ranvier_act:
        int code
        double param

    ctypedef struct ranvier_act_info:
        const char *name
        int code, needs

    const ranvier_act_info ranvier_act_table[]


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
        void (*act_forward_f32)(ranvier_act a, const float *x, float *y,
                                Py_ssize_t n) noexcept nogil
        void (*act_forward_f64)(ranvier_act a, const double *x, double *y,
                                Py_ssize_t n) noexcept nogil
        void (*act_backward_f32)(ranvier_act a, const float *v, const float *dy, float *dx,
                                 Py_ssize_t n) noexcept nogil
        void (*act_backward_f64)(ranvier_act a, const double *v, const double *dy, double *dx,
                                 Py_ssize_t n) noexcept nogil
        void (*bias_act_f32)(ranvier_act a, const float *z, const float *b, float *y,
                             Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
        void (*bias_act_f64)(ranvier_act a, const double *z, const double *b, double *y,
                             Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
        void (*dense_grad_f32)(ranvier_act a, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1, const float *v, const float *dy, float *dz,
                               float *db) noexcept nogil
        void (*dense_grad_f64)(ranvier_act a, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1, const double *v, const double *dy, double *dz,
                               double *db) noexcept nogil
        void (*softmax_ce_f32)(const ranvier_ce_args *a, Py_ssize_t r0,
                               Py_ssize_t r1) noexcept nogil
        void (*softmax_ce_f64)(const ranvier_ce_args *a, Py_ssize_t r0,
                               Py_ssize_t r1) noexcept nogil
        void (*to_bf16)(const float *x, uint16_t *y, Py_ssize_t n) noexcept nogil
        void (*from_bf16)(const uint16_t *x, float *y, Py_ssize_t n) noexcept nogil

    const ranvier_ew_kernels *ranvier_ew_kernels_for(int isa)
