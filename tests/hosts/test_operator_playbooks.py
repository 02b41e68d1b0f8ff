# ruff: noqa: F811  (the client tests' `target` fixture is imported, then named by the tests that use it)
"""The operator's playbooks, run from the controller as an operator runs them, against a converged guest,
with the official SDK client of tests/hosts/test_converged_gateway.py on the other side.

Run by molecule/operator in two steps, the guest destroyed and created anew between them:

- before-rebuild.yml runs test_backup_fetches_an_encrypted_backup_to_the_controller: a client logs in and
  is saved (GATEWAY_CLIENT_STATE), and playbooks/backup.yml fetches the host's encrypted backup;
- verify.yml runs test_restore_then_rotate_ban_revoke_and_health_on_a_new_host: playbooks/restore.yml puts
  the backup on the new host and the saved client carries on with its old refresh token and no new login;
  then rotate-keys.yml, users.yml (ban, unban), revoke.yml and health.yml, each judged by what the client
  sees and by what the playbook reports (changed or not, its messages).

Skipped unless GATEWAY_GUEST names the guest and GATEWAY_INVENTORY molecule's inventory of it;
GATEWAY_AGE_IDENTITY is the operator's age secret key (molecule/operator/prepare.yml makes the pair).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

INVENTORY = os.environ.get("GATEWAY_INVENTORY", "")
if not (INVENTORY and os.environ.get("GATEWAY_GUEST")):
    pytest.skip("GATEWAY_GUEST and GATEWAY_INVENTORY name no converged guest", allow_module_level=True)

# imported after the skip: the client machinery needs a gateway to talk to
import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.harness.procs import wait_until  # noqa: E402
from tests.hosts.test_converged_gateway import (  # noqa: E402
    CLIENT_STATE,
    GUEST,
    GUEST_NAME,
    Browser,
    MemoryStorage,
    Target,
    bearer_status,
    call_twice,
    guest_ssh,
    provider_for,
    resume_client,
    save_client,
    target,  # noqa: F401  (a fixture: pytest finds it here)
)

REPO = Path(__file__).resolve().parents[2]
AGE_IDENTITY = os.environ.get("GATEWAY_AGE_IDENTITY", "")
# backup.yml's default: backups/<host>/ beside the inventory directory
BACKUP_DIR = Path(INVENTORY).parent / "backups" / GUEST_NAME


def playbook(name: str, *options: str, **extra_vars: object) -> subprocess.CompletedProcess[str]:
    """ansible-playbook -i INVENTORY playbooks/NAME, as an operator types it."""
    argv = ["ansible-playbook", "-i", INVENTORY, str(REPO / "playbooks" / name), *options]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def changed(run: subprocess.CompletedProcess[str]) -> int:
    recap = re.search(rf"^{re.escape(GUEST_NAME)}\s*:\s*ok=\d+\s+changed=(\d+)", run.stdout, re.MULTILINE)
    assert recap, f"no play recap:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    return int(recap.group(1))


def said(run: subprocess.CompletedProcess[str]) -> str:
    """The play's output, failures included (molecule's ansible.cfg sends them to stderr), with its line
    breaks and indents as single spaces (the YAML callback folds long messages)."""
    return " ".join((run.stdout + run.stderr).split())


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    return said(run)


def admin_json(*command: str) -> object:
    done = guest_ssh("mcp-gateway", *command, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def kid_of(token: str) -> str:
    header = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def backups() -> list[Path]:
    return sorted(BACKUP_DIR.glob("mcp-gateway-*.age"))


def saved_client(target: Target) -> tuple[MemoryStorage, Browser, object]:
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, "time", storage, browser)
    resume_client(Path(CLIENT_STATE), storage, provider)
    return storage, browser, provider


def test_backup_fetches_an_encrypted_backup_to_the_controller(target: Target) -> None:
    # A client logs in and is kept on the controller, as a client persists its state.
    storage = MemoryStorage()
    browser = Browser(target)
    provider = provider_for(target, "time", storage, browser)
    out = anyio.run(call_twice, target, "time", provider, "auto")
    assert out["first_error"] is False and out["refreshed"] is True, out
    save_client(Path(CLIENT_STATE), storage, provider)

    # (backups of an earlier run may be there: molecule prunes the ephemeral directory only at the end)
    earlier = backups()
    checked = playbook("backup.yml", "--check")
    assert "check mode: would write an encrypted backup" in ok(checked) and changed(checked) == 0
    assert backups() == earlier

    first = ok(playbook("backup.yml"))
    second = playbook("backup.yml", backup_keep=1)
    assert changed(second) > 0
    kept = backups()
    assert len(kept) == 1 and kept[0] not in earlier, kept  # backup_keep=1 left the newest alone
    assert f"fetched to {kept[0]}" in ok(second)
    assert "fetched to" in first and kept[0].name not in first
    assert kept[0].stat().st_mode & 0o777 == 0o600
    encrypted = kept[0].read_bytes()
    assert encrypted.startswith(b"age-encryption.org/v1")
    assert storage.client_info.client_id.encode() not in encrypted
    # the host keeps no copy, encrypted or not
    left = guest_ssh("find", "/tmp", "/var/tmp", "/root", "-name", "*mcp-gateway-backup*")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout
    # what the operator's key opens: the client's registration is in it
    plain = subprocess.run(["age", "-d", "-i", AGE_IDENTITY, str(kept[0])], capture_output=True, check=True).stdout
    assert json.loads(plain.split(b"\n", 1)[0])["format"] == "mcp-gateway-backup"
    assert storage.client_info.client_id.encode() in plain


@pytest.mark.timeout(1500)  # a dozen playbook runs
def test_restore_then_rotate_ban_revoke_and_health_on_a_new_host(target: Target, tmp_path: Path) -> None:
    backup = backups()[-1]
    client_id = json.loads(Path(CLIENT_STATE).read_text())["client_info"]["client_id"]
    assert not any(c["client_id"] == client_id for c in admin_json("clients", "list")), "not a new host"

    # Attack: a backup altered on its way (one byte of the ciphertext) is refused by age; nothing changes.
    tampered = tmp_path / "tampered.age"
    data = bytearray(backup.read_bytes())
    data[-20] ^= 0x01
    tampered.write_bytes(bytes(data))
    refused = playbook("restore.yml", backup_file=str(tampered), age_identity=AGE_IDENTITY)
    assert refused.returncode != 0 and f"age could not decrypt {tampered}" in said(refused), said(refused)[-2000:]
    assert not any(c["client_id"] == client_id for c in admin_json("clients", "list"))

    # --check is the dry run: it says what would come back and changes nothing.
    dry = playbook("restore.yml", "--check", backup_file=str(backup), age_identity=AGE_IDENTITY)
    assert "dry run, nothing changed" in ok(dry) and changed(dry) == 0
    assert re.search(r"client: [1-9][0-9]* new", said(dry)), dry.stdout[-2000:]
    assert not any(c["client_id"] == client_id for c in admin_json("clients", "list"))

    restored = playbook("restore.yml", backup_file=str(backup), age_identity=AGE_IDENTITY)
    assert "restored" in ok(restored) and changed(restored) == 1
    assert "-----BEGIN" not in restored.stdout + restored.stderr  # no key, no plaintext, in the output
    # a second restore meets a store with data: refused with the host's reason until forced
    again = playbook("restore.yml", backup_file=str(backup), age_identity=AGE_IDENTITY)
    assert again.returncode != 0 and "-e restore_force=true" in said(again), said(again)[-2000:]
    forced = playbook("restore.yml", backup_file=str(backup), age_identity=AGE_IDENTITY, restore_force=True)
    assert "restored" in ok(forced) and changed(forced) == 0  # every record was there as it is in the backup

    # The saved client carries on: its old refresh token works on the new host, with no new login.
    storage, browser, provider = saved_client(target)
    old_kid = kid_of(storage.tokens.access_token)
    out = anyio.run(call_twice, target, "time", provider, "auto")
    assert out["first_error"] is False and out["second_error"] is False and out["refreshed"] is True, out
    assert browser.history == [], f"the restored client had to log in again: {browser.history}"
    (grant,) = admin_json("grants", "list", "--client", client_id)
    login = grant["user"]

    # rotate-keys.yml: a new key signs from a few seconds on; the token the old key signed still works.
    before = storage.tokens.access_token
    rotated = playbook("rotate-keys.yml")
    new_kid = re.search(r"new key (\S+) signs from", ok(rotated)).group(1)
    assert new_kid != kid_of(before) and changed(rotated) == 1
    assert bearer_status(target, "time", before) not in (401, 403)
    new_tokens: list[str] = []

    def refreshed_with_new_key() -> bool:
        anyio.run(call_twice, target, "time", provider, "auto")
        new_tokens.append(storage.tokens.access_token)
        return kid_of(new_tokens[-1]) == new_kid

    assert wait_until(refreshed_with_new_key, timeout=30, interval=2), [kid_of(t) for t in new_tokens]
    assert bearer_status(target, "time", before) not in (401, 403)  # the old key still verifies
    assert browser.history == []
    jwks = httpx.get(target.url("auth", "/jwks"), verify=target.tls(), timeout=30)
    jwks.raise_for_status()  # the JWKS shows the overlap, and the key the backup carried
    assert {new_kid, kid_of(before), old_kid} <= {key["kid"] for key in jwks.json()["keys"]}

    # users.yml: a ban refuses the client's calls within seconds (401 from the client's side); twice is ok.
    token = storage.tokens.access_token
    banned = playbook("users.yml", ban=login, reason="operator scenario")
    assert f"{login} banned" in ok(banned) and changed(banned) == 1
    assert wait_until(lambda: bearer_status(target, "time", token) in (401, 403), timeout=15, interval=0.5)
    with pytest.raises(Exception):  # noqa: B017  (the refresh is refused, and so is a new login)
        anyio.run(call_twice, target, "time", provider, "auto")
    again = playbook("users.yml", ban=login)
    assert "was already banned" in ok(again) and changed(again) == 0
    unbanned = playbook("users.yml", unban=login)
    assert f"{login} unbanned" in ok(unbanned) and changed(unbanned) == 1
    assert changed(playbook("users.yml", "--check", unban=login)) == 0
    # the ban revoked the grant: the user signs in again, and that works
    storage, browser = MemoryStorage(), Browser(target)
    provider = provider_for(target, "time", storage, browser)
    out = anyio.run(call_twice, target, "time", provider, "auto")
    assert out["first_error"] is False and out["refreshed"] is True and browser.history, out

    # revoke.yml: by client; the client's token is refused within seconds; again is ok, not changed.
    token, new_client = storage.tokens.access_token, storage.client_info.client_id
    checked = playbook("revoke.yml", "--check", client=new_client)
    assert "would revoke 1 grant(s)" in ok(checked) and changed(checked) == 0
    revoked = playbook("revoke.yml", client=new_client)
    assert "revoked 1 grant(s)" in ok(revoked) and changed(revoked) == 1
    assert wait_until(lambda: bearer_status(target, "time", token) == 401, timeout=15, interval=0.5)
    assert changed(playbook("revoke.yml", client=new_client)) == 0
    gone = playbook("revoke.yml", grant="no-such-grant")
    assert "no such grant" in ok(gone) and changed(gone) == 0

    # health.yml passes, then fails naming the bridge whose unit is stopped.
    roots = Path(os.environ["PEBBLE_ROOTS"]).read_bytes()
    # where the service's user, which the command becomes, can read it
    ca_file = "/opt/gateway-test/pebble-roots.pem"
    subprocess.run([str(GUEST), "ssh", GUEST_NAME, f"cat > {ca_file}"], input=roots, check=True, timeout=60)
    healthy = playbook("health.yml", health_ca_file=ca_file)
    assert "is healthy" in ok(healthy) and changed(healthy) == 0
    stopped = guest_ssh("systemctl", "stop", "mcp-proxy@memory.service")
    assert stopped.returncode == 0, stopped.stderr
    try:
        sick = playbook("health.yml", health_ca_file=ca_file)
        assert sick.returncode != 0
        unhealthy = said(sick).split("is unhealthy:")[-1]
        assert "unit mcp-proxy@memory.service" in unhealthy, sick.stdout[-3000:]
        assert "unit mcp-proxy@time.service" not in unhealthy
    finally:
        guest_ssh("systemctl", "start", "mcp-proxy@memory.service")
