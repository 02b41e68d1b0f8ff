"""PKCE with S256 is required of every client, public or confidential."""

import pytest

from tests.harness.oauthflow import authorize_url, exchange, get_code, pkce, register


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge": "short"},
    ],
    ids=["missing", "method-missing-means-plain", "plain", "malformed"],
)
@pytest.mark.parametrize("auth_method", ["none", "client_secret_basic"])
def test_authorization_without_s256_is_refused_back_to_the_client(browser, auth_service, overrides, auth_method):
    client = register(auth_service, token_endpoint_auth_method=auth_method)
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge, state="s-1", **overrides))
    params = outcome.params
    assert params["error"] == "invalid_request"
    assert params["state"] == "s-1"
    assert params["iss"] == auth_service.issuer
    assert "code" not in params


def test_wrong_code_verifier_is_refused(browser, auth_service):
    client = register(auth_service)
    _, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge)
    other_verifier, _ = pkce()
    response = exchange(auth_service, client, params["code"], other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth_method", ["none", "client_secret_post"])
def test_missing_code_verifier_is_refused(browser, auth_service, auth_method):
    client = register(auth_service, token_endpoint_auth_method=auth_method)
    _, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge)
    response = exchange(auth_service, client, params["code"], None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
