"""Prometheus text exposition of the bridge's counters, written by hand: a handful of series do not
justify another dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    URL_ELICITATION_REQUIRED,
)

from .jsonrpc import CHILD_EXITED, REQUEST_CANCELLED, REQUEST_TIMEOUT

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# JSON-RPC error codes that keep their own label: JSON-RPC's, the MCP specification's (-32002 is "resource
# not found" before 2026-07-28) and the bridge's own. A child may answer with any integer at all.
KNOWN_RPC_ERROR_CODES = frozenset(
    {
        PARSE_ERROR,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        INVALID_PARAMS,
        INTERNAL_ERROR,
        CHILD_EXITED,
        REQUEST_TIMEOUT,
        -32002,
        REQUEST_CANCELLED,
        HEADER_MISMATCH,
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
        URL_ELICITATION_REQUIRED,
    }
)


def rpc_error_label(code: object) -> str:
    """The code itself when it is a known one, else ``other``."""
    return str(code) if type(code) is int and code in KNOWN_RPC_ERROR_CODES else "other"


class RpcErrorCounter(Counter[tuple[str, str]]):
    """JSON-RPC errors by (era, code label). The code becomes its label as it is counted, whoever counts (the
    request path, a session's relay), so a server that makes up a new code for every answer adds no series to
    /metrics and nothing to the bridge's memory."""

    def __getitem__(self, key: tuple[str, object]) -> int:
        era, code = key
        return super().__getitem__((era, rpc_error_label(code)))

    def __setitem__(self, key: tuple[str, object], value: int) -> None:
        era, code = key
        super().__setitem__((era, rpc_error_label(code)), value)


@dataclass
class Metrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (era, http method, status)
    rpc_errors: RpcErrorCounter = field(default_factory=RpcErrorCounter)  # (era, JSON-RPC code label)
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
        family(
            "mcp_proxy_rpc_errors_total", "counter", "JSON-RPC errors answered, by era and code (unknown codes: other)."
        )
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
