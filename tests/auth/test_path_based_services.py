"""Several MCP services under one hostname (`<domain>/time/mcp`, `<domain>/fetch/mcp`)."""

import pytest

from tests.auth.oauthflow import Browser, api, register, tokens_for, verify

TIME = "https://gw.example.test/time/mcp"
FETCH = "https://gw.example.test/fetch/mcp"


@pytest.fixture
def path_service(auth_factory):
    return auth_factory(resources=[{"name": "time", "resource": TIME}, {"name": "fetch", "resource": FETCH}])


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
