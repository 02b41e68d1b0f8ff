"""Registration, token and authorization endpoints are rate-limited per client IP: 429 with Retry-After."""

import pytest

from tests.harness.oauthflow import REDIRECT, api, authorize_url, pkce, register


@pytest.fixture
def limited(auth_factory, redis_factory):
    redis = redis_factory()
    return auth_factory(
        redis_url=redis.url,
        env={
            "AUTH_RATELIMIT_REGISTER": "3/minute",
            "AUTH_RATELIMIT_TOKEN": "3/minute",
            "AUTH_RATELIMIT_AUTHORIZE": "3/minute",
        },
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/register", {"json": {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}}),
        ("POST", "/token", {"data": {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "y"}}),
        ("GET", "/authorize", {"params": {"client_id": "nope"}}),
    ],
)
def test_the_fourth_request_in_a_minute_gets_429_with_retry_after(limited, method, path, kwargs):
    with api(limited) as http:
        statuses = [http.request(method, path, **kwargs).status_code for _ in range(3)]
        assert 429 not in statuses
        refused = http.request(method, path, **kwargs)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"


def test_answers_that_are_not_refusals_carry_no_retry_after(auth_service, browser):
    """Retry-After tells a client to wait before trying again (RFC 9110 section 10.2.3): on a 201
    registration or a 200 consent page it would make a well-behaved client hold back for nothing.
    The X-RateLimit-* headers stay, so a client can pace itself before it is refused."""
    with api(auth_service) as http:
        registered = http.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
        refused_grant = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    _, challenge = pkce()
    consent_page = browser.open(authorize_url(auth_service, register(auth_service)["client_id"], challenge))
    assert registered.status_code == 201
    assert refused_grant.status_code in (400, 401)
    assert consent_page.is_consent_page
    for response in (registered, refused_grant, consent_page.response):
        assert "retry-after" not in response.headers, response.request.url
        assert int(response.headers["x-ratelimit-remaining"]) >= 0


def test_the_limit_is_per_client_ip_not_per_forwarded_header_from_a_direct_caller(limited):
    """A caller cannot reset its budget by inventing X-Forwarded-For values when one proxy hop is
    trusted: the service takes the address the trusted hop (Traefik) appended, here the last one."""
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    with api(limited) as http:
        for i in range(3):
            http.post("/register", json=body, headers={"X-Forwarded-For": f"10.0.0.{i}, 192.0.2.1"})
        refused = http.post("/register", json=body, headers={"X-Forwarded-For": "10.9.9.9, 192.0.2.1"})
    assert refused.status_code == 429
