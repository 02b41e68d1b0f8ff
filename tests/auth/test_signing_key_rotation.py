"""Key rotation: the first key signs, every listed key verifies and is published; `mcp-gateway keys`
rotates and retires the keys of a key directory while the service runs."""

import contextlib
import time
from types import SimpleNamespace

import jwt
from mcp_gateway_auth.keydir import load_pem
from mcp_gateway_auth.keys import kid_of

from tests.auth.admin_command import as_json, run
from tests.harness.auth import write_rsa_key
from tests.harness.oauthflow import Browser, api, register, tokens_for, verify
from tests.harness.procs import wait_until


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


def _key_directory(tmp_path, kid_begins_with=""):
    """A key directory as the auth role first provides it: one PEM file, no list yet. One key id
    (an RFC 7638 thumbprint) in 64 begins with "-"; `kid_begins_with="-"` makes this one do so."""
    directory = tmp_path / "keys"
    for _ in range(2000):
        key = write_rsa_key(directory / "signing-key.pem")
        if kid_of(load_pem(key).public_key()).startswith(kid_begins_with):
            break
    directory.chmod(0o700)
    return directory


@contextlib.contextmanager
def _service_with_a_key_directory(auth_factory, github, tmp_path, kid_begins_with=""):
    """Two workers on a key directory, a browser, a client and its first access token (the old key's)."""
    directory = _key_directory(tmp_path, kid_begins_with)
    service = auth_factory(workers=2, env={"AUTH_SIGNING_KEYS": str(directory)})
    agent = Browser(service, github)
    try:
        client = register(service)
        old_token = tokens_for(agent, client)["access_token"]
        (old_kid,) = _kids(service)
        yield SimpleNamespace(
            service=service, agent=agent, client=client, directory=directory, old_token=old_token, old_kid=old_kid
        )
    finally:
        agent.close()


def _always(check, times=8):
    """`check` holds on every one of several requests (they land on either worker)."""
    return all(check() for _ in range(times))


def test_keys_rotate_publishes_the_new_key_first_and_signs_with_it_after_a_few_seconds(auth_factory, github, tmp_path):
    with _service_with_a_key_directory(auth_factory, github, tmp_path) as setup:
        service, agent, client, directory = setup.service, setup.agent, setup.client, setup.directory
        old_token, old_kid = setup.old_token, setup.old_kid
        (listed,) = as_json(service, "keys", "list")["keys"]
        assert (listed["kid"], listed["state"]) == (old_kid, "signing")

        before = time.time()
        rotated = as_json(service, "keys", "rotate")
        new_kid, signs_from = rotated["kid"], rotated["signs_from"]
        assert new_kid != old_kid and signs_from >= int(before) + 5
        assert [(k["kid"], k["state"]) for k in rotated["keys"]] == [(new_kid, "next"), (old_kid, "signing")]
        # Every worker publishes the new key (re-read within a second) before any signs with it.
        assert wait_until(lambda: _always(lambda: _kids(service) == [new_kid, old_kid]), timeout=3)
        between = tokens_for(agent, client)["access_token"]
        if time.time() < signs_from - 0.5:  # a loaded machine may already be past it
            assert jwt.get_unverified_header(between)["kid"] == old_kid

        time.sleep(max(signs_from - time.time(), 0) + 0.5)
        new_token = tokens_for(agent, client)["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        assert _always(lambda: verify(service, old_token).status_code == 200)
        assert _always(lambda: verify(service, new_token).status_code == 200)
        states = {k["kid"]: k for k in as_json(service, "keys", "list")["keys"]}
        assert states[new_kid]["state"] == "signing"
        assert states[old_kid]["state"] == "verifying"
        assert states[old_kid]["verify_until"] >= signs_from + 1800  # the access-token lifetime
        # Listed keys are copies named by kid, readable by the service alone: whatever the role later
        # does to its own signing-key.pem (write the inventory's key again) changes no listed key.
        listed = sorted(p.name for p in directory.glob("*.pem"))
        assert listed == sorted(["signing-key.pem", f"{old_kid}.pem", f"{new_kid}.pem"])
        assert (directory / f"{new_kid}.pem").stat().st_mode & 0o777 == 0o600
        events = [e["event"] for e in as_json(service, "audit") if e.get("kind") == "operator"]
        assert "key_rotated" in events


def test_keys_retire_refuses_a_key_still_needed_and_a_retired_keys_tokens_are_refused(auth_factory, github, tmp_path):
    # The old key's id begins with "-", pasted as `keys list` prints it.
    with _service_with_a_key_directory(auth_factory, github, tmp_path, kid_begins_with="-") as setup:
        service, agent, client, directory = setup.service, setup.agent, setup.client, setup.directory
        old_token, old_kid = setup.old_token, setup.old_kid
        assert old_kid.startswith("-")
        rotated = as_json(service, "keys", "rotate")
        new_kid = rotated["kid"]

        refused = run(service, "keys", "retire", new_kid)
        assert (
            refused.returncode == 1 and "signs access tokens (" in refused.stderr and "rotate first" in refused.stderr
        )
        time.sleep(max(rotated["signs_from"] - time.time(), 0) + 0.5)  # the old key now only verifies
        refused = run(service, "keys", "retire", old_kid)
        assert refused.returncode == 1
        assert f"{old_kid} is still needed until 20" in refused.stderr and "--force" in refused.stderr
        assert (
            run(service, "keys", "retire", "no-such-kid")
            .stderr.strip()
            .endswith("no such key: no-such-kid (see `mcp-gateway keys list`)")
        )
        assert as_json(service, "keys", "retire") == {"retired": [], "keys": as_json(service, "keys", "list")["keys"]}
        assert _always(lambda: verify(service, old_token).status_code == 200)  # nothing changed

        retired = as_json(service, "keys", "retire", old_kid, "--force")
        assert retired["retired"] == [old_kid] and [k["kid"] for k in retired["keys"]] == [new_kid]
        assert sorted(p.name for p in directory.glob("*.pem")) == [f"{new_kid}.pem"]
        assert wait_until(lambda: _always(lambda: verify(service, old_token).status_code == 401), timeout=3)
        assert _always(lambda: _kids(service) == [new_kid])
        time.sleep(max(retired["keys"][0]["signs_from"] - time.time(), 0) + 0.5)
        new_token = tokens_for(agent, client)["access_token"]
        assert _always(lambda: verify(service, new_token).status_code == 200)
        audit = [e for e in as_json(service, "audit") if e.get("event") == "key_retired"]
        assert audit[0]["kid"] == old_kid and audit[0]["outcome"] == "forced"


def test_keys_rotate_refuses_a_fixed_list_of_key_files(auth_service):
    refused = run(auth_service, "keys", "rotate")
    assert refused.returncode == 1 and "AUTH_SIGNING_KEYS lists key files" in refused.stderr
    (listed,) = as_json(auth_service, "keys", "list")["keys"]
    assert listed["state"] == "signing" and listed["kid"] == _kids(auth_service)[0]


def test_keys_rotate_signs_in_gives_the_other_gateway_hosts_time_to_receive_the_key(auth_factory, github, tmp_path):
    # Several gateway hosts share one key directory copied from the first: the new key must not sign on one
    # host before every other host has it, or their /verify refuses the new tokens in between.
    with _service_with_a_key_directory(auth_factory, github, tmp_path) as setup:
        service, agent, client, old_kid = setup.service, setup.agent, setup.client, setup.old_kid
        refused = run(service, "keys", "rotate", "--signs-in", "2")
        assert refused.returncode != 0 and "--signs-in" in refused.stderr
        assert [k["kid"] for k in as_json(service, "keys", "list")["keys"]] == [old_kid]

        before = time.time()
        rotated = as_json(service, "keys", "rotate", "--signs-in", "60")
        assert rotated["signs_from"] >= int(before) + 60
        assert [(k["kid"], k["state"]) for k in rotated["keys"]] == [(rotated["kid"], "next"), (old_kid, "signing")]
        time.sleep(6)  # past the default activation delay: the old key still signs
        assert jwt.get_unverified_header(tokens_for(agent, client)["access_token"])["kid"] == old_kid
