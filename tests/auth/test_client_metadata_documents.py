"""Client ID Metadata Documents: validated, cached, and fetched only through the SSRF guard."""

import pytest

from tests.auth.cimd_server import CimdServer, document, send_json, slow
from tests.harness.oauthflow import REDIRECT, Browser, authorize_url, exchange, pkce, refresh, verify


def good(handler, url):
    send_json(handler, document(url, [REDIRECT]), headers={"Cache-Control": "max-age=60"})


ROUTES = {
    "/good.json": good,
    "/loopback.json": good,
    "/other-id.json": lambda h, url: send_json(h, document("https://localhost/other.json", [REDIRECT])),
    "/no-redirect.json": lambda h, url: send_json(h, document(url, ["http://127.0.0.1:1/elsewhere"])),
    "/no-name.json": lambda h, url: send_json(h, {"client_id": url, "redirect_uris": [REDIRECT]}),
    "/big.json": lambda h, url: send_json(h, document(url, [REDIRECT], padding="x" * 40000)),
    "/slow.json": slow,
    "/redirect.json": lambda h, url: (
        h.send_response(302),
        h.send_header("Location", "/good.json"),
        h.send_header("Content-Length", "0"),
        h.end_headers(),
    ),
    "/secret.json": lambda h, url: send_json(
        h, document(url, [REDIRECT], token_endpoint_auth_method="client_secret_basic")
    ),
    "/not-json.json": lambda h, url: (
        h.send_response(200),
        h.send_header("Content-Length", "5"),
        h.end_headers(),
        h.wfile.write(b"hello"),
    ),
    "/bad-uri.json": lambda h, url: send_json(h, document(url, ["http://evil.example/cb"])),
    # Shaped like https://vscode.dev/oauth/client-metadata.json: it lists the device code grant.
    "/vscode.json": lambda h, url: send_json(
        h,
        document(
            url,
            ["http://127.0.0.1:33418/", "https://vscode.dev/redirect", REDIRECT],
            grant_types=["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            application_type="native",
            client_uri="https://vscode.dev/product",
        ),
    ),
    "/no-code-grant.json": lambda h, url: send_json(h, document(url, [REDIRECT], grant_types=["client_credentials"])),
    "/deep.json": lambda h, url: send_bytes(h, b"[" * 8000 + b"]" * 8000),
}


def send_bytes(handler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="module")
def documents(test_ca):
    server = CimdServer(test_ca.issue("localhost", "127.0.0.1", stem="cimd-docs"), ROUTES)
    try:
        yield server
    finally:
        server.stop()


def _open(service, github, client_id):
    agent = Browser(service, github)
    try:
        _, challenge = pkce()
        return agent, agent.open(authorize_url(service, client_id, challenge))
    except Exception:
        agent.close()
        raise


def test_a_good_document_is_a_client_that_goes_through_consent(cimd_service, github, documents):
    client_id = documents.url("/good.json")
    agent = Browser(cimd_service, github)
    try:
        verifier, challenge = pkce()
        outcome = agent.open(authorize_url(cimd_service, client_id, challenge))
        assert outcome.is_consent_page
        assert "Metadata client" in outcome.response.text and client_id in outcome.response.text
        params = agent.consent(outcome.response).params
        response = exchange(cimd_service, {"client_id": client_id}, params["code"], verifier)
        assert response.status_code == 200, response.text
        assert verify(cimd_service, response.json()["access_token"]).headers["x-auth-client-id"] == client_id
    finally:
        agent.close()
    assert documents.hits["/good.json"] == 1  # cached (max-age) for the token request


def test_a_document_listing_grant_types_this_server_lacks_is_still_a_client(cimd_service, github, documents):
    """VS Code's published document lists the device code grant besides authorization_code and
    refresh_token; refusing the whole client for it would lock VS Code out."""
    client_id = documents.url("/vscode.json")
    agent = Browser(cimd_service, github)
    try:
        verifier, challenge = pkce()
        outcome = agent.open(authorize_url(cimd_service, client_id, challenge))
        assert outcome.is_consent_page, outcome.response.text[:300]
        params = agent.consent(outcome.response).params
        tokens = exchange(cimd_service, {"client_id": client_id}, params["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        again = refresh(cimd_service, {"client_id": client_id}, tokens.json()["refresh_token"])
        assert again.status_code == 200, again.text
    finally:
        agent.close()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/other-id.json", "client_id differs"),
        ("/no-name.json", "client_name"),
        ("/big.json", "too large"),
        ("/slow.json", "too long"),
        ("/redirect.json", "HTTP 302"),
        ("/secret.json", "public"),
        ("/not-json.json", "not JSON"),
        ("/bad-uri.json", "invalid redirect URI"),
        ("/missing.json", "HTTP 404"),
        ("/no-code-grant.json", "lack authorization_code"),
    ],
)
def test_a_bad_document_is_refused_as_invalid_client(cimd_service, github, documents, path, reason):
    agent, outcome = _open(cimd_service, github, documents.url(path))
    agent.close()
    assert outcome.location is None
    assert outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert reason in outcome.response.text


def test_a_deeply_nested_document_is_refused_without_a_traceback(cimd_service, github, documents):
    """Attack: a document of 8,000 nested brackets (16 kB, within the size cap) made the parser
    raise RecursionError: a 500 and a traceback for every /authorize naming it."""
    offset = cimd_service.log_path.stat().st_size
    agent, outcome = _open(cimd_service, github, documents.url("/deep.json"))
    agent.close()
    assert outcome.location is None and outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert "nested deeper than" in outcome.response.text
    assert "Traceback" not in cimd_service.log_path.read_bytes()[offset:].decode(errors="replace")


def test_a_document_without_the_requested_redirect_uri_gets_no_redirect(cimd_service, github, documents):
    agent, outcome = _open(cimd_service, github, documents.url("/no-redirect.json"))
    agent.close()
    assert outcome.location is None and outcome.response.status_code == 400


def test_a_document_on_a_loopback_host_is_refused_without_the_test_allowance(auth_service, github, documents):
    for url in (documents.url("/loopback.json"), documents.url("/loopback.json", host="127.0.0.1")):
        agent, outcome = _open(auth_service, github, url)
        agent.close()
        assert outcome.response.status_code == 400
        assert "non-public address" in outcome.response.text
    assert documents.hits.get("/loopback.json", 0) == 0  # never connected


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/client.json",
        "https://192.168.1.10/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://[fd00::1]/client.json",
        "https://0.0.0.0/client.json",
        "https://[::ffff:127.0.0.1]/client.json",
    ],
)
def test_documents_on_private_link_local_and_metadata_addresses_are_refused(cimd_service, github, url):
    agent, outcome = _open(cimd_service, github, url)
    agent.close()
    assert outcome.response.status_code == 400
    assert "non-public address" in outcome.response.text


@pytest.mark.parametrize("url", ["http://localhost/client.json", "https://localhost/", "https://user@localhost/x"])
def test_non_https_or_pathless_client_ids_are_not_documents(cimd_service, github, url):
    agent, outcome = _open(cimd_service, github, url)
    agent.close()
    assert outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text


def test_document_fetches_are_rate_limited(auth_factory, redis_factory, test_ca, github, documents):
    service = auth_factory(
        redis_url=redis_factory().url,
        test_mode=True,
        env={
            "AUTH_TEST_CIMD_ALLOWED_HOSTS": "localhost",
            "SSL_CERT_FILE": str(test_ca.cert_path),
            "AUTH_RATELIMIT_CIMD": "2/minute",
        },
    )
    texts = []
    for i in range(3):
        agent, outcome = _open(service, github, documents.url(f"/missing-{i}.json"))
        agent.close()
        texts.append(outcome.response.text)
    assert "Too many client metadata document fetches" in texts[2]
