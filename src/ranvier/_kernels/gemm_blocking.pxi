# The GEMM's cache blocks MC, KC, NC (csrc/gemm_blocking.h): derived from the detected caches when
# this module is imported, or forced (RANVIER_GEMM_BLOCKING, tests) with _set_gemm_blocking.
# Configuration, not kernels: hence the underscores (test_kernels_contract covers the kernels).
# Included by matmul.pyx, whose GEMM tables hold each instance's tile and blocks.

cdef extern from "gemm_blocking.h":
    ctypedef struct ranvier_gemm_blocking:
        Py_ssize_t mc, kc, nc
    enum:
        RANVIER_GEMM_KC_MAX
        RANVIER_GEMM_MC_MAX
        RANVIER_GEMM_NC_MAX
    ranvier_gemm_blocking ranvier_gemm_blocking_derive(const ranvier_cpu_caches *caches, int mr,
                                                       int nr, int elem_bytes) nogil

cdef extern from "gemm.h":
    ctypedef struct ranvier_gemm_shape:
        int mr, nr
        ranvier_gemm_blocking blocking
    void ranvier_gemm_set_blocking(const ranvier_cpu_caches *caches,
                                   const ranvier_gemm_blocking *forced) nogil

import numbers

# The largest value of each block a forced blocking may ask for.
BLOCKING_BOUNDS = {"mc": RANVIER_GEMM_MC_MAX, "kc": RANVIER_GEMM_KC_MAX, "nc": RANVIER_GEMM_NC_MAX}

_forced_blocking = None  # (mc, kc, nc) as asked for, or None: derived from the caches
# GEMMs of other extensions (bf16.gemm) take the same blocks: each registers a function of the
# forced (mc, kc, nc), or None, called at once and whenever they change.
_blocking_followers = []


def _follow_gemm_blocking(fn):
    _blocking_followers.append(fn)
    fn(_forced_blocking)


def _derive_gemm_blocking(caches, int mr, int nr, int itemsize):
    """(mc, kc, nc) the model gives for an mr x nr micro-kernel of itemsize-byte elements on
    ``caches`` (a dict with cpu_caches()'s keys; missing or 0 means unknown)."""
    cdef ranvier_cpu_caches c
    c.l1d_bytes = caches.get("l1d_bytes", 0)
    c.l1d_ways = caches.get("l1d_ways", 0)
    c.l2_bytes = caches.get("l2_bytes", 0)
    c.l2_ways = caches.get("l2_ways", 0)
    c.l3_bytes = caches.get("l3_bytes", 0)
    c.l3_ways = caches.get("l3_ways", 0)
    c.l3_shared_by = caches.get("l3_shared_by", 0)
    c.source = NULL
    if mr < 1 or nr < 1 or itemsize < 1:
        raise ValueError("_derive_gemm_blocking: mr, nr and itemsize must be positive")
    cdef ranvier_gemm_blocking b = ranvier_gemm_blocking_derive(&c, mr, nr, itemsize)
    return (b.mc, b.kc, b.nc)


def _set_gemm_blocking(blocking):
    """Force the cache blocks (mc, kc, nc) of every GEMM (each fitted to its tile: MC and NC
    rounded down to multiples of MR and NR), or go back to the derived ones with None. Each
    value must be an integer from 1 to its BLOCKING_BOUNDS entry: ValueError otherwise, and
    nothing changes. Returns what was forced before (None: derived)."""
    global _forced_blocking
    cdef ranvier_gemm_blocking forced
    before = _forced_blocking
    if blocking is None:
        ranvier_gemm_set_blocking(detected_caches(), NULL)
        _forced_blocking = None
        for fn in _blocking_followers:
            fn(None)
        return before
    values = tuple(blocking)
    if len(values) != 3:
        raise ValueError(f"GEMM blocking must be (mc, kc, nc), got {blocking!r}")
    for name, v in zip(("mc", "kc", "nc"), values):
        if (isinstance(v, bool) or not isinstance(v, numbers.Integral)
                or not 1 <= v <= BLOCKING_BOUNDS[name]):
            raise ValueError(f"GEMM blocking: {name} must be an int from 1 to "
                             f"{BLOCKING_BOUNDS[name]}, got {v!r}")
    values = tuple(int(v) for v in values)
    forced.mc, forced.kc, forced.nc = values
    ranvier_gemm_set_blocking(detected_caches(), &forced)
    _forced_blocking = values
    for fn in _blocking_followers:
        fn(values)
    return before


def _forced_gemm_blocking():
    """The (mc, kc, nc) _set_gemm_blocking forced, or None when the blocks are derived."""
    return _forced_blocking


cdef dict _shape_dict(const ranvier_gemm_shape *shape):
    return {"mr": shape.mr, "nr": shape.nr, "mc": shape.blocking.mc, "kc": shape.blocking.kc,
            "nc": shape.blocking.nc}


def _gemm_blocking():
    """The tile and blocks of the active ISA's GEMMs: {"float32": {"mr", "nr", "mc", "kc", "nc"},
    "float64": {...}}."""
    cdef const ranvier_gemm_kernels *table = ranvier_gemm_kernels_for(active_isa())
    return {"float32": _shape_dict(table.sgemm_shape), "float64": _shape_dict(table.dgemm_shape)}


ranvier_gemm_set_blocking(detected_caches(), NULL)
