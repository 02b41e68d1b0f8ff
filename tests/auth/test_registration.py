"""Dynamic client registration (RFC 7591) and client management (RFC 7592)."""

import pytest

from tests.harness.oauthflow import REDIRECT, Browser, api, authorize_url, pkce, register, tokens_for, verify
from tests.harness.procs import wait_until


def test_public_client_registration_returns_what_rfc7591_and_7592_promise(auth_service):
    client = register(auth_service)
    assert client["client_id"] and client["client_id_issued_at"] > 0
    assert "client_secret" not in client
    assert client["token_endpoint_auth_method"] == "none"
    assert client["registration_access_token"]
    assert client["registration_client_uri"] == f"https://auth.example.test/register/{client['client_id']}"
    assert client["redirect_uris"] == [REDIRECT]


def test_confidential_client_gets_a_secret_that_is_stored_only_hashed(auth_service, redis_server):
    client = register(auth_service, token_endpoint_auth_method="client_secret_basic")
    assert client["client_secret"]
    raw = redis_server.client().get(f"mcpgw:client:{client['client_id']}")
    assert raw and client["client_secret"].encode() not in raw
    assert client["registration_access_token"].encode() not in raw


def test_a_client_without_auth_method_defaults_to_client_secret_basic(auth_service):
    with api(auth_service) as http:
        response = http.post("/register", json={"redirect_uris": [REDIRECT], "client_name": "x"})
    assert response.status_code == 201
    assert response.json()["token_endpoint_auth_method"] == "client_secret_basic"
    assert response.json()["client_secret"]


@pytest.mark.parametrize(
    "uris",
    [
        ["http://example.com/cb"],
        ["http://localhost.evil.com/cb"],
        ["http://127.0.0.1.evil.com/cb"],
        ["http://localhost@evil.com/cb"],
        ["https://example.com/cb#fragment"],
        ["javascript:alert(1)"],
        ["data:text/html,hi"],
        ["https://ex ample.com/cb"],
        ["relative/path"],
        [],
        "https://example.com/cb",
        [1],
    ],
)
def test_registration_refuses_unsafe_redirect_uris(auth_service, uris):
    with api(auth_service) as http:
        response = http.post("/register", json={"redirect_uris": uris, "client_name": "x"})
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")


@pytest.mark.parametrize(
    "uri", ["https://client.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "http://localhost:9/cb"]
)
def test_registration_accepts_https_and_loopback_redirect_uris(auth_service, uri):
    register(auth_service, redirect_uris=[uri], application_type="web")


def test_private_use_schemes_are_for_native_apps_only(auth_service):
    register(auth_service, redirect_uris=["com.example.app:/oauth2redirect"], application_type="native")
    with api(auth_service) as http:
        response = http.post(
            "/register",
            json={"redirect_uris": ["com.example.app:/cb"], "application_type": "web", "client_name": "x"},
        )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "metadata",
    [
        {"grant_types": ["client_credentials"]},
        {"grant_types": ["implicit"]},
        {"response_types": ["token"]},
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"application_type": "desktop"},
        {"scope": "admin"},
        {"client_name": ["not", "a", "string"]},
    ],
)
def test_registration_refuses_unsupported_metadata(auth_service, metadata):
    with api(auth_service) as http:
        response = http.post("/register", json={"redirect_uris": [REDIRECT], **metadata})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


def test_client_configuration_read_update_delete(auth_service):
    client = register(auth_service)
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    path = f"/register/{client['client_id']}"
    with api(auth_service, headers=headers) as http:
        read = http.get(path)
        assert read.status_code == 200
        assert read.json()["client_id"] == client["client_id"]
        assert read.json()["redirect_uris"] == [REDIRECT]
        update = http.put(
            path,
            json={
                "client_id": client["client_id"],
                "client_name": "Renamed",
                "redirect_uris": [REDIRECT, "http://localhost/other"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            },
        )
        assert update.status_code == 200, update.text
        assert update.json()["client_name"] == "Renamed"
        assert http.delete(path).status_code == 204
        assert http.get(path).status_code == 401


def test_registration_token_guessing_gets_the_same_answer_for_unknown_clients_and_wrong_tokens(auth_service):
    client = register(auth_service)
    answers = []
    with api(auth_service) as http:
        for path, token in [
            (f"/register/{client['client_id']}", "wrong-token"),
            ("/register/no-such-client", client["registration_access_token"]),
            ("/register/no-such-client", "wrong-token"),
            (f"/register/{client['client_id']}", None),
        ]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = http.get(path, headers=headers)
            answers.append((response.status_code, response.text, response.headers.get("www-authenticate")))
    assert len(set(answers)) == 1
    assert answers[0][0] == 401


def test_a_registration_token_of_one_client_does_not_open_another(auth_service):
    a, b = register(auth_service), register(auth_service)
    with api(auth_service, headers={"Authorization": f"Bearer {a['registration_access_token']}"}) as http:
        assert http.get(f"/register/{b['client_id']}").status_code == 401
        assert http.delete(f"/register/{b['client_id']}").status_code == 401


def test_deleting_a_client_revokes_its_tokens(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    with api(auth_service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
        assert http.delete(f"/register/{client['client_id']}").status_code == 204
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    with api(auth_service) as http:
        response = http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": client["client_id"],
            },
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_an_expired_registration_answers_invalid_client_so_clients_re_register(shared_services, github):
    service = shared_services.get(env={"AUTH_CLIENT_TTL": "1"})  # the shortest life a registration can have
    client = register(service)

    def refresh_answer():
        with api(service) as http:
            return http.post(
                "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": client["client_id"]}
            )

    assert wait_until(lambda: refresh_answer().status_code == 401, timeout=10, interval=0.2)
    response = refresh_answer()
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    agent = Browser(service, github)
    try:
        _, challenge = pkce()
        outcome = agent.open(authorize_url(service, client["client_id"], challenge))
    finally:
        agent.close()
    assert outcome.location is None and "invalid_client" in outcome.response.text
