"""Start real servers as child processes on loopback and make sure they go away again.

Every process runs in its own session (process group), so stopping it also stops
whatever it spawned (npx -> node, gunicorn -> workers). Every process the harness
starts is recorded in a registry; the suite checks at the end that none is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"

# Process groups started by the harness in this interpreter, checked at session end.
_started_groups: set[int] = set()


class StartupError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago on `host` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `check` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_groups() -> list[int]:
    """Process groups the harness started that still have a live member."""
    return sorted(pgid for pgid in _started_groups if group_alive(pgid))


class ManagedProcess:
    """One server process: started in its own process group, logging to a file.

    Use as a context manager, or call start()/stop(); stop() is idempotent and
    always ends the whole group, SIGTERM first and SIGKILL after `stop_timeout`.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 10.0,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.stdin = stdin
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> ManagedProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=self.stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        _started_groups.add(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End the process group: SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=self.stop_timeout)
        # The leader is gone; wait briefly for the rest of the group to die too.
        wait_until(lambda: not group_alive(self.pid), timeout=self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=self.stop_timeout)
        wait_until(lambda: not group_alive(self.pid), timeout=self.stop_timeout)

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ManagedProcess:
        return self if self.running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- readiness ---------------------------------------------------------
    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, what: str) -> StartupError:
        state = "exited" if not self.running() else "still running"
        code = self.proc.returncode if self.proc is not None else None
        self.stop()
        return StartupError(f"{self.name} {what} ({state}, exit code {code}); log {self.log_path}:\n{self.log_tail()}")

    def wait_for_port(self, port: int, host: str = LOOPBACK, timeout: float = 30.0) -> ManagedProcess:
        if not wait_until(lambda: not self.running() or port_open(host, port), timeout):
            raise self._fail(f"did not open {host}:{port} within {timeout}s")
        if not self.running():
            raise self._fail("exited during start-up")
        return self

    def wait_for_http(
        self,
        url: str,
        timeout: float = 30.0,
        ok: Callable[[httpx.Response], bool] = lambda r: r.status_code < 500,
        verify: bool | str = True,
    ) -> ManagedProcess:
        def ready() -> bool:
            if not self.running():
                return True
            try:
                return ok(httpx.get(url, timeout=1.0, verify=verify))
            except httpx.HTTPError:
                return False

        if not wait_until(ready, timeout, interval=0.1):
            raise self._fail(f"did not answer {url} within {timeout}s")
        if not self.running():
            raise self._fail("exited during start-up")
        return self


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, command line) for every process visible in /proc."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # The command name in field 2 may contain spaces and parentheses; split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":  # zombies are dead already; their parent just has not reaped them
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def stray_descendants() -> list[tuple[int, str]]:
    """Live processes descended from this one, or in a group the harness started."""
    me = os.getpid()
    table = _proc_table()
    strays = []
    for pid, (_, pgid, cmdline) in table.items():
        if pid == me:
            continue
        if pgid in _started_groups:
            strays.append((pid, cmdline))
            continue
        parent = table.get(pid, (0, 0, ""))[0]
        seen = 0
        while parent and parent != me and seen < 64:
            parent = table.get(parent, (0, 0, ""))[0]
            seen += 1
        if parent == me:
            strays.append((pid, cmdline))
    return sorted(strays)
