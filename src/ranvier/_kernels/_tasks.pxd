# How every kernel spreads its work over threads, in one place: the work is cut into ntasks
# independent tasks (rows, planes, chunks of a flat array) and task(job, t) runs each of them.
#   - one task, or one thread: on the calling thread, no parallel region (a team costs ~1 us per
#     call, which small layers would pay on every step);
#   - otherwise: a team of num_threads threads shares the tasks statically, so a task's thread and
#     the order of its arithmetic do not depend on timing, only on the thread count.
# Every thread runs in the kernels' floating-point mode (_fpenv.pxd): the calling thread reads it
# once, the team's threads adopt it, and each restores its own on the way out.
#
# `job` points at the kernel's own struct of arguments; `task` casts it back. The kernels are fused
# over float/double, a function pointer cannot be, so a module's task function reads a dtype flag
# in its job and calls the float or double body.
from cython.parallel cimport parallel, prange

from ranvier._kernels._fpenv cimport (
    fp_enter, fp_mode, ranvier_fp_adopt, ranvier_fp_leave, ranvier_fpstate)

ctypedef void (*task_fn)(const void *job, Py_ssize_t t) noexcept nogil


cdef inline void run_tasks(task_fn task, const void *job, Py_ssize_t ntasks,
                           int num_threads) noexcept nogil:
    cdef ranvier_fpstate fp = 0, bits = 0
    cdef Py_ssize_t t
    if ntasks <= 0:
        return
    if ntasks == 1 or num_threads <= 1:
        fp = fp_enter()
        for t in range(ntasks):
            task(job, t)
        ranvier_fp_leave(fp)
        return
    bits = fp_mode()
    with parallel(num_threads=num_threads):
        fp = ranvier_fp_adopt(bits)
        for t in prange(ntasks, schedule="static"):
            task(job, t)
        ranvier_fp_leave(fp)


cdef inline Py_ssize_t task_count(Py_ssize_t n, Py_ssize_t per) noexcept nogil:
    """How many tasks of ``per`` items cover n items (the last may be shorter)."""
    return (n + per - 1) // per


cdef inline Py_ssize_t task_len(Py_ssize_t n, Py_ssize_t per, Py_ssize_t t) noexcept nogil:
    """The length of task t of ``per`` items over n items."""
    return per if n - t * per > per else n - t * per
