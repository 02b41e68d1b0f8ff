#!/usr/bin/env python3
"""A GitHub-compatible OAuth server, for tests only (GitHub itself cannot be reached from here).

It speaks the parts of GitHub's OAuth web flow and REST API that the gateway uses, in
GitHub's shapes, reached through the GitHub Enterprise URL settings:

    GET  /login/oauth/authorize      login choice page, or auto-approval of a configured user
    POST /login/oauth/access_token   form or JSON in, form or JSON out (Accept), GitHub's errors
    GET  /user, /api/v3/user         the user JSON for a token
    GET  /user/orgs, /api/v3/user/orgs

and a control API for tests under /_stub/ (what it was asked, which user logs in).
Standard library only, so it also runs inside a throwaway guest with a bare python3.
It is not part of the product.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

CODE_TTL = 600
DOCS = "https://docs.github.com/rest"


class StubState:
    """Everything the stub knows; guarded by one lock because requests run in threads."""

    def __init__(self, client_id: str, client_secret: str, users: list[str], auto_user: str | None) -> None:
        self.lock = threading.Lock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.users: dict[str, dict[str, Any]] = {}
        for login in users:
            self.add_user(login)
        self.auto_user = auto_user
        if auto_user:
            self.add_user(auto_user)
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.log: list[dict[str, Any]] = []

    def add_user(self, login: str) -> None:
        if login not in self.users:
            number = 1000 + len(self.users) + 1
            self.users[login] = {
                "login": login,
                "id": number,
                "node_id": base64.b64encode(f"04:User{number}".encode()).decode(),
                "type": "User",
                "site_admin": False,
                "name": login.capitalize(),
                "email": f"{login.lower()}@users.noreply.example.test",
                "orgs": [],
            }


def _pkce_ok(challenge: str | None, method: str | None, verifier: str | None) -> bool:
    if not challenge:
        return True
    if not verifier:
        return False
    if (method or "plain").upper() == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    return secrets.compare_digest(verifier, challenge)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def make_handler(state: StubState, control_token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "GitHubStub/1.0"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(json.dumps({"stub": "github", "line": fmt % args}) + "\n")

        # -- plumbing ----------------------------------------------------------
        def _body(self) -> tuple[bytes, dict[str, Any]]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            fields: dict[str, Any] = {}
            if raw and ctype == "application/json":
                try:
                    loaded = json.loads(raw)
                    fields = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    fields = {}
            elif raw:
                fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            return raw, fields

        def _record(self, fields: dict[str, Any]) -> None:
            parts = urlsplit(self.path)
            with state.lock:
                state.log.append(
                    {
                        "time": time.time(),
                        "method": self.command,
                        "path": parts.path,
                        "query": {k: v[-1] for k, v in parse_qs(parts.query).items()},
                        "headers": {k: v for k, v in self.headers.items()},
                        "form": fields,
                    }
                )

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

        def _html(self, status: int, text: str) -> None:
            self._send(status, text.encode(), "text/html; charset=utf-8")

        def _redirect(self, location: str) -> None:
            self._send(302, b"", "text/html; charset=utf-8", {"Location": location})

        def _token_reply(self, payload: dict[str, str]) -> None:
            # GitHub answers form-encoded unless the client asks for JSON; errors come with 200.
            accept = (self.headers.get("Accept") or "").lower()
            if "application/json" in accept:
                self._json(200, payload)
            else:
                self._send(200, urlencode(payload).encode(), "application/x-www-form-urlencoded; charset=utf-8")

        # -- routes ------------------------------------------------------------
        def do_GET(self) -> None:
            self._record({})
            path = urlsplit(self.path).path
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if path == "/login/oauth/authorize":
                self._authorize(query)
            elif path in ("/user", "/api/v3/user"):
                self._user()
            elif path in ("/user/orgs", "/api/v3/user/orgs"):
                self._orgs()
            elif path == "/_stub/requests":
                if self._control_ok():
                    with state.lock:
                        self._json(200, state.log)
            elif path == "/_stub/health":
                self._json(200, {"status": "ok"})
            else:
                self._json(404, {"message": "Not Found", "documentation_url": DOCS})

        def do_POST(self) -> None:
            _, fields = self._body()
            self._record(fields)
            path = urlsplit(self.path).path
            if path == "/login/oauth/access_token":
                self._access_token(fields)
            elif path == "/login/oauth/authorize/decide":
                self._decide(fields)
            elif path == "/_stub/config":
                if self._control_ok():
                    self._configure(fields)
            elif path == "/_stub/reset":
                if self._control_ok():
                    with state.lock:
                        state.log.clear()
                    self._json(200, {"status": "ok"})
            else:
                self._json(404, {"message": "Not Found", "documentation_url": DOCS})

        def _control_ok(self) -> bool:
            if control_token and self.headers.get("X-Stub-Token") != control_token:
                self._json(403, {"message": "control token required"})
                return False
            return True

        def _configure(self, fields: dict[str, Any]) -> None:
            with state.lock:
                if "auto_user" in fields:
                    state.auto_user = fields["auto_user"] or None
                    if state.auto_user:
                        state.add_user(state.auto_user)
                for login in fields.get("users") or []:
                    state.add_user(login)
                for login, orgs in (fields.get("orgs") or {}).items():
                    state.add_user(login)
                    state.users[login]["orgs"] = list(orgs)
            self._json(200, {"status": "ok"})

        def _authorize(self, query: dict[str, str]) -> None:
            if query.get("client_id") != state.client_id:
                self._html(404, "<h1>404</h1><p>The OAuth application was not found.</p>")
                return
            redirect_uri = query.get("redirect_uri", "")
            if not redirect_uri.startswith(("http://", "https://")):
                self._html(400, "<h1>redirect_uri is missing or invalid</h1>")
                return
            with state.lock:
                auto = state.auto_user
                users = sorted(state.users)
            if auto:
                self._redirect(self._issue_code(auto, query))
                return
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
            )
            buttons = "".join(
                f'<button type="submit" name="login" value="{html.escape(u)}">Sign in as {html.escape(u)}</button>'
                for u in users
            )
            self._html(
                200,
                "<!doctype html><title>Sign in to GitHub (test)</title><h1>Sign in to GitHub (test server)</h1>"
                f'<form method="post" action="/login/oauth/authorize/decide">{hidden}{buttons}'
                '<button type="submit" name="login" value="">Cancel</button></form>',
            )

        def _decide(self, fields: dict[str, Any]) -> None:
            redirect_uri = fields.get("redirect_uri", "")
            login = fields.get("login") or ""
            with state.lock:
                known = login in state.users
            if not redirect_uri.startswith(("http://", "https://")):
                self._html(400, "<h1>redirect_uri is missing or invalid</h1>")
            elif not known:
                params = {
                    "error": "access_denied",
                    "error_description": "The user has denied your application access.",
                    "error_uri": f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors/#access-denied",
                }
                if fields.get("state"):
                    params["state"] = fields["state"]
                self._redirect(_with_query(redirect_uri, params))
            else:
                self._redirect(self._issue_code(login, fields))

        def _issue_code(self, login: str, query: dict[str, str]) -> str:
            code = secrets.token_hex(10)
            with state.lock:
                state.codes[code] = {
                    "login": login,
                    "redirect_uri": query.get("redirect_uri"),
                    "challenge": query.get("code_challenge"),
                    "method": query.get("code_challenge_method"),
                    "scope": query.get("scope", ""),
                    "expires": time.time() + CODE_TTL,
                }
            params = {"code": code}
            if query.get("state"):
                params["state"] = query["state"]
            return _with_query(query["redirect_uri"], params)

        def _access_token(self, fields: dict[str, Any]) -> None:
            client_id = fields.get("client_id")
            client_secret = fields.get("client_secret")
            basic = self.headers.get("Authorization", "")
            if basic.lower().startswith("basic "):
                try:
                    client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
                except ValueError:
                    client_id = client_secret = None
            if client_id != state.client_id or not secrets.compare_digest(
                str(client_secret or ""), state.client_secret
            ):
                self._token_reply(
                    {
                        "error": "incorrect_client_credentials",
                        "error_description": "The client_id and/or client_secret passed are incorrect.",
                        "error_uri": f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors/",
                    }
                )
                return
            with state.lock:
                grant = state.codes.pop(str(fields.get("code") or ""), None)
            bad_code = {
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
                "error_uri": f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
            }
            if grant is None or grant["expires"] < time.time():
                self._token_reply(bad_code)
                return
            if fields.get("redirect_uri") and fields["redirect_uri"] != grant["redirect_uri"]:
                self._token_reply(
                    {
                        "error": "redirect_uri_mismatch",
                        "error_description": "The redirect_uri MUST match the registered callback URL.",
                    }
                )
                return
            if not _pkce_ok(grant["challenge"], grant["method"], fields.get("code_verifier")):
                self._token_reply(bad_code)
                return
            token = "gho_" + secrets.token_urlsafe(27)
            with state.lock:
                state.tokens[token] = grant["login"]
            self._token_reply({"access_token": token, "token_type": "bearer", "scope": grant["scope"]})

        def _bearer_login(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() not in ("bearer", "token"):
                return None
            with state.lock:
                return state.tokens.get(token.strip())

        def _user(self) -> None:
            login = self._bearer_login()
            if login is None:
                self._json(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
                return
            with state.lock:
                user = {k: v for k, v in state.users[login].items() if k != "orgs"}
            self._json(200, user)

        def _orgs(self) -> None:
            login = self._bearer_login()
            if login is None:
                self._json(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
                return
            with state.lock:
                orgs = state.users[login]["orgs"]
            self._json(200, [{"login": org, "id": 5000 + i} for i, org in enumerate(orgs)])

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--client-id", required=True, help="the one OAuth app's client id")
    parser.add_argument("--client-secret", required=True, help="the one OAuth app's client secret")
    parser.add_argument("--users", default="", help="comma-separated logins offered on the login page")
    parser.add_argument("--auto-user", default="", help="login approved without a page (empty: show the page)")
    parser.add_argument("--control-token", default="", help="require this X-Stub-Token on /_stub/ control calls")
    args = parser.parse_args(argv)
    users = [u.strip() for u in args.users.split(",") if u.strip()]
    state = StubState(args.client_id, args.client_secret, users, args.auto_user.strip() or None)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state, args.control_token or None))
    server.daemon_threads = True
    sys.stderr.write(json.dumps({"stub": "github", "listening": f"{args.host}:{args.port}"}) + "\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
