"""`mcp-gateway check-config`: an env file is judged by the service's own settings loader, as the
service's user, and a bad one is refused with the loader's message (the auth role's validate step)."""

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.auth.admin_command import run, write_env_file


def _env(auth_service, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in auth_service.env.items() if k.startswith("AUTH_")}
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def test_a_good_env_file_passes(auth_service, tmp_path):
    path = write_env_file(tmp_path / "auth.env", _env(auth_service))
    result = run(None, "check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AUTH_ACCESS_TOKEN_TTL": "5"}, "AUTH_ACCESS_TOKEN_TTL: 5 must be between 30 and 86400"),
        ({"AUTH_ISSUER": "https://Auth.example.test/"}, "AUTH_ISSUER: 'https://Auth.example.test/' must be written"),
        ({"AUTH_RESOURCES": "[{"}, "AUTH_RESOURCES: not valid JSON"),
        ({"AUTH_SECRET_KEY": ""}, "missing required setting(s): AUTH_SECRET_KEY"),
        (
            {"AUTH_SIGNING_KEYS": "/nonexistent/key.pem"},
            "AUTH_SIGNING_KEYS: /nonexistent/key.pem is not a readable file",
        ),
    ],
)
def test_a_bad_value_is_refused_with_the_loaders_message(auth_service, tmp_path, changes, message):
    path = write_env_file(tmp_path / "auth.env", _env(auth_service, **changes))
    result = run(None, "check-config", str(path))
    assert result.returncode == 1
    assert f"Error: {path}: {message}" in result.stderr
    assert auth_service.env["AUTH_SECRET_KEY"] not in result.stderr + result.stdout


def test_a_file_systemd_could_not_read_is_refused(tmp_path):
    path = tmp_path / "auth.env"
    path.write_text('AUTH_ISSUER="https://auth.example.test\n')
    result = run(None, "check-config", str(path))
    assert result.returncode == 1 and 'AUTH_ISSUER: the " quote is never closed' in result.stderr
    missing = run(None, "check-config", str(tmp_path / "absent.env"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "No such file" in missing.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to the service's user needs root")
def test_secrets_are_read_as_the_services_user_not_as_root(auth_service, tmp_path):
    """Only the env file is read as root: a signing key the service's user cannot read is refused with
    the loader's message, as the service itself would refuse it, and one it owns passes."""
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:
        folder = Path(shared)
        folder.chmod(0o755)
        key = folder / "signing.pem"
        shutil.copy(auth_service.signing_keys[0], key)
        key.chmod(0o600)  # root's own
        path = write_env_file(tmp_path / "auth.env", _env(auth_service, AUTH_SIGNING_KEYS=str(key)))
        refused = run(None, "check-config", str(path), user="nobody")
        assert refused.returncode == 1, refused.stderr
        assert f"Error: {path}: AUTH_SIGNING_KEYS: {key} cannot be read (Permission denied)" in refused.stderr
        os.chown(key, nobody.pw_uid, nobody.pw_gid)
        assert run(None, "check-config", str(path), user="nobody").returncode == 0
    unknown = run(None, "check-config", str(path), user="no-such-user-here")
    assert unknown.returncode == 1 and "no such user: no-such-user-here" in unknown.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to the service's user needs root")
def test_a_key_in_a_folder_the_services_user_cannot_enter_is_a_clear_error(auth_service, tmp_path):
    """The loader used to raise PermissionError (a traceback at start-up) for a key behind a folder
    the service's user may not enter; it names the setting instead."""
    tmp_path.chmod(0o700)
    key = tmp_path / "signing.pem"
    shutil.copy(auth_service.signing_keys[0], key)
    path = write_env_file(tmp_path / "auth.env", _env(auth_service, AUTH_SIGNING_KEYS=str(key)))
    refused = run(None, "check-config", str(path), user="nobody")
    assert refused.returncode == 1
    assert f"AUTH_SIGNING_KEYS: {key} cannot be read (Permission denied)" in refused.stderr
    assert "Traceback" not in refused.stderr
