"""The consent page in a real browser (Debian's Chromium, headless, through Traefik over TLS):
approve, deny, remembered, and no framing."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.harness.oauthflow import api, authorize_url, pkce, register
from tests.harness.procs import LOOPBACK

# One gateway per worker session: under pytest-xdist (--dist loadgroup) the suite's gateway tests share a worker.
pytestmark = [pytest.mark.slow, pytest.mark.browser]
playwright_api = pytest.importorskip("playwright.sync_api")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    "--host-resolver-rules=MAP *.example.test 127.0.0.1",
]


@pytest.fixture(scope="module")
def chromium():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ClientCallback:
    """The MCP client's loopback redirect URI: a real listener that records what it receives."""

    def __init__(self) -> None:
        self.received: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/callback?"):
                    sink.received.append(f"http://{LOOPBACK}:{self.server.server_port}{self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"client got it")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.httpd.server_port}/callback"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def callback():
    sink = ClientCallback()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def page(chromium, gateway, callback):
    context = chromium.new_context(ignore_https_errors=True)
    tab = context.new_page()
    tab.received = callback.received
    tab.callback = callback.url
    try:
        yield tab
    finally:
        context.close()


def _authorize(gateway, client, callback, state="st"):
    _, challenge = pkce()
    resource = gateway.url("time", "/mcp")
    return authorize_url(
        gateway.auth, client["client_id"], challenge, redirect_uri=callback, resource=resource, state=state
    )


def _client(gateway, name, callback):
    return register(gateway.auth, client_name=name, redirect_uris=[callback])


def _params(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_approve_then_remembered(page, gateway, github_stub):
    github_stub.set_user("octocat")
    client = _client(gateway, "Chromium Approves", page.callback)
    response = page.goto(_authorize(gateway, client, page.callback, "first"))
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert page.inner_text("#client-name") == "Chromium Approves"
    assert page.is_visible("#localhost-warning")
    assert "time" in page.inner_text("#resource")
    page.click("#approve")
    page.wait_for_url(f"{page.callback}**")
    first = _params(page.received[-1])
    assert first["code"] and first["state"] == "first" and first["iss"] == gateway.auth.issuer
    page.goto(_authorize(gateway, client, page.callback, "second"))
    page.wait_for_url(f"{page.callback}**")
    second = _params(page.received[-1])
    assert second["state"] == "second" and second["code"] != first["code"]


def test_deny(page, gateway):
    client = _client(gateway, "Chromium Denies", page.callback)
    page.goto(_authorize(gateway, client, page.callback, "no"))
    page.click("#deny")
    page.wait_for_url(f"{page.callback}**")
    assert _params(page.received[-1])["error"] == "access_denied"


def test_the_consent_page_cannot_be_framed(page, gateway):
    client = _client(gateway, "Framed", page.callback)
    url = _authorize(gateway, client, page.callback)
    page.goto(gateway.url("auth", "/.well-known/oauth-authorization-server"))
    page.set_content(f'<iframe id="f" src="{url}" width="600" height="400"></iframe>')
    page.wait_for_timeout(1500)
    frame = page.frames[-1]
    assert frame is not page.main_frame
    content = frame.content()
    assert "Approve" not in content


def test_no_script_runs_from_a_hostile_client_name(page, gateway):
    client = _client(
        gateway, "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>", page.callback
    )
    page.goto(_authorize(gateway, client, page.callback))
    assert page.title() != "pwned"
    assert "<script>" in page.inner_text("#client-name")
    with api(gateway.auth) as http:
        assert http.get("/health").status_code == 200
