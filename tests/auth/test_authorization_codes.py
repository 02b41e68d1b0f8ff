"""Codes are single use, short-lived and bound to client, redirect URI, challenge and resource."""

import concurrent.futures

from tests.harness.oauthflow import FETCH, TIME, api, exchange, get_code, pkce, refresh, register, verify


def _code(browser, client, **overrides):
    verifier, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge, **overrides)
    return params, verifier


def test_the_redirect_carries_code_state_and_iss(browser, auth_service):
    client = register(auth_service)
    params, _ = _code(browser, client, state="opaque-Ä-state")
    assert params["code"]
    assert params["state"] == "opaque-Ä-state"
    assert params["iss"] == "https://auth.example.test"


def test_code_replay_is_refused_and_revokes_what_the_code_issued(browser, auth_service):
    client = register(auth_service)
    params, verifier = _code(browser, client)
    first = exchange(auth_service, client, params["code"], verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    replay = exchange(auth_service, client, params["code"], verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    assert refresh(auth_service, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_racing_exchanges_of_one_code_cannot_both_win(browser, auth_service):
    client = register(auth_service)
    params, verifier = _code(browser, client)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: exchange(auth_service, client, params["code"], verifier).status_code, range(4)))
    assert codes.count(200) <= 1
    assert codes.count(400) >= 3


def test_a_code_used_by_another_client_is_refused(browser, auth_service):
    victim, attacker = register(auth_service), register(auth_service)
    params, verifier = _code(browser, victim)
    response = exchange(auth_service, attacker, params["code"], verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # and the stolen code is dead for the victim too
    assert exchange(auth_service, victim, params["code"], verifier).status_code == 400


def test_redirect_uri_must_match_at_the_token_endpoint(browser, auth_service):
    client = register(auth_service, redirect_uris=["http://127.0.0.1:33418/callback", "http://127.0.0.1/other"])
    params, verifier = _code(browser, client)
    response = exchange(auth_service, client, params["code"], verifier, redirect_uri="http://127.0.0.1/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_the_resource_at_the_token_endpoint_must_be_the_authorized_one(browser, auth_service, github):
    github.set_user("alice")
    client = register(auth_service)
    params, verifier = _code(browser, client, resource=TIME)
    response = exchange(auth_service, client, params["code"], verifier, resource=FETCH)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_the_resource_is_required_at_the_token_endpoint(browser, auth_service):
    client = register(auth_service)
    params, verifier = _code(browser, client)
    response = exchange(auth_service, client, params["code"], verifier, resource=None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_codes_are_stored_hashed_with_a_lifetime_of_at_most_ten_minutes(browser, auth_service, redis_server):
    client = register(auth_service)
    params, _ = _code(browser, client)
    redis = redis_server.client()
    assert not list(redis.scan_iter(f"*{params['code']}*"))
    ttls = [redis.ttl(key) for key in redis.scan_iter("mcpgw:code:*")]
    assert ttls and all(0 < ttl <= 600 for ttl in ttls)


def test_token_response_shape_and_no_store(browser, auth_service):
    client = register(auth_service)
    params, verifier = _code(browser, client)
    response = exchange(auth_service, client, params["code"], verifier)
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"] == "mcp"
    assert body["refresh_token"]


def test_unknown_client_at_token_endpoint_is_invalid_client_401(auth_service):
    with api(auth_service) as http:
        response = http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": "x",
                "client_id": "nope",
                "code_verifier": "a" * 43,
                "redirect_uri": "http://127.0.0.1/cb",
                "resource": TIME,
            },
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_confidential_client_must_authenticate(browser, auth_service):
    client = register(auth_service, token_endpoint_auth_method="client_secret_basic")
    params, verifier = _code(browser, client)
    wrong = dict(client, client_secret="not-the-secret")
    response = exchange(auth_service, wrong, params["code"], verifier)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    public_attempt = dict(client, client_secret=None)
    assert exchange(auth_service, public_attempt, params["code"], verifier).status_code == 401


def test_a_client_that_omits_redirect_uri_with_one_registered_omits_it_at_the_token_endpoint(browser, auth_service):
    client = register(auth_service)
    params, verifier = _code(browser, client, redirect_uri=None)
    assert params["code"]
    response = exchange(auth_service, client, params["code"], verifier, redirect_uri=None)
    assert response.status_code == 200, response.text


def test_one_consent_yields_one_code(browser, auth_service):
    import re

    client = register(auth_service)
    _, challenge = pkce()
    from tests.harness.oauthflow import authorize_url

    page = browser.open(authorize_url(auth_service, client["client_id"], challenge)).response
    first = browser.consent(page)
    assert first.params["code"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    pending = re.search(r'name="pending" value="([^"]+)"', page.text).group(1)
    again = browser.open(
        f"{auth_service.issuer}/consent", method="POST", data={"csrf": csrf, "pending": pending, "decision": "approve"}
    )
    assert again.location is None and again.response.status_code == 400
