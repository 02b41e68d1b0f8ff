"""`mcp-gateway stats` counts what the service did (refusals by reason, logins, refresh-token reuse)
and `mcp-gateway audit` lists operator actions and security events, newest first."""

from tests.auth.admin_command import as_json, ok
from tests.harness.oauthflow import refresh, register, tokens_for, verify


def test_stats_count_refusals_logins_and_reuse_but_not_good_answers(auth_service, browser):
    def last_hour() -> dict:
        return as_json(auth_service, "stats")["last_hour"]

    before = last_hour()
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    after_login = last_hour()
    assert after_login["logins"] == before["logins"] + 1

    for _ in range(3):
        assert verify(auth_service, tokens["access_token"]).status_code == 200
    assert last_hour() == after_login  # a good answer writes nothing

    assert verify(auth_service, "not-a-token").status_code == 401
    assert verify(auth_service, None).status_code == 401
    refused = last_hour()["refusals"]
    assert refused["verify_invalid_token"] == after_login["refusals"].get("verify_invalid_token", 0) + 1
    assert refused["verify_no_token"] == after_login["refusals"].get("verify_no_token", 0) + 1

    first = refresh(auth_service, client, tokens["refresh_token"]).json()
    assert refresh(auth_service, client, first["refresh_token"]).status_code == 200
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400  # reuse: grant revoked
    stats = as_json(auth_service, "stats")
    assert stats["last_hour"]["refresh_reuse_detected"] == before["refresh_reuse_detected"] + 1
    assert stats["last_day"]["refresh_reuse_detected"] >= stats["last_hour"]["refresh_reuse_detected"]
    assert stats["clients"]["registered"] >= 1 and isinstance(stats["live_grants"], int)
    newest = as_json(auth_service, "audit", "--limit", "1")[0]
    assert {"kind": "security", "event": "refresh_reused"}.items() <= newest.items()
    assert "refused: verify_invalid_token" in ok(auth_service, "stats").stdout


def test_audit_lists_a_ban_and_its_lifting_newest_first(auth_service):
    ok(auth_service, "users", "ban", "alice", "--reason", "audit test", SUDO_USER="admin-ann")
    ok(auth_service, "users", "unban", "alice", SUDO_USER="admin-ann")
    unbanned, banned = as_json(auth_service, "audit", "--limit", "2")
    assert {"kind": "operator", "event": "user_unbanned", "actor": "admin-ann", "user": "alice"}.items() <= (
        unbanned.items()
    )
    assert {"event": "user_banned", "outcome": "ok", "user": "alice", "reason": "audit test"}.items() <= banned.items()
    assert unbanned["ts"] >= banned["ts"]
    lines = ok(auth_service, "audit", "--limit", "2").stdout.splitlines()
    assert lines[0].split()[:2] == ["TIME", "KIND"]
    assert "user_unbanned" in lines[1] and "user_banned" in lines[2]
