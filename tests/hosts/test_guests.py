"""Throwaway guests come up, answer over SSH on their own loopback address, and leave nothing behind.

Runs the `tests/hosts/guest` command as a person or molecule would. The first run builds the image
(about 2 minutes); later runs, from any clone, restore it from the machine's image cache
(~/.cache/mcp-gateway/guest-images). The QEMU guest boots only with GATEWAY_TEST_VM=1 (software
emulation here; the `vm` molecule scenario boots one too). Timings are printed (pytest -s);
tests/hosts/README.md keeps the measured figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.procs import wait_until

HERE = Path(__file__).resolve().parent
GUEST = HERE / "guest"
GUESTS_DIR = Path(os.environ.get("GUESTS_DIR", HERE.parents[1] / ".guests"))

pytestmark = [pytest.mark.hosts, pytest.mark.slow]


def guest(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GUEST), *args], capture_output=True, text=True, timeout=timeout, check=False)


def processes_naming(marker: str) -> list[str]:
    """Live (not zombie) processes whose command line contains marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = "\nState:\tZ" in (proc / "status").read_text()
        except OSError:
            continue
        if marker in cmdline and not zombie:
            found.append(f"{proc.name}: {cmdline}")
    return found


def container_processes(name: str) -> list[str]:
    """Live processes whose root filesystem says it is the guest `name` (an nspawn container's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == "1":
            continue
        try:
            hostname = (proc / "root/etc/hostname").read_text().strip()
            zombie = "\nState:\tZ" in (proc / "status").read_text()
        except OSError:
            continue
        if hostname == name and not zombie:
            found.append(proc.name)
    return found


@pytest.fixture(scope="module")
def image() -> Path:
    start = time.monotonic()
    done = guest("image")
    assert done.returncode == 0, done.stderr
    print(f"\nimage ready in {time.monotonic() - start:.1f} s (build or cache hit)")
    return Path(done.stdout.strip())


@pytest.fixture
def started(image: Path) -> Iterator[list[str]]:
    """Names of guests the test started; all brought down afterwards, whatever happened."""
    names: list[str] = []
    yield names
    if names:
        guest("down", *names)


def up(name: str, kind: str, started: list[str], *extra: str) -> dict[str, object]:
    started.append(name)
    start = time.monotonic()
    done = guest("up", name, "--kind", kind, "--json", *extra)
    assert done.returncode == 0, done.stderr
    print(f"\n{kind} guest {name} up (SSH answering) in {time.monotonic() - start:.1f} s")
    return json.loads(done.stdout)


QEMU = pytest.param(
    "qemu",
    marks=pytest.mark.skipif(
        os.environ.get("GATEWAY_TEST_VM") != "1", reason="a QEMU boot under TCG: set GATEWAY_TEST_VM=1"
    ),
)


@pytest.mark.parametrize("kind", ["nspawn", QEMU])
def test_guest_answers_over_ssh_and_down_leaves_nothing(kind: str, started: list[str]) -> None:
    name = f"pytest-{kind}"
    info = up(name, kind, started)
    assert str(info["address"]).startswith("127.0.2.")
    assert info["running"] is True

    done = guest("ssh", name, "hostname; . /etc/os-release; echo $VERSION_CODENAME; systemctl is-system-running")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [name, "bookworm", "running"]

    # the guest reaches Debian's mirror through its own user-mode NAT
    done = guest("ssh", name, "apt-get -q update >/dev/null && echo updated", timeout=300)
    assert done.stdout.strip() == "updated", done.stderr

    guest_dir = GUESTS_DIR / "guests" / name
    start = time.monotonic()
    assert guest("down", name).returncode == 0
    print(f"{kind} guest {name} down in {time.monotonic() - start:.1f} s")
    started.remove(name)
    assert not guest_dir.exists()
    assert processes_naming(str(guest_dir)) == []
    assert processes_naming(f"--machine={name}") == []
    assert container_processes(name) == []
    assert guest("status", name).returncode == 1


def test_two_nspawn_guests_have_their_own_addresses_and_forwards(started: list[str]) -> None:
    first = up("pytest-a", "nspawn", started, "--forward", "8080:8000")
    second = up("pytest-b", "nspawn", started, "--forward", "8080:8000")
    assert first["address"] != second["address"]

    for name in ("pytest-a", "pytest-b"):
        serve = f"cd /etc && echo {name} > /tmp/{name} && systemd-run --unit=web python3 -m http.server -d /tmp 8000"
        assert guest("ssh", name, serve).returncode == 0

    import httpx  # the venv's client; imported here so collection needs nothing beyond pytest

    for name, info in (("pytest-a", first), ("pytest-b", second)):
        url = f"http://{info['address']}:8080/{name}"
        answers: list[httpx.Response] = []

        def answered(url: str = url, answers: list[httpx.Response] = answers) -> bool:
            try:
                answers.append(httpx.get(url, timeout=2))
            except httpx.TransportError:
                return False
            return True

        assert wait_until(answered, timeout=10, interval=0.2), f"nothing answers {url}"
        assert answers[-1].status_code == 200
        assert answers[-1].text.strip() == name

    assert guest("down", "pytest-a", "pytest-b").returncode == 0
    started.clear()
    assert processes_naming(str(GUESTS_DIR / "guests" / "pytest-")) == []
