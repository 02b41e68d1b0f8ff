"""Registration, token and authorization endpoints (and the consent form) are rate-limited per client:
429 with Retry-After. A client is its IP address, or its /64 on IPv6, as the one trusted hop saw it."""

import re

import pytest

from tests.harness.oauthflow import REDIRECT, Browser, api, authorize_url, pkce, register

BODY = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}


@pytest.fixture
def limited(shared_services):
    """Three requests a minute on each limited endpoint, and every counter at zero (an empty store)."""
    return shared_services.get(
        empty_store=True,
        env={
            "AUTH_RATELIMIT_REGISTER": "3/minute",
            "AUTH_RATELIMIT_TOKEN": "3/minute",
            "AUTH_RATELIMIT_AUTHORIZE": "3/minute",
        },
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/register", {"json": BODY}),
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
        registered = http.post("/register", json=BODY)
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
    with api(limited) as http:
        for i in range(3):
            http.post("/register", json=BODY, headers={"X-Forwarded-For": f"10.0.0.{i}, 192.0.2.1"})
        refused = http.post("/register", json=BODY, headers={"X-Forwarded-For": "10.9.9.9, 192.0.2.1"})
    assert refused.status_code == 429


def test_addresses_of_one_ipv6_64_share_one_budget(limited):
    """Attack: a host on IPv6 usually holds a whole /64 and can send each request from a new address;
    counted per address, the registration limit would not hold at all."""
    with api(limited) as http:
        # Traefik (the one trusted hop) appends the address it saw.
        statuses = [
            http.post("/register", json=BODY, headers={"X-Forwarded-For": f"2001:db8:1:2::{i:x}"}).status_code
            for i in range(1, 5)
        ]
        other = http.post("/register", json=BODY, headers={"X-Forwarded-For": "2001:db8:1:3::1"})
        v4 = http.post("/register", json=BODY, headers={"X-Forwarded-For": "192.0.2.7"})
    assert statuses[:3] == [201, 201, 201]
    assert statuses[3] == 429
    assert other.status_code == 201  # another /64 is another client
    assert v4.status_code == 201


def test_the_consent_form_is_rate_limited(limited, github):
    """Every approval stores the GitHub leg's state: the form is limited like /authorize."""
    client = register(limited)
    browser = Browser(limited, github)
    try:
        outcome = browser.open(authorize_url(limited, client["client_id"], pkce()[1]))
        assert outcome.is_consent_page
        csrf = re.search(r'name="csrf" value="([^"]+)"', outcome.response.text).group(1)
        statuses = []
        for _ in range(4):
            response = browser._send(
                "POST", f"{limited.issuer}/consent", {"csrf": csrf, "pending": "nope", "decision": "approve"}
            )
            statuses.append(response.status_code)
    finally:
        browser.close()
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3] == 429
