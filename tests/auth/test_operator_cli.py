"""Operator commands: list clients, delete a client, revoke a user; tokens stop working at once."""

import json

import jwt
from mcp_gateway_auth import create_app

from tests.harness.oauthflow import TIME, refresh, register, tokens_for, verify


def _cli(auth_service):
    env = {k: v for k, v in auth_service.env.items() if k.startswith("AUTH_")}
    return create_app(env).test_cli_runner()


def test_revoke_user_ends_their_tokens(auth_service, browser):
    client = register(auth_service)
    tokens = tokens_for(browser, client)
    result = _cli(auth_service).invoke(args=["gateway", "revoke-user", "OctoCat"])
    assert result.exit_code == 0, result.output
    assert "revoked" in result.output
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    assert refresh(auth_service, client, tokens["refresh_token"]).status_code == 400


def test_list_and_delete_clients(auth_service, browser):
    client = register(auth_service, client_name="Listed")
    tokens = tokens_for(browser, client)
    runner = _cli(auth_service)
    listed = [json.loads(line) for line in runner.invoke(args=["gateway", "clients"]).output.splitlines()]
    assert {"client_id": client["client_id"], "client_name": "Listed"}.items() <= next(
        c for c in listed if c["client_id"] == client["client_id"]
    ).items()
    assert runner.invoke(args=["gateway", "delete-client", client["client_id"]]).exit_code == 0
    assert verify(auth_service, tokens["access_token"]).status_code == 401
    missing = runner.invoke(args=["gateway", "delete-client", client["client_id"]])
    assert missing.exit_code != 0 and "no such client" in missing.output


def test_grants_of_a_client_and_of_a_user_are_listed_until_revoked(auth_service, browser):
    client = register(auth_service, client_name="Granted")
    tokens = tokens_for(browser, client)
    gid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["gid"]
    runner = _cli(auth_service)

    def grants(*option: str) -> list[dict]:
        result = runner.invoke(args=["gateway", "grants", *option])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    (mine,) = grants("--client", client["client_id"])
    assert {"grant_id": gid, "user": "octocat", "client_id": client["client_id"], "resources": [TIME]}.items() <= (
        mine.items()
    )
    assert gid in {grant["grant_id"] for grant in grants("--user", " OctoCat ")}
    revoked = runner.invoke(args=["gateway", "revoke-user", "octocat"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert grants("--client", client["client_id"]) == [] and grants("--user", "octocat") == []
    for wrong in ([], ["--client", "x", "--user", "y"]):
        refused = runner.invoke(args=["gateway", "grants", *wrong])
        assert refused.exit_code == 2 and "either --client" in refused.output


def test_every_new_client_id_can_be_typed_as_a_command_argument(auth_service):
    """A client id that began with "-" (one in 64 did) was read by the CLI as an unknown option."""
    ids = [register(auth_service)["client_id"] for _ in range(256)]  # each would miss one in 64 at most
    assert [client_id for client_id in ids if client_id.startswith("-")] == []


def test_a_client_id_that_looks_like_an_option_is_deleted_after_a_double_dash(auth_service):
    """Registrations made before client ids stopped beginning with "-" can still be deleted."""
    from mcp_gateway_auth.store import Store

    client = register(auth_service, client_name="Dashed")
    store = Store(auth_service.env["AUTH_REDIS_URL"])
    record = store.get_client(client["client_id"])
    dashed = "-" + client["client_id"][1:]
    store.save_client({**record, "client_id": dashed}, 600)
    runner = _cli(auth_service)
    assert runner.invoke(args=["gateway", "delete-client", dashed]).exit_code != 0  # read as an option
    result = runner.invoke(args=["gateway", "delete-client", "--", dashed])
    assert result.exit_code == 0, result.output
    assert store.get_client(dashed) is None
