"""Saving and loading models without pickle: safetensors files.

A file holds the model's tensors under PyTorch's ``state_dict`` names (``0.weight`` of shape
(out, in), ``0.bias``, ...), so ``torch.nn.Sequential`` of the same layers loads it through
``safetensors.torch``, and the other way round. The header's metadata (plain JSON strings) holds
the architecture and dtype, so :func:`load` rebuilds the model; a training checkpoint also holds the
optimizer's state and the epoch.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to disk, and
replace the target with ``os.replace``. A save interrupted half way, even by SIGKILL, leaves the
previous file whole and at most one temporary file (named after the target), which the next save to
that path reuses; two processes saving to one path take turns (an advisory lock).
Nothing in a file is ever executed: layer types are looked up in the layer registry (ranvier's own
layers, and a user's classes registered with ``ranvier.register_layer``).
"""
import json
import os

import numpy as np

try:
    import fcntl as _fcntl
except ImportError:  # Windows
    _fcntl = None

from ._validation import check_path

FORMAT = "ranvier"
FORMAT_VERSION = "1"
_OPT_PREFIX = "optimizer."

__all__ = ["save", "load", "load_weights", "read_file"]


def _temp_path(path):
    """The one temporary name a save to ``path`` writes to, beside it: a save killed half way
    leaves this file, and the next save to ``path`` reuses and replaces it, so kills never pile up
    temporaries. Long names are hashed so the temporary name stays within the 255-byte limit."""
    folder, name = os.path.split(os.path.abspath(path))
    if len(os.fsencode(name)) > 200:
        import hashlib

        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return folder, os.path.join(folder, f".{name}.ranvier-tmp")


def _lock(fd):
    """Block until this process holds the exclusive advisory lock on ``fd``; the kernel drops it
    when the holder dies, so a killed save never blocks the next one."""
    _fcntl.flock(fd, _fcntl.LOCK_EX)


def _open_temp(tmp):
    """Open (creating if missing) and lock the temporary file named ``tmp``.

    Another save may hold the lock and rename its temporary over the target while this one waits:
    the lock then belongs to a file that is no longer at ``tmp``, so after locking, the inode at
    ``tmp`` is checked to be the one opened, and the open is retried otherwise."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        fd = os.open(tmp, flags, 0o666)
        if _fcntl is None:
            return fd
        try:
            _lock(fd)
            opened = os.fstat(fd)
            try:
                current = os.lstat(tmp)
            except FileNotFoundError:
                current = None
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev,
                                                                        opened.st_ino):
            return fd
        os.close(fd)


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); folders cannot be opened on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, data):
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The bytes go to the one temporary name of ``path`` (:func:`_temp_path`), locked against other
    processes saving to the same path, are flushed to disk, and replace the target; the folder is
    then flushed so the rename survives a power cut. Where ``fcntl`` is missing (Windows) there is
    no lock: saves to one path from two processes at once are not serialised there."""
    folder, tmp = _temp_path(path)
    fd = _open_temp(tmp)
    try:
        try:
            os.ftruncate(fd, 0)  # what a killed save left behind
            with os.fdopen(fd, "wb", closefd=False) as f:
                _write_all(f, data)
                f.flush()
                os.fsync(f.fileno())
            if _fcntl is None:  # Windows cannot rename a file that is open
                os.close(fd)
                fd = None
            os.replace(tmp, path)  # while locked: nobody else writes to tmp before it moves
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        if fd is not None:
            os.close(fd)
    _fsync_folder(folder)


def _write_all(f, data):
    f.write(data)


def model_state(model):
    """(name -> array) for every parameter and buffer, PyTorch's names."""
    out = {}
    for i, layer in enumerate(model.layers):
        for name, p in layer.named_parameters():
            out[f"{i}.{name}"] = p.data
        for name, buf in layer.named_buffers():
            out[f"{i}.{name}"] = np.asarray(buf)
    return out


def architecture(model):
    from .layers.base import registered_name

    return [{"type": registered_name(layer), "config": layer.config()} for layer in model.layers]


def save(model, path, *, optimizer=None, epoch=None, extra=None):
    """Write ``model`` (and optionally its optimizer's state and the epoch) to a .safetensors file."""
    from safetensors.numpy import save as st_save

    path = check_path(path)
    # asarray(order="C"), not ascontiguousarray, which makes a 0-d buffer (BatchNorm's
    # num_batches_tracked) 1-d: torch's state_dict and load() expect it 0-d.
    tensors = {k: np.asarray(v, order="C") for k, v in model_state(model).items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": json.dumps(architecture(model)),
        "dtype": str(model.dtype),
    }
    from . import __version__

    metadata["ranvier_version"] = __version__
    if optimizer is not None:
        sd = optimizer.state_dict()
        for idx, st in sd["state"].items():
            for key, value in st.items():
                if isinstance(value, np.ndarray):
                    tensors[f"{_OPT_PREFIX}state.{idx}.{key}"] = np.ascontiguousarray(value)
        scalars = {str(idx): {k: v for k, v in st.items() if not isinstance(v, np.ndarray)}
                   for idx, st in sd["state"].items()}
        metadata["optimizer"] = json.dumps({"type": type(optimizer).__name__,
                                            "param_groups": sd["param_groups"],
                                            "scalars": scalars}, default=_json_scalar)
    if epoch is not None:
        metadata["epoch"] = str(int(epoch))
    if extra:
        metadata["extra"] = json.dumps(extra)
    metadata["content_sha256"] = _content_hash(tensors)
    _atomic_write(path, st_save(tensors, metadata=metadata))


def _content_hash(tensors):
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in name order: safetensors has
    no checksum of its own, and a flipped byte in the data would otherwise load silently."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a model file")


def read_file(path):
    """(tensors, metadata) of a safetensors file, with clear errors for missing, truncated,
    corrupted or foreign files."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = check_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path!r} is not a safetensors file (only {len(data)} bytes)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data):
        raise ValueError(f"{path!r} is truncated or not a safetensors file (header of "
                         f"{header_len} bytes in a {len(data)}-byte file)")
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path!r} is corrupted or not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path!r} is not a safetensors file (header is not a JSON object)")
    try:
        tensors = st_load(data)
    except SafetensorError as exc:
        raise ValueError(f"{path!r} is truncated or corrupted: {exc}") from None
    metadata = header.get("__metadata__") or {}
    expected = metadata.get("content_sha256")
    if expected is not None and _content_hash(tensors) != expected:
        raise ValueError(f"{path!r} is corrupted: its tensors do not match the checksum stored "
                         "when it was saved")
    return tensors, metadata


def load(path):
    """Rebuild a model saved by ``model.save`` (architecture, dtype, weights), in eval mode as
    ``fit`` leaves a model: it predicts what the saved model predicted (Dropout off, BatchNorm on
    its running statistics); ``fit`` switches to training by itself. When the file is a training
    checkpoint, ``model.optimizer`` is restored too and ``model.epoch`` is set."""
    import inspect

    from .model import Sequential

    tensors, meta = read_file(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} has no ranvier architecture in its metadata (a "
                         "weights-only file, e.g. from PyTorch): build the model, then call "
                         "model.load_weights(path)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)!r} has format version {meta.get('format_version')!r};"
                         f" this ranvier reads version {FORMAT_VERSION}")
    from .layers import layer_class

    try:
        arch = json.loads(meta["architecture"])
        dtype = np.dtype(meta["dtype"])
        layers = []
        for spec in arch:
            cls = layer_class(spec["type"])
            cfg = dict(spec.get("config", {}))
            if "dtype" in inspect.signature(cls).parameters:
                cfg["dtype"] = dtype
            layers.append(cls(**cfg))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{os.fspath(path)!r} has a malformed architecture: {exc}") from None
    model = Sequential(layers, dtype=dtype) if any(l.named_parameters() for l in layers) else \
        Sequential(layers)
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    model.load_state_dict(weights)
    if "optimizer" in meta:
        _restore_optimizer(model, tensors, json.loads(meta["optimizer"]))
    if "epoch" in meta:
        model.epoch = int(meta["epoch"])
    model.metadata = json.loads(meta["extra"]) if "extra" in meta else {}
    model.eval()
    return model


def _restore_optimizer(model, tensors, info):
    from . import optim

    cls = getattr(optim, info["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
        raise ValueError(f"unknown optimizer type {info['type']!r} in checkpoint")
    state = {}
    for idx, scalars in info["scalars"].items():
        state[int(idx)] = dict(scalars)
    for key, value in tensors.items():
        if key.startswith(_OPT_PREFIX + "state."):
            _, _, idx, name = key.split(".", 3)
            state.setdefault(int(idx), {})[name] = value
    groups = info["param_groups"]
    params = model.parameters()
    try:
        built = []
        for g in groups:
            hp = {k: (tuple(v) if k == "betas" else v) for k, v in g.items() if k != "params"}
            built.append({"params": [params[i] for i in g["params"]], **hp})
        opt = cls(built)
    except (IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"checkpoint's optimizer does not match the model: {exc}") from None
    opt.load_state_dict({"state": state, "param_groups": groups})
    model.optimizer = opt


def load_weights(model, path, strict=True):
    """Load tensors from a safetensors file (ranvier's or PyTorch's ``state_dict`` names) into an
    existing model."""
    tensors, _ = read_file(path)
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPT_PREFIX)}
    model.load_state_dict(weights, strict=strict)
    return model
