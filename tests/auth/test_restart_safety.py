"""Registrations, grants and refresh tokens survive a crash of the service and of Redis (AOF)."""

import hashlib
import threading
import time

import httpx
import pytest

from tests.harness.oauthflow import Browser, api, refresh, register, tokens_for, verify
from tests.harness.procs import StartupError

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


ROUNDS = 30
TIME_BUDGET = 60.0


def test_no_sigkill_during_a_refresh_logs_the_user_out(auth_factory, redis_server, github):
    """SIGKILL the whole gunicorn (master and workers) while a refresh is in flight and restart it,
    up to ROUNDS times within TIME_BUDGET seconds. Whatever the client holds afterwards (the new token
    if the answer arrived, else the one it sent) must still get a token: no round logs the user out.

    The moment of the kill is steered towards the end of the request, where it matters: earlier when
    the answer arrived, later when the old token was still unspent, so that most rounds kill the
    service between its write and the client reading the answer, or close to it.

    Two services of one deployment (same Redis, same signing key) take turns: while the one killed
    restarts, the client goes on with the other, as it would with the restarted one (all state is in
    Redis). A restart takes seconds and a round a fraction of one, so the turns double the rounds."""
    first = auth_factory()
    services = [first, auth_factory(signing_keys=first.signing_keys)]
    restarts: dict[int, threading.Thread] = {}
    failures: list[StartupError] = []

    def restart(service) -> None:
        try:
            service.start()
        except StartupError as exc:  # reported by the round that needs this service
            failures.append(exc)

    def running(turn: int):
        """The service whose turn it is, once its restart (if any) is done."""
        thread = restarts.pop(turn % 2, None)
        if thread is not None:
            thread.join()
        assert not failures, failures
        return services[turn % 2]

    browser = Browser(first, github)
    redis = redis_server.client()
    try:
        client = register(first)
        held = tokens_for(browser, client)["refresh_token"]
        delay = step = 0.0
        deadline = time.monotonic() + TIME_BUDGET
        outcomes: list[str] = []
        while len(outcomes) < ROUNDS and time.monotonic() < deadline:
            service = running(len(outcomes))
            # The user observable, and the timing of a refresh on the service as it now runs.
            started = time.monotonic()
            after = refresh(service, client, held)
            assert after.status_code == 200, (
                f"round {len(outcomes)}: the client was logged out ({outcomes[-1:]}): {after.status_code} {after.text}"
            )
            if not outcomes:
                delay, step = (time.monotonic() - started) * 0.8, (time.monotonic() - started) / 4
            held = after.json()["refresh_token"]

            answer: list[httpx.Response] = []

            def call(token: str = held, out: list = answer, target=service) -> None:
                try:
                    out.append(refresh(target, client, token))
                except httpx.HTTPError:
                    pass  # the connection died with the service: the answer is lost

            worker = threading.Thread(target=call)
            worker.start()
            time.sleep(delay)
            service.kill()
            worker.join(timeout=20)
            restarts[len(outcomes) % 2] = threading.Thread(target=restart, args=(service,))
            restarts[len(outcomes) % 2].start()
            if answer:
                assert answer[0].status_code == 200, f"round {len(outcomes)}: {answer[0].status_code} {answer[0].text}"
                held = answer[0].json()["refresh_token"]
                outcomes.append("answered")
                delay = max(0.0, delay - step)
            elif redis.exists("mcpgw:refresh:" + hashlib.sha256(held.encode()).hexdigest()):
                outcomes.append("killed before the write")
                delay += step
            else:
                outcomes.append("answer lost after the write")
            step = max(step * 0.85, 0.001)
        final = refresh(running(len(outcomes)), client, held)
        assert final.status_code == 200, f"logged out after the last round ({outcomes[-1:]}): {final.text}"
        assert len(outcomes) >= 10, f"only {len(outcomes)} rounds within {TIME_BUDGET}s"
        print({kind: outcomes.count(kind) for kind in sorted(set(outcomes))})
    finally:
        for thread in restarts.values():
            thread.join()  # before auth_factory stops the services
        redis.close()
        browser.close()
