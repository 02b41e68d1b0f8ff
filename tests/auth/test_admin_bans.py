"""`mcp-gateway users ban`: a banned user is refused at refresh, at /verify (within the verify cache's
lifetime), and at login with a page saying so; the ban is listed and outlives a restart."""

import httpx

from tests.auth.admin_command import as_json, ok
from tests.harness.oauthflow import Browser, authorize_url, login_tokens, pkce, refresh, register, tokens_for, verify
from tests.harness.procs import wait_until


def _login_page(browser: Browser, client: dict) -> httpx.Response:
    _, challenge = pkce()
    outcome = browser.open(authorize_url(browser.service, client["client_id"], challenge))
    if outcome.is_consent_page:
        outcome = browser.consent(outcome.response)
    assert outcome.location is None, f"the client got an answer: {outcome.location}"
    return outcome.response


def test_a_banned_user_is_refused_at_refresh_verify_and_login_until_unbanned(auth_service, github):
    github.set_user("bob")
    client = register(auth_service)
    browser = Browser(auth_service, github)
    try:
        tokens = tokens_for(browser, client)
        banned = ok(auth_service, "users", "ban", "Bob", "--reason", "left the team")
        assert banned.stdout.strip() == "banned bob; revoked 1 grant(s)"
        try:
            answer = refresh(auth_service, client, tokens["refresh_token"])
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
            assert verify(auth_service, tokens["access_token"]).status_code == 401
            page = _login_page(browser, client)
            assert page.status_code == 403 and "banned" in page.text
            again = as_json(auth_service, "users", "ban", "bob")
            assert again == {"user": "bob", "changed": False, "grants_revoked": 0}
            listed = {u["login"]: u for u in as_json(auth_service, "users", "list")["users"]}
            assert listed["bob"]["banned"]["reason"] == "left the team" and listed["bob"]["grants"] == 0
        finally:
            assert as_json(auth_service, "users", "unban", "bob") == {"user": "bob", "changed": True}
        assert as_json(auth_service, "users", "unban", "bob")["changed"] is False
        fresh = Browser(auth_service, github)
        try:
            tokens_for(fresh, client)  # signs in again
        finally:
            fresh.close()
    finally:
        browser.close()


def test_verify_refuses_a_banned_users_token_within_the_cache_lifetime(shared_services, github):
    cached = shared_services.get(env={"AUTH_VERIFY_CACHE_MS": "1500"})
    github.set_user("bob")
    client = register(cached)
    tokens = login_tokens(cached, github, client)
    assert verify(cached, tokens["access_token"]).status_code == 200  # now in the cache
    ok(cached, "users", "ban", "bob")
    try:
        assert wait_until(lambda: verify(cached, tokens["access_token"]).status_code == 401, timeout=1.5 + 1.0)
        challenge = verify(cached, tokens["access_token"]).headers["WWW-Authenticate"]
        assert 'error_description="The user is banned"' in challenge
    finally:
        ok(cached, "users", "unban", "bob")


def test_a_ban_outlives_a_restart_of_the_service(auth_factory, redis_server, github):
    service = auth_factory(redis_url=redis_server.url_for(redis_server.claim_database()))
    github.set_user("bob")
    client = register(service)
    browser = Browser(service, github)
    try:
        tokens = tokens_for(browser, client)
        ok(service, "users", "ban", "bob")
        service.restart()
        assert refresh(service, client, tokens["refresh_token"]).status_code == 400
        assert verify(service, tokens["access_token"]).status_code == 401
        assert _login_page(browser, client).status_code == 403
        assert [u["login"] for u in as_json(service, "users", "list")["users"] if u["banned"]] == ["bob"]
    finally:
        browser.close()
