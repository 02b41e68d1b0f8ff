"""Bridge cost, side by side: `tools/call` on mcp-server-time directly over stdio, through this bridge (both
eras), through the original system's bridge and through the two bridges people pick today.

    .venv/bin/python bench/bridge_roundtrip.py [--runs 3] [--calls 300] [--seconds 4] [--bursts 3]

Arms (each measured in the same run, interleaved, so the machine's other load falls on all alike):

- `raw`: the server's own stdio, the ceiling (one child per client);
- `ours_sessions`, `ours_2026`: this bridge (`mcp-proxy`), a handshake-era session per client, and
  stateless 2026-07-28 requests on its shared pool;
- `original`: `mcp-streamablehttp-proxy` 0.2.0 (PyPI), the original system's bridge;
- `mcp_proxy`: `mcp-proxy` (PyPI) in its stdio-to-HTTP server mode;
- `supergateway`: `supergateway` (npm) with `--outputTransport streamableHttp --stateful`.

The comparison arms are installed by this script, pinned, into their own environments under `.bench/`
(gitignored), never into the product. Every client is the same small HTTP/1.1 keep-alive client written
here (the SDK client costs more CPU per call than the bridges do, and would measure itself), speaking the
same JSON-RPC that the SDK client sends. Loopback only; every loop is bounded.

Figures per arm: sequential p50/p99 (one client), calls/s with `--clients` clients in a closed loop for
`--seconds` (and its fraction of the raw ceiling with as many children), the bridge's CPU per call in that
loop (utime+stime from /proc of the bridge's process tree less the MCP server processes), and, for
session arms, the time to open `--clients` sessions at once (median and p99 over `--bursts` bursts, with
warm spare children for this bridge). Prints the figures (medians over `--runs`) and writes every run to
bench/results/bridge_roundtrip.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profile_summary import summary  # noqa: E402

from tests.harness.bridge import Bridge  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402

BENCH = REPO / ".bench"
# The comparison arms, pinned: (environment, installer, what it installs).
PINS = {
    "original": "mcp-streamablehttp-proxy==0.2.0",
    "mcp_proxy": "mcp-proxy==0.13.0",
    "supergateway": "supergateway@4.0.0",
    "tools": "py-spy==0.4.3",
}
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
CALL_ARGS = {"name": "get_current_time", "arguments": {"timezone": "Europe/Paris"}}
ACCEPT = "application/json, text/event-stream"


# ---- the comparison arms' environments ------------------------------------------------------------------


def ensure_arms() -> None:
    """Install each comparison arm into `.bench/<arm>` once (pinned); the product's environment is untouched."""
    python = shutil.which("python3.11") or sys.executable
    for arm in ("original", "mcp_proxy", "tools"):
        venv = BENCH / arm.replace("_", "-")
        marker = venv / f".installed-{PINS[arm]}"
        if marker.exists():
            continue
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PINS[arm]], check=True)
        marker.touch()
    prefix = BENCH / "supergateway"
    marker = prefix / f".installed-{PINS['supergateway']}"
    if not marker.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PINS["supergateway"]], check=True
        )
        marker.touch()


# ---- a small HTTP/1.1 client ------------------------------------------------------------------------------


class HttpConn:
    """One keep-alive connection: a request, then its whole response (Content-Length or chunked)."""

    def __init__(self, port: int, path: str, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                await self._connect()
            assert self.reader is not None and self.writer is not None
            head = f"{method} {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            self.writer.write(head.encode() + b"\r\n" + body)
            try:
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed an idle keep-alive connection: once more on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, dict, bytes]:
        assert self.reader is not None
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _answer(headers: dict, body: bytes, request_id: int) -> dict:
    """The JSON-RPC answer with ``request_id`` from a JSON or SSE response body."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        for line in body.replace(b"\r\n", b"\n").split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip():
                message = json.loads(line[5:])
                if message.get("id") == request_id and "method" not in message:
                    return message
        raise RuntimeError(f"no answer in the stream: {body[:300]!r}")
    return json.loads(body)


class HttpClient:
    """One MCP client over Streamable HTTP: a handshake-era session, or 2026-07-28 requests."""

    def __init__(self, port: int, path: str, era: str, host: str = LOOPBACK) -> None:
        self.conn = HttpConn(port, path, host)
        self.era = era
        self.session: str | None = None
        self.ids = 0

    def _headers(self, method: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": ACCEPT, "MCP-Protocol-Version": self.era}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        if self.era == MODERN:
            headers["Mcp-Method"] = method
            if method == "tools/call":
                headers["Mcp-Name"] = CALL_ARGS["name"]
        return headers

    async def rpc(self, method: str, params: dict) -> dict:
        self.ids += 1
        if self.era == MODERN:
            params = {
                **params,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            }
        body = json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}).encode()
        status, headers, data = await self.conn.request("POST", self._headers(method), body)
        if status != 200:
            raise RuntimeError(f"{method}: HTTP {status} {data[:300]!r}")
        if method == "initialize":
            self.session = headers.get("mcp-session-id")
        answer = _answer(headers, data, self.ids)
        if "result" not in answer:
            raise RuntimeError(f"{method}: {answer}")
        return answer

    async def open(self) -> None:
        if self.era == MODERN:
            return
        params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        await self.rpc("initialize", params)
        note = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
        status, _, _ = await self.conn.request("POST", self._headers("notifications/initialized"), note)
        if status not in (200, 202):  # the original bridge answers a notification as if it were a request
            raise RuntimeError(f"notifications/initialized: HTTP {status}")

    async def call(self) -> None:
        await self.rpc("tools/call", CALL_ARGS)

    async def close(self) -> None:
        if self.session:
            try:
                await self.conn.request("DELETE", self._headers("DELETE"))
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
        self.conn.close()


class StdioClient:
    """One MCP client on a child's own stdio (the raw arm)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.process: asyncio.subprocess.Process | None = None
        self.ids = 0

    async def rpc(self, method: str, params: dict | None) -> dict:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            message["params"] = params
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError("the server exited")
            answer = json.loads(line)
            if answer.get("id") == self.ids and "method" not in answer:
                return answer

    async def open(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            limit=16 * 1024 * 1024,
        )
        params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        await self.rpc("initialize", params)
        assert self.process.stdin is not None
        self.process.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

    async def call(self) -> None:
        answer = await self.rpc("tools/call", CALL_ARGS)
        if "result" not in answer:
            raise RuntimeError(str(answer))

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


# ---- the arms ---------------------------------------------------------------------------------------------


class Arm:
    """How to make a client of one arm, and which process is the bridge (None for raw stdio)."""

    def __init__(self, name: str, make: Callable[[], Any], pid: int | None, sessions: bool, url: str = "") -> None:
        self.name = name
        self.make = make
        self.pid = pid
        self.sessions = sessions
        self.url = url


def start_servers(logs: Path, server: list[str], clients: int) -> tuple[list[Any], dict[str, Arm]]:
    started: list[Any] = []
    arms: dict[str, Arm] = {"raw": Arm("raw", lambda: StdioClient(server), None, sessions=False)}

    ours = Bridge(
        server,
        log_dir=logs,
        # A pool as the role sizes it for two cores; as many warm spares as a burst of sessions needs.
        options={"pool_size": 4, "spare_children": clients, "log_level": "warning"},
        startup_timeout=120,
    )
    ours.start()
    started.append(ours)
    pid = ours.process.pid
    arms["ours_sessions"] = Arm(
        "ours_sessions", lambda: HttpClient(ours.port, "/mcp", HANDSHAKE), pid, True, ours.base_url
    )
    arms["ours_2026"] = Arm("ours_2026", lambda: HttpClient(ours.port, "/mcp", MODERN), pid, False, ours.base_url)

    def other(name: str, argv: list[str], path: str) -> None:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        process = ManagedProcess(f"bench-{name}", argv, log_dir=logs)
        process.start()
        started.append(process)
        process.wait_for_port(port, timeout=60)
        arms[name] = Arm(name, lambda: HttpClient(port, path, HANDSHAKE), process.pid, True)

    other(
        "original",
        [str(BENCH / "original/bin/mcp-streamablehttp-proxy"), "--port", "{port}", "--log-level", "warning", *server],
        "/mcp",
    )
    other(
        "mcp_proxy",
        [str(BENCH / "mcp-proxy/bin/mcp-proxy"), "--host", LOOPBACK, "--port", "{port}", "--", *server],
        "/mcp",
    )
    supergateway = BENCH / "supergateway/node_modules/supergateway/dist/index.js"
    other(
        "supergateway",
        [
            "node",
            str(supergateway),
            "--stdio",
            " ".join(server),
            "--outputTransport",
            "streamableHttp",
            "--stateful",
            "--port",
            "{port}",
            "--logLevel",
            "none",
        ],
        "/mcp",
    )
    return started, arms


# ---- /proc ------------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            table[int(entry.name)] = (int(stat[stat.rfind(")") + 2 :].split()[1]), cmdline)
    return table


def bridge_processes(pid: int, server: str) -> list[int]:
    """The bridge process and its descendants, less the MCP server processes (and theirs); with `server`
    empty, every descendant (any process tree: gunicorn's workers, a bridge with its children)."""
    table = _proc_table()
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, cmdline) in table.items():
            if ppid == parent and not (server and server in cmdline):
                found.append(child)
                todo.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    table = _proc_table()
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, _) in table.items():
            if ppid == parent:
                found.append(child)
                todo.append(child)
    return found


def tree_pss_mib(pid: int) -> float:
    found = process_tree(pid)
    total = 0
    for p in found:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


# ---- the measurements ---------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def closed_loop(clients: list[Any], seconds: float) -> tuple[int, float]:
    """Every client calls, each waiting for its answer before the next, until `seconds` have passed:
    the calls answered and the time they took."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop(client: Any) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await client.call()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    return count, time.perf_counter() - started


async def sequential(arms: dict[str, Arm], calls: int) -> dict[str, dict[str, float]]:
    """One client per arm, all open at once, taking turns 20 calls at a time."""
    clients = {name: arm.make() for name, arm in arms.items()}
    samples: dict[str, list[float]] = {name: [] for name in arms}
    for client in clients.values():
        await client.open()
        await client.call()  # warm-up
    for _ in range(max(1, calls // 20)):
        for name, client in clients.items():
            for _ in range(20):
                started = time.perf_counter()
                await client.call()
                samples[name].append((time.perf_counter() - started) * 1000)
    for client in clients.values():
        await client.close()
    return {
        name: {"p50_ms": round(statistics.median(v), 3), "p99_ms": round(_pct(v, 0.99), 3)}
        for name, v in samples.items()
    }


async def opened(arm: Arm, clients: int) -> list[Any]:
    """``clients`` clients of ``arm``, open (sessions made) and warmed up by one call each."""
    made = [arm.make() for _ in range(clients)]
    gate = asyncio.Semaphore(2)  # opening is not what this measures: no burst of server starts

    async def open_one(client: Any) -> None:
        async with gate:
            await client.open()

    await asyncio.gather(*(open_one(c) for c in made))
    await asyncio.gather(*(c.call() for c in made))
    return made


async def throughput(arm: Arm, clients: int, seconds: float, server: str) -> dict[str, float]:
    """``clients`` clients in a closed loop for ``seconds``: calls/s and the bridge's CPU per call."""
    clients_open = await opened(arm, clients)
    pids = bridge_processes(arm.pid, server) if arm.pid else []
    cpu_before = cpu_seconds(pids)
    count, elapsed = await closed_loop(clients_open, seconds)
    figures = {"calls_per_s": round(count / elapsed, 1)}
    if arm.pid:
        figures["cpu_ms_per_call"] = round((cpu_seconds(pids) - cpu_before) * 1000 / count, 3)
        figures["tree_pss_mib"] = tree_pss_mib(arm.pid)
    await asyncio.gather(*(c.close() for c in clients_open))
    return figures


async def _spares_ready(arm: Arm, wanted: int, timeout: float = 90.0) -> None:
    """Wait until this bridge holds ``wanted`` warm spare children (its /metrics says so)."""
    conn = HttpConn(int(arm.url.rsplit(":", 1)[1]), "/metrics")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = await conn.request("GET", {})
        for line in body.decode().splitlines():
            if line.startswith("mcp_proxy_spare_children ") and float(line.split()[1]) >= wanted:
                conn.close()
                return
        await asyncio.sleep(0.2)
    conn.close()
    raise RuntimeError(f"{arm.name}: spares not ready after {timeout}s")


async def session_opens(arm: Arm, clients: int, bursts: int) -> dict[str, float]:
    """``clients`` sessions opened at once, ``bursts`` times: the time each initialize takes."""
    samples: list[float] = []
    failed = 0
    for _ in range(bursts):
        if arm.url:
            await _spares_ready(arm, clients)
        opened = [arm.make() for _ in range(clients)]

        async def timed(client: Any) -> None:
            nonlocal failed
            started = time.perf_counter()
            try:
                await client.open()
            except (RuntimeError, OSError, asyncio.IncompleteReadError):
                failed += 1  # counted, and its time too: a client waited that long for nothing
            samples.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(timed(c) for c in opened))
        await asyncio.gather(*(c.close() for c in opened))
        await asyncio.sleep(1)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p99_ms": round(_pct(samples, 0.99), 1),
        "failed": failed,
    }


async def one_run(arms: dict[str, Arm], options: argparse.Namespace, server: str) -> dict[str, Any]:
    run: dict[str, Any] = {name: {} for name in arms}
    ours = arms.get("ours_sessions") or arms.get("ours_2026")

    async def settled() -> None:
        """This bridge refills its spares after sessions were opened: no arm is measured while it does."""
        if ours is not None:
            await _spares_ready(ours, options.clients)

    await settled()
    for name, figures in (await sequential(arms, options.calls)).items():
        run[name].update(figures)
    for name, arm in arms.items():
        await settled()
        run[name].update(await throughput(arm, options.clients, options.seconds, server))
    for name, arm in arms.items():
        if arm.sessions and name not in options.no_bursts.split(","):
            opens = await session_opens(arm, options.clients, options.bursts)
            run[name].update({f"open_{k}": v for k, v in opens.items()})
    raw = run["raw"]
    for figures in run.values():
        figures["throughput_fraction"] = round(figures["calls_per_s"] / raw["calls_per_s"], 3)
        figures["p50_ratio"] = round(figures["p50_ms"] / raw["p50_ms"], 3)
        figures["p99_ratio"] = round(figures["p99_ms"] / raw["p99_ms"], 3)
    return run


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        keys = set().union(*(run[name].keys() for run in runs))
        result[name] = {k: round(statistics.median(r[name][k] for r in runs if k in r[name]), 3) for k in sorted(keys)}
    return result


async def profile(arm: Arm, options: argparse.Namespace, server: str) -> dict[str, Any]:
    """A sampling profile (py-spy, from .bench/tools) of the bridge while ``clients`` clients call it: the
    share of samples in each function (own time) and under each module of the bridge (inclusive)."""
    out = REPO / "bench" / "results" / f"profile-{arm.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = await asyncio.create_subprocess_exec(
        str(BENCH / "tools/bin/py-spy"),
        "record",
        "--pid",
        str(arm.pid),
        "--duration",
        str(int(options.seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await throughput(arm, options.clients, options.seconds + 1, server)
    await spy.wait()
    return summary([out], top=25)


async def main(options: argparse.Namespace) -> dict[str, Any]:
    ensure_arms()
    server = mcp_server_argv("time")
    with tempfile.TemporaryDirectory() as logs:
        started, arms = start_servers(Path(logs), server, options.clients)
        try:
            if options.arms:
                arms = {k: v for k, v in arms.items() if k in options.arms.split(",") or k == "raw"}
            if options.profile:
                result = await profile(arms[options.profile], options, server[0])
                print(json.dumps(result, indent=2))
                return {"profile": options.profile, **result}
            runs = []
            for number in range(options.runs):
                runs.append(await one_run(arms, options, server[0]))
                print(f"run {number + 1}: {json.dumps(runs[-1])}", flush=True)
        finally:
            for process in started:
                process.stop()
    return {
        "server": "mcp-server-time",
        "clients": options.clients,
        "load_average": os.getloadavg(),
        "runs": runs,
        "median": medians(runs),
    }


def _table(figures: dict[str, dict[str, float]]) -> str:
    rows = [
        "| Arm | seq p50 / p99 ms (x raw) | calls/s, 16 clients (x raw) | bridge CPU ms/call | open median / p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, f in figures.items():
        opens = f"{f['open_median_ms']:g} / {f['open_p99_ms']:g}" if "open_median_ms" in f else "-"
        cpu = f"{f['cpu_ms_per_call']:g}" if "cpu_ms_per_call" in f else "-"
        rows.append(
            f"| {name} | {f['p50_ms']:g} / {f['p99_ms']:g} (x{f['p50_ratio']:g} / x{f['p99_ratio']:g}) "
            f"| {f['calls_per_s']:g} ({f['throughput_fraction']:g}) | {cpu} | {opens} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per arm and run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each closed loop")
    parser.add_argument("--bursts", type=int, default=3, help="session-open bursts per arm and run")
    parser.add_argument("--arms", default="", help="comma-separated subset (raw is always measured)")
    parser.add_argument(
        "--no-bursts",
        default="",
        help="arms left out of the session-open bursts (the original bridge times out all 16 opens and then "
        "fails later sessions too)",
    )
    parser.add_argument(
        "--profile",
        default="",
        choices=["", "ours_sessions", "ours_2026", "original", "mcp_proxy", "supergateway"],
        help="instead: profile this arm's bridge under load (py-spy)",
    )
    options = parser.parse_args()
    figures = asyncio.run(main(options))
    if options.profile:
        sys.exit(0)
    out = REPO / "bench" / "results" / "bridge_roundtrip.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(_table(figures["median"]))
