"""Rate limits count a client, not an address it can change at will: an IPv6 client is its /64."""

from tests.harness.oauthflow import REDIRECT, api

BODY = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}


def test_addresses_of_one_ipv6_64_share_one_budget(auth_factory, redis_factory):
    """Attack: a host on IPv6 usually holds a whole /64 and can send each request from a new address;
    counted per address, the registration limit would not hold at all."""
    service = auth_factory(redis_url=redis_factory().url, env={"AUTH_RATELIMIT_REGISTER": "3/minute"})
    with api(service) as http:
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
