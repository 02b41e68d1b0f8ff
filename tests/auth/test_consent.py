"""The consent page: names the client, its redirect host, the service and scopes; CSRF-protected,
not frameable; approve, deny, remembered per user and client."""

import re

from tests.harness.oauthflow import REDIRECT, api, authorize_url, get_code, pkce, register


def _consent_page(browser, auth_service, client, **overrides):
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, **overrides))
    assert outcome.is_consent_page, outcome.response.text[:300]
    return outcome.response


def test_the_page_names_client_redirect_host_service_and_scopes(browser, auth_service):
    client = register(auth_service, client_name="Acme Notes")
    page = _consent_page(browser, auth_service, client)
    assert "Acme Notes" in page.text
    assert "127.0.0.1" in page.text
    assert "https://time.example.test/mcp" in page.text
    assert ">mcp<" in page.text
    assert 'id="localhost-warning"' in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_no_localhost_warning_for_an_https_client(browser, auth_service):
    client = register(auth_service, redirect_uris=["https://client.example.com/cb"], application_type="web")
    page = _consent_page(browser, auth_service, client, redirect_uri="https://client.example.com/cb")
    assert 'id="localhost-warning"' not in page.text
    assert "client.example.com" in page.text


def test_deny_sends_access_denied_with_state_and_iss(browser, auth_service):
    client = register(auth_service)
    page = _consent_page(browser, auth_service, client, state="deny-state")
    outcome = browser.consent(page, decision="deny")
    assert outcome.params == {
        "error": "access_denied",
        "error_description": "The user denied the request",
        "state": "deny-state",
        "iss": "https://auth.example.test",
    }


def test_consent_is_remembered_per_user_and_client(browser, auth_service, github):
    client = register(auth_service)
    _, challenge = pkce()
    get_code(browser, client["client_id"], challenge)
    github.reset_log()
    again = browser.open(authorize_url(auth_service, client["client_id"], challenge))
    assert not again.is_consent_page
    assert again.params["code"]
    assert github.requests("/login/oauth/authorize") == []  # the session knew the user
    # Another client still asks.
    other = register(auth_service)
    assert browser.open(authorize_url(auth_service, other["client_id"], challenge)).is_consent_page


def test_a_remembered_consent_does_not_follow_a_client_to_a_new_redirect_uri(browser, auth_service, github):
    """Attack: a client gets consent while it "only returns to this computer", then moves its
    redirect URI (RFC 7592 update) to a site it runs and sends the person a link: the remembered
    consent must not hand that site a code without asking."""
    client = register(auth_service)
    _, challenge = pkce()
    get_code(browser, client["client_id"], challenge)
    # Another loopback port is the same destination (RFC 8252 section 7.3): still remembered.
    again = browser.open(
        authorize_url(auth_service, client["client_id"], challenge, redirect_uri="http://127.0.0.1:40001/callback")
    )
    assert not again.is_consent_page and again.params["code"]
    evil = "https://evil.example/callback"
    with api(auth_service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
        update = http.put(
            f"/register/{client['client_id']}",
            json={
                "client_id": client["client_id"],
                "client_name": client["client_name"],
                "redirect_uris": [REDIRECT, evil],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            },
        )
        assert update.status_code == 200, update.text
    moved = browser.open(authorize_url(auth_service, client["client_id"], challenge, redirect_uri=evil))
    assert moved.is_consent_page, moved.location
    assert "evil.example" in moved.response.text


def test_consent_without_the_csrf_token_is_refused(browser, auth_service):
    client = register(auth_service)
    page = _consent_page(browser, auth_service, client)
    pending = re.search(r'name="pending" value="([^"]+)"', page.text).group(1)
    for form in (
        {"pending": pending, "decision": "approve"},
        {"pending": pending, "decision": "approve", "csrf": "forged"},
    ):
        outcome = browser.open(f"{auth_service.issuer}/consent", method="POST", data=form)
        assert outcome.location is None
        assert outcome.response.status_code == 400


def test_a_non_ascii_csrf_token_is_refused_not_a_server_error(browser, auth_service):
    """hmac.compare_digest raises TypeError on non-ASCII str: the comparison must not crash."""
    page = _consent_page(browser, auth_service, register(auth_service))
    pending = re.search(r'name="pending" value="([^"]+)"', page.text).group(1)
    outcome = browser.open(
        f"{auth_service.issuer}/consent",
        method="POST",
        data={"csrf": "é" * 32, "pending": pending, "decision": "approve"},
    )
    assert outcome.location is None
    assert outcome.response.status_code == 400
    assert "did not come from this site" in outcome.response.text


def test_consent_from_another_browser_session_is_refused(browser, auth_service, github):
    """Cross-site request forgery: the attacker's form carries the attacker's token, not the victim's."""
    from tests.harness.oauthflow import Browser

    client = register(auth_service)
    page = _consent_page(browser, auth_service, client)
    victim = Browser(auth_service, github)
    try:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        pending = re.search(r'name="pending" value="([^"]+)"', page.text).group(1)
        outcome = victim.open(
            f"{auth_service.issuer}/consent",
            method="POST",
            data={"csrf": csrf, "pending": pending, "decision": "approve"},
        )
        assert outcome.location is None and outcome.response.status_code == 400
    finally:
        victim.close()


def test_session_cookie_is_host_only_secure_httponly_lax(browser, auth_service):
    client = register(auth_service)
    _, challenge = pkce()
    response = browser._send("GET", authorize_url(auth_service, client["client_id"], challenge))
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-mcpgw=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
