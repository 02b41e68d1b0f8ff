"""Browser clients (the MCP Inspector) may call the metadata, registration and token endpoints and the MCP
endpoint, through the gateway's own routing: Traefik's CORS middleware (traefik role) answers for them."""

import pytest

from tests.auth.gateway import resolve_test_names

# One gateway per worker session: under pytest-xdist (--dist loadgroup) the suite's gateway tests share a worker.
pytestmark = [pytest.mark.slow]

ALLOWED = {
    "authorization",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
}
# What a browser client must be able to read (PROTOCOL.md, MCP Inspector).
# A browser client must read its session, the challenge, and when to retry after a 429 or 503.
EXPOSED = {"mcp-session-id", "www-authenticate", "retry-after", "x-ratelimit-remaining"}


def _header_set(value: str) -> set[str]:
    return {h.strip().lower() for h in value.split(",")}


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("auth", "/.well-known/oauth-authorization-server"),
        ("time", "/.well-known/oauth-protected-resource/mcp"),
        ("auth", "/register"),
        ("auth", "/token"),
        ("auth", "/revoke"),
        ("auth", "/introspect"),
        ("auth", "/jwks"),
        ("time", "/mcp"),
    ],
)
def test_preflight_allows_the_mcp_headers(gateway, host, path):
    with resolve_test_names(), gateway.routing.client() as http:
        response = http.options(
            gateway.url(host, path),
            headers={
                "Origin": "https://inspector.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    # Traefik answers the pre-flight itself (200, no body), before authentication and before the service.
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert _header_set(response.headers["access-control-allow-headers"]) >= ALLOWED
    assert "post" in _header_set(response.headers["access-control-allow-methods"])


@pytest.mark.parametrize(("host", "path"), [("auth", "/.well-known/oauth-authorization-server"), ("time", "/mcp")])
def test_responses_carry_cors_headers_a_browser_can_read(gateway, host, path):
    with resolve_test_names(), gateway.routing.client() as http:
        response = http.get(gateway.url(host, path), headers={"Origin": "https://x.example"})
    # The metadata answers 200; the MCP endpoint without a token answers the 401 challenge, readable too.
    assert response.status_code == (200 if host == "auth" else 401)
    assert response.headers.get_list("access-control-allow-origin") == ["*"]
    assert _header_set(response.headers["access-control-expose-headers"]) >= EXPOSED


@pytest.mark.parametrize("path", ["/authorize", "/consent", "/callback"])
def test_the_pages_a_person_sees_cannot_be_read_cross_origin_with_their_session(gateway, path):
    # Attack: a page on another origin reads the consent or callback page with the person's cookies.
    with resolve_test_names(), gateway.routing.client() as http:
        response = http.get(gateway.url("auth", path), headers={"Origin": "https://evil.example"})
    assert response.headers.get("access-control-allow-origin") in (None, "*")
    assert "access-control-allow-credentials" not in response.headers
