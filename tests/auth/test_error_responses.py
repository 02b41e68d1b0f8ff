"""Error answers as RFC 6749 section 5.2, RFC 7009 and RFC 7662 describe them, never cached."""

import pytest

from tests.harness.oauthflow import api, register


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"grant_type": "authorization_code", "code": "nope", "code_verifier": "x" * 43, "resource": "r"},
            "invalid_grant",
        ),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "invalid_request"),
    ],
)
def test_token_errors_are_json_and_never_cached(auth_service, form, error):
    client = register(auth_service)
    with api(auth_service) as http:
        response = http.post("/token", data={"client_id": client["client_id"], **form})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error


def test_a_failed_basic_authentication_is_401_with_a_basic_challenge(auth_service):
    """RFC 6749 section 5.2: a client that tried the Authorization header gets 401 and a matching
    WWW-Authenticate."""
    client = register(auth_service, token_endpoint_auth_method="client_secret_basic")
    with api(auth_service) as http:
        response = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": "x"},
            auth=(client["client_id"], "wrong-secret"),
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/revoke", "/introspect"])
def test_an_unsupported_token_type_hint_is_400_not_an_authentication_failure(auth_service, path):
    """RFC 7009 section 2.2.1 and RFC 6749 section 5.2: unsupported_token_type is a 400. A 401 tells
    the client its own credentials failed (and would need a WWW-Authenticate challenge)."""
    client = register(auth_service)
    with api(auth_service) as http:
        response = http.post(path, data={"token": "x", "token_type_hint": "id_token", "client_id": client["client_id"]})
        unknown = http.post(path, data={"token": "x", "client_id": client["client_id"]})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_token_type"
    assert response.headers["cache-control"] == "no-store"
    assert unknown.status_code == 200  # an unknown token is not an error (RFC 7009 section 2.2, RFC 7662)
