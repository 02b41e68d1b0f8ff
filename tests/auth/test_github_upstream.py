"""The upstream leg: GitHub (Enterprise URLs), state and PKCE, secret sent, allowlist at login; a
callback whose state is not this browser's is refused."""

import re
from urllib.parse import parse_qs, urlsplit

from tests.harness.oauthflow import Browser, authorize_url, get_code, pkce, register


def test_the_upstream_login_uses_state_pkce_and_the_client_secret(browser, auth_service, github):
    github.reset_log()
    client = register(auth_service)
    _, challenge = pkce()
    get_code(browser, client["client_id"], challenge)
    authorize = github.requests("/login/oauth/authorize")[-1]
    query = authorize["query"]
    assert query["client_id"] == github.client_id
    assert query["redirect_uri"] == "https://auth.example.test/callback"
    assert len(query["state"]) >= 32
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    token = github.requests("/login/oauth/access_token")[-1]
    assert token["form"]["client_secret"] == github.client_secret
    assert token["form"]["code_verifier"]
    assert github.requests("/api/v3/user")


def test_a_user_outside_the_allowlist_is_refused_at_login(browser, auth_service, github):
    github.add_users("mallory")
    github.set_user("mallory")
    client = register(auth_service)
    _, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge, state="m")
    assert params["error"] == "access_denied"
    assert params["state"] == "m" and params["iss"] == auth_service.issuer
    assert "code" not in params


def test_a_callback_with_a_foreign_state_is_refused(browser, auth_service, github):
    """Login CSRF: an attacker's GitHub callback URL opened in the victim's browser."""
    github.set_user(None)  # stop at GitHub's login page so the attacker can keep the callback
    attacker = Browser(auth_service, github)
    try:
        client = register(auth_service)
        _, challenge = pkce()
        outcome = attacker.open(authorize_url(auth_service, client["client_id"], challenge))
        outcome = attacker.consent(outcome.response)
        assert outcome.location is None  # GitHub's login page
        state = re.search(r'name="state" value="([^"]+)"', outcome.response.text)
        state = state.group(1) if state else parse_qs(urlsplit(attacker.history[-1]).query)["state"][0]
        victim_view = browser.open(f"{auth_service.issuer}/callback?code=anything&state={state}")
        assert victim_view.location is None
        assert victim_view.response.status_code == 400
    finally:
        attacker.close()


def test_a_non_ascii_upstream_state_is_refused_not_a_server_error(browser, auth_service):
    outcome = browser.open(authorize_url(auth_service, register(auth_service)["client_id"], pkce()[1]))
    assert outcome.is_consent_page
    csrf = re.search(r'name="csrf" value="([^"]+)"', outcome.response.text).group(1)
    pending = re.search(r'name="pending" value="([^"]+)"', outcome.response.text).group(1)
    # Approve, but stop before GitHub: the browser session now expects a GitHub state.
    response = browser._send(
        "POST", f"{auth_service.issuer}/consent", {"csrf": csrf, "pending": pending, "decision": "approve"}
    )
    assert response.status_code == 303 and response.headers["location"].startswith(browser.github.url)
    response = browser._send("GET", f"{auth_service.issuer}/callback?state=%C3%A9%C3%A9&code=x")
    assert response.status_code == 400
    assert "does not belong to this browser session" in response.text


def test_github_refusing_the_code_shows_an_error_page(browser, auth_service, github):
    client = register(auth_service)
    _, challenge = pkce()
    github.set_user(None)
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge))
    outcome = browser.consent(outcome.response)
    state = parse_qs(urlsplit(browser.history[-1]).query)["state"][0]
    failed = browser.open(f"{auth_service.issuer}/callback?code=not-a-real-code&state={state}")
    assert failed.location is None
    assert failed.response.status_code == 502
    assert "bad_verification_code" in failed.response.text


def test_cancelling_at_github_returns_access_denied_to_the_client(browser, auth_service, github):
    client = register(auth_service)
    _, challenge = pkce()
    github.set_user(None)
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, state="c"))
    outcome = browser.consent(outcome.response)
    state = parse_qs(urlsplit(browser.history[-1]).query)["state"][0]
    cancelled = browser.open(f"{auth_service.issuer}/callback?error=access_denied&state={state}")
    assert cancelled.params["error"] == "access_denied"
    assert cancelled.params["state"] == "c"
