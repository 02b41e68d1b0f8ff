"""Forged X-Forwarded-* headers from the client do not survive the trusted hop (Traefik, configured by the
traefik role as deployed)."""

import ssl

import httpx
import pytest

from tests.auth.gateway import resolve_test_names, running_gateway

# One gateway per worker session: under pytest-xdist (--dist loadgroup) the suite's gateway tests share a worker.
pytestmark = [pytest.mark.slow]


def _client(gateway) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(gateway.ca_file)), timeout=10)


def test_forged_forwarded_host_cannot_change_the_protected_resource_metadata(gateway):
    with resolve_test_names(), _client(gateway) as http:
        response = http.get(
            gateway.url("time", "/.well-known/oauth-protected-resource/mcp"),
            headers={
                "X-Forwarded-Host": "evil.example.test",
                "X-Forwarded-Proto": "http",
                "Forwarded": "host=evil.example.test;proto=http",
            },
        )
    assert response.status_code == 200
    assert response.json()["resource"] == gateway.url("time", "/mcp")


def test_forged_forwarded_headers_cannot_steer_forward_auth_to_another_resource(gateway):
    with resolve_test_names(), _client(gateway) as http:
        response = http.post(
            gateway.url("time", "/mcp"),
            headers={
                "X-Forwarded-Host": "evil.example.test",
                "X-Forwarded-Uri": "/elsewhere",
                "X-Forwarded-Proto": "http",
                "Content-Type": "application/json",
            },
            content=b"{}",
        )
    assert response.status_code == 401
    assert (
        f'resource_metadata="{gateway.url("time", "/.well-known/oauth-protected-resource/mcp")}"'
        in (response.headers["www-authenticate"])
    )


def test_forged_forwarded_for_cannot_evade_rate_limits(tmp_path_factory, redis_factory, github_stub, test_ca):
    # Its own gateway: the registration limit is lowered, and counted in a Redis of its own.
    redis = redis_factory()
    limit = {"AUTH_RATELIMIT_REGISTER": "2/minute"}
    with running_gateway(tmp_path_factory, redis, github_stub, test_ca, env=limit) as gw:
        body = {"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
        with resolve_test_names(), _client(gw) as http:
            statuses = [
                http.post(
                    gw.url("auth", "/register"), json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"}
                ).status_code
                for i in range(4)
            ]
    assert statuses[:2] == [201, 201]
    assert statuses[2:] == [429, 429]
