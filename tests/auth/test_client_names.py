"""A client's name cannot disguise itself on the consent page: names with characters that reorder,
hide or break the text around them are refused at registration, on RFC 7592 update and in client
metadata documents; ordinary names in any script are shown exactly as registered."""

import json

import pytest

from tests.auth.cimd_server import CimdServer, document, send_json
from tests.harness.oauthflow import REDIRECT, Browser, api, authorize_url, pkce, register

# Attack: each name makes the consent page (or a terminal showing it) read differently from what
# was registered. "Notes\u202eexe.lanretni" shows as "Notesinternal.exe", for one.
UNSAFE_NAMES = {
    "right-to-left-override": "Acme Notes\u202eexe.lanretni",
    "left-to-right-embedding": "Acme \u202aNotes",
    "right-to-left-embedding": "Acme \u202bNotes",
    "pop-directional-formatting": "Acme \u202cNotes",
    "left-to-right-override": "Acme \u202dNotes",
    "left-to-right-isolate": "Acme \u2066Notes",
    "right-to-left-isolate": "Acme \u2067Notes",
    "first-strong-isolate": "Acme \u2068Notes",
    "pop-directional-isolate": "Acme \u2069Notes",
    "left-to-right-mark": "Acme \u200eNotes",
    "right-to-left-mark": "Acme \u200fNotes",
    "arabic-letter-mark": "Acme \u061cNotes",
    "nul": "Acme\x00Notes",
    "c0-control": "Acme\x07Notes",
    "newline": "Acme Notes\nApproved by your administrator",
    "delete": "Acme\x7fNotes",
    "c1-control": "Acme\x85Notes",
    "c1-control-sequence-introducer": "Acme\x9b31mNotes",
    "terminal-escape-sequence": "Acme\x1b[2J\x1b[31mNotes",
    "line-separator": "Acme\u2028Notes",
    "paragraph-separator": "Acme\u2029Notes",
    "unpaired-surrogate": "Acme\ud800Notes",
}
ORDINARY = "Café Ω 日本"


def _send(http, method: str, path: str, body: dict):
    # Escaped JSON, as a client may send it: an unpaired surrogate has no UTF-8 form of its own.
    content = json.dumps(body, ensure_ascii=True).encode()
    return http.request(method, path, content=content, headers={"Content-Type": "application/json"})


def _client_keys(redis_server) -> set[bytes]:
    return set(redis_server.client().scan_iter("mcpgw:client:*"))


def _consent_page(service, github, client_id: str):
    agent = Browser(service, github)
    try:
        _, challenge = pkce()
        return agent.open(authorize_url(service, client_id, challenge))
    finally:
        agent.close()


@pytest.mark.parametrize("name", UNSAFE_NAMES.values(), ids=UNSAFE_NAMES.keys())
def test_registration_refuses_a_disguising_client_name(auth_service, redis_server, name):
    before = _client_keys(redis_server)
    body = {"client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    with api(auth_service) as http:
        response = _send(http, "POST", "/register", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert response.json()["error_description"].startswith("client_name contains U+")
    assert _client_keys(redis_server) == before


@pytest.mark.parametrize("name", UNSAFE_NAMES.values(), ids=UNSAFE_NAMES.keys())
def test_an_update_cannot_rename_a_client_to_a_disguising_name(auth_service, name):
    client = register(auth_service, client_name="Acme Notes")
    body = {
        "client_id": client["client_id"],
        "client_name": name,
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    }
    path = f"/register/{client['client_id']}"
    with api(auth_service, headers={"Authorization": f"Bearer {client['registration_access_token']}"}) as http:
        response = _send(http, "PUT", path, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_client_metadata"
        assert response.json()["error_description"].startswith("client_name contains U+")
        assert http.get(path).json()["client_name"] == "Acme Notes"


def test_an_ordinary_non_ascii_name_is_registered_and_shown_exactly(auth_service, github):
    client = register(auth_service, client_name=ORDINARY)
    assert client["client_name"] == ORDINARY
    outcome = _consent_page(auth_service, github, client["client_id"])
    assert outcome.is_consent_page
    assert f'<span id="client-name">{ORDINARY}</span>' in outcome.response.text


def test_a_disguising_name_stored_before_this_check_is_not_shown(auth_service, redis_server, github):
    """A registration from an earlier version, or a cached metadata document, may still carry such a
    name: the consent page names the client by its client_id instead."""
    client = register(auth_service, client_name="Acme Notes")
    key = f"mcpgw:client:{client['client_id']}"
    record = json.loads(redis_server.client().get(key))
    record["metadata"]["client_name"] = UNSAFE_NAMES["right-to-left-override"]
    redis_server.client().set(key, json.dumps(record), keepttl=True)
    outcome = _consent_page(auth_service, github, client["client_id"])
    assert outcome.is_consent_page
    assert f'<span id="client-name">{client["client_id"]}</span>' in outcome.response.text
    assert "\u202e" not in outcome.response.text


@pytest.fixture(scope="module")
def documents(test_ca):
    routes = {
        f"/{case}.json": (lambda h, url, name=name: send_json(h, document(url, [REDIRECT], client_name=name)))
        for case, name in {**UNSAFE_NAMES, "ordinary": ORDINARY}.items()
    }
    server = CimdServer(test_ca.issue("localhost", "127.0.0.1", stem="cimd-names"), routes)
    try:
        yield server
    finally:
        server.stop()


def test_metadata_documents_with_a_disguising_name_are_refused(cimd_service, github, documents):
    """The same names, published in client metadata documents (one test-mode service for all)."""
    for case in UNSAFE_NAMES:
        outcome = _consent_page(cimd_service, github, documents.url(f"/{case}.json"))
        assert outcome.location is None and outcome.response.status_code == 400, case
        assert "invalid_client" in outcome.response.text, case
        assert "client_name contains U+" in outcome.response.text, case
    assert set(documents.hits) == {f"/{case}.json" for case in UNSAFE_NAMES}  # each one fetched, and refused
    ordinary = _consent_page(cimd_service, github, documents.url("/ordinary.json"))
    assert ordinary.is_consent_page
    assert f'<span id="client-name">{ORDINARY}</span>' in ordinary.response.text
