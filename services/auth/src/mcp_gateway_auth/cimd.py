"""Client ID Metadata Documents: a client_id that is an https URL names its own metadata.

The fetch is guarded against SSRF: https only, the host's addresses are resolved once and every one
must be public (no loopback, private, link-local, multicast, reserved or cloud-metadata address),
the connection goes to the checked address (no second DNS answer can swap it), redirects are not
followed, the body is capped and the whole fetch has a deadline. Documents are cached per their
HTTP cache headers, at most 24 hours.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from . import untrusted_json
from .clients import display_text_problem, redirect_uri_problem, supported_grant_types

MAX_CACHE_SECONDS = 86400
DEFAULT_CACHE_SECONDS = 300


class CimdError(Exception):
    """The document cannot be used; the message is safe to show."""


def looks_like_cimd(client_id: str | None) -> bool:
    if not client_id or not client_id.startswith("https://"):
        return False
    parts = urlsplit(client_id)
    return bool(parts.hostname) and parts.path not in ("", "/")


def client_id_problem(url: str) -> str | None:
    """Why a URL cannot be a metadata-document client_id (the CIMD specification's rules), or None."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password or parts.fragment:
        return "client_id must be an https URL without credentials or fragment"
    if "#" in url or "\\" in url or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        return "client_id must be a plain ASCII URL"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return "client_id must not contain dot path segments"
    return None


def _public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        # 6to4 and Teredo addresses carry an IPv4 address that a tunnel may deliver to.
        elif ip.sixtofour is not None and not _public_ip(ip.sixtofour):
            return False
        elif ip.teredo is not None:
            return False
    return _public_ip(ip)


# Name resolution has no timeout of its own: it runs here so the fetch's deadline covers it.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cimd-dns")


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(timeout, 0.01))
    except FutureTimeout as exc:
        raise CimdError("client metadata document took too long") from exc
    except (OSError, UnicodeError) as exc:
        raise CimdError("client_id host does not resolve") from exc
    return sorted({info[4][0] for info in infos})


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the address that was checked, never to a second DNS answer; `abort()` (from
    another thread) ends the exchange wherever it is: connect, handshake, headers or body."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._raw: socket.socket | None = None
        self.aborted = False

    def connect(self) -> None:
        self._raw = socket.create_connection((self._address, self.port), self.timeout)
        if self.aborted:
            raise OSError("aborted")
        self.sock = self._context.wrap_socket(self._raw, server_hostname=self.host)

    def abort(self) -> None:
        self.aborted = True
        for sock in (self.sock, self._raw):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class FetchPolicy:
    max_bytes: int
    timeout: float
    allowed_test_hosts: frozenset[str]


def _cache_seconds(headers: http.client.HTTPMessage) -> int:
    control = (headers.get("Cache-Control") or "").lower()
    if "no-store" in control or "no-cache" in control:
        return 0
    match = re.search(r"max-age=(\d+)", control)
    if match:
        return min(int(match.group(1)), MAX_CACHE_SECONDS)
    return DEFAULT_CACHE_SECONDS


def fetch_document(url: str, policy: FetchPolicy) -> tuple[dict, int]:
    """The parsed document and how long it may be cached; raises CimdError."""
    problem = client_id_problem(url)
    if problem:
        raise CimdError(problem)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise CimdError("client_id has an invalid port") from exc
    deadline = time.monotonic() + policy.timeout
    addresses = _resolve(host, port, policy.timeout)
    if not addresses:
        raise CimdError("client_id host does not resolve")
    if host not in policy.allowed_test_hosts and not all(_address_allowed(a) for a in addresses):
        raise CimdError("client_id host resolves to a non-public address")
    context = ssl.create_default_context()
    remaining = deadline - time.monotonic()
    connection = _PinnedHTTPSConnection(host, port, addresses[0], max(remaining, 0.01), context)
    # Each read has its own timeout, but a server dripping bytes never trips it: this ends the
    # whole exchange at the deadline.
    watchdog = threading.Timer(max(remaining, 0.01), connection.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"Accept": "application/json", "User-Agent": "mcp-gateway-auth"})
        response = connection.getresponse()
        if response.status != 200:
            raise CimdError(f"client metadata document answered HTTP {response.status} (redirects are not followed)")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > policy.max_bytes:
            raise CimdError("client metadata document is too large")
        body = b""
        while True:
            if time.monotonic() > deadline:
                raise CimdError("client metadata document took too long")
            chunk = response.read1(4096) if hasattr(response, "read1") else response.read(4096)
            if not chunk:
                break
            body += chunk
            if len(body) > policy.max_bytes:
                raise CimdError("client metadata document is too large")
        cache = _cache_seconds(response.headers)
    except (OSError, http.client.HTTPException, ssl.SSLError, ValueError) as exc:
        if connection.aborted or time.monotonic() > deadline:
            raise CimdError("client metadata document took too long") from exc
        raise CimdError("client metadata document could not be fetched") from exc
    finally:
        watchdog.cancel()
        connection.close()
    if connection.aborted:
        raise CimdError("client metadata document took too long")
    try:
        document = untrusted_json.loads(body, what="client metadata document")
    except untrusted_json.UntrustedJsonError as exc:
        raise CimdError(str(exc)) from exc
    return document, cache


def validate_document(url: str, document: object) -> dict:
    """The client metadata of a valid document; raises CimdError."""
    if not isinstance(document, dict):
        raise CimdError("client metadata document must be a JSON object")
    if document.get("client_id") != url:
        raise CimdError("client metadata document's client_id differs from its URL")
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CimdError("client metadata document needs a client_name")
    problem = display_text_problem(name)
    if problem:
        raise CimdError(f"client metadata document's client_name {problem}")
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > 10:
        raise CimdError("client metadata document needs redirect_uris")
    app_type = document.get("application_type") or "native"
    for uri in uris:
        if redirect_uri_problem(uri, app_type):
            raise CimdError("client metadata document has an invalid redirect URI")
    method = document.get("token_endpoint_auth_method") or "none"
    if method != "none":
        raise CimdError("only public metadata-document clients (token_endpoint_auth_method none) are supported")
    for secret_field in ("client_secret", "client_secret_expires_at"):
        if secret_field in document:
            raise CimdError(f"client metadata document must not contain {secret_field}")
    grant_types = supported_grant_types(document.get("grant_types"))
    if grant_types is None:
        raise CimdError("client metadata document's grant_types lack authorization_code")
    response_types = document.get("response_types")
    if response_types is not None and (not isinstance(response_types, list) or "code" not in response_types):
        raise CimdError("client metadata document's response_types lack code")
    metadata = {
        "client_name": name.strip(),
        "redirect_uris": uris,
        "token_endpoint_auth_method": "none",
        "grant_types": grant_types,
        "response_types": ["code"],
        "application_type": app_type,
    }
    for key in ("client_uri", "logo_uri", "scope", "software_id", "software_version"):
        if isinstance(document.get(key), str) and len(document[key]) <= 500:
            metadata[key] = document[key]
    return metadata
