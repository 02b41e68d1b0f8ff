"""Registrations, grants and refresh tokens survive a crash of the service and of Redis (AOF)."""

import pytest

from tests.auth.oauthflow import Browser, api, refresh, register, tokens_for, verify

pytestmark = pytest.mark.slow


def test_state_survives_killing_and_restarting_gunicorn_and_redis(auth_factory, redis_factory, github):
    redis = redis_factory()
    service = auth_factory(redis_url=redis.url)
    browser = Browser(service, github)
    try:
        client = register(service)
        confidential = register(service, token_endpoint_auth_method="client_secret_basic")
        tokens = tokens_for(browser, client)
        other_tokens = tokens_for(browser, confidential)

        service.kill()
        redis.kill()
        redis.start()
        service.start()

        with api(service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
            assert http.get(f"/register/{client['client_id']}").status_code == 200
        assert verify(service, tokens["access_token"]).status_code == 200
        rotated = refresh(service, client, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert refresh(service, confidential, other_tokens["refresh_token"]).status_code == 200
        # Rotation state survived too: once the successor is used, the pre-crash token is spent for
        # good, and reusing it ends the grant.
        newest = refresh(service, client, rotated.json()["refresh_token"])
        assert newest.status_code == 200, newest.text
        assert refresh(service, client, tokens["refresh_token"]).status_code == 400
        assert verify(service, newest.json()["access_token"]).status_code == 401
    finally:
        browser.close()
