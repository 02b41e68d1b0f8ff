"""Command line and environment: every option has a flag and an ``MCP_PROXY_<OPTION>`` variable."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .envfile import EnvFileError, read_env_file

ENV_PREFIX = "MCP_PROXY_"
# Visible ASCII a header carries as is, and that a Traefik HeaderRegexp matches literally but for '.'.
_SESSION_ID_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,32}")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    command: list[str]
    host: str = "127.0.0.1"
    port: int = 8080
    uds: str | None = None
    uds_mode: int = 0o660
    allowed_origins: tuple[str, ...] = ()
    max_sessions: int = 100
    max_sessions_per_user: int | None = None  # None: default_per_user(max_sessions)
    pool_size: int = 2
    spare_children: int = 1
    session_idle_timeout: float = 1800.0
    request_timeout: float = 120.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    user_header: str = "X-Auth-User"
    max_inflight: int = 1024
    max_inflight_per_user: int | None = None  # None: default_per_user(max_inflight)
    sse_keepalive: float = 15.0
    cache_ttl_ms: int = 0
    cache_scope: str = "private"
    child_cwd: str | None = None
    log_level: str = "info"
    shutdown_grace: float = 3.0
    restart_backoff_reset: float = 60.0
    session_id_prefix: str = ""
    # --check-config: the environment file that was checked (the bridge then only reports and exits).
    check_config: str | None = None

    @property
    def sessions_per_user(self) -> int:
        """Sessions one user may hold at once: the option, or by default a quarter of ``max_sessions``."""
        if self.max_sessions_per_user is not None:
            return self.max_sessions_per_user
        return default_per_user(self.max_sessions)

    @property
    def inflight_per_user(self) -> int:
        """Requests one user may have in flight at once: the option, or by default a quarter of ``max_inflight``."""
        if self.max_inflight_per_user is not None:
            return self.max_inflight_per_user
        return default_per_user(self.max_inflight)


def default_per_user(cap: int) -> int:
    """A quarter of a global cap, at least 1: it takes four users at their cap to fill the bridge, and one user
    keeps room for several clients (and, for sessions, those their clients dropped without DELETE until reaped)."""
    return max(1, cap // 4)


# (name, type, default, help). The flag is --name-with-dashes, the variable MCP_PROXY_NAME_IN_CAPS.
_OPTIONS: list[tuple[str, type, object, str]] = [
    ("host", str, "127.0.0.1", "Loopback address to listen on (127.0.0.0/8, ::1 or localhost); any other is refused."),
    ("port", int, 8080, "TCP port to listen on."),
    ("uds", str, None, "Listen on this unix socket path instead of a TCP port."),
    ("uds_mode", str, "660", "Octal permissions of the unix socket (the owner's group is meant to be Traefik's)."),
    (
        "allowed_origins",
        str,
        "",
        "Comma-separated Origin values allowed on /mcp besides loopback origins (http://localhost:*, "
        "http://127.0.0.1:*, http://[::1]:*). A request with any other Origin gets 403. '*' allows all.",
    ),
    ("max_sessions", int, 100, "Most handshake-era sessions open at once (each has its own child); beyond: 503."),
    (
        "max_sessions_per_user",
        int,
        None,
        "Most handshake-era sessions one user (the user header's value; 'anonymous' without it) may hold at "
        "once; beyond: 503 with Retry-After for that user only. A value >= --max-sessions turns it off.",
    ),
    ("pool_size", int, 2, "Children shared by 2026-07-28 (stateless) requests."),
    ("spare_children", int, 1, "Children kept started ahead of time for new sessions (0: start on demand)."),
    ("session_idle_timeout", float, 1800.0, "Seconds without a request (or open GET stream) before a session ends."),
    ("request_timeout", float, 120.0, "Seconds a request may wait for the child's answer before a timeout error."),
    ("max_body_bytes", int, 8 * 1024 * 1024, "Largest request body accepted; beyond: 413."),
    (
        "max_message_bytes",
        int,
        64 * 1024 * 1024,
        "Largest message (one stdout line) accepted from the MCP server; beyond, the server is replaced "
        "and its waiting requests get an error.",
    ),
    ("user_header", str, "X-Auth-User", "Header carrying the authenticated user (set by Traefik ForwardAuth)."),
    ("max_inflight", int, 1024, "Most requests in flight at once, per era; beyond: 503 with Retry-After."),
    (
        "max_inflight_per_user",
        int,
        None,
        "Most requests one user (the user header's value; 'anonymous' without it) may have in flight at once, "
        "both eras together (notifications and answers to the server's questions are not counted); beyond: "
        "503 with Retry-After for that user only. The value of --max-inflight turns it off; more is an error.",
    ),
    ("sse_keepalive", float, 15.0, "Seconds between SSE keep-alive comments."),
    ("cache_ttl_ms", int, 0, "ttlMs put on 2026-07-28 list and resources/read results the child does not mark."),
    ("cache_scope", str, "private", "cacheScope ('private' or 'public') put on those results."),
    ("child_cwd", str, None, "Working directory of the children (default: the bridge's)."),
    ("log_level", str, "info", "Log level: debug, info, warning, error."),
    ("shutdown_grace", float, 3.0, "Seconds a child gets after SIGTERM before SIGKILL."),
    (
        "restart_backoff_reset",
        float,
        60.0,
        "Seconds a child must run for its exit not to count as a quick crash: the wait before restarting a "
        "child doubles (0.2 s up to 5 s) with each quick crash in a row, and starts over after such a run.",
    ),
    (
        "session_id_prefix",
        str,
        "",
        "Text every handshake-era Mcp-Session-Id begins with (letters, digits, '.', '-', '_'; at most 32): with "
        "several gateway hosts it names the host whose bridge holds the session, so Traefik routes the session there.",
    ),
]


# Defaults that are not a fixed value, as --help shows them.
_DEFAULT_TEXT = {
    "max_sessions_per_user": "a quarter of --max-sessions, at least 1",
    "max_inflight_per_user": "a quarter of --max-inflight, at least 1",
}


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-proxy",
        usage="mcp-proxy [--host 127.0.0.1] --port PORT [options] -- COMMAND [ARGS...]",
        description=(
            "Serve one stdio MCP server over Streamable HTTP at /mcp for clients of protocol revisions "
            "2025-03-26 to 2026-07-28, with /health and /metrics. Every option may also be given as an "
            f"environment variable {ENV_PREFIX}<OPTION> (for example {ENV_PREFIX}PORT); the command may come "
            f"from {ENV_PREFIX}COMMAND, a shell-words string split with shlex (never run by a shell)."
        ),
    )
    for name, kind, default, help_text in _OPTIONS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"{help_text} [env {_env_name(name)}; default {_DEFAULT_TEXT.get(name, repr(default))}]",
        )
    parser.add_argument(
        "--check-config",
        metavar="FILE",
        help=(
            "Check FILE, a systemd EnvironmentFile, as the bridge's only environment: read it as systemd "
            "does, parse every setting as at start-up (flags given beside it still win), say what is wrong "
            "and exit 2, or exit 0; nothing is started."
        ),
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="The stdio MCP server to run, after '--'.")
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags win over environment variables, which win over defaults. Exits with a message on bad input."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check_config is not None:
        # The file alone: under systemd the unit's environment holds nothing else of the bridge's.
        try:
            environ = read_env_file(args.check_config)
        except EnvFileError as error:
            parser.error(str(error))
    known = {_env_name(name) for name, *_ in _OPTIONS} | {ENV_PREFIX + "COMMAND"}
    unknown = sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        # A misspelt variable would otherwise be ignored and its option silently left at the default.
        parser.error(f"unknown variable {', '.join(unknown)}: the bridge reads only {', '.join(sorted(known))}")
    values: dict[str, object] = {}
    for name, kind, default, _ in _OPTIONS:
        value = getattr(args, name)
        if value is None and _env_name(name) in environ:
            raw = environ[_env_name(name)]
            try:
                value = kind(raw)
            except ValueError:
                parser.error(f"{_env_name(name)}={raw!r} is not a valid {kind.__name__}")
        values[name] = default if value is None else value

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command and environ.get(ENV_PREFIX + "COMMAND"):
        command = shlex.split(environ[ENV_PREFIX + "COMMAND"])
    if not command:
        parser.error(f"no MCP server command given (put it after '--' or in {ENV_PREFIX}COMMAND)")

    host = str(values["host"])
    if values["uds"] is None and not _is_loopback(host):
        parser.error(
            f"--host {host!r} is not a loopback address: the bridge trusts identity headers, so it serves "
            "only on loopback (127.0.0.0/8, ::1, localhost) or a unix socket (--uds)"
        )
    port = int(values["port"])  # type: ignore[call-overload]
    if not 0 <= port <= 65535:
        parser.error(f"--port {port} is out of range")
    for positive in ("max_sessions", "pool_size", "max_body_bytes", "max_message_bytes", "max_inflight"):
        if int(values[positive]) <= 0:  # type: ignore[call-overload]
            parser.error(f"--{positive.replace('_', '-')} must be positive")
    per_user = values["max_sessions_per_user"]
    if per_user is not None and int(per_user) <= 0:  # type: ignore[call-overload]
        parser.error(
            f"--max-sessions-per-user must be positive, not {per_user} "
            "(to turn the per-user cap off, give it the value of --max-sessions)"
        )
    max_inflight = int(values["max_inflight"])  # type: ignore[call-overload]
    inflight_per_user = values["max_inflight_per_user"]
    if inflight_per_user is not None and not 0 < int(inflight_per_user) <= max_inflight:  # type: ignore[call-overload]
        parser.error(
            f"--max-inflight-per-user must be positive and at most --max-inflight ({max_inflight}), "
            f"not {inflight_per_user} (to turn the per-user cap off, give it the value of --max-inflight)"
        )
    for positive in (
        "session_idle_timeout",
        "request_timeout",
        "sse_keepalive",
        "shutdown_grace",
        "restart_backoff_reset",
    ):
        if float(values[positive]) <= 0:  # type: ignore[arg-type]
            parser.error(f"--{positive.replace('_', '-')} must be positive")
    if str(values["log_level"]).lower() not in LOG_LEVELS:
        parser.error(f"--log-level {values['log_level']!r} is not one of {', '.join(LOG_LEVELS)}")
    if values["cache_scope"] not in ("private", "public"):
        parser.error("--cache-scope must be 'private' or 'public'")
    try:
        uds_mode = int(str(values["uds_mode"]), 8)
    except ValueError:
        parser.error(f"--uds-mode {values['uds_mode']!r} is not an octal mode such as 660")
    if not 0 <= uds_mode <= 0o777:
        parser.error("--uds-mode must be between 000 and 777")
    prefix = str(values["session_id_prefix"])
    if not _SESSION_ID_PREFIX.fullmatch(prefix):
        parser.error(
            f"--session-id-prefix {prefix!r}: at most 32 letters, digits, '.', '-' or '_' (it goes into a header)"
        )
    origins = tuple(o.strip() for o in str(values["allowed_origins"]).split(",") if o.strip())
    return Settings(
        command=command,
        host=host,
        port=port,
        uds=values["uds"],  # type: ignore[arg-type]
        uds_mode=uds_mode,
        allowed_origins=origins,
        max_sessions=int(values["max_sessions"]),  # type: ignore[call-overload]
        max_sessions_per_user=None if per_user is None else int(per_user),  # type: ignore[call-overload]
        pool_size=int(values["pool_size"]),  # type: ignore[call-overload]
        spare_children=max(0, int(values["spare_children"])),  # type: ignore[call-overload]
        session_idle_timeout=float(values["session_idle_timeout"]),  # type: ignore[arg-type]
        request_timeout=float(values["request_timeout"]),  # type: ignore[arg-type]
        max_body_bytes=int(values["max_body_bytes"]),  # type: ignore[call-overload]
        max_message_bytes=int(values["max_message_bytes"]),  # type: ignore[call-overload]
        user_header=str(values["user_header"]),
        max_inflight=max_inflight,
        max_inflight_per_user=None if inflight_per_user is None else int(inflight_per_user),  # type: ignore[call-overload]
        sse_keepalive=float(values["sse_keepalive"]),  # type: ignore[arg-type]
        cache_ttl_ms=int(values["cache_ttl_ms"]),  # type: ignore[call-overload]
        cache_scope=str(values["cache_scope"]),
        child_cwd=values["child_cwd"],  # type: ignore[arg-type]
        log_level=str(values["log_level"]),
        shutdown_grace=float(values["shutdown_grace"]),  # type: ignore[arg-type]
        restart_backoff_reset=float(values["restart_backoff_reset"]),  # type: ignore[arg-type]
        session_id_prefix=prefix,
        check_config=args.check_config,
    )
