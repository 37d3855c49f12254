"""Shared benchmark plumbing: a fair NumPy, timing medians, a record of the machine, the data."""
import json
import os
import platform
import statistics
import sys
import time

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on these machines and slow OpenBLAS down. A
# benchmark drops both for its own process only (never for tests or CI), before NumPy loads BLAS.
_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def fair_blas_env():
    """Re-execute this process, as it was started, without the OpenBLAS overrides, if any are
    set (NumPy reads them when it loads its BLAS, before any benchmark code runs)."""
    if any(v in os.environ for v in _OPENBLAS_VARS):
        env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
        env["RANVIER_BENCH_DROPPED"] = ",".join(v for v in _OPENBLAS_VARS if v in os.environ)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)


def timeit(fn, repeats=5, warmup=1):
    """Median, min and max seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "repeats": repeats}


def _cpuinfo():
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model():
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# The microarchitecture of a vendor's family and model numbers. Clouds often report a model
# name of "AMD EPYC" alone, so the kind is read from the family and model numbers. Only the kinds
# seen or likely on the machines this project runs on are named; the rest fall back to numbers.
_MICROARCHS = {  # (vendor, family): [(lowest model, highest model, name), ...]
    ("AuthenticAMD", 0x17): [(0x00, 0x2F, "zen1"), (0x30, 0xFF, "zen2")],
    ("AuthenticAMD", 0x19): [(0x00, 0x0F, "zen3"), (0x10, 0x1F, "zen4"), (0x20, 0x5F, "zen3"),
                             (0x60, 0xAF, "zen4")],
    ("AuthenticAMD", 0x1A): [(0x00, 0xFF, "zen5")],
    ("GenuineIntel", 6): [(0x55, 0x55, "skylake-sp"), (0x6A, 0x6C, "icelake-sp"),
                          (0x8F, 0x8F, "sapphirerapids"), (0xCF, 0xCF, "emeraldrapids"),
                          (0xAD, 0xAE, "graniterapids")],
}
_VENDOR_SLUG = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}
# The flags that decide which kernels run; recorded with every result.
_KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16",
                 "amx_tile", "amx_bf16", "asimd", "sve")


def _cache_sizes():
    """{"L1d": bytes, "L2": bytes, "L3": bytes} of cpu0, as the kernels detected them for their
    GEMM blocking (csrc/cpu_caches.c); a cache not detected is left out."""
    from .._kernels import _runtime

    found = _runtime.cpu_caches()
    return {name: found[key] for name, key in (("L1d", "l1d_bytes"), ("L2", "l2_bytes"),
                                               ("L3", "l3_bytes")) if found[key]}


def cpu_record():
    """The CPU a result was measured on: its kind (the results folder's name, e.g. ``amd-zen5``),
    vendor/family/model numbers, the kernel-relevant flags and the cache sizes."""
    info = _cpuinfo()
    vendor = info.get("vendor_id", "")
    try:
        family, model = int(info.get("cpu family", "")), int(info.get("model", ""))
    except ValueError:
        family = model = None
    kind = next((f"{_VENDOR_SLUG[vendor]}-{name}"
                 for lo, hi, name in _MICROARCHS.get((vendor, family), ()) if lo <= model <= hi),
                None)
    if kind is None:
        kind = (f"{_VENDOR_SLUG.get(vendor, vendor.lower() or platform.machine())}"
                + (f"-f{family}-m{model}" if family is not None else ""))
    flags = set(info.get("flags", info.get("Features", "")).split())
    return {"kind": kind, "model_name": cpu_model(), "vendor": vendor, "family": family,
            "model": model, "flags": [f for f in _KERNEL_FLAGS if f in flags],
            "caches": _cache_sizes()}


def blas_info():
    """Which BLAS NumPy runs (threadpoolctl), or what NumPy says about its build."""
    try:
        from threadpoolctl import threadpool_info

        return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                       "threading_layer", "prefix", "filepath")}
                for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        return "threadpoolctl not installed"


def machine_record():
    import numpy as np

    import ranvier

    cpu = cpu_record()
    rec = {
        "cpu": cpu["model_name"],
        "cpu_kind": cpu["kind"],
        "cpu_detail": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "ranvier": ranvier.__version__,
        "ranvier_isa": ranvier.get_isa(),
        "ranvier_threads": ranvier.get_num_threads(),
        "blas": blas_info(),
        "dropped_env": os.environ.get("RANVIER_BENCH_DROPPED", ""),
        # overrides still in effect (a run inside another program, which is never re-executed)
        "kept_env": ",".join(f"{v}={os.environ[v]}" for v in _OPENBLAS_VARS if v in os.environ),
    }
    try:
        import torch

        rec["torch"] = torch.__version__
    except ImportError:
        rec["torch"] = None
    return rec


def write_json(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def results_dir(root, quick=False):
    """``root/<cpu kind>`` (``.../quick`` for a smoke run): one folder per kind of CPU, so the
    figures of every machine kind stay side by side."""
    path = os.path.join(root, cpu_record()["kind"])
    return os.path.join(path, "quick") if quick else path


def optional_import(name):
    """The module, or None when it is not installed (a column to skip, not a crash)."""
    import importlib

    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken install that fails while importing
        return None


def compared_torch(libs, notes):
    """torch when it is installed and among ``libs``, else None with a note saying its column
    is skipped."""
    torch = optional_import("torch") if "torch" in libs else None
    if torch is None:
        notes.append("PyTorch is not installed (or left out by --libs): its column is skipped.")
    return torch


def versions():
    """Versions of every library the suite compares (None: not installed), read from the installed
    distributions' metadata so that nothing is imported (and no extra BLAS loaded) to ask."""
    import importlib.util
    from importlib import metadata

    out = {}
    for mod, dist in (("numpy", "numpy"), ("torch", "torch"), ("sklearn", "scikit-learn"),
                      ("threadpoolctl", "threadpoolctl"), ("matplotlib", "matplotlib"),
                      ("scipy", "scipy")):
        loaded = sys.modules.get(mod)
        if loaded is not None and getattr(loaded, "__version__", None):
            out[mod] = loaded.__version__
            continue
        try:
            out[mod] = metadata.version(dist) if importlib.util.find_spec(mod) else None
        except (metadata.PackageNotFoundError, ImportError, ValueError):
            out[mod] = None
    return out


class Threads:
    """Set one thread count everywhere: ranvier.set_num_threads, torch.set_num_threads and
    threadpoolctl's limit on the BLAS (and OpenMP) pools NumPy / SciPy load."""

    def __init__(self):
        self._limiter = None

    def set(self, n):
        ranvier = sys.modules.get("ranvier")  # only libraries this process has loaded
        if ranvier is not None:
            ranvier.set_num_threads(n)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(n)
        tpc = optional_import("threadpoolctl")
        if tpc is not None:
            if self._limiter is not None:
                self._limiter.restore_original_limits()
            # Only the BLAS pools: limiting "openmp" would also cap ranvier's and torch's runtimes,
            # which their own set_num_threads already control.
            self._limiter = tpc.threadpool_limits(limits=n, user_api="blas")
        return n


def settle(seconds):
    """Let other libraries' worker threads stop spinning (OpenBLAS spins ~0.1 s after a call)
    before timing the next library, so none is timed against another's idle spin."""
    if seconds > 0:
        time.sleep(seconds)


def time_calls(fn, repeats=5, target_s=0.02, max_inner=100_000):
    """Seconds per call of ``fn()``: each of ``repeats`` samples times a loop of ``inner`` calls,
    ``inner`` calibrated so one sample lasts about ``target_s`` (1 for slow calls). Returns the
    median, min and max over the samples, per call. Calibration doubles as warm-up."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = 1
    if one < target_s:
        inner = max(1, min(max_inner, int(target_s / max(one, 1e-7))))
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        inner = max(1, min(max_inner, int(inner * target_s / max(dt, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "repeats": repeats, "inner": inner}


def time_row(row, calls, libs, amount, unit, threads, repeats, target_s, settle_s, last):
    """Time each library's call of one benchmark row, in ``libs`` order: ``row[lib]`` becomes its
    time_calls record with the rate ``unit`` (``amount`` / seconds / 1e9, and its min-max), or
    None where the library has no call; ``row["ratio_vs_<lib>"]`` is ranvier's rate over each
    other's. On more than one thread it lets the previous library's workers settle first.
    ``last`` is a dict carrying the library timed last across rows."""
    for lib in libs:
        if lib not in calls:
            row[lib] = None
            continue
        if lib != last.get("lib") and threads > 1:
            settle(settle_s)
        last["lib"] = lib
        t = time_calls(calls[lib], repeats=repeats, target_s=target_s)
        t[unit] = amount / t["median"] / 1e9
        t[f"{unit}_min"] = amount / t["max"] / 1e9
        t[f"{unit}_max"] = amount / t["min"] / 1e9
        row[lib] = t
    for lib in libs[1:]:
        if row.get(lib) and row.get("ranvier"):
            row[f"ratio_vs_{lib}"] = row["ranvier"][unit] / row[lib][unit]
    return row


def load_mnist(data_dir):
    """MNIST from ``data_dir`` as ``(X_train, y_train, X_test, y_test, source)``: X float32
    (n, 784) in [0, 1], y int64."""
    import numpy as np

    from ranvier.datasets import load_mnist as rv_load

    (Xtr, ytr), (Xte, yte) = rv_load(data_dir)

    def prep(X):
        X = np.asarray(X).reshape(len(X), -1)
        return (X.astype(np.float32) / np.float32(255.0)) if X.dtype == np.uint8 else \
            X.astype(np.float32)

    return (prep(Xtr), np.asarray(ytr, np.int64), prep(Xte), np.asarray(yte, np.int64),
            f"MNIST from {data_dir}")


def synthetic_mnist(n_train=60000, n_test=10000, seed=0):
    """MNIST-shaped data with nothing to download: (n, 784) float32 pixels in [0, 1), mostly
    dark as MNIST's are, labelled by a fixed random linear teacher so that training learns.
    Returns ``(X_train, y_train, X_test, y_test, source)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    X = rng.random((n, 784), dtype=np.float32)
    X *= rng.random((n, 784), dtype=np.float32) < 0.2
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    return (X[:n_train], y[:n_train], X[n_train:], y[n_train:],
            f"synthetic MNIST-shaped data ({n_train} + {n_test}, a random linear teacher)")


def max_rss_mb(who="self"):
    """Peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS).

    Linux carries ru_maxrss across fork + exec (a child starts with its parent's peak), so for
    this process prefer /proc/self/status VmHWM, the peak of the current address space only."""
    import resource

    if who == "self":
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
    ru = resource.getrusage(resource.RUSAGE_SELF if who == "self" else resource.RUSAGE_CHILDREN)
    kb = ru.ru_maxrss / 1024 if sys.platform == "darwin" else ru.ru_maxrss
    return kb / 1024


def ru_maxrss_mb():
    """ru_maxrss of this process in MiB, as the kernel reports it (see max_rss_mb)."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (kb / 1024 if sys.platform == "darwin" else kb) / 1024


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
