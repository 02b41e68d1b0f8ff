"""Hostile input on the pages a person reaches answers 4xx, never 5xx."""

import re

from tests.harness.oauthflow import Browser, authorize_url, pkce, register


def _consent_page(browser: Browser):
    client = register(browser.service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(browser.service, client["client_id"], challenge))
    assert outcome.is_consent_page
    page = outcome.response.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    pending = re.search(r'name="pending" value="([^"]+)"', page).group(1)
    return csrf, pending


def test_a_non_ascii_csrf_token_is_refused_not_a_server_error(browser):
    """hmac.compare_digest raises TypeError on non-ASCII str: the comparison must not crash."""
    _, pending = _consent_page(browser)
    outcome = browser.open(
        f"{browser.service.issuer}/consent",
        method="POST",
        data={"csrf": "é" * 32, "pending": pending, "decision": "approve"},
    )
    assert outcome.location is None
    assert outcome.response.status_code == 400
    assert "did not come from this site" in outcome.response.text


def test_a_non_ascii_upstream_state_is_refused_not_a_server_error(browser):
    csrf, pending = _consent_page(browser)
    # Approve, but stop before GitHub: the browser session now expects a GitHub state.
    response = browser._send(
        "POST", f"{browser.service.issuer}/consent", {"csrf": csrf, "pending": pending, "decision": "approve"}
    )
    assert response.status_code == 303 and response.headers["location"].startswith(browser.github.url)
    response = browser._send("GET", f"{browser.service.issuer}/callback?state=%C3%A9%C3%A9&code=x")
    assert response.status_code == 400
    assert "does not belong to this browser session" in response.text
