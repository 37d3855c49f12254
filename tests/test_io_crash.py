"""Saves killed at any moment (SIGKILL: no cleanup code runs) leave the previous file loadable and
at most one temporary file, which the next save to that path removes; two processes saving to one
path at once take turns instead of corrupting each other's file."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ranvier as rv
from ranvier import io as rio

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

TEMP = ".m.safetensors.ranvier-tmp"

# A model of about 3 MB; version v has every weight of its first layer equal to v (and the version
# in its metadata), the rest fixed by the seeds, so a loaded file names the save that wrote it.
BUILD = "rv.Sequential([rv.Dense(1024, 768, seed=0), rv.ReLU(), rv.Dense(768, 4, seed=1)])"

CHILD_PRELUDE = f"""
import os, signal, sys
import ranvier as rv
from ranvier import io as rio

def versioned(version):
    model = {BUILD}
    model[0].weight.data[...] = version
    return model

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _versioned(version):
    model = eval(BUILD)
    model[0].weight.data[...] = version
    return model


@pytest.fixture
def child():
    """Start a Python child running CHILD_PRELUDE + ``body`` with ``args`` in sys.argv; children
    still running when the test ends (a failed assertion, a hang) are killed."""
    started = []
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(rv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])

    def start(body, *args, stdin=None):
        code = CHILD_PRELUDE + textwrap.dedent(body)
        proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                                stdin=stdin, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _loaded_version(path):
    """The version a loadable file holds, checked against that version's every tensor."""
    model = rv.load(path)
    version = model.metadata["version"]
    expected = _versioned(version).state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    return version


def _temporaries(folder):
    return sorted(n for n in os.listdir(folder) if n != "m.safetensors")


def test_sigkill_at_random_moments(tmp_path, child):
    path = tmp_path / "m.safetensors"
    _versioned(0).save(path, metadata={"version": 0})
    writer = """
    path, version = sys.argv[1], int(sys.argv[2])
    model = versioned(version)
    print("ready", flush=True)
    while True:
        model[0].weight.data[...] = version
        model.save(path, metadata={"version": version})
        version += 1
    """
    moments = random.Random(20261201)
    previous = 0
    for kill in range(1, 9):
        first = kill * 1_000_000
        proc = child(writer, path, first)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(moments.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        version = _loaded_version(path)
        assert version == previous or first <= version < first + 1_000_000
        assert _temporaries(tmp_path) in ([], [TEMP])
        previous = version
    _versioned(99).save(path, metadata={"version": 99})
    assert _temporaries(tmp_path) == []
    assert _loaded_version(path) == 99


STAGES = {
    # where the child dies: (what it patches to die there, does the new version land)
    "locked": ("real = rio._lock\nrio._lock = lambda fd: (real(fd), die())", False),
    "writing": ("rio._write_all = lambda f, data: (f.write(data[: len(data) // 2]), f.flush(), "
                "die())", False),
    "before_replace": ("rio.os.replace = die", False),
    "after_replace": ("rio._fsync_folder = die", True),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_at_each_stage_of_a_save(tmp_path, child, stage):
    path = tmp_path / "m.safetensors"
    _versioned(1).save(path, metadata={"version": 1})
    patch, lands = STAGES[stage]
    proc = child(patch + "\nversioned(2).save(sys.argv[1], metadata={'version': 2})\n", path)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _loaded_version(path) == (2 if lands else 1)
    assert _temporaries(tmp_path) == ([] if lands else [TEMP])
    _versioned(3).save(path, metadata={"version": 3})
    assert _temporaries(tmp_path) == []
    assert _loaded_version(path) == 3


def test_stale_temporary_from_a_previous_crash_is_removed(tmp_path):
    path = tmp_path / "m.safetensors"
    # a crash left more bytes than the next save writes: they must not survive as a tail
    (tmp_path / TEMP).write_bytes(b"\xff" * 5_000_000)
    _versioned(4).save(path, metadata={"version": 4})
    assert _temporaries(tmp_path) == []
    _versioned(4).save(tmp_path / "fresh", metadata={"version": 4})
    assert path.stat().st_size == (tmp_path / "fresh").stat().st_size
    assert _loaded_version(path) == 4


def test_two_processes_saving_to_one_path(tmp_path, child):
    path = tmp_path / "m.safetensors"
    writer = """
    path, first = sys.argv[1], int(sys.argv[2])
    model = versioned(first)
    sys.stdin.readline()  # both start together
    for version in range(first, first + 20):
        model[0].weight.data[...] = version
        model.save(path, metadata={"version": version})
    """
    procs = [child(writer, path, first, stdin=subprocess.PIPE) for first in (100, 200)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    assert _loaded_version(path) in (119, 219)  # the last save of one of them
    assert _temporaries(tmp_path) == []


def test_lock_won_on_a_temporary_another_save_already_moved(tmp_path, monkeypatch):
    """While this save waits for the lock, the holder renames the temporary it locked; the lock
    then covers a file no longer at the temporary name, which this save must not write into."""
    path = tmp_path / "m.safetensors"
    other = tmp_path / "other"
    real_lock = rio._lock
    calls = []

    def lock_after_the_other_save_finished(fd):
        if not calls:
            os.write(fd, b"the other save's file")
            os.replace(tmp_path / TEMP, other)
        calls.append(fd)
        real_lock(fd)

    monkeypatch.setattr(rio, "_lock", lock_after_the_other_save_finished)
    _versioned(5).save(path, metadata={"version": 5})
    assert len(calls) == 2  # it noticed, and opened the temporary name again
    assert other.read_bytes() == b"the other save's file"
    assert _loaded_version(path) == 5
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors", "other"]


def test_without_fcntl_saves_still_replace_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(rio, "_fcntl", None)
    path = tmp_path / "m.safetensors"
    (tmp_path / TEMP).write_bytes(b"left by a crash")
    for version in (6, 7):
        _versioned(version).save(path, metadata={"version": version})
        assert _temporaries(tmp_path) == []
    assert _loaded_version(path) == 7


def test_long_file_name_gets_a_short_temporary(tmp_path, monkeypatch):
    name = "m" * 240 + ".safetensors"
    seen = []
    real_open = rio._open_temp
    monkeypatch.setattr(rio, "_open_temp", lambda tmp: (seen.append(tmp), real_open(tmp))[1])
    _versioned(8).save(tmp_path / name, metadata={"version": 8})
    assert len(os.path.basename(seen[0])) < 255
    assert os.listdir(tmp_path) == [name]
    assert _loaded_version(tmp_path / name) == 8
