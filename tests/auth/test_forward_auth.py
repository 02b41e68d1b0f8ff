"""/verify, Traefik's ForwardAuth: the challenges of PROTOCOL.md §1 and every bad token refused."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.auth import write_rsa_key
from tests.harness.oauthflow import (
    FETCH,
    ISSUER,
    TIME,
    Browser,
    api,
    login_tokens,
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


# -- The verify cache: a grant checked once is answered from memory for a while (AUTH_VERIFY_CACHE_MS),
# before Flask, with exactly the answer and counts of the whole check; anything else still gets the whole check.

CACHE_TEN_SECONDS = {"AUTH_VERIFY_CACHE_MS": "10000"}  # the longest allowed


def _checks(service, token: str | None, requests: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """(method, resource, X-Forwarded-Uri) checks on one keep-alive connection, so one gunicorn worker
    (one cache) answers them all."""
    answers = []
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for method, resource, uri in requests:
            parts = urlsplit(resource)
            headers = {"X-Forwarded-Proto": parts.scheme, "X-Forwarded-Host": parts.netloc, "X-Forwarded-Uri": uri}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            answers.append(http.request(method, "/verify", headers=headers))
    return answers


def _samples(service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, [(k, v) for k, v in response.headers.multi_items() if k != "date"], response.content


def test_a_cached_grant_is_answered_exactly_as_the_whole_check_answered_it(shared_services, github):
    service = shared_services.get(env=CACHE_TEN_SECONDS)
    token = login_tokens(service, github, register(service))["access_token"]
    first, *cached = _checks(service, token, [("GET", TIME, "/mcp")] * 4)
    assert first.status_code == 200 and first.headers["x-auth-user"] == "octocat"
    assert all(_answer(again) == _answer(first) for again in cached)
    # Traefik forwards the checked request's method: each is granted from the cache alike (HEAD without a body).
    for method in ("POST", "DELETE", "HEAD", "OPTIONS"):
        whole, again = _checks(service, token, [(method, TIME, "/mcp")] * 2)
        assert _answer(whole)[:2] == _answer(again)[:2] == _answer(first)[:2]


def test_a_cached_grant_gives_nothing_to_a_bad_path_another_resource_or_a_spoofed_scheme(shared_services, github):
    """A token whose grant is in the cache, sent where the whole check refuses it: still refused, each
    with the refusal the whole check gives (the cache is keyed by resource and consulted after the path)."""
    service = shared_services.get(env=CACHE_TEN_SECONDS)
    token = login_tokens(service, github, register(service))["access_token"]
    granted, bad_path, smuggled, other_host, plain_http, fetch, outside, another = _checks(
        service,
        token,
        [
            ("GET", TIME, "/mcp"),
            ("GET", TIME, "/mcp/../admin"),
            ("GET", TIME, "/mcp/%2e%2e/admin"),
            ("GET", "https://other.example.test/mcp", "/mcp"),
            ("GET", "http://time.example.test/mcp", "/mcp"),
            ("GET", FETCH, "/mcp"),
            ("GET", TIME, "/elsewhere"),
            ("GET", TIME, "/mcp"),
        ],
    )
    assert granted.status_code == 200 and another.status_code == 200
    assert bad_path.status_code == 400 and bad_path.json()["error"] == "invalid_request"
    assert smuggled.status_code == 400
    assert other_host.status_code == 403 and plain_http.status_code == 403
    assert other_host.json() == {"error": "unknown_resource"}
    # Another resource is another cache entry, and the token's audience is time, not fetch.
    assert fetch.status_code == 401 and "not valid for this resource" in fetch.headers["www-authenticate"]
    assert outside.status_code == 403
    assert all("x-auth-user" not in r.headers for r in (bad_path, smuggled, other_host, plain_http, fetch, outside))
    refused = _checks(service, None, [("GET", TIME, "/mcp")])[0]
    assert refused.status_code == 401 and 'error="' not in refused.headers["www-authenticate"]
    tampered = _checks(service, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), [("GET", TIME, "/mcp")])[0]
    assert tampered.status_code == 401


def test_cached_grants_are_counted_as_the_whole_check_counts_them(shared_services, github):
    service = shared_services.get(env=CACHE_TEN_SECONDS)
    token = login_tokens(service, github, register(service))["access_token"]
    _checks(service, token, [("GET", TIME, "/mcp")])  # in the cache of one worker at least
    before = _samples(service)
    answers = _checks(service, token, [("GET", TIME, "/mcp")] * 5 + [("POST", TIME, "/mcp")] * 3)
    assert [r.status_code for r in answers] == [200] * 8
    after = _samples(service)

    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert added("mcpgw_auth_verify_total", outcome="allowed") == 8
    assert added("mcpgw_auth_http_requests_total", endpoint="/verify", method="GET", status="200") == 5
    assert added("mcpgw_auth_http_requests_total", endpoint="/verify", method="POST", status="200") == 3
