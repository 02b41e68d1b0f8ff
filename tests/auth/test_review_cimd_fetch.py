"""Client ID Metadata Document fetches: the deadline covers the whole fetch, and URLs the CIMD
specification forbids are never fetched."""

import time

import pytest

from tests.auth.cimd_server import CimdServer
from tests.harness.oauthflow import Browser, authorize_url, pkce


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


@pytest.fixture(scope="module")
def documents(test_ca):
    server = CimdServer(
        test_ca.issue("localhost", "127.0.0.1", stem="cimd-review"), {"/slow-headers.json": slow_headers}
    )
    try:
        yield server
    finally:
        server.stop()


def _authorize(service, github, client_id):
    agent = Browser(service, github)
    try:
        _, challenge = pkce()
        started = time.monotonic()
        outcome = agent.open(authorize_url(service, client_id, challenge))
        return outcome, time.monotonic() - started
    finally:
        agent.close()


def test_a_document_server_dripping_its_headers_cannot_hold_a_worker_past_the_deadline(cimd_service, github, documents):
    """Attack: slowloris on the metadata fetch. Each byte comes before the per-read timeout, so only
    a deadline over the whole fetch stops it; without one, a few such client_ids tie up every
    gunicorn thread, and /verify (every MCP request) with them."""
    outcome, elapsed = _authorize(cimd_service, github, documents.url("/slow-headers.json"))
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
    outcome, _ = _authorize(cimd_service, github, client_id)
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
    outcome, _ = _authorize(cimd_service, github, url)
    assert outcome.response.status_code == 400
    assert "invalid_client" in outcome.response.text
    assert "non-public address" in outcome.response.text or "does not resolve" in outcome.response.text
