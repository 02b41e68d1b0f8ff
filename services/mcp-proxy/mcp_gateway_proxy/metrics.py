"""Prometheus text exposition of the bridge's counters, written by hand: a handful of series do not
justify another dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (era, http method, status)
    rpc_errors: Counter[tuple[str, int]] = field(default_factory=Counter)  # (era, JSON-RPC code)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    sessions_opened: int = 0
    sessions_refused: int = 0  # at --max-sessions
    sessions_refused_per_user: int = 0  # at --max-sessions-per-user
    requests_refused_per_user: int = 0  # at --max-inflight-per-user
    children_started: int = 0
    child_restarts: int = 0
    timeouts: int = 0
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)

    def observe(self, era: str, method: str, status: int, seconds: float) -> None:
        self.requests[(era, method, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("mcp_proxy_http_requests_total", "counter", "HTTP requests on /mcp by protocol era and status.")
        for (era, method, status), n in sorted(self.requests.items()):
            out.append(f'mcp_proxy_http_requests_total{{era="{era}",method="{method}",status="{status}"}} {n}')
        family("mcp_proxy_rpc_errors_total", "counter", "JSON-RPC errors answered, by era and code.")
        for (era, code), n in sorted(self.rpc_errors.items()):
            out.append(f'mcp_proxy_rpc_errors_total{{era="{era}",code="{code}"}} {n}')
        family("mcp_proxy_request_duration_seconds", "histogram", "Time to answer an /mcp request.")
        for bound, n in zip(_BUCKETS, self.latency_buckets, strict=True):
            out.append(f'mcp_proxy_request_duration_seconds_bucket{{le="{bound}"}} {n}')
        out.append(f'mcp_proxy_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        out.append(f"mcp_proxy_request_duration_seconds_sum {self.latency_sum:.6f}")
        out.append(f"mcp_proxy_request_duration_seconds_count {self.latency_count}")
        for name, value, help_text in (
            ("mcp_proxy_sessions_opened_total", self.sessions_opened, "Handshake-era sessions opened."),
            ("mcp_proxy_sessions_refused_total", self.sessions_refused, "Sessions refused at --max-sessions (503)."),
            (
                "mcp_proxy_sessions_refused_per_user_total",
                self.sessions_refused_per_user,
                "Sessions refused because their user held --max-sessions-per-user already (503).",
            ),
            (
                "mcp_proxy_requests_refused_per_user_total",
                self.requests_refused_per_user,
                "Requests refused because their user had --max-inflight-per-user in flight already (503).",
            ),
            ("mcp_proxy_children_started_total", self.children_started, "Child processes started."),
            ("mcp_proxy_child_restarts_total", self.child_restarts, "Children replaced after exiting."),
            ("mcp_proxy_request_timeouts_total", self.timeouts, "Requests the child did not answer in time."),
        ):
            family(name, "counter", help_text)
            out.append(f"{name} {value}")
        for name, read in sorted(self.gauges.items()):
            family(name, "gauge", name.replace("_", " "))
            out.append(f"{name} {read()}")
        return "\n".join(out) + "\n"
