"""Run the whole gateway on this machine, on loopback, with no server, domain or GitHub app of your own.

    scripts/demo [up]    start everything, print the URLs, a client configuration and how to log in
    scripts/demo status  what is running
    scripts/demo down    stop everything and remove the demo's traces (/etc/hosts lines included)

The parts are the product's own (the auth service under Gunicorn, one `mcp-proxy` bridge per MCP
server, Redis, the real Traefik) with two stand-ins a laptop cannot offer: Pebble, Let's Encrypt's
test CA, issues the certificates through the real ACME flow, and the GitHub-compatible test server
logs in the user `demo`. Names under `mcp-demo.test` resolve to 127.0.0.1 through /etc/hosts.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from tests.harness.github import GitHubStub  # noqa: E402
from tests.harness.mcp_servers import mcp_server_argv  # noqa: E402
from tests.harness.pebble import Pebble  # noqa: E402
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, group_alive, port_open, wait_until  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.traefik import Traefik  # noqa: E402

DOMAIN = "mcp-demo.test"
SERVICES = ("time", "memory")
STATE = REPO / ".work" / "demo"
HOSTS_FILE = Path("/etc/hosts")
HOSTS_BEGIN = "# mcp-gateway demo: begin (scripts/demo down removes this block)"
HOSTS_END = "# mcp-gateway demo: end"
BIN = Path(sys.executable).parent
IDENTITY_HEADERS = ["X-Auth-User", "X-Auth-Client-Id", "X-Auth-Scope"]


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def hostnames() -> list[str]:
    return [f"auth.{DOMAIN}"] + [f"{name}.{DOMAIN}" for name in SERVICES]


def write_hosts_block() -> None:
    lines = HOSTS_FILE.read_text().splitlines()
    lines = strip_hosts_block(lines)
    lines += [HOSTS_BEGIN, f"{LOOPBACK} {' '.join(hostnames())}", HOSTS_END]
    HOSTS_FILE.write_text("\n".join(lines) + "\n")


def strip_hosts_block(lines: list[str]) -> list[str]:
    out, inside = [], False
    for line in lines:
        if line == HOSTS_BEGIN:
            inside = True
        elif line == HOSTS_END:
            inside = False
        elif not inside:
            out.append(line)
    return out


def signing_key(path: Path) -> Path:
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    path.chmod(0o600)
    return path


def dynamic_config(auth_port: int, bridge_ports: dict[str, int]) -> dict[str, Any]:
    """The routing the traefik role generates: auth host, per-service metadata and ForwardAuth'd /mcp."""
    tls = {"certResolver": "acme"}
    routers: dict[str, Any] = {
        "auth": {
            "rule": f"Host(`auth.{DOMAIN}`) && !Path(`/verify`)",
            "entryPoints": ["websecure"],
            "service": "auth",
            "tls": tls,
        }
    }
    services: dict[str, Any] = {"auth": {"loadBalancer": {"servers": [{"url": f"http://{LOOPBACK}:{auth_port}"}]}}}
    for name, port in bridge_ports.items():
        host = f"Host(`{name}.{DOMAIN}`)"
        routers[f"{name}-metadata"] = {
            "rule": f"{host} && PathPrefix(`/.well-known/`)",
            "entryPoints": ["websecure"],
            "service": "auth",
            "tls": tls,
        }
        routers[f"{name}-mcp"] = {
            "rule": f"{host} && Path(`/mcp`)",
            "entryPoints": ["websecure"],
            "service": name,
            "middlewares": ["strip-identity", "forward-auth", "drop-authorization"],
            "tls": tls,
        }
        # flushInterval -1: stream every byte at once, so SSE is never buffered.
        services[name] = {
            "loadBalancer": {
                "servers": [{"url": f"http://{LOOPBACK}:{port}"}],
                "responseForwarding": {"flushInterval": "-1"},
            }
        }
    routers["http-to-https"] = {
        "rule": "PathPrefix(`/`)",
        "entryPoints": ["web"],
        "middlewares": ["to-https"],
        "service": "noop@internal",
    }
    middlewares = {
        "to-https": {"redirectScheme": {"scheme": "https", "permanent": True}},
        "strip-identity": {"headers": {"customRequestHeaders": dict.fromkeys(IDENTITY_HEADERS, "")}},
        "forward-auth": {
            "forwardAuth": {
                "address": f"http://{LOOPBACK}:{auth_port}/verify",
                "authResponseHeaders": IDENTITY_HEADERS,
            }
        },
        "drop-authorization": {"headers": {"customRequestHeaders": {"Authorization": ""}}},
    }
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def certificate_served(port: int, name: str, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection((LOOPBACK, port), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=name):
                return True
    except (ssl.SSLError, OSError):
        return False


def up() -> int:
    if (STATE / "state.json").exists():
        say("The demo is already running")
        return status()
    if os.geteuid() != 0:
        print("scripts/demo: run as root (it binds 127.0.0.1:80 and :443 and edits /etc/hosts)", file=sys.stderr)
        return 2
    busy = [port for port in (80, 443) if port_open(LOOPBACK, port)]
    if busy:
        print(f"scripts/demo: port(s) {busy} on {LOOPBACK} are in use; stop what uses them first", file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    groups: list[int] = []
    state: dict[str, Any] = {"groups": groups}
    try:
        say("Redis (password, AOF) on loopback")
        redis = RedisServer(STATE / "redis").start()
        groups.append(redis.pid)

        say("GitHub-compatible test server (logs in the user 'demo')")
        github = GitHubStub(STATE / "github", users=("demo",), auto_user="demo").start()
        groups.append(github._proc.pid)  # type: ignore[union-attr]

        say("Auth service under Gunicorn")
        auth_port = free_port()
        resources = [{"name": name, "resource": f"https://{name}.{DOMAIN}/mcp"} for name in SERVICES]
        env = {
            **os.environ,
            "AUTH_BIND": f"{LOOPBACK}:{auth_port}",
            "AUTH_WORKERS": "2",
            "AUTH_ISSUER": f"https://auth.{DOMAIN}",
            "AUTH_REDIS_URL": redis.url,
            "AUTH_GITHUB_CLIENT_ID": github.client_id,
            "AUTH_GITHUB_CLIENT_SECRET": github.client_secret,
            "AUTH_GITHUB_URL": github.url,
            "AUTH_GITHUB_API_URL": github.api_url,
            "AUTH_ALLOWED_GITHUB_USERS": "demo",
            "AUTH_SIGNING_KEYS": str(signing_key(STATE / "signing-key.pem")),
            "AUTH_SECRET_KEY": secrets.token_urlsafe(32),
            "AUTH_RESOURCES": json.dumps(resources),
        }
        auth = ManagedProcess(
            "auth",
            [BIN / "gunicorn", "-c", REPO / "services/auth/gunicorn.conf.py", "mcp_gateway_auth:create_app()"],
            log_dir=STATE,
            env=env,
        )
        auth.start()
        groups.append(auth.pid)
        auth.wait_for_http(f"http://{LOOPBACK}:{auth_port}/health")

        bridge_ports: dict[str, int] = {}
        for name in SERVICES:
            say(f"Bridge for the MCP server '{name}'")
            port = free_port()
            bridge_env = {**os.environ, "MEMORY_FILE_PATH": str(STATE / f"{name}.jsonl")}
            bridge = ManagedProcess(
                f"bridge-{name}",
                [BIN / "mcp-proxy", "--host", LOOPBACK, "--port", str(port), "--", *mcp_server_argv(name)],
                log_dir=STATE,
                env=bridge_env,
            )
            bridge.start()
            groups.append(bridge.pid)
            bridge.wait_for_http(f"http://{LOOPBACK}:{port}/health", timeout=60)
            bridge_ports[name] = port

        say("Traefik on 127.0.0.1:80/443 with certificates from Pebble (ACME)")
        proxy = Traefik(STATE / "traefik", dynamic_config(auth_port, bridge_ports))
        proxy.http_port, proxy.https_port = 80, 443
        pebble = Pebble(STATE / "pebble", http_port=80, tls_port=443).start()
        groups.extend(p.pid for p in pebble._procs)
        proxy.acme = {"caServer": pebble.directory_url, "email": f"admin@{DOMAIN}", "tlsChallenge": {}}
        proxy.env = {"LEGO_CA_CERTIFICATES": str(pebble.api_ca_path)}
        write_hosts_block()
        state["hosts"] = True
        proxy.start()
        groups.append(proxy._proc.pid)  # type: ignore[union-attr]
        root = pebble.write_root(STATE / "demo-ca.pem")
        for name in hostnames():
            if not wait_until(lambda n=name: certificate_served(443, n, root), timeout=90, interval=0.5):
                raise RuntimeError(f"no certificate for {name}; see {STATE}/traefik/traefik.log")
        state.update({"ca": str(root), "github": github.url})
        (STATE / "state.json").write_text(json.dumps(state))
    except BaseException:
        (STATE / "state.json").write_text(json.dumps(state))
        say("Start-up failed; stopping what was started (logs stay in .work/demo/)")
        down(keep_logs=True)
        raise
    print_welcome(root)
    return 0


def print_welcome(root: Path) -> None:
    urls = "\n".join(f"    https://{name}.{DOMAIN}/mcp" for name in SERVICES)
    config = {"mcpServers": {name: {"type": "http", "url": f"https://{name}.{DOMAIN}/mcp"} for name in SERVICES}}
    print(
        f"""
The gateway is running.

  Authorization server  https://auth.{DOMAIN}
  MCP services
{urls}

  Certificates come from the demo's own ACME CA; trust it in your client:
    export SSL_CERT_FILE={root}      # Python clients (the mcp SDK)
    export NODE_EXTRA_CA_CERTS={root} # Node clients (MCP Inspector, Claude Code)

  Client configuration (Claude Code / .mcp.json style):
{json.dumps(config, indent=2)}

  Logging in: the GitHub-compatible test server approves the user 'demo' at once, so the
  browser step is the gateway's consent page only. Logs: {STATE}/*.log
  Stop and clean up:  scripts/demo down
"""
    )


def _load_state() -> dict[str, Any] | None:
    path = STATE / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def status() -> int:
    state = _load_state()
    if state is None:
        print("The demo is not running (scripts/demo to start it).")
        return 1
    alive = [pgid for pgid in state["groups"] if group_alive(pgid)]
    print(f"{len(alive)} of {len(state['groups'])} demo processes alive; logs in {STATE}")
    if state.get("ca"):
        print_welcome(Path(state["ca"]))
    return 0 if len(alive) == len(state["groups"]) else 1


def down(keep_logs: bool = False) -> int:
    state = _load_state() or {"groups": []}
    for pgid in reversed(state["groups"]):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(group_alive(g) for g in state["groups"]):
        time.sleep(0.1)
    for pgid in state["groups"]:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if HOSTS_FILE.exists() and HOSTS_BEGIN in HOSTS_FILE.read_text():
        HOSTS_FILE.write_text("\n".join(strip_hosts_block(HOSTS_FILE.read_text().splitlines())) + "\n")
    (STATE / "state.json").unlink(missing_ok=True)
    if not keep_logs:
        say("Demo stopped; /etc/hosts restored")
    return 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "up"
    actions = {"up": up, "down": down, "status": status}
    if command not in actions or len(argv) > 1:
        print(__doc__)
        return 2
    return actions[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
