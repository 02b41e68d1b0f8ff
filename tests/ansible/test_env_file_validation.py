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
