"""What the roles write, rendered for the example inventory with the roles' own tasks (no host needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ansible.playbooks import changed_count
from tests.harness.playbook import (
    RENDER_PLAYBOOK,
    VENV_BIN,
    example_group_vars,
    read_env_file,
    render,
    render_overrides,
    run_playbook,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("rendered")
    return root, render(root, gateway_domain="example.test")


def from_the_example(rendered: tuple[Path, object], root: Path) -> Path:
    """A copy of the example inventory's rendered tree under `root`, as if `render(root)` had run: a test
    that changes something on top of an earlier run starts from it instead of rendering it again (a run
    of the render playbook costs 15 to 60 s on this machine). The files name the first tree's paths;
    the test's own run rewrites them."""
    shutil.copytree(rendered[0], root, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("ansible"))
    return root


def test_a_second_run_changes_nothing(rendered: tuple[Path, object]) -> None:
    root, _ = rendered
    assert changed_count(render(root, gateway_domain="example.test")) == 0


def test_static_config_has_the_entry_points_redirect_and_resolver(rendered: tuple[Path, object]) -> None:
    root, _ = rendered
    static = yaml.safe_load((root / "etc/traefik/traefik.yml").read_text())
    web, websecure = static["entryPoints"]["web"], static["entryPoints"]["websecure"]
    assert web["address"] == "127.0.0.1:80" and websecure["address"] == "127.0.0.1:443"
    assert web["http"]["redirections"]["entryPoint"] == {"to": "websecure", "scheme": "https", "permanent": True}
    assert websecure["http"]["tls"] == {"certResolver": "gateway"}
    assert all(ep["http"]["aliasHeadersStrategy"] == "delete" for ep in static["entryPoints"].values())
    acme = static["certificatesResolvers"]["gateway"]["acme"]
    assert acme["caServer"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["httpChallenge"] == {"entryPoint": "web"}
    assert "api" not in static
    assert static["entryPoints"]["traefik"]["address"].startswith("127.0.0.1:")


def test_traefik_metrics_are_on_the_internal_entry_point_and_the_auth_route_leaves_them_out(
    rendered: tuple[Path, object],
) -> None:
    root, _ = rendered
    static = yaml.safe_load((root / "etc/traefik/traefik.yml").read_text())
    assert static["metrics"]["prometheus"]["entryPoint"] == "traefik"
    assert static["entryPoints"]["traefik"]["address"].startswith("127.0.0.1:")
    dynamic = yaml.safe_load((root / "etc/traefik/dynamic/gateway.yml").read_text())
    rule = dynamic["http"]["routers"]["auth"]["rule"]
    assert "!PathPrefix(`/metrics`)" in rule and "!PathPrefix(`/verify`)" in rule


def test_the_auth_unit_gives_the_workers_a_private_directory_for_their_counters(
    rendered: tuple[Path, object],
) -> None:
    root, _ = rendered
    unit = (root / "etc/systemd/system/mcp-gateway-auth.service").read_text().splitlines()
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=%t/mcp-gateway-auth/metrics" in unit
    # systemd makes it (mode 0700, owned by the service's user) at each start and removes it at stop.
    assert "RuntimeDirectory=mcp-gateway-auth mcp-gateway-auth/metrics" in unit
    assert "RuntimeDirectoryMode=0700" in unit


def test_traefik_loads_each_dynamic_file_before_it_lands_and_refuses_a_key_it_does_not_know(
    rendered: tuple[Path, object], tmp_path: Path
) -> None:
    """The traefik role's validate: of each dynamic file (check-dynamic, with the binary that will serve it):
    every file the roles write passes, and one with a key Traefik does not know fails with Traefik's words."""
    root, _ = rendered
    checker = root / "opt/traefik/check-dynamic"
    files = sorted((root / "etc/traefik/dynamic").glob("*.yml"))
    assert [f.name for f in files] == ["gateway.yml", "mcp-memory.yml", "mcp-time.yml"]

    # On a host the live static configuration sits where Traefik looks for one when not told (/etc/traefik,
    # the working directory): the check must not pick it up (it would serve ports 80 and 443 instead).
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    (workdir / "traefik.yml").write_text((root / "etc/traefik/traefik.yml").read_text())

    def check(path: Path, name: str) -> subprocess.CompletedProcess[str]:
        argv = [str(checker), str(VENV_BIN / "traefik"), str(path), name]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=workdir)

    for dynamic in files:
        result = check(dynamic, dynamic.name)
        assert result.returncode == 0, result.stderr
    # As Ansible hands it over: a file named "source", without the extension Traefik picks the format by.
    broken = tmp_path / "source"
    broken.write_text((root / "etc/traefik/dynamic/mcp-time.yml").read_text().replace("middlewares:", "middlewarez:"))
    result = check(broken, "mcp-time.yml")
    assert result.returncode == 1
    assert "mcp-time.yml: field not found, node: middlewarez" in result.stderr


def test_auth_environment_names_every_resource(rendered: tuple[Path, object]) -> None:
    root, _ = rendered
    env = read_env_file(root / "etc/mcp-gateway/auth.env")
    assert env["AUTH_ISSUER"] == "https://auth.example.test"
    resources = yaml.safe_load(env["AUTH_RESOURCES"])
    names = [server["name"] for server in example_group_vars()["mcp_servers"]]
    assert [r["name"] for r in resources] == names
    assert all(r["resource"] == f"https://{r['name']}.example.test/mcp" for r in resources)
    assert env["AUTH_SIGNING_KEYS"].endswith("/auth/keys")  # the key directory `mcp-gateway keys` manages
    assert env["AUTH_REDIS_URL"] == "redis://:test-redis-password@127.0.0.1:6379/0"
    assert (root / "etc/mcp-gateway/auth.env").stat().st_mode & 0o777 == 0o600


def test_each_server_gets_an_env_file_with_its_command_and_a_stable_port(rendered: tuple[Path, object]) -> None:
    root, _ = rendered
    time_env = read_env_file(root / "etc/mcp-gateway/servers/time.env")
    assert time_env["MCP_PROXY_COMMAND"] == "mcp-server-time --local-timezone UTC"
    assert time_env["MCP_PROXY_HOST"] == "127.0.0.1"
    assert time_env["PATH"].startswith("/opt/mcp-gateway/servers/time/venv/bin:")
    memory_env = read_env_file(root / "etc/mcp-gateway/servers/memory.env")
    assert memory_env["PATH"].startswith("/opt/mcp-gateway/servers/memory/npm/bin:")
    assert memory_env["MEMORY_FILE_PATH"] == "/var/lib/mcp-gateway/memory/memory.jsonl"
    ports = {time_env["MCP_PROXY_PORT"], memory_env["MCP_PROXY_PORT"]}
    assert len(ports) == 2
    route = yaml.safe_load((root / "etc/traefik/dynamic/mcp-time.yml").read_text())
    url = route["http"]["services"]["mcp-time"]["loadBalancer"]["servers"][0]["url"]
    assert url == f"http://127.0.0.1:{time_env['MCP_PROXY_PORT']}"


def test_removing_a_server_removes_its_route(rendered: tuple[Path, object], tmp_path: Path) -> None:
    from_the_example(rendered, tmp_path)
    assert (tmp_path / "etc/traefik/dynamic/mcp-time.yml").exists()
    memory_only = [s for s in example_group_vars()["mcp_servers"] if s["name"] == "memory"]
    render(tmp_path, gateway_domain="example.test", mcp_servers=memory_only)
    assert not (tmp_path / "etc/traefik/dynamic/mcp-time.yml").exists()
    assert (tmp_path / "etc/traefik/dynamic/mcp-memory.yml").exists()
    resources = yaml.safe_load(read_env_file(tmp_path / "etc/mcp-gateway/auth.env")["AUTH_RESOURCES"])
    assert [r["name"] for r in resources] == ["memory"]


def test_acme_settings_come_from_the_inventory_and_values_are_quoted_for_systemd(tmp_path: Path) -> None:
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    tricky = 'se"cr$et\\`x'
    render(
        tmp_path,
        gateway_acme_challenge="dns",
        gateway_acme_ca_server=staging,
        gateway_acme_dns_provider="cloudflare",
        gateway_acme_dns_resolvers=["1.1.1.1:53"],
        auth_github_client_secret=tricky,
    )
    static = yaml.safe_load((tmp_path / "etc/traefik/traefik.yml").read_text())
    acme = static["certificatesResolvers"]["gateway"]["acme"]
    assert acme["caServer"] == staging
    assert acme["dnsChallenge"] == {"provider": "cloudflare", "resolvers": ["1.1.1.1:53"]}
    assert "httpChallenge" not in acme
    assert read_env_file(tmp_path / "etc/mcp-gateway/auth.env")["AUTH_GITHUB_CLIENT_SECRET"] == tricky


def test_session_in_flight_and_refresh_limits_reach_the_services(tmp_path: Path) -> None:
    servers = example_group_vars()["mcp_servers"]
    servers = [
        {**s, "max_sessions_per_user": 3, "max_inflight_per_user": 7} if s["name"] == "memory" else s for s in servers
    ]
    render(tmp_path, mcp_servers=servers, auth_refresh_reuse_grace=0)
    assert read_env_file(tmp_path / "etc/mcp-gateway/auth.env")["AUTH_REFRESH_REUSE_GRACE"] == "0"
    memory_env = read_env_file(tmp_path / "etc/mcp-gateway/servers/memory.env")
    assert memory_env["MCP_PROXY_MAX_SESSIONS_PER_USER"] == "3"
    assert memory_env["MCP_PROXY_MAX_INFLIGHT_PER_USER"] == "7"
    # Unset: the bridge's own defaults (a quarter of max_sessions, of max_inflight) apply.
    time_env = read_env_file(tmp_path / "etc/mcp-gateway/servers/time.env")
    assert "MCP_PROXY_MAX_SESSIONS_PER_USER" not in time_env
    assert "MCP_PROXY_MAX_INFLIGHT_PER_USER" not in time_env
    render(tmp_path, mcp_servers=servers, mcp_servers_max_sessions_per_user=5, mcp_servers_max_inflight_per_user=9)
    time_env = read_env_file(tmp_path / "etc/mcp-gateway/servers/time.env")
    assert time_env["MCP_PROXY_MAX_SESSIONS_PER_USER"] == "5"
    assert time_env["MCP_PROXY_MAX_INFLIGHT_PER_USER"] == "9"
    assert read_env_file(tmp_path / "etc/mcp-gateway/servers/memory.env")["MCP_PROXY_MAX_INFLIGHT_PER_USER"] == "7"
    assert read_env_file(tmp_path / "etc/mcp-gateway/auth.env")["AUTH_REFRESH_REUSE_GRACE"] == "30"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("MCP_PROXY_MAX_SESSIONS", "many", "mcp-proxy: error: MCP_PROXY_MAX_SESSIONS='many' is not a valid int"),
        ("MCP_PROXY_POOLSIZE", "4", "mcp-proxy: error: unknown variable MCP_PROXY_POOLSIZE"),
    ],
)
def test_a_bad_bridge_setting_is_refused_with_the_bridges_message_and_the_old_file_stays(
    rendered: tuple[Path, object], tmp_path: Path, setting: str, value: str, message: str
) -> None:
    from_the_example(rendered, tmp_path)
    env_file = tmp_path / "etc/mcp-gateway/servers/time.env"
    before = env_file.read_bytes()
    servers = [
        {**s, "proxy_env": {setting: value}} if s["name"] == "time" else s for s in example_group_vars()["mcp_servers"]
    ]
    result = run_playbook(
        RENDER_PLAYBOOK,
        tmp_path / "ansible",
        render_overrides(tmp_path, gateway_domain="example.test", mcp_servers=servers),
    )
    assert result.returncode != 0
    assert "Write each server's environment file" in result.stdout
    assert message in result.stdout
    assert env_file.read_bytes() == before
