"""The auth service's Prometheus /metrics: right across gunicorn workers, bounded labels, and readable only
by a scraper on the host's loopback, never through Traefik or from another address."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.auth import AuthService
from tests.harness.oauthflow import TIME, Browser, api, get_code, pkce, refresh, register, tokens_for, verify
from tests.harness.procs import LOOPBACK, ManagedProcess, wait_until

FORWARDED_TO_TIME = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "time.example.test", "X-Forwarded-Uri": "/mcp"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service: AuthService, **kwargs) -> Samples:
    response = httpx.get(f"{service.url}/metrics", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_add_up_across_workers(auth_factory):
    service = auth_factory(workers=3)
    total, threads = 240, 12

    def send() -> None:
        for _ in range(total // threads):
            # A new connection each time, so that every worker gets its share.
            connection = http.client.HTTPConnection(LOOPBACK, service.port, timeout=10)
            try:
                connection.request("GET", "/verify", headers=FORWARDED_TO_TIME)
                assert connection.getresponse().status == 401
            finally:
                connection.close()

    pool = [threading.Thread(target=send) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    # Each worker counts in its own file; more than one of them answered some of the requests.
    per_worker = []
    for path in sorted(service.metrics_dir.glob("counter_*.db")):
        metrics = MultiProcessCollector.merge([str(path)])
        own = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in metrics for s in m.samples}
        per_worker.append(value(own, "mcpgw_auth_verify_total", outcome="no_token"))
    assert sum(1 for n in per_worker if n > 0) >= 2, per_worker

    # Whichever worker answers the scrape reports what all of them did.
    for _ in range(12):
        samples = scrape(service)
        assert value(samples, "mcpgw_auth_verify_total", outcome="no_token") == total
        assert value(samples, "mcpgw_auth_http_requests_total", endpoint="/verify", method="GET", status="401") == total


def workers_of(service: AuthService) -> set[int]:
    listed = subprocess.run(["pgrep", "-P", str(service.pid)], capture_output=True, text=True, check=False)
    return {int(pid) for pid in listed.stdout.split()}


def test_counts_survive_workers_that_die_and_a_reload(auth_factory):
    service = auth_factory(workers=2)
    for _ in range(30):
        assert verify(service, None).status_code == 401
    # A worker killed (out of memory, a crash) is replaced; what it counted is still counted.
    old = workers_of(service)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: len(workers_of(service) - old) == 2, 30), service.log_tail()
    assert value(scrape(service), "mcpgw_auth_verify_total", outcome="no_token") == 30
    # systemctl reload (SIGHUP): new workers, the same counts.
    current = workers_of(service)
    os.kill(service.pid, signal.SIGHUP)
    assert wait_until(lambda: len(workers_of(service) - current) == 2, 30), service.log_tail()
    for _ in range(5):
        assert verify(service, None).status_code == 401
    assert all(value(scrape(service), "mcpgw_auth_verify_total", outcome="no_token") == 35 for _ in range(6))


def test_the_counters_follow_what_clients_and_people_do(auth_factory, github):
    service = auth_factory(workers=2, env={"AUTH_RATELIMIT_REGISTER": "3/minute"})
    client = register(service)
    browser, stranger = Browser(service, github), Browser(service, github)
    try:
        tokens = tokens_for(browser, client)
        assert verify(service, tokens["access_token"]).status_code == 200
        rotated = refresh(service, client, tokens["refresh_token"]).json()
        assert refresh(service, client, rotated["refresh_token"]).status_code == 200
        # The first refresh token again, after its successor was used: theft, the grant is revoked.
        assert refresh(service, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert verify(service, rotated["access_token"]).status_code == 401
        # Someone GitHub knows but the allowlist does not.
        github.set_user("mallory")
        assert get_code(stranger, client["client_id"], pkce()[1])["error"] == "access_denied"
    finally:
        browser.close()
        stranger.close()
    register(service), register(service)
    with api(service) as http:
        refused = http.post("/register", json={"redirect_uris": ["http://127.0.0.1/cb"]})
    assert refused.status_code == 429
    assert verify(service, "not-a-jwt").status_code == 401
    assert verify(service, None, uri="/mcp/../admin").status_code == 400
    assert verify(service, None, resource="https://elsewhere.example.test/mcp").status_code == 403

    samples = scrape(service)
    expected = {
        ("mcpgw_auth_registrations_total", ()): 3,
        ("mcpgw_auth_tokens_issued_total", (("grant_type", "authorization_code"),)): 1,
        ("mcpgw_auth_tokens_issued_total", (("grant_type", "refresh_token"),)): 2,
        ("mcpgw_auth_refresh_reuse_detections_total", ()): 1,
        ("mcpgw_auth_logins_total", (("outcome", "authorized"),)): 1,
        ("mcpgw_auth_logins_total", (("outcome", "refused"),)): 1,
        ("mcpgw_auth_rate_limited_total", (("limit", "register"),)): 1,
        ("mcpgw_auth_verify_total", (("outcome", "allowed"),)): 1,
        ("mcpgw_auth_verify_total", (("outcome", "revoked"),)): 1,
        ("mcpgw_auth_verify_total", (("outcome", "invalid_token"),)): 1,
        ("mcpgw_auth_verify_total", (("outcome", "bad_path"),)): 1,
        ("mcpgw_auth_verify_total", (("outcome", "unknown_resource"),)): 1,
        ("mcpgw_auth_http_requests_total", (("endpoint", "/register"), ("method", "POST"), ("status", "429"))): 1,
        ("mcpgw_auth_http_requests_total", (("endpoint", "/token"), ("method", "POST"), ("status", "200"))): 3,
    }
    assert {key: samples.get(key) for key in expected} == expected


def test_labels_stay_bounded_under_made_up_paths_methods_and_resources(auth_factory):
    service = auth_factory()
    # Every route, method and outcome the service knows, once, so that their series exist.
    with httpx.Client(base_url=service.url, timeout=10) as http:
        http.get("/nowhere")
        http.request("PATCH", "/nowhere")
        http.request("SEED", "/nowhere")
        http.get("/register/some-client")
    assert verify(service, None, resource="https://elsewhere.example.test/mcp").status_code == 403
    scrape(service)
    before = set(scrape(service))

    with httpx.Client(base_url=service.url, timeout=10) as http:
        for i in range(40):
            # Attack: grow the scraper's memory (and the service's) with a series per request.
            http.get(f"/made-up-{i}")
            http.request(f"METHOD{i}", f"/made-up-{i}")
            http.request("PATCH", f"/also/{i}")
            http.get(f"/register/client-{i}")
            http.get("/verify", headers={"X-Forwarded-Host": f"h{i}.example.test", "X-Forwarded-Uri": f"/p{i}"})
    after = scrape(service)
    assert set(after) == before
    requests = "mcpgw_auth_http_requests_total"
    assert value(after, requests, endpoint="unmatched", method="other", status="404") == 41
    assert value(after, requests, endpoint="/register/<client_id>", method="GET", status="401") == 41


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Forwarded-Host": "auth.example.test", "X-Forwarded-Proto": "https"},
        {"X-Real-Ip": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1"},
    ],
)
def test_metrics_are_refused_to_requests_that_came_through_a_proxy(auth_service, headers):
    # Attack: reach /metrics through Traefik, which always adds forwarding headers; or claim to be local.
    response = httpx.get(f"{auth_service.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "error_description": "No such endpoint"}
    assert "mcpgw_" not in response.text


def test_metrics_are_only_for_get(auth_service):
    response = httpx.post(f"{auth_service.url}/metrics", timeout=10)
    assert response.status_code == 405


# -- a peer that is not on loopback ----------------------------------------------------------------
# The service binds every address of a network namespace of its own, whose loopback interface also
# holds a documentation address (198.51.100.1, 2001:db8::1): a connection to that address comes from it,
# not from 127.0.0.1. Nothing leaves the namespace, which has no other interface.
OUTSIDE_V4, OUTSIDE_V6 = "198.51.100.1", "2001:db8::1"
NAMESPACE_SETUP = (
    f"ip link set lo up && ip addr add {OUTSIDE_V4}/32 dev lo && ip addr add {OUTSIDE_V6}/128 dev lo nodad"
)


class PrivateNetwork:
    """A network namespace held open by a sleeping process; commands run in it through nsenter."""

    def __init__(self, workdir: Path) -> None:
        self.holder = ManagedProcess(
            "netns", ["unshare", "--net", "--", "sh", "-c", f"{NAMESPACE_SETUP} && exec sleep 600"], log_dir=workdir
        )

    def start(self) -> PrivateNetwork:
        self.holder.start()
        assert wait_until(lambda: OUTSIDE_V4 in self.run(["ip", "-4", "addr"]).stdout, 10), self.holder.log_tail()
        return self

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True, timeout=30, check=False)

    def get(self, url: str) -> tuple[int, str]:
        """GET from inside the namespace: (status, body), or (0, the error) when nothing answers."""
        code = (
            "import httpx, json, sys\n"
            "try:\n r = httpx.get(sys.argv[1], timeout=10); print(json.dumps([r.status_code, r.text]))\n"
            "except httpx.TransportError as exc:\n print(json.dumps([0, repr(exc)]))"
        )
        result = self.run([sys.executable, "-c", code, url])
        assert result.returncode == 0, result.stderr
        status, body = json.loads(result.stdout)
        return status, body

    def stop(self) -> None:
        self.holder.stop()


class NamespacedAuthService(AuthService):
    """The auth service under gunicorn inside `network` (no Redis there: /metrics needs none)."""

    def __init__(self, workdir: Path, network: PrivateNetwork, **kwargs) -> None:
        super().__init__(workdir, **kwargs)
        self.network = network
        # Every address of the namespace, IPv4 ones as IPv4-mapped IPv6 peers.
        self.env["AUTH_BIND"] = f"[::]:{self.port}"

    def argv(self) -> list[str]:
        return [*self.network.prefix(), *super().argv()]

    def start(self, timeout: float = 30.0) -> NamespacedAuthService:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
        env.update(self.env)
        self._proc = ManagedProcess("auth", self.argv(), log_dir=self.workdir, env=env)
        self._proc.start()
        up = wait_until(lambda: self.network.get(f"http://{LOOPBACK}:{self.port}/health")[0] == 503, timeout, 0.3)
        assert up, self.log_tail()
        return self


@pytest.fixture
def namespaced_service(tmp_path, github_stub) -> Iterator[NamespacedAuthService]:
    network = PrivateNetwork(tmp_path).start()
    service = None
    try:
        service = NamespacedAuthService(
            tmp_path / "auth",
            network,
            issuer="https://auth.example.test",
            redis_url=f"redis://:unused@{LOOPBACK}:9/0",
            resources=[{"name": "time", "resource": TIME}],
            github_url=github_stub.url,
            github_api_url=github_stub.api_url,
            github_client_id=github_stub.client_id,
            github_client_secret=github_stub.client_secret,
        )
        yield service.start()
    finally:
        if service is not None:
            service.stop()
        network.stop()


def test_metrics_are_refused_to_a_peer_that_is_not_on_loopback(namespaced_service):
    network, port = namespaced_service.network, namespaced_service.port
    # The same server answers a scraper on loopback (IPv4 and IPv6) ...
    for host in (LOOPBACK, "[::1]"):
        status, body = network.get(f"http://{host}:{port}/metrics")
        assert status == 200, body
        assert "mcpgw_auth_http_requests_total" in body
    # ... and not one on another address of the host, as another machine would be.
    for host in (OUTSIDE_V4, f"[{OUTSIDE_V6}]"):
        status, body = network.get(f"http://{host}:{port}/metrics")
        assert status == 404, body
        assert "mcpgw_" not in body


def test_a_service_run_by_hand_makes_and_removes_its_own_counter_directory(auth_factory, tmp_path):
    # No PROMETHEUS_MULTIPROC_DIR, as when someone runs gunicorn with gunicorn.conf.py by hand.
    temp = tmp_path / "tmp"
    temp.mkdir()
    service = auth_factory(workers=2, env={"PROMETHEUS_MULTIPROC_DIR": "", "TMPDIR": str(temp)})
    for _ in range(20):
        assert verify(service, None).status_code == 401
    assert all(value(scrape(service), "mcpgw_auth_verify_total", outcome="no_token") == 20 for _ in range(6))
    assert [p.name.startswith("mcp-gateway-auth-metrics-") for p in temp.iterdir()] == [True]
    service.stop()
    assert list(temp.iterdir()) == []
