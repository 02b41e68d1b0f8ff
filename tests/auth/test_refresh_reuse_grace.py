"""A /token answer that never reached the client: the previous refresh token may be presented again,
briefly (AUTH_REFRESH_REUSE_GRACE), while its successor is unused. Otherwise reuse revokes the grant
(reuse after the successor was used: test_refresh_rotation.py)."""

import time
from contextlib import contextmanager

from tests.harness.oauthflow import Browser, refresh, register, tokens_for, verify


@contextmanager
def logged_in_with_grace(shared_services, github, seconds: str):
    """A service with AUTH_REFRESH_REUSE_GRACE=seconds, a registered client and its first tokens."""
    service = shared_services.get(env={"AUTH_REFRESH_REUSE_GRACE": seconds})
    browser = Browser(service, github)
    try:
        client = register(service)
        yield service, client, tokens_for(browser, client)
    finally:
        browser.close()


def test_a_retry_within_the_grace_gets_a_new_pair_and_voids_the_unclaimed_successor(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    lost = refresh(auth_service, client, tokens["refresh_token"])  # the answer the client never saw
    assert lost.status_code == 200
    retry = refresh(auth_service, client, tokens["refresh_token"])
    assert retry.status_code == 200, retry.text
    fresh = retry.json()
    assert fresh["refresh_token"] not in (tokens["refresh_token"], lost.json()["refresh_token"])
    assert verify(auth_service, fresh["access_token"]).status_code == 200
    # The successor nobody claimed is void, and presenting it is not taken for an attack...
    refused = refresh(auth_service, client, lost.json()["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    # ...so the grant goes on: the new pair works and rotates as usual.
    assert verify(auth_service, fresh["access_token"]).status_code == 200
    again = refresh(auth_service, client, fresh["refresh_token"])
    assert again.status_code == 200, again.text
    assert verify(auth_service, again.json()["access_token"]).status_code == 200


def test_repeated_retries_within_the_grace_keep_only_the_last_pair(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    issued = [refresh(auth_service, client, tokens["refresh_token"]).json()["refresh_token"] for _ in range(3)]
    assert len(set(issued)) == 3
    for void in issued[:2]:
        assert refresh(auth_service, client, void).status_code == 400
    assert refresh(auth_service, client, issued[2]).status_code == 200


def test_reuse_after_the_grace_revokes_the_grant(shared_services, github):
    with logged_in_with_grace(shared_services, github, "1") as (service, client, tokens):
        new = refresh(service, client, tokens["refresh_token"]).json()
        time.sleep(1.1)  # the grace (1 s, the least above none) and a margin: nothing to await but the clock
        reuse = refresh(service, client, tokens["refresh_token"])
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        assert refresh(service, client, new["refresh_token"]).json()["error"] == "invalid_grant"
        assert verify(service, new["access_token"]).status_code == 401


def test_a_grace_of_zero_treats_any_reuse_as_an_attack(shared_services, github):
    with logged_in_with_grace(shared_services, github, "0") as (service, client, tokens):
        new = refresh(service, client, tokens["refresh_token"]).json()
        assert refresh(service, client, tokens["refresh_token"]).status_code == 400
        assert refresh(service, client, new["refresh_token"]).status_code == 400
        assert verify(service, new["access_token"]).status_code == 401


def test_the_grace_does_not_cross_clients(browser, auth_service):
    """Another client presenting the previous token is refused, and that still revokes the grant."""
    victim, attacker = register(auth_service), register(auth_service)
    tokens = tokens_for(browser, victim)
    new = refresh(auth_service, victim, tokens["refresh_token"]).json()
    assert refresh(auth_service, attacker, tokens["refresh_token"]).status_code == 400
    assert refresh(auth_service, victim, new["refresh_token"]).status_code == 400
    assert verify(auth_service, new["access_token"]).status_code == 401
