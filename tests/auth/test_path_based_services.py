"""Several MCP services under one hostname (`<domain>/time/mcp`, `<domain>/fetch/mcp`)."""

import pytest

from tests.harness.oauthflow import Browser, api, register, tokens_for, verify

TIME = "https://gw.example.test/time/mcp"
FETCH = "https://gw.example.test/fetch/mcp"
ALPHA = "https://x.example.test/alpha/mcp"
BETA = "https://x.example.test/beta/mcp"
# Two hosts with two services under each.
RESOURCES = [
    {"name": "time", "resource": TIME},
    {"name": "fetch", "resource": FETCH},
    {"name": "alpha", "resource": ALPHA},
    {"name": "beta", "resource": BETA},
]


@pytest.fixture
def path_service(shared_services):
    return shared_services.get(resources=RESOURCES)


def test_each_service_has_its_path_inserted_metadata_and_the_root_is_ambiguous(path_service):
    with api(path_service, host="gw.example.test") as http:
        assert http.get("/.well-known/oauth-protected-resource/time/mcp").json()["resource"] == TIME
        assert http.get("/.well-known/oauth-protected-resource/fetch/mcp").json()["resource"] == FETCH
        assert http.get("/.well-known/oauth-protected-resource").status_code == 404


def test_challenges_and_audiences_follow_the_path(path_service, github):
    challenge = verify(path_service, None, FETCH).headers["www-authenticate"]
    assert 'resource_metadata="https://gw.example.test/.well-known/oauth-protected-resource/fetch/mcp"' in challenge
    agent = Browser(path_service, github)
    try:
        tokens = tokens_for(agent, register(path_service), resource=TIME)
    finally:
        agent.close()
    assert verify(path_service, tokens["access_token"], TIME).status_code == 200
    assert verify(path_service, tokens["access_token"], FETCH).status_code == 401


@pytest.fixture(scope="module")
def alpha_token(shared_services, github_stub):
    """The service with two resources under each host, and a token for alpha only."""
    service = shared_services.get(resources=RESOURCES)
    github_stub.set_user("octocat")
    agent = Browser(service, github_stub)
    try:
        tokens = tokens_for(agent, register(service), resource=ALPHA)
    finally:
        agent.close()
    return service, tokens["access_token"]


TRAVERSALS = [
    "/alpha/mcp/../../beta/mcp",
    "/alpha/mcp/%2e%2e/%2e%2e/beta/mcp",
    "/alpha/mcp/%2E%2E/%2E%2E/beta/mcp",
    "/alpha/mcp/.%2E/.%2E/beta/mcp",
    "/alpha/mcp/%2e./%2e./beta/mcp",
    "/alpha/mcp/..;/..;/beta/mcp",
    "/alpha/mcp;x=1/../../beta/mcp",
    "/alpha/mcp/;/beta/mcp",
    "/alpha/mcp/..%2f..%2fbeta/mcp",
    "/alpha/mcp/..%2F..%2Fbeta/mcp",
    "/alpha/mcp/%2f..%2f..%2fbeta%2fmcp",
    "/alpha/mcp/..%5c..%5cbeta/mcp",
    "/alpha/mcp/..\\..\\beta/mcp",
    "/alpha/mcp/%252e%252e/%252e%252e/beta/mcp",
    "/alpha/mcp/./../../beta/mcp",
    "/alpha/mcp//../beta/mcp",
    "/alpha/mcp//beta/mcp",
    "/alpha/mcp/.",
    "/alpha/mcp/..?next=/beta/mcp",
    "/alpha/mcp/%00/../beta/mcp",
    "/alpha/mcp/#/../../beta/mcp",
]


@pytest.mark.parametrize("uri", TRAVERSALS)
def test_a_token_for_one_path_cannot_reach_another_by_path_tricks(alpha_token, uri):
    """Attack: a token for /alpha/mcp presented for a path that a server behind Traefik could resolve
    to /beta/mcp. Refused with 400 invalid_request before any token check, with or without a token."""
    service, token = alpha_token
    for bearer in (token, None):
        response = verify(service, bearer, ALPHA, uri=uri)
        assert response.status_code == 400, (uri, response.status_code, response.headers)
        body = response.json()
        assert body["error"] == "invalid_request" and body["error_description"].startswith("The request path")
        assert "www-authenticate" not in response.headers and "x-auth-user" not in response.headers


@pytest.mark.parametrize("uri", ["/alpha/mcp", "/alpha/mcp/", "/alpha/mcp/sub.json", "/alpha/mcp?x=../..%2f"])
def test_plain_paths_under_the_resource_still_pass(alpha_token, uri):
    service, token = alpha_token
    assert verify(service, token, ALPHA, uri=uri).status_code == 200
    assert verify(service, token, BETA, uri="/beta/mcp").status_code == 401
