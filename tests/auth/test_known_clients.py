"""Registration and authorization shaped like the clients of PROTOCOL.md §5."""

import pytest

from tests.harness.oauthflow import api, exchange, get_code, pkce, refresh, verify

CLIENTS = {
    "claude.ai": {
        "client_name": "Claude",
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "mcp",
    },
    "claude-code": {
        "client_name": "Claude Code",
        "redirect_uris": ["http://localhost/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    },
    "inspector": {
        "client_name": "MCP Inspector",
        "redirect_uris": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp",
    },
    # VS Code registers for the device code grant too (unsupported here: left out, not refused).
    "vscode": {
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"],
        "redirect_uris": [
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://localhost/",
            "http://127.0.0.1/",
            "http://localhost:33418/",
            "http://127.0.0.1:33418/",
        ],
        "scope": "mcp",
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    },
}
REDIRECTS = {
    "claude.ai": "https://claude.ai/api/mcp/auth_callback",
    "claude-code": "http://localhost:51789/callback",
    "inspector": "http://localhost:6274/oauth/callback",
    "vscode": "http://127.0.0.1:33418/",
}


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_client_shape_registers_authorizes_and_refreshes(browser, auth_service, name):
    with api(auth_service, headers={"Origin": "https://inspector.example"}) as http:
        response = http.post("/register", json=CLIENTS[name])
    assert response.status_code == 201, response.text
    client = response.json()
    assert client["grant_types"] == ["authorization_code", "refresh_token"]  # what is registered
    redirect = REDIRECTS[name]
    verifier, challenge = pkce()
    params = get_code(browser, client["client_id"], challenge, redirect_uri=redirect)
    assert params["iss"] == auth_service.issuer
    tokens = exchange(auth_service, client, params["code"], verifier, redirect_uri=redirect)
    assert tokens.status_code == 200, tokens.text
    assert verify(auth_service, tokens.json()["access_token"]).status_code == 200
    assert refresh(auth_service, client, tokens.json()["refresh_token"]).status_code == 200
