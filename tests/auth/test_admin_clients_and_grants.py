"""`mcp-gateway clients` and `grants`: what an operator sees, and that deleting or revoking ends the
tokens at once (refresh refused, /verify refused)."""

import jwt

from tests.auth.admin_command import as_json, ok, run
from tests.harness.oauthflow import TIME, refresh, register, tokens_for, verify


def _gid(tokens: dict) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["gid"]


def test_revoking_a_users_grants_ends_their_tokens(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    result = ok(auth_service, "grants", "revoke", "--user", " OctoCat ")
    assert result.stdout.strip().startswith("revoked ") and result.stdout.strip().endswith(" grant(s) of octocat")
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400


def test_clients_are_listed_with_their_kind_hosts_dates_and_users_then_deleted(auth_service, browser):
    client = register(auth_service, client_name="Listed")
    tokens = tokens_for(browser, client)
    listed = next(c for c in as_json(auth_service, "clients", "list") if c["client_id"] == client["client_id"])
    assert {
        "client_name": "Listed",
        "kind": "registered",
        "redirect_hosts": ["127.0.0.1"],
        "users": ["octocat"],
    }.items() <= listed.items()
    assert listed["created_at"] == client["client_id_issued_at"]
    assert listed["last_used_at"] >= listed["created_at"]
    table = ok(auth_service, "clients", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["CLIENT", "ID", "NAME"]
    assert any(line.startswith(client["client_id"]) and "Listed" in line for line in table.splitlines())

    shown = as_json(auth_service, "clients", "show", client["client_id"])
    assert [g["grant_id"] for g in shown["grants"]] == [_gid(tokens)]

    deleted = ok(auth_service, "clients", "delete", client["client_id"])
    assert deleted.stdout.strip() == f"deleted {client['client_id']} and revoked 1 grant(s)"
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code in (400, 401)
    for command in ("show", "delete"):
        missing = run(auth_service, "clients", command, client["client_id"])
        assert missing.returncode == 1 and f"no such client: {client['client_id']}" in missing.stderr


def test_grants_of_a_client_and_of_a_user_are_listed_until_revoked(auth_service, browser):
    client = register(auth_service, client_name="Granted")
    tokens = tokens_for(browser, client)
    gid = _gid(tokens)

    (mine,) = as_json(auth_service, "grants", "list", "--client", client["client_id"])
    assert {"grant_id": gid, "user": "octocat", "client_id": client["client_id"], "resources": [TIME]}.items() <= (
        mine.items()
    )
    assert gid in {grant["grant_id"] for grant in as_json(auth_service, "grants", "list", "--user", " OctoCat ")}
    both = as_json(auth_service, "grants", "list", "--user", "octocat", "--client", client["client_id"])
    assert [g["grant_id"] for g in both] == [gid]
    assert gid in {grant["grant_id"] for grant in as_json(auth_service, "grants", "list")}

    assert ok(auth_service, "grants", "revoke", gid).stdout.strip() == f"revoked grant {gid}"
    assert as_json(auth_service, "grants", "list", "--client", client["client_id"]) == []
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400
    again = run(auth_service, "grants", "revoke", gid)
    assert again.returncode == 1 and f"no such grant: {gid}" in again.stderr


def test_revoking_every_grant_asks_first(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    declined = run(auth_service, "grants", "revoke", "--all", stdin="n\n")
    assert declined.returncode == 1 and "Revoke every grant?" in declined.stderr
    assert verify(auth_service, tokens["access_token"]).status_code == 200
    done = as_json(auth_service, "grants", "revoke", "--all", "--yes")
    assert done["grants_revoked"] >= 1
    assert verify(auth_service, tokens["access_token"]).status_code == 401


def test_bad_arguments_exit_2_with_a_message_and_change_nothing(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    cases = {
        ("grants", "revoke"): "give exactly one of GRANT_ID, --user LOGIN, --client CLIENT_ID or --all",
        ("grants", "revoke", "--user", "octocat", "--all"): "give exactly one of",
        ("grants", "revoke", "--user", "octo cat"): "is not a login",
        ("grants", "list", "--user", "../etc"): "is not a login",
        ("users", "ban", "-"): "is not a login",
        ("users", "ban", "group:mcp-users"): "is not a login",
        ("audit", "--limit", "0"): "0 is not in the range",
        ("clients", "list", "--jsn"): "No such option '--jsn'",
        ("clients", "frobnicate"): "No such command 'frobnicate'",
    }
    for args, message in cases.items():
        result = run(auth_service, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert verify(auth_service, tokens["access_token"]).status_code == 200


def test_every_new_client_id_can_be_typed_as_a_command_argument(auth_service):
    """A client id that began with "-" (one in 64 did) was read by the command as an unknown option."""
    ids = [register(auth_service)["client_id"] for _ in range(256)]  # each would miss one in 64 at most
    assert [client_id for client_id in ids if client_id.startswith("-")] == []


def test_an_id_that_begins_with_a_dash_is_taken_as_typed(auth_service):
    """Registrations made before client ids stopped beginning with "-", and one grant id in 64, look
    like options; an operator pastes them as `clients list` and `grants list` print them."""
    from mcp_gateway_auth.store import Store

    store = Store(auth_service.env["AUTH_REDIS_URL"])
    dashed = []
    for name in ("Dashed", "Dashed after --"):
        client = register(auth_service, client_name=name)
        dashed.append("-" + client["client_id"][1:])
        store.save_client({**store.get_client(client["client_id"]), "client_id": dashed[-1]}, 600)
    assert as_json(auth_service, "clients", "show", dashed[0])["client_name"] == "Dashed"
    ok(auth_service, "clients", "delete", dashed[0])
    ok(auth_service, "clients", "delete", "--json", "--", dashed[1])
    assert store.get_client(dashed[0]) is None and store.get_client(dashed[1]) is None

    unknown = run(auth_service, "grants", "revoke", "-PK3vr2kjEj979Ud9mGOpXae")
    assert unknown.returncode == 1 and "no such grant: -PK3vr2kjEj979Ud9mGOpXae" in unknown.stderr
    mistyped = run(auth_service, "grants", "revoke", "-P")
    assert mistyped.returncode == 2 and "No such option '-P'" in mistyped.stderr
