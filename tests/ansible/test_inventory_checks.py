"""The preflight refuses a broken inventory before anything changes, and says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ansible.playbooks import VALIDATE_PLAYBOOK, example_group_vars, run_playbook

GOOD_SECRETS = {"auth_github_client_id": "Iv1.0123456789abcdef", "auth_github_client_secret": "0123456789abcdef"}


def servers(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*example_group_vars()["mcp_servers"], *extra]


def check(tmp: Path, **variables: Any) -> tuple[bool, str]:
    result = run_playbook(VALIDATE_PLAYBOOK, tmp, {**GOOD_SECRETS, **variables})
    return result.returncode == 0, result.stdout + result.stderr


def test_the_example_inventory_passes(tmp_path: Path) -> None:
    ok, output = check(tmp_path)
    assert ok, output[-3000:]


BROKEN = {
    "domain is not a domain": (
        {"gateway_domain": "https://example.com/"},
        "gateway_domain must be a lower-case DNS name",
    ),
    "github secret left as the placeholder": ({"auth_github_client_secret": "CHANGE-ME"}, "auth_github_client_secret"),
    "duplicate server names": (
        {"mcp_servers": servers({"name": "time", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        "each entry needs a unique name",
    ),
    "server name that is not a DNS label": (
        {"mcp_servers": servers({"name": "Time_Server", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        "each entry needs a unique name",
    ),
    "server named like the auth host": (
        {"mcp_servers": servers({"name": "auth", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        "not one of auth",
    ),
    "both pip and npm": (
        {"mcp_servers": servers({"name": "x", "pip": "a", "npm": "b", "command": "c"})},
        "mutually exclusive",
    ),
    "port taken by the auth service": (
        {"mcp_servers": servers({"name": "x", "pip": "a", "command": "c", "port": 9000})},
        "unique loopback port",
    ),
    "dns challenge without provider": ({"gateway_acme_challenge": "dns"}, "gateway_acme_dns_provider"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_inventory_is_refused_with_a_clear_message(case: str, tmp_path: Path) -> None:
    variables, message = BROKEN[case]
    ok, output = check(tmp_path, **variables)
    assert not ok, f"{case}: accepted"
    assert message in output, output[-3000:]
