"""`mcp-gateway backup` and `restore`: an age-encrypted backup that a fresh host restores, after which
clients carry on with their old refresh tokens and no new login; anything but a whole backup of this
gateway is refused and changes nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.auth.admin_command import as_json, ok, run, write_env_file
from tests.harness.auth import AuthService, write_rsa_key
from tests.harness.oauthflow import api, login_tokens, refresh, register, verify


@dataclass
class AgeKey:
    identity: Path
    recipient: str


@pytest.fixture
def age_key(tmp_path: Path) -> AgeKey:
    """A real age key pair, made as an operator makes one on the controller."""
    identity = tmp_path / "operator-age-key.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True)
    return AgeKey(identity, recipient.stdout.strip())


def _host(auth_factory, redis_server, tmp_path: Path, name: str, recipient: str) -> tuple[AuthService, int]:
    """A gateway host: its own empty store and its own key directory, the issuer of the others."""
    keys = tmp_path / f"{name}-keys"
    write_rsa_key(keys / "signing-key.pem")
    db = redis_server.claim_database()
    env = {"AUTH_SIGNING_KEYS": str(keys), "AUTH_BACKUP_AGE_RECIPIENTS": recipient}
    return auth_factory(redis_url=redis_server.url_for(db), env=env), db


def _stored(redis_server, db: int) -> dict[str, str]:
    """Everything the store holds, as an attacker with a dump of Redis would see it."""
    client = redis_server.client(db)
    try:
        return {key: client.type(key) for key in client.keys("*")}
    finally:
        client.close()


def _kids(service: AuthService) -> list[str]:
    with api(service) as http:
        return [k["kid"] for k in http.get("/jwks").json()["keys"]]


def _encrypted_backup(service: AuthService, path: Path) -> bytes:
    ok(service, "backup", "--output", str(path))
    return path.read_bytes()


def _decrypt(age_key: AgeKey, path: Path) -> str:
    done = subprocess.run(["age", "-d", "-i", str(age_key.identity), str(path)], capture_output=True, check=True)
    return done.stdout.decode()


def test_a_restored_backup_on_a_fresh_host_lets_an_old_refresh_token_work_without_a_new_login(
    auth_factory, redis_server, github, tmp_path, age_key
):
    old_host, _ = _host(auth_factory, redis_server, tmp_path, "old", age_key.recipient)
    client = register(old_host)
    tokens = login_tokens(old_host, github, client)
    ok(old_host, "users", "ban", "bob", "--reason", "left")
    old_kids = _kids(old_host)

    path = tmp_path / "gateway.age"
    encrypted = _encrypted_backup(old_host, path)
    assert encrypted.startswith(b"age-encryption.org/v1\n")
    assert b"mcp-gateway-backup" not in encrypted and client["client_id"].encode() not in encrypted
    assert path.stat().st_mode & 0o777 == 0o600
    plaintext = _decrypt(age_key, path)

    new_host, new_db = _host(auth_factory, redis_server, tmp_path, "new", age_key.recipient)
    (new_kid,) = _kids(new_host)
    dry = as_json(new_host, "restore", "--dry-run", stdin=plaintext)
    assert dry["dry_run"] is True and dry["held"] == 0
    assert dry["kinds"]["grant"]["new"] == 1 and dry["kinds"]["refresh"]["new"] == 1
    assert dry["kinds"]["ban"]["new"] == 1 and dry["keys_added"] == old_kids
    assert _stored(redis_server, new_db) == {}  # the dry run wrote nothing
    assert _kids(new_host) == [new_kid]

    restored = as_json(new_host, "restore", stdin=plaintext)
    assert restored["written"] == sum(c["new"] for c in dry["kinds"].values())
    # The client carries on with the refresh token it had, no login; the ban came along.
    answer = refresh(new_host, client, tokens["refresh_token"])
    assert answer.status_code == 200, answer.text
    assert verify(new_host, answer.json()["access_token"]).status_code == 200
    # Its old access token still verifies: the old key was restored, verifying only.
    assert _kids(new_host) == [new_kid, *old_kids]
    assert verify(new_host, tokens["access_token"]).status_code == 200
    assert [u["login"] for u in as_json(new_host, "users", "list")["users"] if u["banned"]] == ["bob"]
    # The restored grant is indexed again: revoking the user's grants reaches it.
    assert as_json(new_host, "grants", "list", "--user", "octocat")[0]["client_id"] == client["client_id"]
    audit = [e for e in as_json(new_host, "audit") if e.get("event") == "backup_restored"]
    assert audit and audit[0]["records"] == restored["written"]


def test_restore_onto_a_store_that_holds_data_needs_force(auth_factory, redis_server, github, tmp_path, age_key):
    host, db = _host(auth_factory, redis_server, tmp_path, "host", age_key.recipient)
    client = register(host)
    _encrypted_backup(host, tmp_path / "a.age")
    plaintext = _decrypt(age_key, tmp_path / "a.age")
    register(host)  # more data since the backup
    before = _stored(redis_server, db)
    refused = run(host, "restore", stdin=plaintext)
    assert refused.returncode == 1
    assert "refused: the store holds 2 record(s); --force restores over them" in refused.stderr
    assert _stored(redis_server, db) == before
    forced = as_json(host, "restore", "--force", stdin=plaintext)
    assert forced["kinds"]["client"] == {"new": 0, "replace": 0, "same": 1, "expired": 0}
    assert _stored(redis_server, db).keys() >= before.keys()
    assert client["client_id"] in {c["client_id"] for c in as_json(host, "clients", "list")}


def _tamper(plaintext: str) -> str:
    lines = plaintext.splitlines(keepends=True)
    record = json.loads(lines[1])
    record["store"]["expires_at"] = None  # make a record live for ever
    return lines[0] + json.dumps(record) + "\n" + "".join(lines[2:])


def _resealed(plaintext: str) -> str:
    """The backup with its end line made anew, as someone who edits a backup with care would."""
    body = "".join(plaintext.splitlines(keepends=True)[:-1])
    end = {"lines": body.count("\n") + 1, "sha256": hashlib.sha256(body.encode()).hexdigest()}
    return body + json.dumps({"end": end}) + "\n"


def _version_2(plaintext: str) -> str:
    header, _, rest = plaintext.partition("\n")
    return json.dumps({**json.loads(header), "version": 2}) + "\n" + rest


DAMAGES = {
    "tampered": (_tamper, "the backup is damaged (its checksum does not match its content)"),
    "truncated": (lambda p: p[: len(p) // 2], "the backup is truncated"),
    "without-end": (lambda p: p.rsplit("\n", 2)[0] + "\n", "the backup is truncated (its end line is missing)"),
    "foreign": (lambda p: '{"clients": []}\n', "not an mcp-gateway backup"),
    "empty": (lambda p: "", "the input is empty"),
    "wrong-version": (_version_2, "backup format version 2; this command restores version 1"),
    "other-gateway": (
        lambda p: _resealed(p.replace("https://auth.example.test", "https://auth.other.test")),
        "the backup is of https://auth.other.test, this service is https://auth.example.test",
    ),
}


def test_a_damaged_or_foreign_backup_is_refused_and_nothing_changes(auth_factory, redis_server, tmp_path, age_key):
    source, _ = _host(auth_factory, redis_server, tmp_path, "source", age_key.recipient)
    register(source)
    _encrypted_backup(source, tmp_path / "b.age")
    plaintext = _decrypt(age_key, tmp_path / "b.age")
    target, target_db = _host(auth_factory, redis_server, tmp_path, "target", age_key.recipient)
    keys_before = sorted(p.name for p in (tmp_path / "target-keys").iterdir())
    for name, (damage, message) in DAMAGES.items():
        for extra in ((), ("--force",), ("--dry-run",)):
            refused = run(target, "restore", *extra, stdin=damage(plaintext))
            assert refused.returncode == 1, (name, extra, refused.stdout)
            assert message in refused.stderr and "nothing was changed" in refused.stderr, (name, refused.stderr)
            assert _stored(redis_server, target_db) == {}, name
            assert sorted(p.name for p in (tmp_path / "target-keys").iterdir()) == keys_before, name


def test_an_encrypted_backup_is_refused_until_decrypted_and_a_tampered_one_does_not_decrypt(
    auth_factory, redis_server, github, tmp_path, age_key
):
    host, _ = _host(auth_factory, redis_server, tmp_path, "host", age_key.recipient)
    encrypted = _encrypted_backup(host, tmp_path / "c.age")
    refused = run(host, "restore", stdin=encrypted.decode("latin-1"))
    assert refused.returncode == 1 and "not an mcp-gateway backup (it looks encrypted" in refused.stderr
    tampered = tmp_path / "tampered.age"
    tampered.write_bytes(encrypted[:-40] + bytes([encrypted[-40] ^ 1]) + encrypted[-39:])
    done = subprocess.run(["age", "-d", "-i", str(age_key.identity), str(tampered)], capture_output=True, check=False)
    assert done.returncode != 0 and done.stdout == b""


def test_backup_refuses_without_a_recipient_and_never_overwrites_a_file(auth_factory, redis_server, tmp_path, age_key):
    host, _ = _host(auth_factory, redis_server, tmp_path, "host", age_key.recipient)
    existing = tmp_path / "existing.age"
    existing.write_bytes(b"an older backup")
    refused = run(host, "backup", "--output", str(existing))
    assert refused.returncode == 1 and "exists; the backup is never written over a file" in refused.stderr
    assert existing.read_bytes() == b"an older backup"
    bare = dict(host.env, AUTH_BACKUP_AGE_RECIPIENTS="")
    env_file = write_env_file(tmp_path / "bare.env", {k: v for k, v in bare.items() if k.startswith("AUTH_")})
    refused = run(host, "backup", "--output", str(tmp_path / "new.age"), env_file=env_file)
    assert refused.returncode == 1 and "no age recipient to encrypt to" in refused.stderr
    assert not (tmp_path / "new.age").exists()
