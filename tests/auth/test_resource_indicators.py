"""RFC 8707: a token is for one resource, and only the resources this gateway serves."""

import pytest

from tests.harness.oauthflow import FETCH, TIME, authorize_url, pkce, register, tokens_for, verify


@pytest.mark.parametrize("resource", [None, "https://evil.example.test/mcp", "https://time.example.test/mcp/", ""])
def test_authorization_without_a_served_resource_is_invalid_target(browser, auth_service, resource):
    client = register(auth_service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, resource=resource, state="q"))
    assert outcome.params["error"] == "invalid_target"
    assert outcome.params["state"] == "q"


def test_two_resources_at_once_are_refused(browser, auth_service):
    client = register(auth_service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, resource=[TIME, FETCH]))
    assert outcome.params["error"] == "invalid_target"


def test_a_token_for_service_a_is_refused_by_service_b(browser, auth_service, github):
    github.set_user("alice")  # alice may use both services
    client = register(auth_service)
    tokens = tokens_for(browser, client, resource=TIME)
    assert verify(auth_service, tokens["access_token"], TIME).status_code == 200
    refused = verify(auth_service, tokens["access_token"], FETCH)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert (
        'resource_metadata="https://fetch.example.test/.well-known/oauth-protected-resource/mcp"'
        in (refused.headers["www-authenticate"])
    )


def test_a_per_service_allowlist_narrows_the_global_one(browser, auth_service, github):
    github.set_user("octocat")  # allowed globally, not on fetch
    client = register(auth_service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, resource=FETCH))
    if outcome.is_consent_page:
        outcome = browser.consent(outcome.response)
    assert outcome.params["error"] == "access_denied"
    assert "code" not in outcome.params


@pytest.mark.parametrize("scope", ["admin", "mcp admin", "openid"])
def test_unknown_scopes_are_invalid_scope(browser, auth_service, scope):
    client = register(auth_service)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, scope=scope, state="sc"))
    assert outcome.params["error"] == "invalid_scope"
    assert outcome.params["state"] == "sc" and outcome.params["iss"] == auth_service.issuer


def test_no_scope_means_the_default_scope(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client, scope=None)
    assert tokens["scope"] == "mcp"
