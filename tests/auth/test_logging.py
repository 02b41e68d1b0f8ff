"""Logs are one JSON object per line in the schema of LOGS.md, with audit events and without secrets;
operator actions write one audit line each to the journal."""

import json
import os
import pwd
import re
import socket

import pytest

from tests.auth import admin_command
from tests.harness.log_schema import assert_schema, parse_log
from tests.harness.oauthflow import Browser, api, refresh, register, tokens_for, verify
from tests.harness.procs import wait_until

LOG_AUTH_INFO = 4 * 8 + 6  # syslog priority: facility auth, severity info


def test_logs_are_json_lines_with_audit_events_and_no_secrets(auth_service, browser):
    client = register(auth_service, token_endpoint_auth_method="client_secret_post")
    tokens = tokens_for(browser, client)
    text = auth_service.log_path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"client_registered", "authorized", "token_issued"} <= {e.get("event") for e in events}
    for secret in (
        client["client_secret"],
        client["registration_access_token"],
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in text


def test_every_line_of_the_service_log_follows_the_one_schema(auth_factory, github):
    service = auth_factory()
    agent = Browser(service, github)
    try:
        client = register(service)
        first = tokens_for(agent, client)
    finally:
        agent.close()
    second = refresh(service, client, first["refresh_token"]).json()
    assert refresh(service, client, second["refresh_token"]).status_code == 200
    assert refresh(service, client, first["refresh_token"]).status_code == 400  # reuse: the grant is revoked
    assert verify(service, second["access_token"]).status_code == 401
    with api(service, headers={"User-Agent": "schema-check/1"}) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/no-such-page").status_code == 404
        http.get("/authorize", params={"client_id": "nobody", "state": "state-in-the-query"})
    service.stop()  # gunicorn's shutdown lines belong to the log too

    text = service.log_path.read_text()
    entries = parse_log(text)
    for entry in entries:
        assert_schema(entry, agent=True)
    assert "state-in-the-query" not in text

    access = [e for e in entries if e.get("event") == "access"]
    health = next(e for e in access if e["path"] == "/health" and e["agent"] == "schema-check/1")
    assert health["method"] == "GET" and health["status"] == 200 and health["bytes"] > 0
    assert health["remote"] == "127.0.0.1"
    assert next(e for e in access if e["path"] == "/no-such-page")["status"] == 404
    assert next(e for e in access if e["path"] == "/authorize" and e["agent"] == "schema-check/1")
    assert {e["status"] for e in access if e["path"] == "/verify"} == {401}

    audits = {e["event"]: e for e in entries if e.get("audit") is True}
    assert {"client_registered", "authorized", "token_issued", "refresh_reused"} <= set(audits)
    assert audits["token_issued"]["client_id"] == client["client_id"]
    assert any("msg" in e and e["logger"].startswith("gunicorn") for e in entries)


def test_an_operator_deletion_writes_one_audit_line_to_the_journal(auth_service, browser, tmp_path):
    """The CLI sends its audit line to the syslog socket (journald's /dev/log; here one the test binds)
    with the identifier mcp-gateway, and prints its result for the person."""
    client = register(auth_service, client_name="Audited")
    tokens = tokens_for(browser, client)
    address = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(str(address))
        journal.settimeout(10)
        result = admin_command.run(
            auth_service,
            "clients",
            "delete",
            client["client_id"],
            AUTH_AUDIT_SYSLOG_SOCKET=str(address),
            SUDO_USER="alice-admin",
        )
        assert result.returncode == 0, result.stderr
        datagram = journal.recv(65536).decode()
        journal.setblocking(False)
        with pytest.raises(BlockingIOError):
            journal.recv(65536)  # one line, not more
    assert result.stdout.strip() == f"deleted {client['client_id']} and revoked 1 grant(s)"
    assert "client_deleted" not in result.stderr

    match = re.fullmatch(r"<(\d+)>mcp-gateway\[(\d+)\]: (\{.*\})", datagram)
    assert match, datagram
    assert int(match.group(1)) == LOG_AUTH_INFO
    entry = json.loads(match.group(3))
    assert_schema(entry)
    assert {
        "level": "info",
        "event": "client_deleted",
        "audit": True,
        "actor": "alice-admin",
        "outcome": "ok",
        "client_id": client["client_id"],
        "grants_revoked": 1,
    }.items() <= entry.items()
    assert verify(auth_service, tokens["access_token"]).status_code == 401


def _invoking_login() -> str:
    try:
        return os.getlogin()
    except OSError:
        return pwd.getpwuid(os.getuid()).pw_name


def test_without_a_journal_the_audit_line_goes_to_stderr(auth_service, tmp_path):
    missing = admin_command.run(
        auth_service, "clients", "delete", "no-such-client", AUTH_AUDIT_SYSLOG_SOCKET=str(tmp_path / "x")
    )
    assert missing.returncode != 0 and "no such client" in missing.stderr
    revoked = admin_command.run(
        auth_service, "grants", "revoke", "--user", " Nobody ", AUTH_AUDIT_SYSLOG_SOCKET=str(tmp_path / "x")
    )
    assert revoked.returncode == 0 and revoked.stdout.strip() == "revoked 0 grant(s) of nobody"
    (deletion,) = [e for e in parse_log(missing.stderr.split("\nError:")[0]) if e.get("audit")]
    (revocation,) = parse_log(revoked.stderr)
    for entry in (deletion, revocation):
        assert_schema(entry)
        assert entry["actor"] == _invoking_login()
    assert {"event": "client_deleted", "outcome": "not_found", "client_id": "no-such-client"}.items() <= (
        deletion.items()
    )
    assert {"event": "user_revoked", "outcome": "ok", "user": "nobody", "grants_revoked": 0}.items() <= (
        revocation.items()
    )


def test_a_refused_client_update_leaves_only_schema_lines_in_the_log(auth_service):
    """authlib's RFC 7592 endpoint prints each refused update to stdout; the journal gets what the
    service writes, so a refusal must not add a line outside the schema."""
    client = register(auth_service, client_name="Acme Notes")
    before = auth_service.log_path.stat().st_size
    body = {
        "client_id": client["client_id"],
        "client_name": "Acme\u202egnp.exe",
        "redirect_uris": client["redirect_uris"],
        "token_endpoint_auth_method": client["token_endpoint_auth_method"],
    }
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    with api(auth_service, headers=headers) as http:
        response = http.put(f"/register/{client['client_id']}", json=body)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_client_metadata"
        http.get("/health")  # its access line marks that the refusal's output is in the log
    with auth_service.log_path.open("rb") as log:
        log.seek(before)
        added = log.read().decode()
    for entry in parse_log(added):
        assert_schema(entry, agent=True)


def test_a_granted_forward_auth_check_writes_no_access_line_and_a_refused_one_does(auth_service, browser):
    """Traefik asks /verify before every MCP request: the journal keeps the refusals (someone probing
    with bad tokens) and leaves out the granted checks, which Traefik's own access log already has."""
    tokens = tokens_for(browser, register(auth_service))
    before = auth_service.log_path.stat().st_size
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    assert verify(auth_service, tokens["access_token"] + "x").status_code == 401
    assert verify(auth_service, None).status_code == 401
    with api(auth_service, headers={"User-Agent": "after-the-checks/1"}) as http:
        assert http.get("/health").status_code == 200

    def added() -> list[dict]:
        with auth_service.log_path.open("rb") as log:
            log.seek(before)
            return parse_log(log.read().decode())

    # The /health line is written last: once it is there, so are the lines of the checks before it.
    assert wait_until(lambda: any(e.get("agent") == "after-the-checks/1" for e in added()), timeout=10)
    checks = [e for e in added() if e.get("event") == "access" and e["path"] == "/verify"]
    assert sorted(e["status"] for e in checks) == [401, 401]
