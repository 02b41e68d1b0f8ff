"""/verify, Traefik's ForwardAuth: the challenges of PROTOCOL.md §1 and every bad token refused."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.harness.auth import write_rsa_key
from tests.harness.oauthflow import (
    FETCH,
    ISSUER,
    TIME,
    Browser,
    api,
    register,
    signed_by_service,
    tokens_for,
    verify,
)

PRM_TIME = "https://time.example.test/.well-known/oauth-protected-resource/mcp"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def service_key(auth_service):
    return serialization.load_pem_private_key(auth_service.signing_keys[0].read_bytes(), password=None)


def kid_of(auth_service) -> str:
    with api(auth_service) as http:
        return http.get("/jwks").json()["keys"][0]["kid"]


@pytest.fixture(scope="module")
def live(auth_service, github_stub):
    """A real token with its claims (from a full authorization), shared by the tests that only read it
    (a test that revokes its token authorizes on its own)."""
    github_stub.set_user("octocat")
    agent = Browser(auth_service, github_stub)
    try:
        client = register(auth_service)
        tokens = tokens_for(agent, client)
    finally:
        agent.close()
    return tokens, claims_of(tokens["access_token"]), client


def test_no_token_gets_401_with_an_absolute_resource_metadata_url(auth_service):
    response = verify(auth_service, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer scope="mcp", resource_metadata="{PRM_TIME}"'


def test_the_challenge_names_the_requested_host(auth_service):
    response = verify(auth_service, None, FETCH)
    assert (
        'resource_metadata="https://fetch.example.test/.well-known/oauth-protected-resource/mcp"'
        in (response.headers["www-authenticate"])
    )


def test_a_token_in_the_query_string_is_not_accepted(auth_service, live):
    tokens, _, _ = live
    response = verify(auth_service, None, uri=f"/mcp?access_token={tokens['access_token']}")
    assert response.status_code == 401


def test_a_valid_token_passes_with_the_identity_headers(auth_service, live):
    tokens, claims, client = live
    response = verify(auth_service, tokens["access_token"], uri="/mcp/sub?x=1")
    assert response.status_code == 200
    assert response.headers["x-auth-user"] == "octocat"
    assert response.headers["x-auth-client-id"] == client["client_id"]
    assert response.headers["x-auth-scope"] == "mcp"
    assert "authorization" not in {k.lower() for k in response.headers}
    assert claims["aud"] == TIME and claims["iss"] == ISSUER and claims["client_id"] == client["client_id"]
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == kid_of(auth_service)
    assert {"iat", "exp", "jti", "sub", "scope"} <= set(claims)


def test_a_path_outside_the_resource_is_not_this_resource(auth_service, live):
    tokens, _, _ = live
    assert verify(auth_service, tokens["access_token"], uri="/mcpx").status_code == 403


def _signed(auth_service, claims: dict, **header) -> str:
    return signed_by_service(auth_service, claims, **header)


def _refused(auth_service, token: str, resource: str = TIME) -> None:
    response = verify(auth_service, token, resource)
    assert response.status_code == 401, response.headers
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "resource_metadata=" in response.headers["www-authenticate"]


def test_expired_token_is_refused(auth_service, live):
    _, claims, _ = live
    _refused(auth_service, _signed(auth_service, dict(claims, iat=1000, nbf=1000, exp=int(time.time()) - 60)))


def test_token_from_another_issuer_is_refused(auth_service, live):
    _, claims, _ = live
    _refused(auth_service, _signed(auth_service, dict(claims, iss="https://evil.example.test")))


def test_tampered_token_is_refused(auth_service, live):
    tokens, claims, _ = live
    header, _, signature = tokens["access_token"].split(".")
    forged = b64(json.dumps(dict(claims, sub="alice", aud=FETCH)).encode())
    _refused(auth_service, f"{header}.{forged}.{signature}", FETCH)


def test_alg_none_is_refused(auth_service, live):
    _, claims, _ = live
    header = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid_of(auth_service)}).encode())
    _refused(auth_service, f"{header}.{b64(json.dumps(claims).encode())}.")


def test_hs256_signed_with_the_public_key_is_refused(auth_service, live):
    _, claims, _ = live
    public_pem = (
        service_key(auth_service)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid_of(auth_service)}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    _refused(auth_service, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("typ", ["JWT", "id_token+jwt", "application/jwt", None, "at+jwt2"])
def test_a_jwt_of_another_type_signed_with_the_gateway_key_is_refused(auth_service, live, typ):
    """Attack: an ID token, or any other JWT the gateway's key signed, passed off as an access token
    (RFC 9068 section 4: a resource server refuses every `typ` but `at+jwt`)."""
    _, claims, _ = live
    token = _signed(auth_service, claims, typ=typ)
    response = verify(auth_service, token)
    assert response.status_code == 401
    assert 'error_description="The token is not an access token"' in response.headers["www-authenticate"]
    _refused(auth_service, token)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_the_access_token_type_compares_case_insensitively_with_or_without_prefix(auth_service, live, typ):
    _, claims, _ = live
    assert verify(auth_service, _signed(auth_service, claims, typ=typ)).status_code == 200


def test_token_signed_by_an_unknown_key_is_refused(auth_service, live, tmp_path):
    _, claims, _ = live
    other = serialization.load_pem_private_key(write_rsa_key(tmp_path / "other.pem").read_bytes(), password=None)
    header = {"kid": kid_of(auth_service), "typ": "at+jwt"}
    _refused(auth_service, jwt.encode(claims, other, algorithm="RS256", headers=header))


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer", "x" * 5000])
def test_garbage_tokens_are_refused(auth_service, token):
    _refused(auth_service, token)


@pytest.mark.parametrize("spelling", ["padded", "standard alphabet"])
def test_a_valid_token_spelled_another_way_is_refused(auth_service, live, spelling):
    """A JWS segment is base64url without padding (RFC 7515 section 2). `<token>==` or the signature
    in standard base64 (`+`, `/`) decodes to the same bytes: accepted, one token would have many
    spellings that pass as it, each its own entry in the verify cache."""
    tokens, _, _ = live
    token = tokens["access_token"]
    header, payload, signature = token.split(".")
    if spelling == "padded":
        respelled = token + "=" * (-len(signature) % 4)
    else:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        if b"+" not in base64.b64encode(raw) and b"/" not in base64.b64encode(raw):
            pytest.skip("this signature has no character that differs between the two alphabets")
        respelled = f"{header}.{payload}.{base64.b64encode(raw).rstrip(b'=').decode()}"
    assert respelled != token
    assert verify(auth_service, token).status_code == 200
    _refused(auth_service, respelled)


def test_a_revoked_access_token_is_refused(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    with api(auth_service) as http:
        response = http.post("/revoke", data={"token": tokens["access_token"], "client_id": client["client_id"]})
    assert response.status_code == 200
    _refused(auth_service, tokens["access_token"])


def test_a_token_of_a_revoked_grant_is_refused_even_if_signed_correctly(auth_service, live):
    _, claims, _ = live
    _refused(auth_service, _signed(auth_service, dict(claims, gid="no-such-grant", jti="fresh")))


def test_missing_scope_gets_403_insufficient_scope(auth_service, live):
    _, claims, _ = live
    response = verify(auth_service, _signed(auth_service, dict(claims, scope="other", jti="scope-test")))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", error_description="The token lacks a required scope", '
        f'scope="mcp", resource_metadata="{PRM_TIME}"'
    )


def test_an_unknown_host_is_not_a_resource(auth_service, live):
    tokens, _, _ = live
    assert verify(auth_service, tokens["access_token"], "https://other.example.test/mcp").status_code == 403
    assert verify(auth_service, tokens["access_token"], "http://time.example.test/mcp").status_code == 403
