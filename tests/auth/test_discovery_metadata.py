"""What a client discovers: AS metadata (RFC 8414, also at the OpenID path), protected resource
metadata per service host (RFC 9728, root and path-inserted), the JWKS."""

import pytest

from tests.harness.oauthflow import FETCH, ISSUER, TIME, api

REQUIRED = {
    "code_challenge_methods_supported": ["S256"],
    "authorization_response_iss_parameter_supported": True,
    "client_id_metadata_document_supported": True,
    "grant_types_supported": ["authorization_code", "refresh_token"],
    "response_types_supported": ["code"],
}


def test_authorization_server_metadata_names_the_issuer_and_what_exists(auth_service):
    with api(auth_service) as http:
        metadata = http.get("/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == ISSUER
        for key, value in REQUIRED.items():
            assert metadata[key] == value
        assert set(metadata["token_endpoint_auth_methods_supported"]) == {
            "none",
            "client_secret_basic",
            "client_secret_post",
        }
        assert metadata["scopes_supported"] == ["mcp"]
        # Every advertised endpoint exists (answers something other than 404/5xx).
        for key in (
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "jwks_uri",
        ):
            assert metadata[key].startswith(ISSUER + "/")
            path = metadata[key][len(ISSUER) :]
            response = http.get(path) if key in ("jwks_uri", "authorization_endpoint") else http.post(path)
            assert response.status_code not in (404, 405) and response.status_code < 500, (key, response.status_code)


def test_openid_configuration_is_the_same_document(auth_service):
    with api(auth_service) as http:
        a = http.get("/.well-known/oauth-authorization-server")
        b = http.get("/.well-known/openid-configuration")
    assert a.content == b.content


def test_metadata_is_valid_rfc8414_by_authlib(auth_service):
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    with api(auth_service) as http:
        AuthorizationServerMetadata(http.get("/.well-known/oauth-authorization-server").json()).validate()


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"])
@pytest.mark.parametrize("resource", [TIME, FETCH])
def test_protected_resource_metadata_follows_the_requested_host(auth_service, resource, path):
    host = resource.split("/")[2]
    with api(auth_service, host=host) as http:
        response = http.get(path)
    assert response.status_code == 200
    prm = response.json()
    assert prm["resource"] == resource
    assert prm["authorization_servers"] == [ISSUER]
    assert prm["bearer_methods_supported"] == ["header"]
    assert prm["scopes_supported"] == ["mcp"]


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("unknown.example.test", "/.well-known/oauth-protected-resource"),
        ("time.example.test", "/.well-known/oauth-protected-resource/other"),
        ("auth.example.test", "/.well-known/oauth-protected-resource"),
        ("time.example.test", "/.well-known/security.txt"),
        ("auth.example.test", "/.well-known/oauth-authorization-server/extra"),
    ],
)
def test_well_known_urls_that_are_not_served_answer_404(auth_service, host, path):
    with api(auth_service, host=host) as http:
        response = http.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def test_jwks_publishes_public_keys_only(auth_service):
    with api(auth_service) as http:
        keys = http.get("/jwks").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["kid"] for k in keys)
    assert not any(field in k for k in keys for field in ("d", "p", "q", "dp", "dq", "qi"))
