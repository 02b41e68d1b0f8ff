"""RFC 7009 and RFC 7662: callers authenticate and only touch or see their own tokens."""

import jwt

from tests.harness.oauthflow import api, refresh, register, signed_by_service, tokens_for, verify


def _post(service, path, client, **form):
    data = dict(form)
    auth = None
    if client.get("client_secret"):
        auth = (client["client_id"], client["client_secret"])
    else:
        data["client_id"] = client["client_id"]
    with api(service) as http:
        return http.post(path, data=data, auth=auth)


def test_revoking_a_refresh_token_ends_the_grant(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    assert _post(auth_service, "/revoke", client, token=tokens["refresh_token"]).status_code == 200
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400
    assert verify(auth_service, tokens["access_token"]).status_code == 401


def test_another_clients_token_is_neither_revoked_nor_revealed(browser, auth_service):
    owner = register(auth_service)
    other = register(auth_service, token_endpoint_auth_method="client_secret_basic")
    tokens = tokens_for(browser, owner)
    assert _post(auth_service, "/revoke", other, token=tokens["access_token"]).status_code == 200
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    assert _post(auth_service, "/introspect", other, token=tokens["access_token"]).json() == {"active": False}
    assert _post(auth_service, "/introspect", other, token=tokens["refresh_token"]).json() == {"active": False}


def test_introspection_of_own_tokens(browser, auth_service):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    info = _post(auth_service, "/introspect", client, token=tokens["access_token"]).json()
    assert info["active"] is True
    assert info["client_id"] == client["client_id"]
    assert info["aud"] == "https://time.example.test/mcp"
    assert info["username"] == "octocat"
    assert _post(auth_service, "/introspect", client, token="unknown").json() == {"active": False}
    _post(auth_service, "/revoke", client, token=tokens["access_token"])
    assert _post(auth_service, "/introspect", client, token=tokens["access_token"]).json() == {"active": False}


def test_revocation_and_introspection_require_client_authentication(browser, auth_service):
    client = register(auth_service, token_endpoint_auth_method="client_secret_post")
    with api(auth_service) as http:
        for path in ("/revoke", "/introspect"):
            response = http.post(path, data={"token": "x"})
            assert response.status_code in (400, 401)
            assert response.json()["error"] == "invalid_client"
            wrong = http.post(path, data={"token": "x", "client_id": client["client_id"], "client_secret": "bad"})
            assert wrong.json()["error"] == "invalid_client"


def test_a_jwt_of_another_type_is_neither_introspected_nor_revoked_as_an_access_token(browser, auth_service):
    """Attack: a JWT the gateway's key signed but typed `JWT` (not `at+jwt`), carrying a real token's
    claims, must not be reported active, and revoking it must not touch the real token."""
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    for typ in ("JWT", "id_token+jwt", None):
        twin = signed_by_service(auth_service, claims, typ=typ)
        assert _post(auth_service, "/introspect", client, token=twin).json() == {"active": False}
        assert _post(auth_service, "/revoke", client, token=twin).status_code == 200
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    assert _post(auth_service, "/introspect", client, token=tokens["access_token"]).json()["active"] is True
