"""Browser clients (the MCP Inspector) may call the metadata, registration and token endpoints."""

import pytest

from tests.harness.oauthflow import api

ALLOWED = {
    "authorization",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
}


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/mcp",
        "/register",
        "/token",
        "/revoke",
        "/introspect",
        "/jwks",
    ],
)
def test_preflight_allows_the_mcp_headers(auth_service, path):
    with api(auth_service, host="time.example.test" if "protected" in path else None) as http:
        response = http.options(
            path,
            headers={
                "Origin": "https://inspector.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert allowed >= ALLOWED
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"mcp-session-id", "www-authenticate", "retry-after", "x-ratelimit-remaining"} <= exposed


def test_simple_responses_carry_cors_headers(auth_service):
    with api(auth_service) as http:
        response = http.get("/.well-known/oauth-authorization-server", headers={"Origin": "https://x.example"})
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ["/authorize", "/consent", "/callback"])
def test_the_pages_a_person_sees_are_not_cross_origin(auth_service, path):
    with api(auth_service) as http:
        response = http.get(path, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
