"""Thread control, kernel (ISA) selection and the build/runtime report.

One knob sets how many threads the kernels use: ``set_num_threads(n)``. Until it is called the
count follows the OpenMP runtime (``OMP_NUM_THREADS``, or a ``threadpoolctl`` limit). Kernels whose
work is too small to pay for a parallel region run on one thread (``threads_for``).
"""
import numbers
import os
import sys
import warnings

from ._kernels import _runtime
from ._validation import check_bool

# Below this many elements an elementwise kernel runs on one thread: waking a team costs a few
# microseconds (and, on a busy machine, a wait for a descheduled thread), more than ~10 us of
# streaming work gains. PyTorch uses 32768; ranvier's kernels stream at ~4 elements/ns, so the
# break-even sits higher. GEMM has its own threshold (csrc/gemm.h).
PARALLEL_MIN_WORK = 131072

_num_threads = None  # set by set_num_threads(); None: follow the OpenMP runtime

# -- fork --------------------------------------------------------------------------------------
# libgomp's thread pool does not survive fork (GCC bug 60035): a forked child that runs a
# parallel region on more than one thread waits for ever for pool threads that were not copied.
# Where the runtime can release the pool (csrc/runtime.c: omp_pause_resource_all), the parent
# releases it just before each fork and the child may use threads (it starts on one; see
# set_num_threads); the parent rebuilds its pool at its next parallel kernel. Elsewhere the child
# stays on one thread: a one-thread region never touches the pool.
_release_pool_at_fork = _runtime.fork_release_supported()  # tests switch it off to see the fallback
_pool_released = False  # set in the parent just before each fork, read by the child
_single_thread_child = False  # this process was forked without the pool released


def _before_fork():
    global _pool_released
    # A single-thread child still holds its parent's dead pool: pausing it would wait for ever.
    _pool_released = (_release_pool_at_fork and not _single_thread_child
                      and _runtime.fork_prepare())


def _after_fork_in_child():
    """A forked child starts on one thread (N workers forked from one parent would otherwise
    each take every CPU); set_num_threads() raises that where the pool was released."""
    global _num_threads, _single_thread_child
    _num_threads = 1
    if _runtime.openmp_enabled() and not _pool_released:
        _single_thread_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def fork_mode():
    """What a forked child can do with threads, in words (show_config's "fork" line)."""
    if not _runtime.openmp_enabled():
        return "serial build (no thread pool to lose)"
    if _single_thread_child:
        return "this forked child stays on 1 thread (the parent's pool was not released)"
    if _release_pool_at_fork:
        return "pool released before fork (children may use threads)"
    return "child stays on 1 thread (this OpenMP runtime cannot release its pool)"


def set_num_threads(n):
    """Use ``n`` threads in ranvier's kernels (``None`` goes back to the OpenMP default).

    In a child forked without the OpenMP pool released (see ``show_config``'s fork line), ``n > 1``
    warns with a RuntimeWarning and the kernels stay on one thread: more would hang for ever."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > 1 and _single_thread_child:
        warnings.warn(
            f"set_num_threads({n}) in a forked child: its OpenMP runtime kept the parent's thread "
            "pool, which does not survive fork, so ranvier stays on 1 thread here (more would hang);"
            " start workers with the 'spawn' or 'forkserver' method to use threads",
            RuntimeWarning, stacklevel=2)
        n = 1
    _num_threads = int(n)


def get_num_threads():
    """Threads the kernels use for large enough work."""
    if _single_thread_child:
        return 1
    if _num_threads is not None:
        return _num_threads
    return max(1, _runtime.omp_max_threads())


def threads_for(work):
    """Thread count for a kernel doing ``work`` elementary operations."""
    if work < PARALLEL_MIN_WORK:
        return 1
    return get_num_threads()


def _apply_isa_from_env():
    isa = os.environ.get("RANVIER_ISA", "").strip().lower()
    if isa:
        set_isa(isa)  # ValueError names the choices when this CPU cannot run it


def get_isa():
    """The instruction set every native kernel family runs: 'generic', 'avx2', 'avx512' or
    'avx512_bf16' (AVX-512 with VDPBF16PS: the bf16 GEMM's kernel; the rest run avx512's)."""
    return _runtime.get_isa()


def set_isa(name):
    """Force one instruction set for every native kernel family (GEMM, activations, optimizer
    updates), for tests and comparisons; ValueError if this CPU or build cannot run it."""
    _runtime.set_isa(name)


def set_flush_denormal(mode):
    """Whether native kernels flush denormals (subnormal floats) to zero while they run: True,
    the default, or False for gradual underflow. Operations on subnormals are ~100x slower on
    many CPUs, and training drives optimizer state into them. The caller's own floating-point
    mode is restored when each kernel returns, so NumPy code around ranvier is unaffected.
    Returns True where the CPU has a flush mode (x86, aarch64), as ``torch.set_flush_denormal``
    does. The environment variable RANVIER_FLUSH_DENORMAL=0 sets False at import."""
    _runtime.set_flush_denormal(check_bool(mode, "mode"))
    return _runtime.flush_denormal_supported()


def get_flush_denormal():
    """True when native kernels flush denormals to zero (see set_flush_denormal)."""
    return _runtime.get_flush_denormal()


def _apply_gemm_blocking_from_env():
    """RANVIER_GEMM_BLOCKING=MC,KC,NC forces the GEMM's cache blocks (for tuning); ValueError,
    saying what is allowed, on anything else."""
    value = os.environ.get("RANVIER_GEMM_BLOCKING", "").strip()
    if not value:
        return
    from ._kernels import matmul

    bounds = ", ".join(f"{k.upper()} <= {v}" for k, v in matmul.BLOCKING_BOUNDS.items())
    what = (f"RANVIER_GEMM_BLOCKING must be three positive integers MC,KC,NC ({bounds}), "
            f"got {value!r}")
    parts = value.split(",")
    try:
        blocking = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(what) from None
    if len(blocking) != 3:
        raise ValueError(what)
    try:
        matmul._set_gemm_blocking(blocking)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def _apply_flush_denormal_from_env():
    value = os.environ.get("RANVIER_FLUSH_DENORMAL", "").strip().lower()
    if value:
        if value not in ("0", "1", "true", "false"):
            raise ValueError(f"RANVIER_FLUSH_DENORMAL must be 0 or 1, got {value!r}")
        _runtime.set_flush_denormal(value in ("1", "true"))


def _compiler_info():
    import sysconfig

    cc = sysconfig.get_config_var("CC") or "unknown"
    return cc.split()[0]


def _gemm_blocking_report():
    """The active ISA's GEMM tiles and blocks, the caches they were derived from, and whether
    they were forced instead (RANVIER_GEMM_BLOCKING)."""
    from ._kernels import matmul

    forced = matmul._forced_gemm_blocking()
    return {"gemm_blocking": matmul._gemm_blocking(),
            "gemm_blocking_forced": list(forced) if forced else None,
            "cpu_caches": _runtime.cpu_caches()}


def _bf16_gemm_report():
    """The bf16 GEMM path the active ISA runs (csrc/gemm_bf16.h) and its tile and blocks."""
    from ._kernels import bf16

    return {"path": bf16._gemm_path(), "blocking": bf16._gemm_blocking()}


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
        "fork": fork_mode(),
        "flush_denormal": _runtime.get_flush_denormal() and _runtime.flush_denormal_supported(),
        **_gemm_blocking_report(),
        "bf16_gemm": _bf16_gemm_report(),
    }


def _size_text(nbytes):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def _caches_text(c):
    """'L1d 48 KiB 12-way, L2 1 MiB 16-way, L3 32 MiB 16-way shared by 2 CPUs (sysfs)'; a cache
    not detected reads 'unknown' (the blocking then assumes csrc/cpu_caches.h's defaults)."""
    def one(name, nbytes, ways, extra=""):
        if not nbytes:
            return f"{name} unknown"
        return f"{name} {_size_text(nbytes)}" + (f" {ways}-way" if ways else "") + extra

    shared = f" shared by {c['l3_shared_by']} CPUs" if c["l3_shared_by"] > 1 else ""
    return ", ".join([one("L1d", c["l1d_bytes"], c["l1d_ways"]),
                      one("L2", c["l2_bytes"], c["l2_ways"]),
                      one("L3", c["l3_bytes"], c["l3_ways"], shared)]) + f" ({c['source']})"


def _tile_text(b):
    return f"{b['mr']}x{b['nr']}: MC {b['mc']}, KC {b['kc']}, NC {b['nc']}"


def _blocking_lines(cfg):
    """['float32 8x32: MC 768, KC 256, NC 8192 (derived from the caches)', 'float64 ...']."""
    lines = [f"{dtype} {_tile_text(b)}" for dtype, b in cfg["gemm_blocking"].items()]
    forced = cfg["gemm_blocking_forced"]
    lines[0] += (f" (forced: RANVIER_GEMM_BLOCKING={','.join(map(str, forced))})" if forced
                 else " (derived from the caches)")
    return lines


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
        f"  caches:          {_caches_text(cfg['cpu_caches'])}",
        *(f"  {'GEMM blocking:' if i == 0 else '':<17}{line}"
          for i, line in enumerate(_blocking_lines(cfg))),
        f"  bf16 GEMM:       {cfg['bf16_gemm']['path']}, "
        f"{_tile_text(cfg['bf16_gemm']['blocking'])}",
        f"  fork:            {cfg['fork']}",
        f"  denormals:       {'flushed to zero in kernels' if cfg['flush_denormal'] else 'gradual underflow (not flushed)'}",
    ]
    print("\n".join(lines), file=out)
