"""The harness's Redis: a real server that wants its password and keeps data across a crash."""

from __future__ import annotations

import redis as redis_py

from tests.harness.procs import group_alive, port_open


def test_redis_answers_with_password_and_refuses_without(redis_server):
    client = redis_server.client()
    assert client.ping() is True
    anonymous = redis_py.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=5)
    try:
        anonymous.get("anything")
        raise AssertionError("Redis answered a client without the password")
    except redis_py.AuthenticationError:
        pass
    finally:
        anonymous.close()
        client.close()


def test_redis_keeps_writes_across_sigkill_thanks_to_aof(redis_factory):
    server = redis_factory()
    client = server.client()
    client.set("survivor", "yes")
    client.close()
    pgid = server.pid
    server.kill()
    assert not group_alive(pgid)
    assert not port_open(server.host, server.port)
    server.start()
    client = server.client()
    assert client.get("survivor") == b"yes"
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.close()
    server.stop()
    assert not group_alive(server.pid)
