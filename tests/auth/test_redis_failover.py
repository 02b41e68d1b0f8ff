"""The state through Redis Sentinel: the service finds the primary, a failover is a short burst of
503 + Retry-After, and nothing a client was told is stored is lost (registrations, grants, refresh
rotations), because durable writes wait for a replica (WAIT) before they are acknowledged."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.harness.oauthflow import (
    REDIRECT,
    Browser,
    api,
    authorize_url,
    exchange,
    pkce,
    refresh,
    register,
    tokens_for,
    verify,
)
from tests.harness.procs import wait_until
from tests.harness.sentinel import SentinelCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    """A primary, two replicas and three Sentinels that the tests of this module leave as they found them."""
    with SentinelCluster(tmp_path_factory.mktemp("sentinel")) as running:
        yield running


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    """A cluster of the test's own, for a test that kills its primary."""
    with SentinelCluster(tmp_path / "sentinel") as running:
        yield running


def assert_unavailable(response: httpx.Response) -> None:
    """What a client may see while the state fails over: 503, Retry-After, the service's error shape."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["error"] == "temporarily_unavailable", response.text


def test_the_service_signs_in_refreshes_and_rate_limits_through_sentinel(auth_factory, github, cluster):
    service = auth_factory(env={**cluster.service_env(), "AUTH_RATELIMIT_REGISTER": "3/minute"})
    browser = Browser(service, github)
    try:
        client = register(service)
        tokens = tokens_for(browser, client)
        assert verify(service, tokens["access_token"]).status_code == 200
        rotated = refresh(service, client, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert verify(service, rotated.json()["access_token"]).status_code == 200
        # The registration lives on the primary the Sentinels name, and every replica has it.
        for server in cluster.servers:
            reader = server.client()
            try:
                assert reader.exists(f"mcpgw:client:{client['client_id']}") == 1
            finally:
                reader.close()
        # The rate limit counts on the primary too, so every gateway host shares one budget.
        with api(service) as http:
            body = {"redirect_uris": ["http://127.0.0.1/cb"]}
            statuses = [http.post("/register", json=body).status_code for _ in range(3)]
        assert statuses == [201, 201, 429], statuses
        primary = cluster.primary().client()
        try:
            assert any(primary.scan_iter(match="*mcpgw:rl*"))
        finally:
            primary.close()
    finally:
        browser.close()


def test_a_write_no_replica_acknowledges_is_refused_with_503(auth_factory, github, cluster):
    """Three replicas asked of a cluster that has two: the registration reaches the primary, but the
    client is not told it exists; it is told to retry. Reads carry on."""
    service = auth_factory(env=cluster.service_env(durable_replicas=3, durable_timeout_ms=200))
    with api(service) as http:
        response = http.post(
            "/register", json={"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
        )
        assert_unavailable(response)
        assert "client_id" not in response.text
        assert http.get("/.well-known/oauth-authorization-server").status_code == 200


def test_a_durable_write_on_a_single_redis_without_replicas_is_refused(auth_factory, redis_factory):
    """AUTH_REDIS_DURABLE_REPLICAS applies to a Redis named by URL too: with no replica, nothing durable
    is acknowledged (the setting never silently means less than it says)."""
    redis = redis_factory()
    service = auth_factory(
        redis_url=redis.url, env={"AUTH_REDIS_DURABLE_REPLICAS": "1", "AUTH_REDIS_DURABLE_TIMEOUT_MS": "100"}
    )
    with api(service) as http:
        assert_unavailable(http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]}))


def test_a_server_answering_readonly_is_a_503_not_a_500(auth_factory, cluster):
    """What a service sees when the server it writes to was demoted (a primary turned replica, before
    the client learns of the switch): READONLY is storage unavailable, not an internal error."""
    replica = next(server for server in cluster.servers if cluster.role(server) == "slave")
    service = auth_factory(redis_url=replica.url)
    with api(service) as http:
        assert_unavailable(http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]}))


@dataclass
class Ledger:
    """What the clients were told is stored, and what they saw while the state failed over."""

    clients: list[dict] = field(default_factory=list)  # registrations answered 201
    # One refresh token per acknowledged grant: the newest the client was given (kept on a 503).
    grants: list[tuple[dict, str]] = field(default_factory=list)
    refreshes: int = 0
    unavailable: list[float] = field(default_factory=list)  # when each 503 was seen
    after_recovery: int = 0  # successes after the last 503


def _login(service, github, ledger: Ledger, client: dict) -> None:
    """One person's login through the GitHub stand-in; any 503 on the way restarts it later."""
    browser = Browser(service, github)
    try:
        verifier, challenge = pkce()
        outcome = browser.open(authorize_url(service, client["client_id"], challenge))
        if outcome.location is None and outcome.is_consent_page:
            outcome = browser.consent(outcome.response)
        if outcome.location is None:
            assert_unavailable(outcome.response)
            ledger.unavailable.append(time.monotonic())
            return
        code = outcome.params["code"]
        # A code whose exchange failed is dropped, as a client does: it starts a new login.
        response = exchange(service, client, code, verifier)
        if response.status_code != 200:
            assert_unavailable(response)
            ledger.unavailable.append(time.monotonic())
            return
        ledger.grants.append((client, response.json()["refresh_token"]))
        ledger.after_recovery += 1
    finally:
        browser.close()


def _register(service, ledger: Ledger) -> None:
    with api(service) as http:
        response = http.post(
            "/register",
            json={
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            },
        )
    if response.status_code == 201:
        ledger.clients.append(response.json())
        ledger.after_recovery += 1
    else:
        assert_unavailable(response)
        ledger.unavailable.append(time.monotonic())


def _refresh(service, ledger: Ledger, index: int) -> None:
    client, token = ledger.grants[index]
    response = refresh(service, client, token)
    if response.status_code == 200:
        ledger.grants[index] = (client, response.json()["refresh_token"])
        ledger.refreshes += 1
        ledger.after_recovery += 1
    else:
        # The client keeps the token it sent and tries it again (within the reuse grace, a rotation
        # the replicas did not confirm in time is retried, not taken for a reuse).
        assert_unavailable(response)
        ledger.unavailable.append(time.monotonic())


KILL_AFTER = 2.0  # seconds of traffic before the primary is killed
SETTLED_ROUNDS = 9  # successes after the last 503 that end the loop
LOOP_BUDGET = 40.0
BURST_BUDGET = 15.0  # the most a failover may keep clients waiting here (down after 1 s)


def test_killing_the_primary_loses_no_acknowledged_write(auth_factory, github, own_cluster):
    service = auth_factory(env=own_cluster.service_env())
    old_primary = own_cluster.primary()
    ledger = Ledger()
    _register(service, ledger)
    assert ledger.clients, "the cluster did not take a first registration"

    started = time.monotonic()
    killed_at: float | None = None
    turn = 0
    while time.monotonic() - started < LOOP_BUDGET:
        if killed_at is None and time.monotonic() - started > KILL_AFTER:
            old_primary.kill()  # SIGKILL: what the replicas have is all that is left
            killed_at = time.monotonic()
            ledger.after_recovery = 0
        if killed_at is not None and ledger.unavailable and ledger.after_recovery >= SETTLED_ROUNDS:
            break
        kind = turn % 3
        turn += 1
        before = len(ledger.unavailable)
        if kind == 0:
            _register(service, ledger)
        elif kind == 1:
            _login(service, github, ledger, secrets.choice(ledger.clients))
        elif ledger.grants:
            _refresh(service, ledger, turn % len(ledger.grants))
        if len(ledger.unavailable) > before:
            ledger.after_recovery = 0
            time.sleep(0.1)  # a client backs off (less than Retry-After says, to keep the test short)

    assert killed_at is not None
    assert ledger.unavailable, "the kill went unnoticed: the loop is not exercising the failover"
    assert ledger.after_recovery >= SETTLED_ROUNDS, f"clients did not carry on within {LOOP_BUDGET}s"
    burst = ledger.unavailable[-1] - killed_at
    assert burst < BURST_BUDGET, f"503s went on for {burst:.1f}s after the kill"
    new_primary = own_cluster.primary()
    assert new_primary is not old_primary

    # Every acknowledged registration, grant and refresh is on the new primary.
    lost_clients = []
    for client in ledger.clients:
        with api(service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
            if http.get(f"/register/{client['client_id']}").status_code != 200:
                lost_clients.append(client["client_id"])
    lost_grants = []
    for client, token in ledger.grants:
        response = refresh(service, client, token)
        if response.status_code != 200 or verify(service, response.json()["access_token"]).status_code != 200:
            lost_grants.append((response.status_code, response.text))
    print(
        f"acknowledged: {len(ledger.clients)} registrations, {len(ledger.grants)} grants, "
        f"{ledger.refreshes} refreshes; {len(ledger.unavailable)} answers 503 over {burst:.1f}s"
    )
    assert not lost_clients, f"{len(lost_clients)} of {len(ledger.clients)} acknowledged registrations lost"
    assert not lost_grants, f"{len(lost_grants)} of {len(ledger.grants)} acknowledged grants lost: {lost_grants[:3]}"
    assert len(ledger.grants) > 3 and ledger.refreshes > 3, "too little traffic to prove anything"

    # The old primary, restarted, is turned into a replica of the new one by the Sentinels, not a second primary.
    old_primary.start()

    def replica_of_new_primary() -> bool:
        client = old_primary.client()
        try:
            role = client.role()
        finally:
            client.close()
        return role[0] == b"slave" and int(role[2]) == new_primary.port and role[3] == b"connected"

    assert wait_until(replica_of_new_primary, 20, interval=0.2), own_cluster.role(old_primary)
    assert own_cluster.primary() is new_primary
