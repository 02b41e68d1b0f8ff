"""A grant lives as long as the tokens issued from it, also for clients that get no refresh token.

The service below keeps codes 10 s and access tokens 30 s: a token issued to a client without the
refresh_token grant must keep working after the code's life has passed, until its own expiry.
"""

import time

import jwt
import pytest

from tests.auth.cimd_server import CimdServer, document, send_json
from tests.harness.oauthflow import REDIRECT, Browser, api, exchange, get_code, pkce, verify

CODE_TTL = 10
ACCESS_TTL = 30


@pytest.fixture
def short_lived(auth_factory, test_ca):
    return auth_factory(
        test_mode=True,
        env={
            "AUTH_CODE_TTL": str(CODE_TTL),
            "AUTH_ACCESS_TOKEN_TTL": str(ACCESS_TTL),
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(test_ca.cert_path),
        },
    )


@pytest.fixture
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


def _works_until_its_own_expiry(service, token: str) -> None:
    issued = jwt.decode(token, options={"verify_signature": False})
    time.sleep(max(0.0, issued["iat"] + CODE_TTL + 2 - time.time()))
    assert verify(service, token).status_code == 200, "refused once the code's life had passed"
    time.sleep(max(0.0, issued["exp"] - 3 - time.time()))
    assert verify(service, token).status_code == 200, "refused before its own expiry"


def test_a_client_registered_without_grant_types_keeps_its_token_for_its_whole_life(short_lived, github):
    """RFC 7591: no `grant_types` means `authorization_code` only, so no refresh token."""
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
    _works_until_its_own_expiry(short_lived, _token_without_refresh(short_lived, github, registered.json()))


def test_a_metadata_document_client_without_refresh_token_keeps_its_token_for_its_whole_life(
    short_lived, github, documents
):
    client = {"client_id": documents.url("/no-refresh.json")}
    _works_until_its_own_expiry(short_lived, _token_without_refresh(short_lived, github, client))
