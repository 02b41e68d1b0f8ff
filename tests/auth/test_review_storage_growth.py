"""What Redis keeps: the per-client and per-user grant indexes hold live grants only, so a client
that authorizes for ever (one metadata-document client serves every user) does not grow a key for ever."""

import time

import httpx
import redis

from tests.auth.oauthflow import Browser, get_code, pkce, register, tokens_for, verify


def _members(client: redis.Redis, pattern: str) -> dict[str, int]:
    """Member counts of the set-like keys matching `pattern` (whatever the storage format)."""
    sizes = {}
    for key in client.scan_iter(pattern):
        kind = client.type(key)
        if kind in ("set", "zset"):
            sizes[key] = client.zcard(key) if kind == "zset" else client.scard(key)
            assert client.ttl(key) > 0, f"{key} has no lifetime"
    return sizes


def test_grant_indexes_drop_grants_that_expired(auth_factory, redis_factory, github):
    store = redis_factory()
    service = auth_factory(redis_url=store.url, env={"AUTH_CODE_TTL": "10"})
    client = register(service)
    browser = Browser(service, github)
    try:
        live = tokens_for(browser, client)  # exchanged: its grant lives on (refresh lifetime)
        for _ in range(3):  # codes never exchanged: their grants end with the codes
            assert "code" in get_code(browser, client["client_id"], pkce()[1])
        time.sleep(11)
        assert "code" in get_code(browser, client["client_id"], pkce()[1])
    finally:
        browser.close()
    r = redis.Redis.from_url(store.url, decode_responses=True)
    by_client = _members(r, f"mcpgw:*{client['client_id']}")
    by_user = _members(r, "mcpgw:*octocat")
    assert sum(by_client.values()) == 2, by_client  # the exchanged grant and the newest code's
    assert sum(by_user.values()) == 2, by_user
    assert verify(service, live["access_token"]).status_code == 200


def test_deleting_a_client_still_ends_a_grant_listed_by_the_previous_storage_format(
    auth_factory, redis_factory, github
):
    """Upgrade safety: an index written as a plain set by an earlier version is still honoured."""
    store = redis_factory()
    service = auth_factory(redis_url=store.url)
    client = register(service)
    browser = Browser(service, github)
    try:
        tokens = tokens_for(browser, client)
    finally:
        browser.close()
    r = redis.Redis.from_url(store.url, decode_responses=True)
    gids = set()
    for key in list(r.scan_iter(f"mcpgw:*{client['client_id']}")):
        if r.type(key) == "zset":
            gids |= set(r.zrange(key, 0, -1))
            r.delete(key)
    assert gids
    r.sadd(f"mcpgw:client-grants:{client['client_id']}", *gids)
    with httpx.Client(
        base_url=service.url, headers={"Host": "auth.example.test", "X-Forwarded-Proto": "https"}
    ) as http:
        response = http.delete(
            f"/register/{client['client_id']}",
            headers={"Authorization": f"Bearer {client['registration_access_token']}"},
        )
    assert response.status_code == 204
    assert verify(service, tokens["access_token"]).status_code == 401
