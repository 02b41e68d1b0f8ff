"""scripts/bootstrap keeps package scripts from starting services while apt-get runs, and leaves the
machine's own /usr/sbin/policy-rc.d (Debian container images ship one) exactly as it found it.

The real handling in scripts/bootstrap runs here (sourced, so nothing is installed), on a policy-rc.d
in a scratch folder named by POLICY_RC_D, around a stand-in for apt-get that records what the policy
in place answers, as invoke-rc.d would ask it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "scripts" / "bootstrap"
# What a Debian container image ships (the Docker images' policy-rc.d), with a mode of its own.
ORIGINAL = b"#!/bin/sh\n# the image's own policy: no daemons in a container\nexit 101\n\xff no newline"
ORIGINAL_MODE = 0o750
# invoke-rc.d asks `policy-rc.d <service> <action>`; 101 is "action forbidden".
ASK_POLICY = '"$POLICY_RC_D" redis-server start; echo $? > "$ANSWER"'


def run_bootstrap_handling(policy: Path, command: str, **popen: object) -> subprocess.Popen[bytes]:
    """scripts/bootstrap's without_service_starts around `sh -c command`."""
    env = {**os.environ, "POLICY_RC_D": str(policy), "ANSWER": str(policy.parent / "answer")}
    script = 'source "$1" && without_service_starts sh -c "$2"'
    return subprocess.Popen(["bash", "-c", script, "bash", str(BOOTSTRAP), command], env=env, **popen)


def existing_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy-rc.d"
    policy.write_bytes(ORIGINAL)
    policy.chmod(ORIGINAL_MODE)
    return policy


def assert_original_back(policy: Path) -> None:
    assert policy.read_bytes() == ORIGINAL
    assert policy.stat().st_mode & 0o7777 == ORIGINAL_MODE
    assert sorted(p.name for p in policy.parent.iterdir() if p.name.startswith("policy-rc.d")) == ["policy-rc.d"]


@pytest.mark.parametrize("apt_status", [0, 100], ids=["apt-get succeeds", "apt-get fails"])
def test_an_existing_policy_rc_d_is_put_back_byte_for_byte(tmp_path, apt_status):
    policy = existing_policy(tmp_path)
    run = run_bootstrap_handling(policy, f"{ASK_POLICY}; exit {apt_status}")
    assert run.wait(timeout=30) == apt_status
    # While apt-get ran, starting a service was forbidden...
    assert (tmp_path / "answer").read_text().strip() == "101"
    # ...and afterwards the machine's own policy is there again, unchanged.
    assert_original_back(policy)


def test_without_a_policy_rc_d_none_is_left_behind(tmp_path):
    policy = tmp_path / "policy-rc.d"
    run = run_bootstrap_handling(policy, ASK_POLICY)
    assert run.wait(timeout=30) == 0
    assert (tmp_path / "answer").read_text().strip() == "101"
    assert list(tmp_path.glob("policy-rc.d*")) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_run_puts_the_policy_back(tmp_path, signum):
    policy = existing_policy(tmp_path)
    started = tmp_path / "started"
    # As in a terminal, the signal is not ignored on entry: a test run started in the background (`&`)
    # would hand its children SIGINT ignored, and then no shell can trap it nor a program die of it.
    run = run_bootstrap_handling(
        policy,
        f"{ASK_POLICY}; touch {started}; exec sleep 60",
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the stand-in for apt-get never started"
            time.sleep(0.05)
        os.killpg(run.pid, signum)  # the terminal sends Ctrl-C to the whole foreground group
        assert run.wait(timeout=30) != 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert (tmp_path / "answer").read_text().strip() == "101"
    assert_original_back(policy)


@pytest.mark.parametrize("had_one", [True, False], ids=["policy-rc.d existed", "none existed"])
def test_a_run_killed_outright_is_repaired_by_the_next_run(tmp_path, had_one):
    """SIGKILL leaves no chance to clean up: the next bootstrap puts the machine's policy back."""
    policy = existing_policy(tmp_path) if had_one else tmp_path / "policy-rc.d"
    killed = run_bootstrap_handling(policy, "kill -KILL $PPID")
    assert killed.wait(timeout=30) == -signal.SIGKILL
    rerun = run_bootstrap_handling(policy, ASK_POLICY)
    assert rerun.wait(timeout=30) == 0
    assert (tmp_path / "answer").read_text().strip() == "101"
    if had_one:
        assert_original_back(policy)
    else:
        assert list(tmp_path.glob("policy-rc.d*")) == []
