"""Streamed answers cut off by Traefik when a backend sends its headers at once.

Traefik (Go's ReverseProxy, HTTP/1.1 on both sides) can abort a streamed response whose headers come
back while it is still finishing the forwarding of the request body: the client sees the headers and
then "incomplete chunked read". This is why the bridge never starts a response before its child has
said something (JSON when the answer comes first, SSE only after a notification or a keep-alive), and
why the end-to-end test's MCP endpoint answers JSON. This script measures it side by side: one Traefik,
a backend answering every POST with an SSE stream after a header delay of 0, 1 or 5 ms, and clients
posting small JSON-RPC bodies (reading to the end, or closing after the event as the SDK client does).

    .venv/bin/python bench/traefik_early_headers.py [--requests 300] [--threads 3] [--rounds 3]

Prints failures per variant (median over rounds) and writes bench/results/traefik_early_headers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port  # noqa: E402
from tests.harness.traefik import Traefik  # noqa: E402

BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
DELAYS_MS = (0, 1, 5)


def serve_backend(port: int, delay_ms: float) -> None:
    """Answer every POST with SSE: headers after delay_ms, a comment, then one event 5 ms later."""
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": prime\n\n", "more_body": True})
        await asyncio.sleep(0.005)
        await send({"type": "http.response.body", "body": b'data: {"ok":true}\n\n', "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    uvicorn.run(app, host=LOOPBACK, port=port, log_level="warning")


def hammer(url: str, requests: int, threads: int, early_close: bool) -> int:
    failures = [0]
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(requests):
                got = b""
                try:
                    with client.stream("POST", url, content=BODY, headers={"content-type": "application/json"}) as r:
                        for chunk in r.iter_bytes():
                            got += chunk
                            if early_close and b"data:" in got:
                                break
                except httpx.HTTPError:
                    pass
                if b"data:" not in got:
                    with lock:
                        failures[0] += 1

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per client thread and variant")
    parser.add_argument("--threads", type=int, default=3, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--backend", type=float, metavar="DELAY_MS", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend is not None:
        serve_backend(args.port, args.backend)
        return

    results: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-traefik-") as tmp:
        work = Path(tmp)
        backends = {}
        try:
            for delay in DELAYS_MS:
                port = free_port()
                argv = [sys.executable, __file__, "--backend", str(delay), "--port", str(port)]
                backends[delay] = (ManagedProcess(f"backend-{delay}ms", argv, log_dir=work).start(), port)
            for proc, port in backends.values():
                proc.wait_for_port(port)
            routers = {
                f"d{delay}": {"rule": f"PathPrefix(`/d{delay}`)", "entryPoints": ["web"], "service": f"d{delay}"}
                for delay in DELAYS_MS
            }
            services = {
                f"d{delay}": {"loadBalancer": {"servers": [{"url": f"http://{LOOPBACK}:{port}"}]}}
                for delay, (_, port) in backends.items()
            }
            with Traefik(work / "traefik", {"http": {"routers": routers, "services": services}}) as traefik:
                for round_ in range(args.rounds):
                    for delay in DELAYS_MS:
                        for early_close in (True, False):
                            reading = "close after the event" if early_close else "read to the end"
                            key = f"header delay {delay} ms, {reading}"
                            started = time.perf_counter()
                            failed = hammer(f"{traefik.http_url}/d{delay}", args.requests, args.threads, early_close)
                            results.setdefault(key, []).append(failed)
                            print(
                                f"round {round_ + 1}/{args.rounds}  {key}: {failed} of {args.requests * args.threads}"
                                f" cut off ({time.perf_counter() - started:.1f} s)",
                                flush=True,
                            )
        finally:
            for proc, _ in backends.values():
                proc.stop()

    total = args.requests * args.threads
    print(f"\nmedian over {args.rounds} rounds, {total} requests per variant:")
    summary = {}
    for key, counts in results.items():
        summary[key] = {"median_cut_off": statistics.median(counts), "per_round": counts, "requests": total}
        print(f"  {key}: {statistics.median(counts):g} cut off")
    out = REPO / "bench" / "results" / "traefik_early_headers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
