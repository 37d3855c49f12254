"""fork after parallel kernels (ranvier issue 10). libgomp's thread pool does not survive fork
(GCC bug 60035): without the fix a child that trains on two threads waits for ever. Every child
here runs under a watchdog, so a regression fails instead of hanging CI; each reports how many
OS threads it has (Linux), which tells whether its kernels really ran a two-thread team."""
import json
import os
import select
import signal
import threading
import time
import traceback
import warnings

import numpy as np
import pytest

import ranvier as rv
from ranvier import _config, _plan
from ranvier._kernels import _runtime

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_TIMEOUT = 60
OPENMP = _runtime.openmp_enabled()
RELEASES_POOL = OPENMP and _runtime.fork_release_supported()

# Big enough that training runs parallel regions: 512 x 200 x 256 multiply-adds per GEMM.
N_SAMPLES, N_FEATURES, BATCH = 1031, 200, 512


def _data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N_SAMPLES, N_FEATURES)).astype(np.float32)
    return X, rng.integers(0, 10, N_SAMPLES)


def _train(epochs=2):
    """A freshly seeded model trained on the fixed data; its first weight matrix."""
    X, y = _data()
    model = rv.Sequential([rv.Dense(N_FEATURES, 256, seed=0), rv.ReLU(), rv.Dense(256, 10, seed=1)])
    model.fit(X, y, epochs=epochs, batch_size=BATCH, verbose=0, seed=0)
    return model.layers[0].weight.data.copy()


def _os_threads():
    """Threads of this process (None where /proc is missing). A forked child starts with one; a
    kernel that ran on a team of two leaves one libgomp pool thread behind."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _run_forked(child_fn, timeout=CHILD_TIMEOUT):
    """Fork; the child runs ``child_fn()`` and sends back its (JSON) result and the warnings it
    raised. A child still running after ``timeout`` seconds is killed and fails the test."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process that has threads: the case under test.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = child_fn()
                payload = {"result": result,
                           "warnings": [[w.category.__name__, str(w.message)] for w in caught]}
                status = 0
            except BaseException:
                payload = {"error": traceback.format_exc()}
            with os.fdopen(write_end, "w") as out:
                json.dump(payload, out)
        finally:
            os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"forked child hung: killed after {timeout} s")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    payload = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in payload, payload["error"]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return payload["result"], payload["warnings"]


def _child_trains_on_two_threads():
    """Child side: ask for two threads, train, report what ran."""
    threads_at_start = rv.get_num_threads()
    before = _os_threads()
    rv.set_num_threads(2)
    weights = _train()
    after = _os_threads()
    return {"threads_at_start": threads_at_start, "threads": rv.get_num_threads(),
            "new_os_threads": None if before is None else after - before,
            "weights": weights.tolist(), "fork": _config.fork_mode()}


@pytest.fixture
def two_threads():
    """The parent trains on two threads first, so its OpenMP pool has a thread to lose."""
    rv.set_num_threads(2)
    yield _train()
    rv.set_num_threads(None)


@pytest.mark.skipif(not RELEASES_POOL, reason="this OpenMP runtime cannot release its pool")
def test_child_trains_on_two_threads_after_the_parent_did(two_threads):
    got, warned = _run_forked(_child_trains_on_two_threads)
    assert warned == []
    assert got["threads_at_start"] == 1  # children start on one thread ...
    assert got["threads"] == 2           # ... and may ask for more
    if got["new_os_threads"] is not None:
        assert got["new_os_threads"] == 1  # a team of two ran: one pool thread was started
    np.testing.assert_array_equal(np.array(got["weights"], dtype=np.float32), two_threads)
    assert got["fork"] == "pool released before fork (children may use threads)"
    assert rv.get_num_threads() == 2 and np.array_equal(_train(), two_threads)  # parent too


@pytest.mark.skipif(not RELEASES_POOL, reason="this OpenMP runtime cannot release its pool")
def test_grandchild_of_a_threaded_child_uses_threads(two_threads):
    """The child trains on two threads (its own pool), then forks again: the release works there
    too."""
    def child():
        rv.set_num_threads(2)
        _train(epochs=1)
        return _run_forked(_child_trains_on_two_threads)

    (got, warned), _ = _run_forked(child)
    assert warned == [] and got["threads"] == 2
    if got["new_os_threads"] is not None:
        assert got["new_os_threads"] == 1


@pytest.mark.skipif(not RELEASES_POOL, reason="this OpenMP runtime cannot release its pool")
def test_fork_while_another_thread_runs_kernels(two_threads):
    """A second thread predicts in a loop (inside RUN_LOCK, mostly in parallel regions of its
    own pool, the GIL released) while this thread forks: the release of this thread's pool must
    neither wait for nor disturb that region, and the child (where that thread does not exist)
    must train on two threads and predict (a fresh RUN_LOCK)."""
    X, y = _data()
    big = np.tile(X, (4, 1))
    busy = rv.Sequential([rv.Dense(N_FEATURES, 512, seed=2), rv.ReLU(), rv.Dense(512, 10, seed=3)])
    expected = busy.predict_proba(big)
    stop, started, errors, rounds = threading.Event(), threading.Event(), [], [0]

    def predict_forever():
        try:
            while not stop.is_set():
                if not np.array_equal(busy.predict_proba(big), expected):
                    raise AssertionError("predictions changed while the main thread forked")
                rounds[0] += 1
                started.set()
        except Exception as exc:  # reported below
            errors.append(exc)
            started.set()

    def child():
        out = _child_trains_on_two_threads()
        out["lock_was_held"] = lock_held_at_fork(copied_lock)
        probs = busy.predict_proba(X[:5])  # needs RUN_LOCK
        out["predict_ok"] = bool(np.allclose(probs.sum(axis=1), 1.0))
        return out

    worker = threading.Thread(target=predict_forever, daemon=True)
    worker.start()
    results = []
    try:
        assert started.wait(30) and not errors
        rounds_at_first_fork = rounds[0]
        for _ in range(20):  # until a fork lands while the other thread holds RUN_LOCK
            copied_lock = _plan.RUN_LOCK
            results.append(_run_forked(child))
            assert not errors and worker.is_alive()
            if results[-1][0]["lock_was_held"] and len(results) >= 3:
                break
        deadline = time.monotonic() + 30
        while rounds[0] == rounds_at_first_fork and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rounds[0] > rounds_at_first_fork  # the other thread kept predicting
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors
    assert any(got["lock_was_held"] for got, _ in results), "no fork landed inside a predict"
    for got, warned in results:
        assert warned == [] and got["threads"] == 2 and got["predict_ok"]
        if got["new_os_threads"] is not None:
            assert got["new_os_threads"] == 1
        np.testing.assert_array_equal(np.array(got["weights"], dtype=np.float32), two_threads)


def lock_held_at_fork(lock):
    """Whether a threading.RLock copied by fork was held (by a thread the child lacks)."""
    return repr(lock).startswith("<locked")


def test_run_lock_held_by_another_thread_at_fork():
    """Another thread holds RUN_LOCK when this one forks: the child must not wait for it."""
    model = rv.Sequential([rv.Dense(8, 3, seed=0), rv.Softmax()])
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    expected = model.predict_proba(x)
    held, release = threading.Event(), threading.Event()

    def hold():
        with _plan.RUN_LOCK:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert held.wait(30)
        copied = _plan.RUN_LOCK

        def child():
            return [lock_held_at_fork(copied), model.predict_proba(x).tolist()]

        (was_held, probs), warned = _run_forked(child)
    finally:
        release.set()
        holder.join(30)
    assert was_held and warned == []
    np.testing.assert_array_equal(np.array(probs, dtype=np.float32), expected)


@pytest.mark.skipif(not OPENMP, reason="serial build: a child has no pool to lose")
def test_fallback_child_warns_and_stays_on_one_thread(two_threads, monkeypatch):
    """Where the runtime cannot release its pool (pretended here), the parent's pool reaches the
    child dead: set_num_threads(2) there warns and keeps one thread, and the child still
    trains, as does its own child."""
    monkeypatch.setattr(_config, "_release_pool_at_fork", False)
    assert _config.fork_mode() == ("child stays on 1 thread "
                                   "(this OpenMP runtime cannot release its pool)")
    rv.set_num_threads(1)
    one_thread = _train()

    def child():
        got = _child_trains_on_two_threads()
        # As where the runtime has the pause but the parent's call failed: the child must still
        # not pause the dead pool it holds (that would wait for ever for its threads).
        _config._release_pool_at_fork = RELEASES_POOL
        got["grandchild"] = _run_forked(_child_trains_on_two_threads)
        return got

    child_got, child_warned = _run_forked(child)
    for got, warned in [(child_got, child_warned), tuple(child_got["grandchild"])]:
        assert [w[0] for w in warned] == ["RuntimeWarning"], warned
        assert "set_num_threads(2) in a forked child" in warned[0][1]
        assert "spawn" in warned[0][1]
        assert got["threads"] == 1
        if got["new_os_threads"] is not None:
            assert got["new_os_threads"] == 0  # no team of two ran
        np.testing.assert_array_equal(np.array(got["weights"], dtype=np.float32), one_thread)
        assert got["fork"] == ("this forked child stays on 1 thread "
                               "(the parent's pool was not released)")


@pytest.mark.skipif(OPENMP, reason="OpenMP build")
def test_serial_build_child_takes_any_thread_count():
    """Without OpenMP there is no pool to lose: set_num_threads(2) in a child behaves as in
    the parent (no warning) and the child trains to the parent's weights."""
    expected = _train()
    got, warned = _run_forked(_child_trains_on_two_threads)
    assert warned == [] and got["threads"] == 2
    assert got["fork"] == "serial build (no thread pool to lose)"
    if got["new_os_threads"] is not None:
        assert got["new_os_threads"] == 0  # the kernels ran serially
    np.testing.assert_array_equal(np.array(got["weights"], dtype=np.float32), expected)


def test_fork_mode_matches_the_build():
    if not OPENMP:
        assert _config.fork_mode().startswith("serial build")
    elif RELEASES_POOL:
        assert _config.fork_mode().startswith("pool released before fork")
    else:
        assert _config.fork_mode().startswith("child stays on 1 thread")
