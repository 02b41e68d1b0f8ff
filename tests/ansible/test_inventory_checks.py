"""The preflight refuses a broken inventory before anything changes, and names what is wrong.

Every inventory below is checked in one ansible-playbook run: each is a local host of its own (its
variables as host variables over inventory.example's group variables), and Ansible's `tree` callback
keeps each host's last result, which for a refused inventory is the failed check and its message.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.ansible.playbooks import VALIDATE_PLAYBOOK
from tests.harness.playbook import INVENTORY, REPO, example_group_vars, run_playbook

# The example's hashed lock of mcp-server-time (its time server's pip_lock).
EXAMPLE_LOCK = INVENTORY / "files" / "mcp-server-time.txt"
GOOD_SECRETS = {"auth_github_client_id": "Iv1.0123456789abcdef", "auth_github_client_secret": "0123456789abcdef"}
# The AUTH_* settings the auth role writes from its own variables, as its template names them.
ROLE_WRITTEN_SETTINGS = sorted(
    set(re.findall(r"'(AUTH_[A-Z_]+)':", (REPO / "roles/auth/templates/etc/mcp-gateway/auth.env.j2").read_text()))
)


def servers(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*example_group_vars()["mcp_servers"], *extra]


GOOD = "the example inventory with its GitHub app filled in"
# Gateway hosts of several behind one name (with the two refused cases in BROKEN), which pass.
GOOD_SEVERAL = {
    "several gateway hosts with dns-01": {
        "gateway_private_address": "10.0.2.13",
        "gateway_acme_challenge": "dns",
        "gateway_acme_dns_provider": "cloudflare",
    },
    "several gateway hosts with http-01 pinned to one host by the balancer": {
        "gateway_private_address": "10.0.2.14",
        "gateway_acme_http_pinned": True,
    },
}
GOOD_OIDC = "the example inventory signing in through an OpenID Connect provider"
OIDC = {
    "auth_idp": "oidc",
    "auth_oidc_issuer": "https://keycloak.example.com/realms/staff",
    "auth_oidc_client_id": "mcp-gateway",
    "auth_oidc_client_secret": "0123456789abcdef",
    "auth_allowed_users": ["@example.com", "group:mcp-users"],
}

# case: (variables over inventory.example, what the refusal must say)
BROKEN: dict[str, tuple[dict[str, Any], list[str]]] = {
    "domain is not a domain": (
        {"gateway_domain": "https://example.com/"},
        ["gateway_domain must be a lower-case DNS name", "got 'https://example.com/'"],
    ),
    "github secret left as the placeholder": (
        {"auth_github_client_secret": "CHANGE-ME"},
        ["Set auth_github_client_secret (empty or CHANGE-ME now)"],
    ),
    "unknown identity provider": (
        {"auth_idp": "saml"},
        ["auth_idp", "saml"],
    ),
    "openid connect provider without its settings": (
        {"auth_idp": "oidc", "auth_allowed_users": ["*"]},
        ["With auth_idp oidc, set auth_oidc_issuer, auth_oidc_client_id, auth_oidc_client_secret"],
    ),
    "openid connect provider without an allow-list": (
        {**OIDC, "auth_allowed_users": []},
        ["With auth_idp oidc, auth_allowed_users must list who may sign in", "got []"],
    ),
    "openid connect scopes without openid": (
        {**OIDC, "auth_oidc_scopes": ["email", "profile"]},
        ['auth_oidc_scopes a list that includes openid (got ["email", "profile"])'],
    ),
    "openid connect issuer over plain http": (
        {**OIDC, "auth_oidc_issuer": "http://keycloak.example.com/realms/staff"},
        ["auth_oidc_issuer must be the provider's https issuer URL (got 'http://keycloak.example.com/realms/staff')"],
    ),
    "duplicate server names": (
        {"mcp_servers": servers({"name": "time", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        ["the name time is used by more than one entry"],
    ),
    "server name that is not a DNS label": (
        {"mcp_servers": servers({"name": "Time_Server", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        ["mcp_servers entry 'Time_Server': the name must be a lower-case DNS label"],
    ),
    "server named like the auth host": (
        {"mcp_servers": servers({"name": "auth", "pip": "mcp-server-time", "command": "mcp-server-time"})},
        ["mcp_servers entry 'auth': the name is the gateway's own"],
    ),
    "both pip and npm": (
        {"mcp_servers": servers({"name": "x", "pip": "a", "npm": "b", "command": "c"})},
        ["mutually exclusive"],
    ),
    "port taken by the auth service": (
        {"mcp_servers": servers({"name": "x", "pip": "a", "command": "c", "port": 9000})},
        ["mcp_servers entry 'x': port 9000 is gateway_auth_port"],
    ),
    "two servers on one port": (
        {
            "mcp_servers": servers(
                {"name": "x", "pip": "a", "command": "c", "port": 4100},
                {"name": "y", "pip": "a", "command": "c", "port": 4100},
            )
        },
        ["x and y share port 4100"],
    ),
    "memory limit too small for the sessions": (
        {"mcp_servers": servers({"name": "x", "pip": "a", "command": "c", "max_sessions": 20, "memory_max": "1G"})},
        [
            "mcp_servers entry 'x': memory_max 1G (1024 MiB) cannot hold 23 children",
            "(max_sessions 20, pool 2, spares 1)",
            "Lower max_sessions to 12 or raise memory_max",
        ],
    ),
    "pip_lock on an npm server": (
        {"mcp_servers": servers({"name": "x", "npm": "b@1.0.0", "pip_lock": str(EXAMPLE_LOCK), "command": "c"})},
        ["mcp_servers entry 'x': pip_lock goes with pip"],
    ),
    "pip_lock that is not a file": (
        {"mcp_servers": servers({"name": "x", "pip": "a==1.0", "pip_lock": "/nonexistent/a.lock", "command": "c"})},
        ["mcp_servers entry 'x': pip_lock /nonexistent/a.lock is not a file on the controller"],
    ),
    # The lock would install something else than the entry names (an old lock kept after a change of pip).
    "pip_lock that does not pin the server's package": (
        {
            "mcp_servers": servers(
                {"name": "x", "pip": "Mcp_Server.Fetch==2026.10.24", "pip_lock": str(EXAMPLE_LOCK), "command": "c"}
            )
        },
        [f"mcp_servers entry 'x': pip_lock {EXAMPLE_LOCK} does not pin mcp-server-fetch (name==version)"],
    ),
    "dns challenge without provider": (
        {"gateway_acme_challenge": "dns"},
        ["gateway_acme_challenge is dns, so gateway_acme_dns_provider must name"],
    ),
    # The cases below that name a gateway_private_address are, together, one gateway of several hosts
    # behind one name (roles/gateway/vars/main.yml: _gateway_hosts); the others are single hosts.
    "several gateway hosts with http-01": (
        {"gateway_private_address": "10.0.2.11"},
        [
            "gateway_acme_challenge is http with 4 gateway hosts behind one name",
            "the CA's validation request reaches any of them",
            "Use gateway_acme_challenge dns",
            "set gateway_acme_http_pinned true if your balancer sends /.well-known/acme-challenge/ to one host",
        ],
    ),
    "several gateway hosts with tls-alpn-01": (
        {"gateway_private_address": "10.0.2.12", "gateway_acme_challenge": "tls"},
        ["gateway_acme_challenge is tls with 4 gateway hosts", "sends the TLS-ALPN-01 handshake to one host"],
    ),
    "acme e-mail that is no address": (
        {"gateway_acme_email": "admin-at-example.com"},
        ["gateway_acme_email must be empty or an e-mail address; got 'admin-at-example.com'"],
    ),
    "two CA files installed under one name": (
        {"gateway_extra_ca_certificates": ["files/a/root.pem", "files/b/root.crt"]},
        ["files/a/root.pem and files/b/root.crt would all be installed as"],
    ),
    "misspelled allow-list variable": (
        {"auth_allowed_github_user": ["octocat"]},
        ["unknown variable auth_allowed_github_user; did you mean auth_allowed_github_users?"],
    ),
    "misspelled servers variable": (
        {"mcp_servers_max_session": 10, "traefik_colour": "blue"},
        [
            "unknown variable mcp_servers_max_session; did you mean mcp_servers_max_sessions?",
            "unknown variable traefik_colour (no role of the gateway reads it)",
        ],
    ),
    "code lifetime over ten minutes": (
        {"auth_code_ttl": 900},
        ["auth_code_ttl must be a whole number of seconds, at least 1 and at most 600; got '900'"],
    ),
    # Attack (or accident): the tests' own switches reach production through the role's pass-through.
    "backup recipient that is not an age public key": (
        {
            "auth_backup_age_recipients": [
                "age1sk0k0gwjhxgsaye40vvf5724p0g0jrpm5sgddykdmqv95sfxzv9s0amm3l",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
                "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS",
            ]
        },
        ["auth_backup_age_recipients must list age public keys", '["ssh-ed25...", "AGE-SECR..."]'],
    ),
    "test-only settings in auth_extra_env": (
        {"auth_extra_env": {"AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost", "AUTH_TEST_MODE": "1"}},
        ["AUTH_TEST_CIMD_ALLOWED_HOSTS is a test-only setting", "AUTH_TEST_MODE is a test-only setting"],
    ),
    "other programs' settings in auth_extra_env": (
        {"auth_extra_env": {"SSL_CERT_FILE": "/tmp/ca.pem", "auth_consent_ttl": "60"}},
        [
            "SSL_CERT_FILE is not a setting of the auth service",
            "auth_consent_ttl is not a setting of the auth service",
        ],
    ),
    "auth_extra_env overriding what the role writes": (
        {"auth_extra_env": dict.fromkeys(ROLE_WRITTEN_SETTINGS, "x")},
        [f"{name} is written by the role from " for name in ROLE_WRITTEN_SETTINGS]
        + ["AUTH_ALLOWED_GITHUB_USERS is written by the role from auth_allowed_github_users"],
    ),
    "redis fsync policy that does not exist": (
        {"redis_appendfsync": "sometimes"},
        ["redis_appendfsync must be always, everysec or no; got 'sometimes'"],
    ),
    "traefik's internal entry point on every interface": (
        {"traefik_internal_address": "0.0.0.0:8082"},
        ["traefik_internal_address must be a loopback address:port", "got '0.0.0.0:8082'"],
    ),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each case's last result (its first failed check, or the last passed one), from one run."""
    tmp = tmp_path_factory.mktemp("inventory-checks")
    cases = {GOOD: {}, GOOD_OIDC: OIDC, **GOOD_SEVERAL, **{case: variables for case, (variables, _) in BROKEN.items()}}
    hosts = {f"case-{i}": case for i, case in enumerate(cases)}
    inventory = tmp / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "gateway.yml").write_text((INVENTORY / "group_vars" / "gateway.yml").read_text())
    # The example's pip_lock paths are relative to its inventory folder.
    (inventory / "files").symlink_to(INVENTORY / "files")
    # An OpenID Connect inventory keeps the example's GitHub placeholders: they must not be asked for.
    host_vars = {
        host: {**({} if cases[case].get("auth_idp") == "oidc" else GOOD_SECRETS), **cases[case]}
        for host, case in hosts.items()
    }
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"gateway": {"hosts": host_vars}}))
    tree = tmp / "tree"
    result = run_playbook(
        VALIDATE_PLAYBOOK,
        tmp,
        {},
        inventory=inventory,
        env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree)},
    )
    # The recap says which hosts failed; the tree keeps each host's last result (no "failed" key for asserts).
    recap = re.findall(r"^(case-\d+)\s+:.*\bfailed=(\d+)", result.stdout, re.M)
    failed = {host for host, count in recap if count != "0"}
    found = {
        case: {**json.loads((tree / host).read_text()), "failed": host in failed}
        for host, case in hosts.items()
        if (tree / host).exists()
    }
    assert set(found) == set(cases), result.stdout[-3000:] + result.stderr[-2000:]
    return found


def messages(outcome: dict[str, Any]) -> str:
    """Every message of a result: the check's own, each looped item's, and argument-spec errors."""
    parts = [str(outcome.get("msg", ""))]
    parts += [str(item.get("msg", "")) for item in outcome.get("results", []) if item.get("failed")]
    parts += [str(error) for error in outcome.get("argument_errors", [])]
    return "\n".join(parts)


def test_the_example_inventory_passes(outcomes: dict[str, dict[str, Any]]) -> None:
    assert not outcomes[GOOD].get("failed"), messages(outcomes[GOOD])


@pytest.mark.parametrize("case", sorted(GOOD_SEVERAL))
def test_several_gateway_hosts_pass_with_a_challenge_that_reaches_the_host_that_asked(
    case: str, outcomes: dict[str, dict[str, Any]]
) -> None:
    assert not outcomes[case].get("failed"), messages(outcomes[case])


def test_an_openid_connect_inventory_needs_no_github_app(outcomes: dict[str, dict[str, Any]]) -> None:
    assert not outcomes[GOOD_OIDC].get("failed"), messages(outcomes[GOOD_OIDC])


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_inventory_is_refused_naming_what_is_wrong(case: str, outcomes: dict[str, dict[str, Any]]) -> None:
    outcome = outcomes[case]
    assert outcome.get("failed"), f"{case}: accepted"
    text = messages(outcome)
    for expected in BROKEN[case][1]:
        assert expected in text, text


def test_a_refusal_names_only_what_is_wrong(outcomes: dict[str, dict[str, Any]]) -> None:
    # The message is about the one wrong value, not a list of every rule the checks know.
    text = messages(outcomes["redis fsync policy that does not exist"])
    assert "redis_loglevel" not in text and "redis_maxmemory" not in text and "redis_password" not in text
    text = messages(outcomes["github secret left as the placeholder"])
    assert "auth_github_client_id" not in text
    # A secret key pasted among the recipients is not echoed; the good recipient is not named.
    text = messages(outcomes["backup recipient that is not an age public key"])
    assert "KEY-1QYQ" not in text and "age1sk0k" not in text
