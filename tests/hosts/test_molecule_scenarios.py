"""molecule converges site.yml onto throwaway hosts: the gateway's real test.

`default` (one systemd-nspawn guest: converge, idempotence, check mode with --diff, verify with the
official SDK client, destroy), `debian13` (the same on Debian 13) and `multi` (two guests on one
network) run on every test run. `vm`
(the same on a QEMU VM, with a reboot) takes over an hour under software emulation, so it runs only
when GATEWAY_TEST_VM=1 (on a machine with working KVM it is much faster).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MOLECULE = REPO / "tests" / "hosts" / "molecule"

pytestmark = [pytest.mark.hosts, pytest.mark.slow]


def run_scenario(name: str, timeout: float) -> None:
    log = REPO / ".tmp" / f"molecule-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as out:
        try:
            result = subprocess.run(
                [str(MOLECULE), "test", "-s", name], stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            subprocess.run([str(MOLECULE), "destroy", "-s", name], capture_output=True, timeout=300, check=False)
            raise
    minutes = (time.monotonic() - started) / 60
    print(f"molecule test -s {name}: exit {result.returncode} after {minutes:.1f} min (log {log})")
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        pytest.fail(f"molecule test -s {name} failed (exit {result.returncode}); last lines of {log}:\n{tail}")


def test_default_scenario_converges_site_yml_on_an_nspawn_guest():
    run_scenario("default", timeout=40 * 60)


def test_debian13_scenario_converges_site_yml_on_a_debian_13_guest():
    run_scenario("debian13", timeout=40 * 60)


def test_multi_scenario_brings_up_two_guests_that_reach_each_other():
    run_scenario("multi", timeout=15 * 60)


@pytest.mark.skipif(os.environ.get("GATEWAY_TEST_VM") != "1", reason="QEMU under TCG: set GATEWAY_TEST_VM=1")
def test_vm_scenario_converges_site_yml_on_a_qemu_vm_and_survives_a_reboot():
    run_scenario("vm", timeout=150 * 60)
