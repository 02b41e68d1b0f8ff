"""The suite itself notices a server a test forgot to stop, and fails the run."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist workers"])
def test_a_forgotten_server_fails_the_run(pytester, monkeypatch, workers):
    marker = f"leaked-{uuid.uuid4().hex}"
    pytester.makeconftest("from tests.conftest import pytest_sessionfinish, pytest_testnodedown  # noqa: F401\n")
    pytester.makepyfile(
        test_leak=f"""
import sys
from tests.harness.procs import ManagedProcess

def test_leaks(tmp_path):
    code = "import time; time.sleep(60)  # {marker}"
    ManagedProcess("sleeper", [sys.executable, "-c", code], log_dir=tmp_path).start()
"""
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers, timeout=60)
        assert result.ret != 0
        result.stdout.fnmatch_lines(["*processes left running after the suite*", f"*{marker}*"])
    finally:
        subprocess.run(["pkill", "-f", marker], check=False)


def test_a_clean_run_with_xdist_workers_passes(pytester, monkeypatch):
    """The controller does not count its own (finished) workers as leftovers."""
    pytester.makeconftest("from tests.conftest import pytest_sessionfinish, pytest_testnodedown  # noqa: F401\n")
    pytester.makepyfile(
        test_clean="""
import sys
from tests.harness.procs import ManagedProcess

def test_stops_what_it_starts(tmp_path):
    with ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], log_dir=tmp_path):
        pass

def test_nothing():
    pass
"""
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", timeout=60)
    assert result.ret == 0, result.stdout.str()
    assert "left running" not in result.stdout.str()
