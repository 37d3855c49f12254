"""Thread control, kernel (ISA) selection and the build/runtime report.

One knob sets how many threads the kernels use: ``set_num_threads(n)``. Until it is called the
count follows the OpenMP runtime (``OMP_NUM_THREADS``, or a ``threadpoolctl`` limit). Kernels whose
work is too small to pay for a parallel region run on one thread (``threads_for``).
"""
import numbers
import os
import sys

from ._kernels import _runtime

# Below this many elements an elementwise kernel runs on one thread: waking a team costs a few
# microseconds (and, on a busy machine, a wait for a descheduled thread), more than ~10 us of
# streaming work gains. PyTorch uses 32768; ranvier's kernels stream at ~4 elements/ns, so the
# break-even sits higher. GEMM has its own threshold (csrc/gemm.h).
PARALLEL_MIN_WORK = 131072

_num_threads = None  # set by set_num_threads(); None: follow the OpenMP runtime


def set_num_threads(n):
    """Use ``n`` threads in ranvier's kernels (``None`` goes back to the OpenMP default)."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _num_threads = int(n)


def get_num_threads():
    """Threads the kernels use for large enough work."""
    if _num_threads is not None:
        return _num_threads
    return max(1, _runtime.omp_max_threads())


def threads_for(work):
    """Thread count for a kernel doing ``work`` elementary operations."""
    if work < PARALLEL_MIN_WORK:
        return 1
    return get_num_threads()


def _after_fork_in_child():
    """A forked child cannot use the parent's OpenMP thread pool (libgomp: GCC bug 60035; the
    child would wait forever on threads that were not copied). Run its kernels on one thread;
    set_num_threads() in the child is at the user's risk, spawn/forkserver are the safe choice."""
    global _num_threads
    _num_threads = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _apply_isa_from_env():
    isa = os.environ.get("RANVIER_ISA", "").strip().lower()
    if isa:
        set_isa(isa)  # ValueError names the choices when this CPU cannot run it


def get_isa():
    """The instruction set every native kernel family runs: 'generic', 'avx2' or 'avx512'."""
    return _runtime.get_isa()


def set_isa(name):
    """Force one instruction set for every native kernel family (GEMM, activations, optimizer
    updates), for tests and comparisons; ValueError if this CPU or build cannot run it."""
    _runtime.set_isa(name)


def _compiler_info():
    import sysconfig

    cc = sysconfig.get_config_var("CC") or "unknown"
    return cc.split()[0]


def config_dict():
    import platform  # only here: it costs ~9 ms at import

    from . import __version__

    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "compiler": _compiler_info(),
        "openmp": _runtime.openmp_enabled(),
        "num_threads": get_num_threads(),
        "omp_max_threads": _runtime.omp_max_threads(),
        "num_procs": _runtime.omp_num_procs(),
        "isa": _runtime.get_isa(),
        "supported_isas": _runtime.supported_isas(),
        "parallel_min_work": PARALLEL_MIN_WORK,
    }


def show_config(file=None):
    """Print the version, build and threading facts (what a bug report needs)."""
    cfg = config_dict()
    out = file or sys.stdout
    openmp = "yes" if cfg["openmp"] else "no (kernels run on one thread)"
    lines = [
        f"ranvier {cfg['version']}",
        f"  python:          {cfg['python']} ({cfg['platform']})",
        f"  compiler:        {cfg['compiler']}",
        f"  OpenMP:          {openmp}",
        f"  threads:         {cfg['num_threads']} (OMP max {cfg['omp_max_threads']}, "
        f"{cfg['num_procs']} CPUs)",
        f"  kernels (ISA):   {cfg['isa']} (supported: {', '.join(cfg['supported_isas'])})",
    ]
    print("\n".join(lines), file=out)
