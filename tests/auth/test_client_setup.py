"""`mcp-gateway clients setup`: ready-to-paste setup of a service for Claude Code, Claude Desktop
(through mcp-remote), VS Code and Claude.ai, with the CA hint when the certificate is not public."""

from __future__ import annotations

import json

from tests.auth.admin_command import run, write_env_file
from tests.auth.gateway import DOMAIN


def gateway_env_file(gateway, tmp_path):
    env = {k: v for k, v in gateway.auth.env.items() if k.startswith("AUTH_")}
    env["SSL_CERT_FILE"] = str(gateway.ca_file)  # the host's store holds the private ACME CA, as the role makes it
    return write_env_file(tmp_path / "auth.env", env)


def test_setup_prints_each_clients_configuration_and_the_ca_hint_for_a_private_ca(gateway, tmp_path):
    env_file = gateway_env_file(gateway, tmp_path)
    url = gateway.url("time", "/mcp")
    result = run(None, "clients", "setup", "--service", "time", "--user", "octocat", "--json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["url"] == url and data["user"] == "octocat"
    assert data["claude_code"].endswith(f"claude mcp add --transport http time {url}")
    assert data["vscode"] == {"servers": {"time": {"type": "http", "url": url}}}
    assert data["claude_ai"] == {"url": url}
    desktop = data["claude_desktop"]["mcpServers"]["time"]
    assert desktop["command"] == "npx" and desktop["args"] == ["-y", "mcp-remote", url]
    # Traefik's certificate comes from Pebble, a private ACME CA: Node clients must be told to trust it.
    assert data["certificate"]["public_ca"] is False
    assert data["certificate"]["issuer"].startswith("Pebble")
    assert "NODE_EXTRA_CA_CERTS" in desktop["env"] and data["claude_code"].startswith("NODE_EXTRA_CA_CERTS=")
    assert "NODE_EXTRA_CA_CERTS" in data["ca_hint"] and "Claude.ai" in data["ca_hint"]

    text = run(None, "clients", "setup", "--service", "time", "--name", "clock", env_file=env_file)
    assert text.returncode == 0, text.stderr
    assert f"claude mcp add --transport http clock {url}" in text.stdout
    assert '"clock": {' in text.stdout and f'"url": "{url}"' in text.stdout
    assert f"Claude.ai (Settings > Connectors > Add custom connector), URL:\n  {url}" in text.stdout
    assert f"The certificate of time.{DOMAIN} is 'Pebble" in text.stdout


def test_a_named_ca_file_goes_into_the_hint_and_the_configurations(gateway, tmp_path):
    env_file = gateway_env_file(gateway, tmp_path)
    result = run(
        None, "clients", "setup", "--service", "time", "--ca-file", str(gateway.ca_file), "--json", env_file=env_file
    )
    data = json.loads(result.stdout)
    assert data["claude_desktop"]["mcpServers"]["time"]["env"] == {"NODE_EXTRA_CA_CERTS": str(gateway.ca_file)}
    assert f"NODE_EXTRA_CA_CERTS={gateway.ca_file}" in data["ca_hint"]


def test_a_certificate_that_cannot_be_read_is_said_so_with_the_hint(gateway, tmp_path):
    env_file = gateway_env_file(gateway, tmp_path)
    result = run(None, "clients", "setup", "--service", "time", "--address", "127.0.0.2", "--json", env_file=env_file)
    data = json.loads(result.stdout)
    assert data["certificate"]["public_ca"] is None
    assert "could not be fetched through 127.0.0.2" in data["ca_hint"]


def test_an_unknown_service_or_a_user_who_may_not_use_it_is_refused(gateway, tmp_path):
    env_file = gateway_env_file(gateway, tmp_path)
    unknown = run(None, "clients", "setup", "--service", "nope", env_file=env_file)
    assert unknown.returncode == 1 and "no such service: nope (the services: time" in unknown.stderr
    outsider = run(None, "clients", "setup", "--service", "time", "--user", "mallory", env_file=env_file)
    assert outsider.returncode == 1
    assert "mallory may not use time: not on its allow-list (AUTH_ALLOWED_GITHUB_USERS" in outsider.stderr
    assert outsider.stdout == ""
    bad_name = run(None, "clients", "setup", "--service", "time", "--name", "a b", env_file=env_file)
    assert bad_name.returncode == 2 and "letters, digits" in bad_name.stderr
