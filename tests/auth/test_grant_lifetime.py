"""A grant lives as long as the tokens issued from it, also for clients that get no refresh token.

The service (`short_lived`) keeps codes 10 s and access tokens 30 s, the least the settings allow: a
token issued to a client without the refresh_token grant must keep working after the code's life has
passed, until its own expiry.
"""

import time

import jwt
import pytest

from tests.auth.cimd_server import CimdServer, document, send_json
from tests.auth.conftest import ACCESS_TTL, CODE_TTL
from tests.harness.oauthflow import REDIRECT, Browser, api, exchange, get_code, pkce, verify


@pytest.fixture(scope="module")
def documents(test_ca):
    routes = {"/no-refresh.json": lambda h, url: send_json(h, document(url, [REDIRECT]))}
    server = CimdServer(test_ca.issue("localhost", "127.0.0.1", stem="cimd-lifetime"), routes)
    try:
        yield server
    finally:
        server.stop()


def _token_without_refresh(service, github, client: dict) -> str:
    agent = Browser(service, github)
    try:
        verifier, challenge = pkce()
        params = get_code(agent, client["client_id"], challenge)
    finally:
        agent.close()
    response = exchange(service, client, params["code"], verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body and body["expires_in"] == ACCESS_TTL
    return body["access_token"]


def _sleep_until(moment: float) -> None:
    # Expiry is the behaviour under test: nothing to wait for but the clock.
    time.sleep(max(0.0, moment - time.time()))


def test_clients_without_refresh_token_keep_their_token_for_its_whole_life(short_lived, github, documents):
    """Two such clients, their tokens watched over the same wait: one registered without
    `grant_types` (RFC 7591: `authorization_code` only, so no refresh token), and a metadata-document
    client whose document lists no refresh_token grant."""
    body = {
        "client_name": "No refresh",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    with api(short_lived) as http:
        registered = http.post("/register", json=body)
    assert registered.status_code == 201, registered.text
    assert registered.json()["grant_types"] == ["authorization_code"]
    document_client = {"client_id": documents.url("/no-refresh.json")}
    tokens = {
        "registered": _token_without_refresh(short_lived, github, registered.json()),
        "metadata document": _token_without_refresh(short_lived, github, document_client),
    }
    claims = {name: jwt.decode(token, options={"verify_signature": False}) for name, token in tokens.items()}

    _sleep_until(max(c["iat"] for c in claims.values()) + CODE_TTL + 2)
    for name, token in tokens.items():
        assert verify(short_lived, token).status_code == 200, f"{name}: refused once the code's life had passed"
    _sleep_until(min(c["exp"] for c in claims.values()) - 3)
    for name, token in tokens.items():
        assert verify(short_lived, token).status_code == 200, f"{name}: refused before its own expiry"
