"""`mcp-gateway health`: each MCP service answers tools/list through Traefik with a token the command
mints for itself and revokes; certificates are read as a client meets them; what is down is named."""

from __future__ import annotations

import json

from tests.auth.admin_command import as_json, run, write_env_file
from tests.auth.conftest import oidc_env
from tests.auth.gateway import DOMAIN, running_gateway


def test_health_lists_tools_through_traefik_reads_certificates_and_names_what_is_down(gateway, tmp_path):
    env = {k: v for k, v in gateway.auth.env.items() if k.startswith("AUTH_")}
    resources = json.loads(env["AUTH_RESOURCES"])
    # A second service that Traefik routes to no bridge: down, as a stopped mcp-proxy@ unit would be.
    down = gateway.url("memory", "/mcp")
    env["AUTH_RESOURCES"] = json.dumps([*resources, {"name": "memory", "resource": down}])
    env["SSL_CERT_FILE"] = str(gateway.ca_file)  # the role points it at the system bundle
    env_file = write_env_file(tmp_path / "auth.env", env)

    result = run(None, "health", "--json", env_file=env_file)
    report = json.loads(result.stdout)
    rows = {(r["check"], r["name"]): r for r in report["checks"]}
    assert rows[("mcp", "time")]["ok"] is True, rows[("mcp", "time")]
    assert rows[("mcp", "time")]["detail"].endswith("tool(s)")
    assert rows[("mcp", "memory")]["ok"] is False
    auth_cert = rows[("certificate", f"auth.{DOMAIN}")]
    assert auth_cert["ok"] is True and auth_cert["detail"].startswith("expires 20"), auth_cert
    assert rows[("certificate", f"time.{DOMAIN}")]["ok"] is True
    assert rows[("redis", "persistence")] == {
        "check": "redis",
        "name": "persistence",
        "ok": True,
        "detail": "aof on, last write ok",
    }
    # Not healthy (no systemd units here, one service down): exit 1, naming each part.
    assert report["healthy"] is False and result.returncode == 1
    named = result.stderr.split("unhealthy: ", 1)[1].strip().split(", ")
    assert "mcp memory" in named and "unit mcp-proxy@time.service" in named
    assert "mcp time" not in named and "redis persistence" not in named
    # The grants it minted were revoked afterwards.
    assert as_json(None, "grants", "list", "--client", "mcp-gateway-health", env_file=env_file) == []


def test_health_refuses_a_ca_file_it_cannot_use_with_a_message_not_a_traceback(gateway, tmp_path):
    # An operator names a file that holds no certificate (or one the service's user cannot read).
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("this is not a certificate\n")
    result = run(gateway.auth, "health", "--json", "--ca-file", str(not_pem))
    assert result.returncode == 1, result.stderr
    assert f"cannot trust the CA certificates in {not_pem}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_with_only_rules_in_the_allowlists_health_speaks_for_itself_with_the_claims_they_ask_for(
    tmp_path_factory, tmp_path, redis_server, github_stub, test_ca, oidc_provider
):
    """An OpenID Connect allowlist may name no user at all (an email domain, a group). The command must
    not pass a rule off as a login (a token for the user "@example.org"), nor give up: it speaks as the
    health client itself, carrying the claims the rules ask for, and only for its one minute."""
    rules = oidc_env(oidc_provider, test_ca, AUTH_ALLOWED_USERS="@example.org, group:mcp-users")
    with running_gateway(
        tmp_path_factory, redis_server, github_stub, test_ca, env=rules, time_policy={"allowed_users": ["group:ops"]}
    ) as gateway:
        env = {k: v for k, v in gateway.auth.env.items() if k.startswith("AUTH_")}
        env["SSL_CERT_FILE"] = str(gateway.ca_file)
        env_file = write_env_file(tmp_path / "auth.env", env)
        result = run(None, "health", "--json", env_file=env_file)
        report = json.loads(result.stdout)
        time_row = next(r for r in report["checks"] if (r["check"], r["name"]) == ("mcp", "time"))
        assert time_row["ok"] is True, time_row
        assert time_row["user"] == "mcp-gateway-health", time_row
        # its grant was revoked once it was done
        assert as_json(None, "grants", "list", "--client", "mcp-gateway-health", env_file=env_file) == []
