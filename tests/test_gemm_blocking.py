"""The GEMM's cache blocks: cache detection, the analytical model on known CPUs (and on caches
that are tiny, unknown or nonsense), forcing them (set_gemm_blocking, RANVIER_GEMM_BLOCKING),
and their report in show_config. The GEMM's results under forced blocks: test_kernels_matmul.py."""
import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import ranvier as rv
from ranvier._config import config_dict
from ranvier._kernels import _runtime, matmul

KiB, MiB = 1024, 1024 * 1024

# (mr, nr, itemsize) of every GEMM instance built (gemm_<isa>.c), whatever this CPU runs.
TILES = [(4, 8, 4), (4, 4, 8), (6, 16, 4), (6, 8, 8), (8, 32, 4), (8, 16, 8)]

# Per-core caches as the vendors publish them; L3 shared_by counts logical CPUs (SMT on).
CPUS = {
    "haswell": dict(l1d_bytes=32 * KiB, l1d_ways=8, l2_bytes=256 * KiB, l2_ways=8,
                    l3_bytes=8 * MiB, l3_ways=16, l3_shared_by=8),
    "zen1": dict(l1d_bytes=32 * KiB, l1d_ways=8, l2_bytes=512 * KiB, l2_ways=8,
                 l3_bytes=8 * MiB, l3_ways=16, l3_shared_by=8),
    "zen3": dict(l1d_bytes=32 * KiB, l1d_ways=8, l2_bytes=512 * KiB, l2_ways=8,
                 l3_bytes=32 * MiB, l3_ways=16, l3_shared_by=16),
    "zen4": dict(l1d_bytes=32 * KiB, l1d_ways=8, l2_bytes=1 * MiB, l2_ways=8,
                 l3_bytes=32 * MiB, l3_ways=16, l3_shared_by=16),
    "sapphire-rapids": dict(l1d_bytes=48 * KiB, l1d_ways=12, l2_bytes=2 * MiB, l2_ways=16,
                            l3_bytes=105 * MiB, l3_ways=15, l3_shared_by=112),
}
ODD = {
    "tiny": dict(l1d_bytes=4 * KiB, l1d_ways=2, l2_bytes=16 * KiB, l2_ways=4),
    "unknown": {},
    "zeros": dict.fromkeys(CPUS["zen3"], 0),
    "nonsense": dict(l1d_bytes=-5, l1d_ways=10 ** 6, l2_bytes=1 << 50, l2_ways=-1,
                     l3_bytes=3, l3_ways=0, l3_shared_by=10 ** 7),
    "fully-associative": dict(l1d_bytes=32 * KiB, l1d_ways=512, l2_bytes=512 * KiB,
                              l2_ways=8192, l3_bytes=8 * MiB, l3_ways=0, l3_shared_by=0),
}
# What ranvier assumes where nothing is known (csrc/cpu_caches.h).
DEFAULTS = dict(l1d_bytes=32 * KiB, l1d_ways=8, l2_bytes=1 * MiB, l2_ways=16,
                l3_bytes=2 * MiB, l3_ways=16, l3_shared_by=1)
KC_MODEL_MIN, NC_MODEL_MIN = 256, 512  # csrc/gemm_blocking.h


def _ways(nbytes, way_bytes):
    return math.ceil(nbytes / way_bytes)


def _assert_valid(blocking, mr, nr):
    mc, kc, nc = blocking
    bounds = matmul.BLOCKING_BOUNDS
    assert mc % mr == 0 and mr <= mc <= bounds["mc"], blocking
    assert nc % nr == 0 and nr <= nc <= bounds["nc"], blocking
    assert 1 <= kc <= bounds["kc"], blocking


@pytest.mark.parametrize("cpu", list(CPUS) + list(ODD))
@pytest.mark.parametrize("mr,nr,itemsize", TILES)
def test_derived_blocks_are_whole_tiles_within_bounds(cpu, mr, nr, itemsize):
    caches = {**CPUS, **ODD}[cpu]
    _assert_valid(matmul._derive_gemm_blocking(caches, mr, nr, itemsize), mr, nr)


@pytest.mark.parametrize("cpu", list(CPUS))
@pytest.mark.parametrize("mr,nr,itemsize", TILES)
def test_derived_blocks_fit_the_caches_they_model(cpu, mr, nr, itemsize):
    """The model's own promises on real caches: B's and A's micro-panels share all but one L1
    way; the A block fits L2 with its C strip and two B micro-panels, one way spare; the B panel
    fits the core's share of L3 (unless a floor or a bound made a block larger or smaller)."""
    c = CPUS[cpu]
    mc, kc, nc = matmul._derive_gemm_blocking(c, mr, nr, itemsize)
    way1 = c["l1d_bytes"] // c["l1d_ways"]
    if kc > KC_MODEL_MIN:
        assert (_ways(kc * mr * itemsize, way1) + _ways(kc * nr * itemsize, way1)
                <= c["l1d_ways"] - 1)
        # and KC is the longest that does, to the 8 its rounding allows
        longer = kc + 8
        assert (_ways(longer * mr * itemsize, way1) + _ways(longer * nr * itemsize, way1)
                > c["l1d_ways"] - 1) or longer > matmul.BLOCKING_BOUNDS["kc"]
    way2 = c["l2_bytes"] // c["l2_ways"]
    assert (_ways(mc * kc * itemsize, way2) + _ways(mc * nr * itemsize, way2)
            + _ways(2 * kc * nr * itemsize, way2) + 1 <= c["l2_ways"])
    share = c["l3_bytes"] // c["l3_shared_by"]
    if nc > NC_MODEL_MIN:
        assert kc * nc * itemsize <= share


def test_model_reproduces_blis_haswell_dgemm_kc():
    """BLIS's hand-tuned Haswell dgemm (6 x 8) uses KC = 256: the model gets there too."""
    assert matmul._derive_gemm_blocking(CPUS["haswell"], 6, 8, 8)[1] == 256


@pytest.mark.parametrize("mr,nr,itemsize", TILES)
def test_bigger_caches_never_give_smaller_blocks(mr, nr, itemsize):
    zen3 = matmul._derive_gemm_blocking(CPUS["zen3"], mr, nr, itemsize)
    zen4 = matmul._derive_gemm_blocking(CPUS["zen4"], mr, nr, itemsize)   # zen3 with 2x the L2
    assert zen4[0] >= zen3[0] and zen4[1] == zen3[1]
    zen1 = matmul._derive_gemm_blocking(CPUS["zen1"], mr, nr, itemsize)   # zen3 with 1/2 the L3
    assert zen1[2] <= zen3[2] and zen1[:2] == zen3[:2]


@pytest.mark.parametrize("cpu", ["unknown", "zeros", "nonsense"])
@pytest.mark.parametrize("mr,nr,itemsize", TILES)
def test_unknown_or_nonsense_caches_take_the_defaults(cpu, mr, nr, itemsize):
    assert (matmul._derive_gemm_blocking(ODD[cpu], mr, nr, itemsize)
            == matmul._derive_gemm_blocking(DEFAULTS, mr, nr, itemsize))


def test_derive_rejects_a_bad_tile():
    with pytest.raises(ValueError, match="positive"):
        matmul._derive_gemm_blocking(CPUS["zen3"], 0, 8, 4)


# -- detection -------------------------------------------------------------------------------
def _sysfs_caches():
    """cpu0's caches read here in Python, to compare with the C detection; None without sysfs."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    if not os.path.isdir(root):
        return None
    found = {}
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        try:
            read = lambda name: open(os.path.join(path, name)).read().strip()  # noqa: E731
            level, kind, size = int(read("level")), read("type"), read("size")
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or level > 3:
            continue
        scale = {"K": KiB, "M": MiB}.get(size[-1], 1)
        found[level] = int(size.rstrip("KM")) * scale
    return found or None


def test_detected_caches_are_sane():
    c = _runtime.cpu_caches()
    assert set(c) == {"l1d_bytes", "l1d_ways", "l2_bytes", "l2_ways", "l3_bytes", "l3_ways",
                      "l3_shared_by", "source"}
    methods = c["source"].split("+")
    assert c["source"] == "none" or set(methods) <= {"sysfs", "cpuid", "sysconf"}
    for key, value in c.items():
        if key != "source":
            assert isinstance(value, int) and value >= 0, (key, value)
    expected = _sysfs_caches()
    if expected is None:
        pytest.skip("no sysfs cache entries on this system")
    assert c["source"].startswith("sysfs")
    got = {1: c["l1d_bytes"], 2: c["l2_bytes"], 3: c["l3_bytes"]}
    for level, nbytes in expected.items():
        assert got[level] == nbytes, (level, got, expected)


def test_cpuid_agrees_with_sysfs():
    """On x86 Linux both answer; CPUID is what Windows and macOS on x86 get. (Its count of CPUs
    sharing the L3 is the ids reserved for them, which may be more than there are.)"""
    sysfs, cpuid = _runtime._cpu_caches_from("sysfs"), _runtime._cpu_caches_from("cpuid")
    if sysfs is None or cpuid is None:
        pytest.skip("needs both sysfs and CPUID (x86 Linux)")
    for key in ("l1d_bytes", "l1d_ways", "l2_bytes", "l2_ways", "l3_bytes", "l3_ways"):
        assert cpuid[key] == sysfs[key], (key, cpuid, sysfs)
    assert cpuid["l3_shared_by"] >= sysfs["l3_shared_by"] >= 1 or not sysfs["l3_bytes"]


def test_blocks_in_use_are_derived_from_the_detected_caches():
    before = matmul._set_gemm_blocking(None)
    try:
        caches = _runtime.cpu_caches()
        for dtype, b in matmul._gemm_blocking().items():
            itemsize = 4 if dtype == "float32" else 8
            assert (b["mc"], b["kc"], b["nc"]) == matmul._derive_gemm_blocking(
                caches, b["mr"], b["nr"], itemsize)
    finally:
        matmul._set_gemm_blocking(before)


# -- forcing ---------------------------------------------------------------------------------
def test_forced_blocks_are_fitted_to_the_tile_and_restored():
    derived = matmul._gemm_blocking()
    before = matmul._set_gemm_blocking((100, 7, 33))
    try:
        assert matmul._forced_gemm_blocking() == (100, 7, 33)
        for b in matmul._gemm_blocking().values():
            assert b["kc"] == 7
            assert b["mc"] == 100 // b["mr"] * b["mr"] and b["nc"] == 33 // b["nr"] * b["nr"]
        matmul._set_gemm_blocking((1, 1, 1))
        for b in matmul._gemm_blocking().values():   # at least one tile
            assert (b["mc"], b["kc"], b["nc"]) == (b["mr"], 1, b["nr"])
    finally:
        matmul._set_gemm_blocking(before)
    assert matmul._gemm_blocking() == derived


def test_forced_blocks_accept_numpy_integers():
    before = matmul._set_gemm_blocking(np.array([48, 64, 512]))
    try:
        forced = matmul._forced_gemm_blocking()
        assert forced == (48, 64, 512) and all(type(v) is int for v in forced)
    finally:
        matmul._set_gemm_blocking(before)


@pytest.mark.parametrize("bad", [(0, 256, 4096), (96, 0, 4096), (96, 513, 4096),
                                 (96, 256, 10 ** 9), (96, 256), (96.0, 256, 4096),
                                 (True, 256, 4096), "96,256,4096"])
def test_bad_forced_blocks_raise_and_change_nothing(bad):
    derived = matmul._gemm_blocking()
    with pytest.raises(ValueError, match="blocking"):
        matmul._set_gemm_blocking(bad)
    assert matmul._gemm_blocking() == derived and matmul._forced_gemm_blocking() is None


def _child(code, **env_extra):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(rv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("RANVIER_GEMM_BLOCKING", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)


CHILD_GEMM = """
import numpy as np, ranvier as rv
from ranvier._kernels import matmul
rng = np.random.default_rng(0)
a, b = rng.standard_normal((61, 77)), rng.standard_normal((77, 45))
out = np.empty((61, 45))
matmul.gemm(a, b, out)
assert np.allclose(out, a @ b, rtol=1e-12, atol=1e-12)
print(matmul._gemm_blocking()["float64"]["kc"], rv._config.config_dict()["gemm_blocking_forced"])
"""


def test_environment_forces_the_blocks():
    r = _child(CHILD_GEMM, RANVIER_GEMM_BLOCKING=" 24, 5 ,64")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["5", "[24,", "5,", "64]"]


@pytest.mark.parametrize("value", ["96,256", "a,b,c", "96,256,4096,1", "0,256,4096",
                                   "96,-1,4096", "96,100000,4096", "96;256;4096"])
def test_bad_environment_value_is_a_clear_error(value):
    r = _child("import ranvier", RANVIER_GEMM_BLOCKING=value)
    assert r.returncode == 1, (r.returncode, r.stderr)   # an exception, not a signal
    assert "ValueError: RANVIER_GEMM_BLOCKING must be three positive integers MC,KC,NC" in r.stderr


# -- the report ------------------------------------------------------------------------------
def test_show_config_reports_caches_and_blocks():
    buf = io.StringIO()
    rv.show_config(file=buf)
    text = buf.getvalue()
    cfg = config_dict()
    assert cfg["cpu_caches"] == _runtime.cpu_caches()
    assert cfg["gemm_blocking"] == matmul._gemm_blocking()
    assert "  caches:          L1d " in text
    for dtype, b in cfg["gemm_blocking"].items():
        assert (f"{dtype} {b['mr']}x{b['nr']}: MC {b['mc']}, KC {b['kc']}, NC {b['nc']}"
                in text)
    assert "(derived from the caches)" in text or cfg["gemm_blocking_forced"]


def test_show_config_says_when_blocks_are_forced():
    before = matmul._set_gemm_blocking((48, 64, 512))
    try:
        buf = io.StringIO()
        rv.show_config(file=buf)
        assert "(forced: RANVIER_GEMM_BLOCKING=48,64,512)" in buf.getvalue()
        assert config_dict()["gemm_blocking_forced"] == [48, 64, 512]
    finally:
        matmul._set_gemm_blocking(before)
