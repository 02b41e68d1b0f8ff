"""Exact redirect URI matching (loopback ports aside) and no open redirect."""

import pytest

from tests.harness.oauthflow import authorize_url, get_code, pkce, register


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        "http://localhost.evil.com:33418/callback",
        "http://127.0.0.1:33418/callback/extra",
        "http://127.0.0.1:33418/callback?x=1",
        "http://evil@127.0.0.1:33418/callback",
        "http://127.0.0.1:33418/callback#frag",
        "https://127.0.0.1:33418/callback",
        "javascript:alert(1)",
        # userinfo and backslash tricks: browsers and URL parsers disagree on the host of these
        "http://127.0.0.1:33418@evil.example/callback",
        "http://127.0.0.1:33418\\@evil.example/callback",
        "http://evil.example\\@127.0.0.1:33418/callback",
        "http://127.0.0.1%2F@evil.example/callback",
        # another loopback host is another redirect URI (only the port may vary)
        "http://[::1]:33418/callback",
        "http://localhost:33418/callback",
    ],
)
def test_an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(browser, auth_service, redirect_uri):
    client = register(auth_service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, redirect_uri=redirect_uri))
    assert outcome.location is None
    assert outcome.response.status_code == 400
    assert "location" not in outcome.response.headers


def test_loopback_redirect_uris_match_on_any_port(browser, auth_service):
    client = register(auth_service, redirect_uris=["http://127.0.0.1/callback"])
    _, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge, redirect_uri="http://127.0.0.1:51234/callback")
    assert params["code"]


def test_https_redirect_uris_match_exactly(browser, auth_service):
    client = register(auth_service, redirect_uris=["https://client.example.com/cb"], application_type="web")
    _, challenge = pkce()
    outcome = browser.open(
        authorize_url(auth_service, client["client_id"], challenge, redirect_uri="https://client.example.com:8443/cb")
    )
    assert outcome.location is None and outcome.response.status_code == 400


def test_an_unknown_client_gets_invalid_client_and_no_redirect(browser, auth_service):
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, "no-such-client", challenge))
    assert outcome.location is None
    assert outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
