"""Oversized and malformed bodies get 400/413 and leave nothing behind."""

import pytest

from tests.harness.oauthflow import REDIRECT, api


def _keys(redis_server) -> set[bytes]:
    return {k for k in redis_server.client().scan_iter("mcpgw:client:*")}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"redirect_uris": ["' + b"a" * 70000 + b'"]}', "application/json", 413),
        (b"{not json", "application/json", 400),
        (b"[1, 2, 3]", "application/json", 400),
        (b'"just a string"', "application/json", 400),
        (b"", "application/json", 400),
        (b"redirect_uris=http://127.0.0.1/cb", "application/x-www-form-urlencoded", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        (b'{"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "' + b"n" * 600 + b'"}', "application/json", 400),
    ],
    ids=["oversized", "broken-json", "array", "string", "empty", "form", "binary", "long-name"],
)
def test_bad_registration_bodies_are_refused_and_nothing_is_stored(
    auth_service, redis_server, body, content_type, status
):
    before = _keys(redis_server)
    with api(auth_service) as http:
        response = http.post("/register", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]
    assert _keys(redis_server) == before


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_token_endpoints_refuse_oversized_json_and_query_bodies(auth_service, path):
    # A fresh connection each: the server closes one whose body it did not read.
    with api(auth_service) as http:
        big = http.post(
            path, content=b"a=" + b"b" * 70000, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert big.status_code == 413
    with api(auth_service) as http:
        as_json = http.post(path, json={"grant_type": "authorization_code"})
        assert as_json.status_code == 400
    with api(auth_service) as http:
        in_query = http.post(f"{path}?grant_type=refresh_token&refresh_token=x", data={"a": "b"})
        assert in_query.status_code == 400


def test_unknown_grant_type_is_unsupported_grant_type(auth_service):
    with api(auth_service) as http:
        response = http.post(
            "/token", data={"grant_type": "password", "username": "a", "password": "b", "client_id": "x"}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_wrong_methods_are_405_json(auth_service):
    with api(auth_service) as http:
        assert http.get("/token").status_code == 405
        assert http.get("/register").status_code == 405
        assert http.post("/jwks").status_code == 405


def test_update_with_a_bad_body_changes_nothing(auth_service):
    from tests.harness.oauthflow import register

    client = register(auth_service)
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    with api(auth_service, headers=headers) as http:
        bad = http.put(
            f"/register/{client['client_id']}",
            json={"client_id": client["client_id"], "redirect_uris": ["http://evil.example/cb"]},
        )
        assert bad.status_code == 400
        assert http.get(f"/register/{client['client_id']}").json()["redirect_uris"] == [REDIRECT]


# 60 kB and 54 kB: under the 64 KiB body cap, so only the parser's own limits stand in the way.
DEEP_ARRAY = b"[" * 30000 + b"]" * 30000
DEEP_OBJECT = b'{"a":' * 9000 + b"1" + b"}" * 9000
DEEP_BODIES = pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array-30000-deep", "object-9000-deep"])


def _new_log(service, offset: int) -> str:
    return service.log_path.read_bytes()[offset:].decode(errors="replace")


@DEEP_BODIES
def test_deeply_nested_json_is_refused_at_registration_without_a_traceback(auth_service, redis_server, body):
    """Attack: a body of nested brackets, small enough to pass the size cap, made Python's JSON
    parser raise RecursionError: a 500 and a traceback in the log for every request."""
    before = _keys(redis_server)
    offset = auth_service.log_path.stat().st_size
    with api(auth_service) as http:
        response = http.post("/register", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert "nested" in response.json()["error_description"]
    assert _keys(redis_server) == before
    assert "Traceback" not in _new_log(auth_service, offset)


@DEEP_BODIES
def test_deeply_nested_json_is_refused_on_client_update_without_a_traceback(auth_service, body):
    from tests.harness.oauthflow import register

    client = register(auth_service)
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    offset = auth_service.log_path.stat().st_size
    with api(auth_service, headers=headers) as http:
        response = http.put(
            f"/register/{client['client_id']}", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_client_metadata"
        assert "nested" in response.json()["error_description"]
        stored = http.get(f"/register/{client['client_id']}").json()
    assert stored["client_name"] == client["client_name"] and stored["redirect_uris"] == [REDIRECT]
    assert "Traceback" not in _new_log(auth_service, offset)


def test_ordinary_nesting_such_as_a_jwks_still_parses(auth_service):
    """The nesting limit is far above what real metadata uses (object, jwks, keys, key, key_ops)."""
    from joserfc.jwk import RSAKey

    key = {**RSAKey.generate_key(2048).as_dict(private=False), "key_ops": ["verify"]}
    with api(auth_service) as http:
        response = http.post(
            "/register",
            json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "jwks": {"keys": [key]}},
        )
    assert response.status_code == 201, response.text
