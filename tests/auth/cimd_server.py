"""An HTTPS server in the test process that serves client metadata documents, good and bad."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.harness.procs import LOOPBACK, free_port

Behaviour = Callable[[BaseHTTPRequestHandler, str], None]


def send_json(handler: BaseHTTPRequestHandler, document: object, status: int = 200, headers=None) -> None:
    body = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


class CimdServer:
    """`routes` maps a path to a behaviour(handler, url_of_that_path); `hits` counts requests per path."""

    def __init__(self, cert, routes: dict[str, Behaviour], host_name: str = "localhost") -> None:
        self.port = free_port()
        self.host_name = host_name
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                behaviour = routes.get(self.path)
                if behaviour is None:
                    self.send_error(404)
                    return
                behaviour(self, server.url(self.path))

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_path, cert.key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host_name}:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def document(url: str, redirect_uris: list[str], **extra: object) -> dict:
    return {"client_id": url, "client_name": "Metadata client", "redirect_uris": redirect_uris, **extra}


def slow(handler: BaseHTTPRequestHandler, url: str, seconds: float = 3.0) -> None:
    body = json.dumps(document(url, ["http://127.0.0.1:33418/callback"])).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    deadline = time.monotonic() + seconds
    for byte in body:
        if time.monotonic() > deadline:
            break
        try:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(seconds / max(len(body), 1) * 4)
