"""What Redis keeps is bounded: the per-client and per-user grant indexes hold live grants only, so a
client that authorizes for ever (one metadata-document client serves every user) does not grow a key
for ever; a registration nobody uses is dropped within a day."""

import httpx
import redis

from tests.auth.conftest import CODE_TTL
from tests.harness.oauthflow import Browser, api, get_code, pkce, register, tokens_for, verify
from tests.harness.procs import wait_until


def _members(client: redis.Redis, pattern: str) -> dict[str, int]:
    """Member counts of the set-like keys matching `pattern` (whatever the storage format)."""
    sizes = {}
    for key in client.scan_iter(pattern):
        kind = client.type(key)
        if kind in ("set", "zset"):
            sizes[key] = client.zcard(key) if kind == "zset" else client.scard(key)
            assert client.ttl(key) > 0, f"{key} has no lifetime"
    return sizes


def test_grant_indexes_drop_grants_that_expired(short_lived, github):
    client = register(short_lived)
    r = redis.Redis.from_url(short_lived.env["AUTH_REDIS_URL"], decode_responses=True)  # its own, empty
    browser = Browser(short_lived, github)
    try:
        live = tokens_for(browser, client)  # exchanged: its grant lives on (refresh lifetime)
        for _ in range(3):  # codes never exchanged: their grants end with the codes
            assert "code" in get_code(browser, client["client_id"], pkce()[1])
        assert wait_until(lambda: len(list(r.scan_iter("mcpgw:grant:*"))) == 1, timeout=CODE_TTL + 10, interval=0.2)
        assert "code" in get_code(browser, client["client_id"], pkce()[1])
    finally:
        browser.close()
    by_client = _members(r, f"mcpgw:*{client['client_id']}")
    by_user = _members(r, "mcpgw:*octocat")
    assert sum(by_client.values()) == 2, by_client  # the exchanged grant and the newest code's
    assert sum(by_user.values()) == 2, by_user
    assert verify(short_lived, live["access_token"]).status_code == 200


def test_deleting_a_client_still_ends_a_grant_listed_by_the_previous_storage_format(
    auth_service, redis_server, browser
):
    """Upgrade safety: an index written as a plain set by an earlier version is still honoured."""
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    gids = set()
    for key in list(r.scan_iter(f"mcpgw:*{client['client_id']}")):  # this client's keys only
        if r.type(key) == "zset":
            gids |= set(r.zrange(key, 0, -1))
            r.delete(key)
    assert gids
    r.sadd(f"mcpgw:client-grants:{client['client_id']}", *gids)
    with httpx.Client(
        base_url=auth_service.url, headers={"Host": "auth.example.test", "X-Forwarded-Proto": "https"}
    ) as http:
        response = http.delete(
            f"/register/{client['client_id']}",
            headers={"Authorization": f"Bearer {client['registration_access_token']}"},
        )
    assert response.status_code == 204
    assert verify(auth_service, tokens["access_token"]).status_code == 401


def test_a_registration_that_never_authorizes_is_kept_a_day_at_most(browser, auth_service, redis_server):
    """Attack: registration is open, so one address registering 20 clients a minute, each kept
    AUTH_CLIENT_TTL (90 days), would hold millions of records in a Redis that never evicts. A
    registration is kept its full life only once it has authorized someone."""
    client = register(auth_service)
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    key = f"mcpgw:client:{client['client_id']}"
    assert 0 < r.ttl(key) <= 86400
    tokens_for(browser, client)
    assert r.ttl(key) > 86400 * 80  # AUTH_CLIENT_TTL (90 days) from registration
    assert client["client_secret_expires_at"] == 0  # a public client has no secret to expire
    with api(auth_service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
        read = http.get(f"/register/{client['client_id']}").json()
    assert "unused" not in read and "expires_at" not in read
