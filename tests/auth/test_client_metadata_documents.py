"""Client ID Metadata Documents: validated, cached, and fetched only through the SSRF guard, within
a deadline over the whole fetch; URLs the CIMD specification forbids are never fetched."""

import time

import pytest

from tests.auth.cimd_server import CimdServer, document, send_json, slow
from tests.harness.oauthflow import REDIRECT, Browser, authorize_url, exchange, pkce, refresh, verify


def good(handler, url):
    send_json(handler, document(url, [REDIRECT]), headers={"Cache-Control": "max-age=60"})


def slow_headers(handler, url, seconds: float = 6.0) -> None:
    """A slowloris answer: the status line, then one header byte at a time, never a body."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    handler.wfile.flush()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            handler.wfile.write(b"a")
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(0.2)


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
    "/slow-headers.json": slow_headers,
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


def test_document_fetches_are_rate_limited(shared_services, test_ca, github, documents):
    service = shared_services.get(
        empty_store=True,  # the fetch counter starts at zero
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


def test_a_document_server_dripping_its_headers_cannot_hold_a_worker_past_the_deadline(cimd_service, github, documents):
    """Attack: slowloris on the metadata fetch. Each byte comes before the per-read timeout, so only
    a deadline over the whole fetch stops it; without one, a few such client_ids tie up every
    gunicorn thread, and /verify (every MCP request) with them."""
    started = time.monotonic()
    agent, outcome = _open(cimd_service, github, documents.url("/slow-headers.json"))
    elapsed = time.monotonic() - started
    agent.close()
    assert outcome.location is None and outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert "took too long" in outcome.response.text
    assert elapsed < 3.0, f"the fetch held the request for {elapsed:.1f} s with a 1 s deadline"


@pytest.mark.parametrize(
    "path",
    ["/a/../slow-headers.json", "/./slow-headers.json", "/a/%2e%2e/slow-headers.json", "/x/%2E/slow-headers.json"],
)
def test_client_ids_with_dot_segments_are_refused_without_a_fetch(cimd_service, github, documents, path):
    """The CIMD specification: the client_id URL MUST NOT contain single- or double-dot path
    segments. A server that normalizes them would serve another path's document under a client_id
    that reads, on the consent page, like a different one."""
    client_id = f"https://localhost:{documents.port}{path}"
    before = dict(documents.hits)
    agent, outcome = _open(cimd_service, github, client_id)
    agent.close()
    assert outcome.location is None and outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert documents.hits == before


@pytest.mark.parametrize(
    "url",
    [
        "https://[2002:7f00:1::]/client.json",  # 6to4 of 127.0.0.1
        "https://[2002:a9fe:a9fe::1]/client.json",  # 6to4 of 169.254.169.254
        "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/client.json",  # Teredo
        "https://[64:ff9b::a9fe:a9fe]/client.json",  # NAT64 of the metadata address
        "https://2130706433/client.json",  # 127.0.0.1 written as one decimal number
        "https://0177.0.0.1/client.json",  # 127.0.0.1 in octal
    ],
)
def test_tunnelled_and_odd_forms_of_internal_addresses_are_refused(cimd_service, github, url):
    """SSRF guard: addresses that embed an internal IPv4 address, or spell one oddly, are not public."""
    agent, outcome = _open(cimd_service, github, url)
    agent.close()
    assert outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert "non-public address" in outcome.response.text or "does not resolve" in outcome.response.text
