"""Key rotation: the first key signs, every listed key verifies and is published."""

import jwt

from tests.harness.auth import write_rsa_key
from tests.harness.oauthflow import Browser, api, register, tokens_for, verify


def _kids(service):
    with api(service) as http:
        return [k["kid"] for k in http.get("/jwks").json()["keys"]]


def test_old_tokens_keep_working_while_the_old_key_is_listed(auth_service, browser, auth_factory, github, tmp_path):
    # Before the rotation: the shared service, signing with its one key.
    (old,), new = auth_service.signing_keys, write_rsa_key(tmp_path / "new.pem")
    old_token = tokens_for(browser, register(auth_service))["access_token"]
    (old_kid,) = _kids(auth_service)

    rotated = auth_factory(signing_keys=[new, old])
    kids = _kids(rotated)
    assert len(kids) == 2 and kids[1] == old_kid
    assert verify(rotated, old_token).status_code == 200
    agent = Browser(rotated, github)
    try:
        new_token = tokens_for(agent, register(rotated))["access_token"]
    finally:
        agent.close()
    assert jwt.get_unverified_header(new_token)["kid"] == kids[0]
    rotated.stop()

    retired = auth_factory(signing_keys=[new])
    assert _kids(retired) == [kids[0]]
    assert verify(retired, old_token).status_code == 401
    assert verify(retired, new_token).status_code == 200
