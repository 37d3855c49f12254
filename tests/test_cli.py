"""The ``ranvier`` command line, run as ``python -m ranvier.cli`` (works installed or from src/)."""
import os
import re
import subprocess
import sys

import pytest

import ranvier


def _run(*args, timeout=300, **env_extra):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(ranvier.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning makes each
    # parallel region wait for a descheduled thread (results are identical either way).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "ranvier.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_reaches_95_percent():
    res = _run("demo")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    m = re.search(r"test accuracy (\d+\.\d+)%", out)
    assert m, out
    assert float(m.group(1)) >= 95.0, out
    assert "ranvier 0.1.0 demo" in out
    sizes = re.search(r"(\d+) train / (\d+) test images", out)
    assert sizes and int(sizes.group(1)) + int(sizes.group(2)) == 1797, out
    assert len(re.findall(r"^Epoch \d+/20 ", out, flags=re.M)) == 20


def test_demo_result_independent_of_threads():
    """The demo's numbers do not depend on the thread count (short run)."""
    outs = []
    for t in ("1", "2"):
        res = _run("demo", "--epochs", "2", "--threads", t)
        assert res.returncode == 0, res.stderr
        outs.append(re.search(r"test loss (\S+), test accuracy (\S+)%", res.stdout).groups())
    assert outs[0] == outs[1]


@pytest.mark.quick
def test_config_command_prints_report():
    res = _run("config")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ranvier 0.1.0")
    assert "OpenMP:" in res.stdout and "kernels (ISA):" in res.stdout


def test_no_command_prints_help_and_returns_2():
    res = _run()
    assert res.returncode == 2
    assert "usage: ranvier" in res.stdout and "demo" in res.stdout


def test_demo_bad_option_is_a_usage_error_not_a_traceback():
    """``ranvier demo --epochs 0`` (or --batch-size 0, --threads 0) should be an argparse usage
    error (exit 2, message naming the option), not an uncaught ValueError traceback."""
    wrong = []
    for opt in ("--epochs", "--batch-size", "--threads"):
        res = _run("demo", opt, "0", timeout=60)
        if res.returncode != 2 or "Traceback" in res.stderr or opt not in res.stderr:
            last = res.stderr.strip().splitlines()[-1:] or [""]
            wrong.append(f"demo {opt} 0: exit {res.returncode}, stderr ends {last[0]!r}")
    assert not wrong, "\n".join(wrong)


def test_unknown_command_is_a_usage_error():
    res = _run("bogus", timeout=60)
    assert res.returncode == 2 and "invalid choice" in res.stderr
