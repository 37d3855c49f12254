"""A strict reader for IDX files (the MNIST file format), plain or gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then the payload: ``prod(dims)`` items of ``<type>``, big-endian, row-major.
The reader checks every part of that against the file: the payload must be exactly as long as the
header says (a truncated or over-long file is an error, never a silently short array), and it never
reads more than the header promises plus one byte, so a corrupt header or a decompression bomb
cannot exhaust memory. Every error is a ``ValueError`` naming the file.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["read_idx", "IDX_TYPES"]

# type byte -> (numpy dtype, big-endian, as stored in the file; name used in messages)
IDX_TYPES = {
    0x08: (np.dtype(">u1"), "uint8"),
    0x09: (np.dtype(">i1"), "int8"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24  # read the payload in 16 MiB pieces


def _describe_magic(type_byte, ndim):
    name = IDX_TYPES[type_byte][1] if type_byte in IDX_TYPES else f"unknown type 0x{type_byte:02X}"
    kind = ""
    if type_byte == 0x08 and ndim == 1:
        kind = ", i.e. a label file"
    elif type_byte == 0x08 and ndim == 3:
        kind = ", i.e. an image file"
    return f"0x0000{type_byte:02X}{ndim:02X} ({name}, {ndim} dimension{'s' * (ndim != 1)}{kind})"


def _read_exact(f, n):
    """Read up to ``n`` bytes; fewer only at the end of the file."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _read_idx_stream(f, path, ndim, type_byte, what):
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise ValueError(f"{path}: truncated {what}: the file holds {len(magic)} byte(s), fewer "
                         "than the 4-byte IDX magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected {what}): the magic number "
                         f"0x{magic.hex().upper()} does not start with two zero bytes")
    t, nd = magic[2], magic[3]
    if t not in IDX_TYPES:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic.hex().upper()} (expected {what}): "
                         f"unknown data type byte 0x{t:02X}; known types are "
                         + ", ".join(f"0x{k:02X} ({v[1]})" for k, v in IDX_TYPES.items()))
    if (type_byte is not None and t != type_byte) or (ndim is not None and nd != ndim):
        want = _describe_magic(type_byte if type_byte is not None else t,
                               ndim if ndim is not None else nd)
        raise ValueError(f"{path}: wrong kind of IDX file: expected {what} with magic number "
                         f"{want}, found magic number {_describe_magic(t, nd)}")
    if nd == 0:
        raise ValueError(f"{path}: bad IDX header (expected {what}): it declares 0 dimensions")
    raw_dims = _read_exact(f, 4 * nd)
    if len(raw_dims) < 4 * nd:
        raise ValueError(f"{path}: truncated {what}: the header declares {nd} dimension sizes "
                         f"({4 * nd} bytes) but the file ends after {len(raw_dims)} of those bytes")
    dims = struct.unpack(f">{nd}I", raw_dims)
    dt = IDX_TYPES[t][0]
    expected = math.prod(dims) * dt.itemsize
    # Ask for one byte more than promised, to detect an over-long file without reading all of it.
    payload = _read_exact(f, expected + 1)
    if len(payload) < expected:
        raise ValueError(f"{path}: truncated {what}: the header declares shape {dims} "
                         f"({expected} payload bytes) but the file holds only {len(payload)}")
    if len(payload) > expected:
        raise ValueError(f"{path}: over-long {what}: the header declares shape {dims} "
                         f"({expected} payload bytes) but the file holds more data after them")
    arr = np.frombuffer(payload, dtype=dt).reshape(dims)
    # A private, writable, native-byte-order copy (frombuffer on bytes is read-only).
    return arr.astype(dt.newbyteorder("="), copy=True)


def read_idx(path, *, ndim=None, type_byte=None, what="an IDX file"):
    """Read the IDX file at ``path`` (gzip-compressed or not; detected from its first bytes).

    ``ndim`` / ``type_byte``: if given, the header must declare exactly this many dimensions and
    this data type (0x08 uint8, ...), checked before the payload is read. ``what`` describes the
    expected content in error messages. Returns a C-contiguous, writable array of the stored shape
    in native byte order. Raises FileNotFoundError if ``path`` does not exist, ValueError for
    anything wrong with its content (naming ``path``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file (expected {what})")
    with open(path, "rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        compressed = head == _GZIP_MAGIC
        try:
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    return _read_idx_stream(f, path, ndim, type_byte, what)
            return _read_idx_stream(raw, path, ndim, type_byte, what)
        except EOFError as exc:  # the gzip stream ends before its end-of-stream marker
            raise ValueError(f"{path}: truncated gzip stream (expected {what}): {exc}") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:  # bad header, corrupt data, CRC mismatch
            raise ValueError(f"{path}: corrupt gzip data (expected {what}): {exc}") from exc
