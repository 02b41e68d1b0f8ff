"""The auth role's env file is checked by the service's own loader (`mcp-gateway check-config`) before it
replaces the running one: a bad value fails the task with the loader's message and the old file stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.playbook import read_env_file, render

pytestmark = pytest.mark.slow


def test_a_bad_value_fails_the_task_with_the_loaders_message_and_keeps_the_old_file(tmp_path: Path) -> None:
    render(tmp_path, gateway_domain="example.test")
    env_file = tmp_path / "etc/mcp-gateway/auth.env"
    before = env_file.read_bytes()
    assert read_env_file(env_file)["AUTH_ACCESS_TOKEN_TTL"] == "1800"

    from tests.harness.playbook import RENDER_PLAYBOOK, render_overrides, run_playbook

    overrides = render_overrides(tmp_path, gateway_domain="example.test", auth_access_token_ttl=5)
    result = run_playbook(RENDER_PLAYBOOK, tmp_path / "ansible", overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Write the auth service's environment file" in output
    assert "AUTH_ACCESS_TOKEN_TTL: 5 must be between 30 and 86400" in output
    assert env_file.read_bytes() == before
    for secret in (overrides["render_secret_key"], overrides["render_redis_password"], "test-client-secret"):
        assert secret not in output


def test_an_openid_connect_inventory_writes_the_providers_settings_and_the_loader_accepts_them(
    tmp_path: Path,
) -> None:
    """The env file passes the service's own check-config (the template task's validate) with
    auth_idp oidc, carries the provider's settings and allow-list, and no GitHub app."""
    render(
        tmp_path,
        gateway_domain="example.test",
        auth_idp="oidc",
        auth_oidc_issuer="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
        auth_oidc_client_id="mcp-gateway",
        auth_oidc_client_secret="oidc-test-secret",
        auth_oidc_scopes=["openid", "email", "profile", "offline_access"],
        auth_oidc_user_claim="preferred_username",
        auth_allowed_users=["group:00000000-0000-0000-0000-000000000001", "@example.test"],
    )
    env = read_env_file(tmp_path / "etc/mcp-gateway/auth.env")
    assert env["AUTH_IDP"] == "oidc"
    assert env["AUTH_OIDC_ISSUER"] == "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
    assert env["AUTH_OIDC_CLIENT_SECRET"] == "oidc-test-secret"
    assert env["AUTH_OIDC_SCOPES"] == "openid email profile offline_access"
    assert env["AUTH_OIDC_USER_CLAIM"] == "preferred_username"
    assert env["AUTH_ALLOWED_USERS"] == "group:00000000-0000-0000-0000-000000000001,@example.test"
    assert not {name for name in env if name.startswith(("AUTH_GITHUB_", "AUTH_ALLOWED_GITHUB"))}


GOOGLE = {
    "gateway_domain": "example.test",
    "auth_idp": "oidc",
    "auth_oidc_issuer": "https://accounts.google.com",
    "auth_oidc_client_id": "mcp-gateway.apps.googleusercontent.com",
    "auth_oidc_client_secret": "oidc-test-secret",
    "auth_allowed_users": ["@example.test"],
}


def test_googles_offline_access_parameters_reach_the_env_file_and_a_protocol_parameter_is_refused(
    tmp_path: Path,
) -> None:
    """inventory.example's Google settings: access_type=offline and prompt=consent go to the service as
    JSON; an inventory that tries to set one of the protocol's own parameters (state) fails the task with
    the loader's message, and the file in place stays."""
    render(tmp_path, **GOOGLE, auth_oidc_authorization_params={"access_type": "offline", "prompt": "consent"})
    env_file = tmp_path / "etc/mcp-gateway/auth.env"
    env = read_env_file(env_file)
    assert env["AUTH_OIDC_AUTHORIZATION_PARAMS"] == '{"access_type": "offline", "prompt": "consent"}'
    before = env_file.read_bytes()

    from tests.harness.playbook import RENDER_PLAYBOOK, render_overrides, run_playbook

    overrides = render_overrides(tmp_path, **GOOGLE, auth_oidc_authorization_params={"state": "fixed"})
    result = run_playbook(RENDER_PLAYBOOK, tmp_path / "ansible", overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "AUTH_OIDC_AUTHORIZATION_PARAMS: 'state' is set by the service itself" in output
    assert env_file.read_bytes() == before
