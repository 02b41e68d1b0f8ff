"""The GitHub stand-in speaks GitHub's OAuth web flow and user API, in GitHub's shapes."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize(stub, challenge: str, state: str = "st-1") -> str:
    response = httpx.get(
        f"{stub.url}/login/oauth/authorize",
        params={
            "client_id": stub.client_id,
            "redirect_uri": "https://auth.example.test/callback",
            "state": state,
            "scope": "read:user",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.netloc == "auth.example.test"
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def test_web_flow_with_pkce_gives_a_token_for_the_user_api(github_stub):
    github_stub.set_user("octocat")
    verifier, challenge = _pkce()
    code = _authorize(github_stub, challenge)
    token = httpx.post(
        f"{github_stub.url}/login/oauth/access_token",
        data={
            "client_id": github_stub.client_id,
            "client_secret": github_stub.client_secret,
            "code": code,
            "redirect_uri": "https://auth.example.test/callback",
            "code_verifier": verifier,
        },
        headers={"Accept": "application/json"},
    ).json()
    assert token["token_type"] == "bearer"
    user = httpx.get(f"{github_stub.api_url}/user", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert user.status_code == 200
    assert user.json()["login"] == "octocat"
    assert isinstance(user.json()["id"], int)
    orgs = httpx.get(f"{github_stub.url}/user/orgs", headers={"Authorization": f"token {token['access_token']}"})
    assert orgs.json() == []
    sent = github_stub.requests("/login/oauth/access_token")[-1]["form"]
    assert sent["client_secret"] == github_stub.client_secret
    assert sent["code_verifier"] == verifier


def test_github_error_shapes(github_stub):
    verifier, challenge = _pkce()
    code = _authorize(github_stub, challenge)
    form = {"client_id": github_stub.client_id, "client_secret": "wrong", "code": code}
    wrong_secret = httpx.post(f"{github_stub.url}/login/oauth/access_token", data=form)
    # GitHub answers errors with 200 and, without Accept: json, form-encoded.
    assert wrong_secret.status_code == 200
    assert parse_qs(wrong_secret.text)["error"] == ["incorrect_client_credentials"]
    form.update(client_secret=github_stub.client_secret, code_verifier="not-the-verifier")
    bad_pkce = httpx.post(
        f"{github_stub.url}/login/oauth/access_token", data=form, headers={"Accept": "application/json"}
    )
    assert bad_pkce.json()["error"] == "bad_verification_code"
    # The code was consumed by the failed attempt, as GitHub does.
    form.update(code_verifier=verifier)
    replay = httpx.post(
        f"{github_stub.url}/login/oauth/access_token", json=form, headers={"Accept": "application/json"}
    )
    assert replay.json()["error"] == "bad_verification_code"
    anonymous = httpx.get(f"{github_stub.api_url}/user", headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "Bad credentials"


def test_login_page_when_no_user_is_preapproved(github_stub):
    github_stub.set_user(None)
    try:
        github_stub.add_users("hubot")
        page = httpx.get(
            f"{github_stub.url}/login/oauth/authorize",
            params={"client_id": github_stub.client_id, "redirect_uri": "https://a.test/cb", "state": "<x>"},
        )
        assert page.status_code == 200
        assert "Sign in as hubot" in page.text
        assert "<x>" not in page.text  # reflected input is escaped, even in a test server
        denied = httpx.post(
            f"{github_stub.url}/login/oauth/authorize/decide",
            data={"redirect_uri": "https://a.test/cb", "state": "s", "login": ""},
        )
        assert denied.status_code == 302
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
        unknown_app = httpx.get(f"{github_stub.url}/login/oauth/authorize", params={"client_id": "nope"})
        assert unknown_app.status_code == 404
    finally:
        github_stub.set_user("octocat")
