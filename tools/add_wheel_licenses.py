"""Put the licence texts of the libraries a repaired wheel vendors into its .dist-info/licenses/.

auditwheel (ranvier.libs/libgomp*.so), delocate (ranvier/.dylibs/libomp*.dylib) and delvewheel
(ranvier.libs/vcomp140*.dll) copy an OpenMP runtime into the wheel; its licence must travel with
it. Run after the repair step, on a wheel or a folder of wheels:

    python tools/add_wheel_licenses.py wheelhouse/

For each vendored library the matching folder of tools/wheel_licenses/ goes into
<dist-info>/licenses/<folder>/, VENDORED.txt lists which file is under which licence, RECORD gets
the new hashes and METADATA a License-File line each. A vendored library with no known licence is
an error: nobody should ship it unnoticed. Standard library only (it runs inside the manylinux
container and on the macOS/Windows runners without installing anything).
"""
import base64
import csv
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wheel_licenses")

# (file name pattern, folder in tools/wheel_licenses, what it is, SPDX expression)
KNOWN = [
    (r"libgomp[.-].*\.so.*", "gcc-runtime", "GNU OpenMP runtime (libgomp, from GCC)",
     "GPL-3.0-or-later WITH GCC-exception-3.1"),
    (r"libgcc_s[.-].*\.so.*", "gcc-runtime", "GCC low-level runtime (libgcc_s)",
     "GPL-3.0-or-later WITH GCC-exception-3.1"),
    (r"libomp[.-]?.*\.dylib", "llvm-openmp", "LLVM OpenMP runtime (libomp)",
     "Apache-2.0 WITH LLVM-exception"),
    (r"vcomp140[.-].*dll", "msvc-openmp", "Microsoft Visual C++ OpenMP runtime (vcomp140.dll)",
     "LicenseRef-Microsoft-Visual-Studio-Distributable-Code"),
]
# Where the repair tools put vendored libraries: <name>.libs/ (auditwheel, delvewheel) or
# <package>/.dylibs/ (delocate). Only shared libraries count (delvewheel may add a .load-order file).
VENDORED_DIR = re.compile(r"^(?:[^/]+\.libs|[^/]+/\.dylibs)/[^/]+\.(?:so(?:\.\d+)*|dylib|dll)$",
                          flags=re.IGNORECASE)


def vendored_libraries(names):
    return sorted(m.group(0) for m in map(VENDORED_DIR.match, names) if m)


def licence_for(path):
    base = path.rsplit("/", 1)[-1]
    for pattern, folder, what, spdx in KNOWN:
        if re.fullmatch(pattern, base, flags=re.IGNORECASE):
            return folder, what, spdx
    raise SystemExit(f"{path}: vendored library with no known licence; add it to {__file__}")


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def licence_files(vendored):
    """{path under licenses/: bytes} for the vendored libraries, plus VENDORED.txt."""
    files, lines = {}, ["This wheel bundles libraries that are not part of ranvier and are not",
                        "under its licence. Each one's licence is in the folder named here.", ""]
    for path in vendored:
        folder, what, spdx = licence_for(path)
        lines += [f"{path}", f"    {what}", f"    {spdx}", f"    licence texts: {folder}/", ""]
        for name in sorted(os.listdir(os.path.join(HERE, folder))):
            with open(os.path.join(HERE, folder, name), "rb") as f:
                files[f"{folder}/{name}"] = f.read()
    files["VENDORED.txt"] = "\n".join(lines).encode()
    return files


def add_license_fields(metadata, names):
    """License-File headers (core metadata 2.4) for the added files, before the body."""
    head, sep, body = metadata.partition("\n\n")
    version = re.search(r"^Metadata-Version: (\d+)\.(\d+)", head, flags=re.M)
    if not version or (int(version.group(1)), int(version.group(2))) < (2, 4):
        return metadata  # older metadata has no License-File field; the files still ship
    have = set(re.findall(r"^License-File: (.*)$", head, flags=re.M))
    extra = "".join(f"\nLicense-File: {n}" for n in names if n not in have)
    return head + extra + sep + body


def add_licences(wheel):
    with zipfile.ZipFile(wheel) as zin:
        infos = zin.infolist()
        vendored = vendored_libraries(i.filename for i in infos)
        if not vendored:
            print(f"{wheel}: vendors no library, nothing to add")
            return
        dist_info = next(i.filename.split("/")[0] for i in infos
                         if re.fullmatch(r"[^/]+\.dist-info/RECORD", i.filename))
        new = {f"{dist_info}/licenses/{k}": v for k, v in licence_files(vendored).items()}
        metadata_name, record_name = f"{dist_info}/METADATA", f"{dist_info}/RECORD"
        metadata = add_license_fields(zin.read(metadata_name).decode("utf-8"),
                                      [n.split("/licenses/", 1)[1] for n in new])
        new[metadata_name] = metadata.encode("utf-8")

        rows = [r for r in csv.reader(io.StringIO(zin.read(record_name).decode("utf-8")))
                if r and r[0] not in new and r[0] != record_name]
        rows += [[name, record_hash(data), str(len(data))] for name, data in new.items()]
        rows.append([record_name, "", ""])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)

        fd, tmp = tempfile.mkstemp(suffix=".whl", dir=os.path.dirname(os.path.abspath(wheel)))
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
                for info in infos:  # same entries, order and attributes; RECORD goes last
                    if info.filename not in new and info.filename != record_name:
                        zout.writestr(info, zin.read(info))
                for name, data in [*new.items(), (record_name, out.getvalue().encode("utf-8"))]:
                    info = zipfile.ZipInfo(name, date_time=infos[0].date_time)
                    info.external_attr = 0o644 << 16  # rw-r--r--, as the repair tools write
                    zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            shutil.copymode(wheel, tmp)  # mkstemp made it 0600
            os.replace(tmp, wheel)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    print(f"{wheel}: licences for {', '.join(p.rsplit('/', 1)[-1] for p in vendored)} added")


def main(args):
    wheels = []
    for arg in args:
        if os.path.isdir(arg):
            wheels += sorted(os.path.join(arg, f) for f in os.listdir(arg) if f.endswith(".whl"))
        else:
            wheels.append(arg)
    if not wheels:
        raise SystemExit("usage: add_wheel_licenses.py WHEEL_OR_FOLDER... (no wheel found)")
    for wheel in wheels:
        add_licences(wheel)


if __name__ == "__main__":
    main(sys.argv[1:])
