"""An installed wheel that vendors an OpenMP runtime carries that runtime's licence texts.

Runs in `make test-wheel` (and cibuildwheel's test step) against the installed wheel. From a
source tree, or an install that vendors nothing, there is nothing to check and it skips; a
manylinux/musllinux wheel (auditwheel) with OpenMP on must vendor its runtime, so it never skips.
"""
import importlib.metadata
import os
import re

import pytest

import ranvier

PKG = os.path.dirname(os.path.abspath(ranvier.__file__))
# auditwheel and delvewheel: <site-packages>/ranvier.libs/; delocate: ranvier/.dylibs/
VENDOR_DIRS = [os.path.join(os.path.dirname(PKG), "ranvier.libs"), os.path.join(PKG, ".dylibs")]

# Vendored file name -> phrases its licence texts must contain.
EXPECTED = [
    (r"lib(gomp|gcc_s)[.-].*", ["GNU GENERAL PUBLIC LICENSE", "Version 3, 29 June 2007",
                                "GCC RUNTIME LIBRARY EXCEPTION", "Version 3.1, 31 March 2009"]),
    (r"libomp.*\.dylib", ["Apache License", "LLVM Exceptions to the Apache 2.0 License"]),
    (r"vcomp140.*\.dll", ["Microsoft Visual C++ OpenMP runtime", "Distributable Code"]),
]


def vendored():
    """Shared libraries the repair tool copied in (not its other files, e.g. delvewheel's
    .load-order)."""
    return sorted(f for d in VENDOR_DIRS if os.path.isdir(d) for f in os.listdir(d)
                  if re.search(r"\.(so(\.\d+)*|dylib|dll)$", f, flags=re.IGNORECASE))


def installed_distribution():
    """ranvier's installed distribution, if the imported ranvier is the installed one."""
    try:
        dist = importlib.metadata.distribution("ranvier")
    except importlib.metadata.PackageNotFoundError:
        return None
    init = dist.locate_file("ranvier/__init__.py")
    return dist if os.path.exists(init) and os.path.samefile(init, ranvier.__file__) else None


def wheel_tags(dist):
    return re.findall(r"^Tag: (.*)$", dist.read_text("WHEEL") or "", flags=re.M)


@pytest.mark.quick
def test_vendored_runtime_ships_its_licence():
    libs, dist = vendored(), installed_distribution()
    if not libs:
        auditwheel_repaired = dist is not None and any(
            "manylinux" in t or "musllinux" in t for t in wheel_tags(dist))
        if auditwheel_repaired and ranvier._config.config_dict()["openmp"]:
            pytest.fail("a manylinux/musllinux wheel with OpenMP vendors no OpenMP runtime")
        pytest.skip("no vendored libraries (source tree, or a build that vendors nothing)")
    assert dist is not None, "vendored libraries next to a ranvier that is not installed"
    licences = [f for f in dist.files or () if "licenses" in f.parts]
    texts = {str(f): f.read_text(encoding="utf-8") for f in licences}
    listing = next((t for name, t in texts.items() if name.endswith("/VENDORED.txt")), "")
    everything = "\n".join(texts.values())
    for lib in libs:
        phrases = next((p for pattern, p in EXPECTED if re.fullmatch(pattern, lib)), None)
        assert phrases is not None, f"vendored {lib}: which licence covers it?"
        assert lib in listing, f"{lib} missing from licenses/VENDORED.txt"
        missing = [p for p in phrases if p not in everything]
        assert not missing, f"licence text for {lib} lacks {missing}; files: {sorted(texts)}"
