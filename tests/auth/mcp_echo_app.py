"""A small MCP endpoint (official SDK, both protocol eras) for the end-to-end tests.

It refuses any request that still carries an Authorization header (the gateway's token must never
reach the MCP server) or lacks the X-Auth-User identity that ForwardAuth adds, so a successful tool
call through Traefik proves both. Run: python tests/auth/mcp_echo_app.py --port N
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("echo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def guarded(app):
    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if "authorization" in headers or not headers.get("x-auth-user"):
                body = b'{"error":"token passthrough or missing identity"}'
                await send(
                    {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return asgi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    # JSON answers, like the bridge's: headers go out with the answer. An SSE answer whose headers come
    # back while Traefik is still forwarding the request body can be cut off by Traefik (Go's
    # ReverseProxy); bench/traefik_early_headers.py measures it.
    app = server.streamable_http_app(
        transport_security=security,
        host="0.0.0.0",  # noqa: S104 - routing only
        json_response=True,
    )
    uvicorn.run(guarded(app), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
