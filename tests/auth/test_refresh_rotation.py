"""Refresh tokens rotate on every use; reuse of a rotated one revokes the whole grant."""

from tests.harness.oauthflow import FETCH, TIME, Browser, api, refresh, register, tokens_for, verify


def test_refresh_rotates_and_the_new_tokens_work(browser, auth_service, redis_server):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    response = refresh(auth_service, client, tokens["refresh_token"], resource=TIME)
    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    assert response.headers["cache-control"] == "no-store"
    assert verify(auth_service, new["access_token"]).status_code == 200
    # stored hashed
    assert not list(redis_server.client().scan_iter(f"*{new['refresh_token']}*"))


def test_reusing_a_rotated_refresh_token_revokes_the_grant(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    new = refresh(auth_service, client, tokens["refresh_token"]).json()
    newer = refresh(auth_service, client, new["refresh_token"]).json()
    # The successor was used, so this is no retry of a lost answer (test_refresh_reuse_grace.py).
    reuse = refresh(auth_service, client, tokens["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # Both holders lose: the newest refresh token and access token are dead too.
    assert refresh(auth_service, client, newer["refresh_token"]).json()["error"] == "invalid_grant"
    assert verify(auth_service, newer["access_token"]).status_code == 401


def test_a_refresh_token_is_bound_to_its_client(browser, auth_service):
    victim, attacker = register(auth_service), register(auth_service)
    tokens = tokens_for(browser, victim)
    response = refresh(auth_service, attacker, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_for_a_resource_outside_the_grant_is_invalid_target(browser, auth_service, github):
    github.set_user("alice")
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    response = refresh(auth_service, client, tokens["refresh_token"], resource=FETCH)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_refresh_cannot_widen_the_scope(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    response = refresh(auth_service, client, tokens["refresh_token"], scope="mcp admin")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def narrowed_service(shared_services, auth_service):
    """`auth_service` as the operator restarted it without octocat in the allowlist (same Redis, same keys)."""
    return shared_services.get(allowed_users="alice", signing_keys=auth_service.signing_keys)


def test_refresh_and_live_tokens_stop_when_the_user_leaves_the_allowlist(browser, auth_service, shared_services):
    client = register(auth_service)
    tokens = tokens_for(browser, client)  # octocat
    narrowed = narrowed_service(shared_services, auth_service)
    assert verify(narrowed, tokens["access_token"]).status_code == 401
    response = refresh(narrowed, client, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # and the grant is gone for good, even where octocat is still allowed
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400


def test_introspection_says_inactive_once_the_user_left_the_allowlist(browser, auth_service, shared_services):
    """/verify refuses a removed user's live token; introspection must not call it active."""
    client = register(auth_service)
    tokens = tokens_for(browser, client)  # octocat
    narrowed = narrowed_service(shared_services, auth_service)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        with api(narrowed) as http:
            answer = http.post("/introspect", data={"token": token, "client_id": client["client_id"]})
        assert answer.status_code == 200
        assert answer.json() == {"active": False}


def test_the_allowlist_is_case_insensitive_and_trimmed(browser, auth_service, github):
    github.add_users("ALICE")
    github.set_user("ALICE")  # configured as " Alice "
    client = register(auth_service)
    tokens = tokens_for(browser, client, resource=FETCH)
    assert verify(auth_service, tokens["access_token"], FETCH).headers["x-auth-user"] == "alice"


def test_a_refused_refresh_request_does_not_spend_the_token(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    assert refresh(auth_service, client, tokens["refresh_token"], scope="admin").status_code == 400
    assert refresh(auth_service, client, tokens["refresh_token"], resource=FETCH).status_code == 400
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 200


def _race(service, client, token, n=4):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: refresh(service, client, token), range(n)))


def test_racing_refreshes_with_one_token_cannot_both_win(browser, auth_service):
    """Within the reuse grace a racing request looks like the retry of a lost answer and may get a
    pair too, but each such pair voids the one before: exactly one refresh token stays alive, and the
    race never looks like theft (which would revoke the grant and leave none). Several rounds, each
    raced with the survivor of the one before, because one round of four misses the window often."""
    client = register(auth_service)
    token = tokens_for(browser, client)["refresh_token"]
    for round_ in range(5):
        answers = _race(auth_service, client, token, n=6)
        issued = [a.json()["refresh_token"] for a in answers if a.status_code == 200]
        assert issued, f"round {round_}: every racer refused: {[a.json() for a in answers]}"
        with api(auth_service) as http:
            live = [
                issued_token
                for issued_token in issued
                if http.post("/introspect", data={"token": issued_token, "client_id": client["client_id"]}).json()[
                    "active"
                ]
            ]
        assert len(live) == 1, f"round {round_}: {len(live)} of {len(issued)} issued refresh tokens alive"
        token = live[0]


def test_racing_refreshes_without_a_grace_cannot_both_win(shared_services, github):
    service = shared_services.get(env={"AUTH_REFRESH_REUSE_GRACE": "0"})
    browser = Browser(service, github)
    try:
        client = register(service)
        tokens = tokens_for(browser, client)
        codes = [a.status_code for a in _race(service, client, tokens["refresh_token"])]
        assert codes.count(200) <= 1
    finally:
        browser.close()


# Redis commands that change data; inside the rotation script they are expected, outside it they are not.
WRITES = {"SET", "SETEX", "DEL", "UNLINK", "GETDEL", "EXPIRE", "PEXPIRE", "ZADD", "ZREM", "ZREMRANGEBYSCORE"}
WRITES |= {"SADD", "SREM", "MULTI", "EXEC", "INCR", "INCRBY", "HSET", "HDEL"}


def test_a_rotation_is_one_atomic_write_in_few_round_trips(browser, auth_service, redis_server):
    """Watch Redis (MONITOR) during one refresh: everything the rotation writes is written by one
    script, so no crash can fall between spending the old token and storing the new one; and the
    request costs few round trips. (Rate-limit counters are written separately; they hold no token.)"""
    import threading

    db = int(auth_service.env["AUTH_REDIS_URL"].rsplit("/", 1)[1])
    client = register(auth_service)
    tokens = refresh(auth_service, client, tokens_for(browser, client)["refresh_token"]).json()  # scripts loaded
    seen: list[dict] = []
    watcher = redis_server.client()
    with watcher.monitor() as monitor:
        ready = threading.Event()

        def listen() -> None:
            ready.set()
            for command in monitor.listen():
                if "rotation-watch-done" in command["command"]:
                    return
                if command["db"] == db:  # MONITOR shows every database of the server
                    seen.append(command)

        thread = threading.Thread(target=listen)
        thread.start()
        ready.wait()
        response = refresh(auth_service, client, tokens["refresh_token"])
        redis_server.client().echo("rotation-watch-done")
        thread.join(timeout=10)
    assert response.status_code == 200, response.text
    ours = [c for c in seen if c.get("client_type") != "lua" and ":rl" not in c["command"]]
    names = [c["command"].split()[0].upper() for c in ours]
    writes = [n for n in names if n in WRITES]
    assert not writes, [c["command"] for c in ours]
    assert names.count("EVALSHA") + names.count("EVAL") == 1, names
    inside = [c["command"].split()[0].upper() for c in seen if c.get("client_type") == "lua"]
    assert {"DEL", "SET", "EXPIRE", "ZADD"} <= set(inside), inside
    data = [n for n in names if n not in ("HELLO", "AUTH", "CLIENT", "SELECT", "PING")]
    assert len(data) <= 5, names
