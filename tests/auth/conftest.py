"""Fixtures of the auth suite: the service under real gunicorn on the session's Redis and GitHub stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.auth.gateway import running_gateway
from tests.harness.auth import AuthService
from tests.harness.github import GitHubStub
from tests.harness.oauthflow import FETCH, ISSUER, TIME, Browser
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


@pytest.fixture(scope="session")
def auth_service(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, github_stub: GitHubStub):
    """The shared service: issuer https://auth.example.test, resources time (everyone allowed) and
    fetch (alice only); users octocat, alice, bob. Rate limits out of the way; no /verify cache."""
    service = AuthService(tmp_path_factory.mktemp("auth"), **service_kwargs(redis_server.url, github_stub))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def auth_factory(
    tmp_path: Path, redis_server: RedisServer, github_stub: GitHubStub
) -> Iterator[Callable[..., AuthService]]:
    """Start a private service with changed settings; stopped after the test."""
    started: list[AuthService] = []

    def start(redis_url: str | None = None, **overrides: Any) -> AuthService:
        kwargs = service_kwargs(redis_url or redis_server.url, github_stub, **overrides)
        service = AuthService(tmp_path / f"auth-{len(started)}", **kwargs)
        started.append(service)
        return service.start()

    try:
        yield start
    finally:
        for service in started:
            service.stop()


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
def cimd_service(auth_factory, test_ca):
    """A service in test mode, allowed to fetch documents from `localhost`, with a 1 s deadline."""
    return auth_factory(
        test_mode=True,
        env={
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(test_ca.cert_path),
            "AUTH_CIMD_TIMEOUT_MS": "1000",
        },
    )
