"""The shortest complete story: register, authorize through consent and GitHub, get tokens, pass /verify."""

import jwt

from tests.harness.oauthflow import ISSUER, TIME, register, tokens_for, verify


def test_a_registered_client_gets_a_token_that_opens_the_service(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    assert tokens["token_type"] == "Bearer"
    response = verify(auth_service, tokens["access_token"])
    assert response.status_code == 200
    assert response.headers["X-Auth-User"] == "octocat"
    assert response.headers["X-Auth-Client-Id"] == client["client_id"]
    assert response.headers["X-Auth-Scope"] == "mcp"
    # What the client holds names this issuer and the MCP server it asked for (RFC 9068, RFC 8707).
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["aud"] == TIME
