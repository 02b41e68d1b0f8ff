"""Every parameter a person's browser can carry into a page is escaped; pages forbid scripts."""

import pytest

from tests.harness.oauthflow import api, authorize_url, pkce, register

PAYLOAD = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"
RAW = ("<script>alert(1)</script>", "<img src=x onerror")


def _clean(response) -> None:
    body = response.text
    assert not any(marker in body for marker in RAW), body[:800]
    if response.headers.get("content-type", "").startswith("text/html"):
        assert "default-src 'none'" in response.headers["content-security-policy"]
    else:
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "param",
    [
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "resource",
        "response_type",
        "code_challenge",
        "code_challenge_method",
        "prompt",
    ],
)
def test_authorize_parameters_are_never_reflected_raw(browser, auth_service, param):
    client = register(auth_service)
    _, challenge = pkce()
    client_id = PAYLOAD if param == "client_id" else client["client_id"]
    overrides = {} if param == "client_id" else {param: PAYLOAD}
    outcome = browser.open(authorize_url(auth_service, client_id, challenge, **overrides))
    assert outcome.response.status_code < 500
    if outcome.location is None:
        _clean(outcome.response)
    else:
        assert "<" not in outcome.location and '"' not in outcome.location


def test_client_metadata_is_escaped_on_the_consent_page(browser, auth_service):
    client = register(auth_service, client_name=PAYLOAD, client_uri="https://client.example.com/")
    _, challenge = pkce()
    outcome = browser.open(authorize_url(auth_service, client["client_id"], challenge))
    assert outcome.is_consent_page
    _clean(outcome.response)
    assert "&lt;script&gt;" in outcome.response.text


@pytest.mark.parametrize(
    "path",
    [
        f"/callback?state={PAYLOAD}&code={PAYLOAD}",
        f"/callback?error={PAYLOAD}&error_description={PAYLOAD}",
        f"/register/{PAYLOAD}",
        f"/{PAYLOAD}",
        f"/.well-known/oauth-protected-resource/{PAYLOAD}",
    ],
)
def test_error_pages_and_json_errors_escape_what_they_show(auth_service, path):
    with api(auth_service) as http:
        _clean(http.get(path))


@pytest.mark.parametrize("field", ["grant_type", "token_type_hint", "client_id", "resource", "scope"])
def test_token_endpoint_errors_survive_hostile_values(auth_service, field):
    form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "c", field: PAYLOAD}
    with api(auth_service) as http:
        for path in ("/token", "/revoke", "/introspect"):
            response = http.post(path, data={**form, "token": "x"})
            assert response.status_code < 500
            _clean(response)


def test_consent_form_fields_are_escaped(browser, auth_service):
    with api(auth_service) as http:
        response = http.post("/consent", data={"csrf": PAYLOAD, "pending": PAYLOAD, "decision": PAYLOAD})
    _clean(response)
    assert response.status_code == 400
