"""Signing in through an OpenID Connect provider (node-oidc-provider, a real one): state, nonce and
PKCE towards it, the allowlist by email domain and group, the re-check at refresh, and the id_token
attacks (another provider's token, another client's, an expired or replayed one)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import jwt
from jwt.algorithms import RSAAlgorithm

from tests.auth.admin_command import as_json, run
from tests.auth.conftest import ISSUER, OIDC_RESOURCES, oidc_env
from tests.harness.auth import AuthService
from tests.harness.oauthflow import (
    FETCH,
    TIME,
    Browser,
    Outcome,
    authorize_url,
    get_code,
    pkce,
    refresh,
    register,
    tokens_for,
    verify,
)
from tests.harness.oidc import OidcProvider

# The OpenID Connect service never sends the browser to GitHub: the stub's address only fills the slot.
GITHUB_UNUSED = SimpleNamespace(url="http://github.invalid")


def provider_request(browser: Browser, provider: OidcProvider) -> dict[str, str]:
    """The authorization request the gateway sent the browser to the provider with."""
    sent = [url for url in browser.history if url.startswith(f"{provider.issuer}/auth?")]
    assert sent, browser.history
    return {k: v[0] for k, v in parse_qs(urlsplit(sent[-1]).query).items()}


def test_a_group_member_signs_in_and_the_gateway_names_them_by_email(oidc_browser, oidc_service, idp):
    client = register(oidc_service)
    tokens = tokens_for(oidc_browser, client, resource=FETCH)
    answer = verify(oidc_service, tokens["access_token"], resource=FETCH)
    assert answer.status_code == 200
    assert answer.headers["X-Auth-User"] == "alice@example.org"
    sent = provider_request(oidc_browser, idp)
    assert sent["client_id"] == idp.client_id
    assert sent["redirect_uri"] == f"{ISSUER}/callback"
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"]
    assert len(sent["state"]) >= 32 and len(sent["nonce"]) >= 16
    assert set(sent["scope"].split()) >= {"openid", "email", "groups"}
    # The provider put the gateway's nonce into the id_token it issued.
    issued = jwt.decode(idp.last_id_token(), options={"verify_signature": False})
    assert issued["nonce"] == sent["nonce"] and issued["aud"] == idp.client_id


def test_extra_authorization_parameters_reach_the_provider_and_the_refresh_still_rechecks(
    shared_services, oidc_provider, test_ca, github, idp
):
    """Google's way to a refresh token (access_type=offline, prompt=consent), set in the inventory, is in
    the authorization request the provider receives, next to the gateway's own state, nonce and PKCE."""
    google_way = json.dumps({"access_type": "offline", "prompt": "consent"})
    env = oidc_env(oidc_provider, test_ca, AUTH_OIDC_AUTHORIZATION_PARAMS=google_way)
    service = shared_services.get(empty_store=True, resources=OIDC_RESOURCES, env=env)
    browser = Browser(service, github, idp=idp)
    try:
        client = register(service)
        tokens = tokens_for(browser, client, resource=FETCH)
        received = idp.last_authorization()
        assert received is not None
        assert received["access_type"] == "offline" and received["prompt"] == "consent", received
        assert received == provider_request(browser, idp)  # what the gateway sent is what arrived
        assert received["client_id"] == idp.client_id and received["redirect_uri"] == f"{ISSUER}/callback"
        assert received["code_challenge_method"] == "S256" and len(received["state"]) >= 32 and received["nonce"]
        # the sign-in kept the provider's refresh token: the gateway's refresh asks the provider again
        assert refresh(service, client, tokens["refresh_token"], resource=FETCH).status_code == 200
    finally:
        browser.close()


def test_a_user_of_the_domain_outside_the_group_may_use_only_the_services_open_to_the_domain(
    oidc_browser, oidc_service, idp
):
    idp.set_user("bob")  # bob@example.org, in no group
    client = register(oidc_service)
    assert verify(oidc_service, tokens_for(oidc_browser, client)["access_token"]).status_code == 200
    refused = get_code(oidc_browser, client["client_id"], pkce()[1], resource=FETCH, state="b")
    assert refused["error"] == "access_denied" and refused["state"] == "b" and "code" not in refused


def test_a_user_outside_the_domain_and_the_groups_is_refused(oidc_browser, oidc_service, idp):
    idp.set_account("dave", email="dave@example.org.evil.test", email_verified=True, groups=["other"])
    idp.set_user("dave")
    params = get_code(oidc_browser, register(oidc_service)["client_id"], pkce()[1])
    assert params["error"] == "access_denied" and "code" not in params


def test_a_group_member_outside_the_domain_is_admitted_by_the_group(oidc_browser, oidc_service, idp):
    idp.set_user("carol")  # carol@elsewhere.test, in mcp-users
    tokens = tokens_for(oidc_browser, register(oidc_service), resource=FETCH)
    assert verify(oidc_service, tokens["access_token"], resource=FETCH).headers["X-Auth-User"] == "carol@elsewhere.test"


def test_an_unverified_email_does_not_name_the_user(oidc_browser, oidc_service, idp):
    """eve's account claims alice's address, unverified: taking it would make eve alice."""
    idp.set_user("eve")
    outcome = oidc_browser.open(authorize_url(oidc_service, register(oidc_service)["client_id"], pkce()[1]))
    outcome = oidc_browser.consent(outcome.response)
    assert outcome.location is None
    assert outcome.response.status_code == 502
    assert "has not verified this email address" in outcome.response.text


def test_a_refresh_asks_the_provider_again_and_a_removed_group_member_is_refused(oidc_browser, oidc_service, idp):
    client = register(oidc_service)
    tokens = tokens_for(oidc_browser, client, resource=FETCH)
    renewed = refresh(oidc_service, client, tokens["refresh_token"], resource=FETCH)
    assert renewed.status_code == 200, renewed.text
    tokens = renewed.json()
    idp.set_account("alice", email="alice@example.org", email_verified=True, groups=[])
    refused = refresh(oidc_service, client, tokens["refresh_token"], resource=FETCH)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert refused.json()["error_description"] == "The user is no longer allowed"
    # The whole grant is gone: the access token issued before the removal no longer passes either.
    assert verify(oidc_service, tokens["access_token"], resource=FETCH).status_code == 401


def test_a_user_the_provider_no_longer_knows_is_refused_at_refresh(oidc_browser, oidc_service, idp):
    client = register(oidc_service)
    tokens = tokens_for(oidc_browser, client)
    idp.remove_account("alice")
    refused = refresh(oidc_service, client, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "no longer accepts this sign-in" in refused.json()["error_description"]
    assert verify(oidc_service, tokens["access_token"]).status_code == 401


# -- id_token attacks: the provider's token answer carries an id_token the gateway must refuse --------
def login_with_id_token(service: AuthService, idp: OidcProvider, forge: Callable[[str], str]) -> Outcome:
    """Sign alice in from a new browser, but the provider's /token answer to the gateway carries
    `forge(nonce)`, where `nonce` is the one the gateway sent for this sign-in: what an attacker
    answering for the provider, or replaying a captured token, would try."""
    idp.set_user(None)  # stop at the provider's login page to learn the nonce
    browser = Browser(service, GITHUB_UNUSED, idp=idp)
    try:
        client = register(service)
        outcome = browser.open(authorize_url(service, client["client_id"], pkce()[1], state="x"))
        outcome = browser.consent(outcome.response)
        assert outcome.location is None and "Sign in" in outcome.response.text
        idp.tamper_next_id_token(forge(provider_request(browser, idp)["nonce"]))
        idp.set_user("alice")
        return browser.open(browser.history[-1])
    finally:
        browser.close()


def provider_key(provider: OidcProvider) -> tuple[object, str]:
    jwk = json.loads(Path(provider.jwk_path).read_text())
    return RSAAlgorithm.from_jwk(json.dumps(jwk)), jwk["kid"]


def minted(provider: OidcProvider, nonce: str, kid: str | None = None, **changes: object) -> str:
    """An id_token signed with the provider's own key: correct in every respect but `changes`
    (and the key id, when `kid` is given)."""
    key, own_kid = provider_key(provider)
    kid = kid or own_kid
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "sub": "alice",
        "aud": provider.client_id,
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "email": "alice@example.org",
        "email_verified": True,
        "groups": ["mcp-users"],
    }
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def assert_refused(outcome: Outcome, reason: str) -> None:
    assert outcome.location is None, f"the client got an answer: {outcome.location}"
    assert outcome.response.status_code == 502
    assert "id_token was refused" in outcome.response.text and reason in outcome.response.text


def test_a_correct_id_token_minted_with_the_providers_key_is_accepted(oidc_browser, oidc_service, idp):
    """The control for the attacks below: only the one thing each changes gets it refused."""
    outcome = login_with_id_token(oidc_service, idp, lambda nonce: minted(idp, nonce))
    assert "code" in outcome.params


def test_an_id_token_of_another_provider_with_its_own_key_is_refused(
    oidc_browser, oidc_service, idp, tmp_path, test_ca
):
    """The attacker runs a provider of their own, with the gateway's client id, and has it sign alice
    in with the gateway's nonce: a genuine token, but the trusted provider's JWKS lacks its key."""
    with OidcProvider(
        tmp_path, test_ca, redirect_uri=f"{ISSUER}/callback", client_id=idp.client_id, client_secret="x" * 20
    ) as rogue:
        outcome = login_with_id_token(oidc_service, idp, lambda nonce: rogue.id_token_for_gateway("alice", nonce))
    assert_refused(outcome, "No key for kid")
    # Even with the trusted issuer's name and key id in it, a token signed with another key is refused.
    trusted_kid = provider_key(idp)[1]
    forged = login_with_id_token(oidc_service, idp, lambda nonce: minted(rogue, nonce, kid=trusted_kid, iss=idp.issuer))
    assert_refused(forged, "signature")


def test_an_id_token_of_another_issuer_signed_with_the_same_key_is_refused(
    oidc_browser, oidc_service, idp, tmp_path, test_ca
):
    """A second provider sharing the key (a copied key, a multi-tenant signer): the signature is
    good, the issuer is not."""
    with OidcProvider(
        tmp_path,
        test_ca,
        redirect_uri=f"{ISSUER}/callback",
        jwk_path=idp.jwk_path,
        client_id=idp.client_id,
        client_secret="x" * 20,
    ) as twin:
        outcome = login_with_id_token(oidc_service, idp, lambda nonce: twin.id_token_for_gateway("alice", nonce))
    assert_refused(outcome, "iss")


def test_an_id_token_for_another_client_of_the_provider_is_refused(oidc_browser, oidc_service, idp):
    # Genuine, with the gateway's nonce (the attacker runs the other app's sign-in with it), but its
    # audience is other-app.
    outcome = login_with_id_token(oidc_service, idp, lambda nonce: idp.id_token_for_other_client("alice", nonce))
    assert_refused(outcome, "")
    outcome = login_with_id_token(oidc_service, idp, lambda nonce: minted(idp, nonce, aud="other-app"))
    assert_refused(outcome, "")
    # The gateway named only as the authorized party (azp), not in the audience: still not for it.
    outcome = login_with_id_token(
        oidc_service, idp, lambda nonce: minted(idp, nonce, aud="other-app", azp=idp.client_id)
    )
    assert_refused(outcome, "aud")


def test_an_expired_id_token_is_refused(oidc_browser, oidc_service, idp):
    hour_ago = int(time.time()) - 3600
    forge = lambda nonce: minted(idp, nonce, iat=hour_ago - 300, exp=hour_ago)  # noqa: E731
    assert_refused(login_with_id_token(oidc_service, idp, forge), "exp")


def test_a_replayed_id_token_with_the_nonce_of_an_earlier_sign_in_is_refused(oidc_browser, oidc_service, idp):
    tokens_for(oidc_browser, register(oidc_service))
    captured = idp.last_id_token()  # alice's genuine id_token of that sign-in
    outcome = login_with_id_token(oidc_service, idp, lambda nonce: captured)
    assert_refused(outcome, "nonce")


def test_a_provider_answering_the_code_exchange_with_an_error_shows_an_error_page(oidc_browser, oidc_service, idp):
    idp.fail_next_token_request("server_error")
    outcome = oidc_browser.open(authorize_url(oidc_service, register(oidc_service)["client_id"], pkce()[1]))
    outcome = oidc_browser.consent(outcome.response)
    assert outcome.location is None and outcome.response.status_code == 502
    assert "refused the sign-in (server_error)" in outcome.response.text


def test_a_provider_sending_the_browser_back_with_an_error_gives_the_client_access_denied(
    oidc_browser, oidc_service, idp
):
    idp.set_user(None)
    outcome = oidc_browser.open(authorize_url(oidc_service, register(oidc_service)["client_id"], pkce()[1], state="c"))
    oidc_browser.consent(outcome.response)
    state = provider_request(oidc_browser, idp)["state"]
    cancelled = oidc_browser.open(f"{ISSUER}/callback?error=access_denied&state={state}")
    assert cancelled.params["error"] == "access_denied" and cancelled.params["state"] == "c"


def test_each_authorization_goes_to_the_provider_so_each_grant_has_its_own_provider_tokens(
    oidc_browser, oidc_service, idp
):
    resource = TIME
    client = register(oidc_service)
    tokens_for(oidc_browser, client, resource=resource)
    before = len([u for u in oidc_browser.history if u.startswith(f"{idp.issuer}/auth?")])
    second = tokens_for(oidc_browser, client, resource=resource)
    after = len([u for u in oidc_browser.history if u.startswith(f"{idp.issuer}/auth?")])
    assert after == before + 1
    assert refresh(oidc_service, client, second["refresh_token"]).status_code == 200


def test_the_operator_lists_and_bans_a_user_named_by_email(oidc_browser, oidc_service, idp):
    client = register(oidc_service)
    tokens = tokens_for(oidc_browser, client, resource=FETCH)
    listed = as_json(oidc_service, "users", "list")
    users = {u["login"]: u for u in listed["users"]}
    # Rules are not users; alice's services come from the claims her grant keeps.
    assert set(users) == {"alice@example.org"}
    assert users["alice@example.org"]["services"] == ["time", "fetch"]
    fetch = next(s for s in listed["services"] if s["name"] == "fetch")
    assert fetch["allowed"] == ["group:mcp-users"] and fetch["within"] == ["@example.org", "group:mcp-users"]

    banned = run(oidc_service, "users", "ban", "Alice@Example.org", "--reason", "left")
    assert banned.returncode == 0, banned.stderr
    assert verify(oidc_service, tokens["access_token"], resource=FETCH).status_code == 401
    assert run(oidc_service, "users", "unban", "alice@example.org").returncode == 0
