"""Fixtures of the auth suite: the service under real gunicorn on the session's Redis and GitHub stub."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.auth.gateway import running_gateway
from tests.harness.auth import AuthService
from tests.harness.github import GitHubStub
from tests.harness.oauthflow import FETCH, ISSUER, TIME, Browser
from tests.harness.oidc import OidcProvider
from tests.harness.redis import RedisServer

RESOURCES = [
    {"name": "time", "resource": TIME},
    {"name": "fetch", "resource": FETCH, "allowed_users": ["alice"]},
]
USERS = "octocat, Alice ,bob"


def service_kwargs(redis_url: str, github: GitHubStub, **overrides: Any) -> dict[str, Any]:
    env = {
        "AUTH_RATELIMIT_REGISTER": "10000/minute",
        "AUTH_RATELIMIT_TOKEN": "10000/minute",
        "AUTH_RATELIMIT_AUTHORIZE": "10000/minute",
        "AUTH_RATELIMIT_CIMD": "10000/minute",
        "AUTH_VERIFY_CACHE_MS": "0",
    }
    env.update(overrides.pop("env", {}))
    kwargs: dict[str, Any] = {
        "issuer": ISSUER,
        "redis_url": redis_url,
        "resources": RESOURCES,
        "github_url": github.url,
        "github_api_url": github.api_url,
        "github_client_id": github.client_id,
        "github_client_secret": github.client_secret,
        "allowed_users": USERS,
        "env": env,
    }
    kwargs.update(overrides)
    return kwargs


def stop_all(services: list[AuthService]) -> None:
    """Each gunicorn takes a second or more to shut down gracefully: stop them all at once."""
    with ThreadPoolExecutor() as pool:
        list(pool.map(AuthService.stop, services))


class SharedServices:
    """The services of a session, one per distinct setting, started when a test first asks for it.

    Gunicorn takes seconds to start: tests that only talk to a service with changed settings share
    it, as they share `auth_service`. A test that kills, stops or restarts a service, or points it at
    a Redis it stops, starts a private one with `auth_factory` instead.
    """

    def __init__(self, workdir: Path, redis_server: RedisServer, github: GitHubStub) -> None:
        self.workdir = workdir
        self.redis_server = redis_server
        self.github = github
        self._running: dict[str, tuple[AuthService, int]] = {}

    def get(self, *, empty_store: bool = False, **overrides: Any) -> AuthService:
        """The running service with `overrides` (as `service_kwargs` takes them).

        `empty_store`: the service keeps its data in a logical database of its own, emptied each
        time a test asks for it, so the test sees no other test's records or rate-limit counters.
        """
        key = json.dumps({"empty_store": empty_store, **overrides}, sort_keys=True, default=str)
        if key not in self._running:
            db = self.redis_server.claim_database() if empty_store else 0
            kwargs = service_kwargs(self.redis_server.url_for(db), self.github, **overrides)
            service = AuthService(self.workdir / f"auth-{len(self._running)}", **kwargs)
            service.start()  # a service that fails to start is stopped, and not kept
            self._running[key] = (service, db)
        service, db = self._running[key]
        if empty_store:
            client = self.redis_server.client(db)
            try:
                client.flushdb()
            finally:
                client.close()
        return service

    def stop(self) -> None:
        stop_all([service for service, _ in self._running.values()])


@pytest.fixture(scope="session")
def shared_services(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, github_stub: GitHubStub
) -> Iterator[SharedServices]:
    services = SharedServices(tmp_path_factory.mktemp("shared-auth"), redis_server, github_stub)
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def auth_service(shared_services: SharedServices) -> AuthService:
    """The shared service: issuer https://auth.example.test, resources time (everyone allowed) and
    fetch (alice only); users octocat, alice, bob. Rate limits out of the way; no /verify cache."""
    return shared_services.get()


@pytest.fixture
def auth_factory(
    tmp_path: Path, redis_server: RedisServer, github_stub: GitHubStub
) -> Iterator[Callable[..., AuthService]]:
    """Start a private service with changed settings, for a test that kills, stops or restarts it;
    stopped after the test. Tests that leave the service as they found it use `shared_services`."""
    started: list[AuthService] = []

    def start(redis_url: str | None = None, **overrides: Any) -> AuthService:
        kwargs = service_kwargs(redis_url or redis_server.url, github_stub, **overrides)
        service = AuthService(tmp_path / f"auth-{len(started)}", **kwargs)
        started.append(service)
        return service.start()

    try:
        yield start
    finally:
        stop_all(started)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, redis_server, github_stub, test_ca):
    """The product's routing (Traefik run from the traefik role's own files, certificates from Pebble) in
    front of the auth service and an MCP endpoint; shared by the session, since no test changes it."""
    with running_gateway(tmp_path_factory, redis_server, github_stub, test_ca) as parts:
        yield parts


@pytest.fixture
def github(github_stub: GitHubStub) -> Iterator[GitHubStub]:
    """The GitHub stub, logging in octocat unless the test says otherwise (restored afterwards)."""
    github_stub.set_user("octocat")
    try:
        yield github_stub
    finally:
        github_stub.set_user("octocat")


@pytest.fixture
def browser(auth_service: AuthService, github: GitHubStub) -> Iterator[Browser]:
    agent = Browser(auth_service, github)
    try:
        yield agent
    finally:
        agent.close()


@pytest.fixture
def cimd_service(shared_services: SharedServices, test_ca) -> AuthService:
    """A service in test mode, allowed to fetch documents from `localhost`, with a 1 s deadline."""
    return shared_services.get(
        test_mode=True,
        env={
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(test_ca.cert_path),
            "AUTH_CIMD_TIMEOUT_MS": "1000",
        },
    )


CODE_TTL = 10  # the least AUTH_CODE_TTL allows
ACCESS_TTL = 30  # the least AUTH_ACCESS_TOKEN_TTL allows


@pytest.fixture
def short_lived(shared_services: SharedServices, test_ca) -> AuthService:
    """A service whose codes live CODE_TTL and access tokens ACCESS_TTL seconds, on an empty store of
    its own; in test mode, allowed to fetch metadata documents from `localhost`."""
    return shared_services.get(
        empty_store=True,
        test_mode=True,
        env={
            "AUTH_CODE_TTL": str(CODE_TTL),
            "AUTH_ACCESS_TOKEN_TTL": str(ACCESS_TTL),
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(test_ca.cert_path),
        },
    )


# -- OpenID Connect: node-oidc-provider as the identity provider ------------------------------------
# Who may sign in: everyone with a verified email in example.org, and members of mcp-users wherever
# their email is; fetch narrows that to mcp-users.
OIDC_ALLOWED = "@example.org, group:mcp-users"
OIDC_RESOURCES = [
    {"name": "time", "resource": TIME},
    {"name": "fetch", "resource": FETCH, "allowed_users": ["group:mcp-users"]},
]


@pytest.fixture(scope="session")
def oidc_provider(harness_dir: Path, test_ca) -> Iterator[OidcProvider]:
    """The provider the OIDC service trusts; accounts alice, bob, carol, eve (see tests/harness/oidc.py)."""
    provider = OidcProvider(harness_dir / "oidc", test_ca, redirect_uri=f"{ISSUER}/callback").start()
    try:
        yield provider
    finally:
        provider.stop()


def oidc_env(provider: OidcProvider, test_ca, **extra: str) -> dict[str, str]:
    return {
        "AUTH_IDP": "oidc",
        "AUTH_OIDC_ISSUER": provider.issuer,
        "AUTH_OIDC_CLIENT_ID": provider.client_id,
        "AUTH_OIDC_CLIENT_SECRET": provider.client_secret,
        "AUTH_OIDC_SCOPES": "openid email profile groups",
        "AUTH_ALLOWED_USERS": OIDC_ALLOWED,
        "AUTH_ALLOWED_GITHUB_USERS": "",
        "SSL_CERT_FILE": str(test_ca.cert_path),
        **extra,
    }


@pytest.fixture
def oidc_service(shared_services: SharedServices, oidc_provider: OidcProvider, test_ca) -> AuthService:
    """The auth service signing people in through `oidc_provider`, on an empty store of its own."""
    return shared_services.get(empty_store=True, resources=OIDC_RESOURCES, env=oidc_env(oidc_provider, test_ca))


@pytest.fixture
def idp(oidc_provider: OidcProvider) -> Iterator[OidcProvider]:
    """The provider, signing in alice unless the test says otherwise; accounts restored afterwards."""
    oidc_provider.set_user("alice")
    try:
        yield oidc_provider
    finally:
        oidc_provider.set_user("alice")
        oidc_provider.reset_accounts()


@pytest.fixture
def oidc_browser(oidc_service: AuthService, github: GitHubStub, idp: OidcProvider) -> Iterator[Browser]:
    agent = Browser(oidc_service, github, idp=idp)
    try:
        yield agent
    finally:
        agent.close()
