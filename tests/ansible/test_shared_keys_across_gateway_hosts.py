"""Several gateway hosts sign and verify with the same keys and sign sessions with the same secret.

Two gateway hosts on this machine (connection local, each with its own configuration directory) run the
auth role's key tasks as site.yml does: the first makes its signing key and session secret, the second
gets the same files; after a rotation and then a retirement on the first (its key directory as
`mcp-gateway keys` leaves them), a run gives the second the new key and list, then removes the retired key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.auth.admin_command import service_env_file
from tests.harness.auth import AuthService, write_rsa_key
from tests.harness.github import GitHubStub
from tests.harness.playbook import INVENTORY, REPO, run_playbook
from tests.harness.redis import RedisServer

GITHUB_APP = {"auth_github_client_id": "Iv1.0123456789abcdef", "auth_github_client_secret": "0123456789abcdef"}

PLAY = """
- name: The auth role's signing keys and session secret on every gateway host
  hosts: gateway
  gather_facts: false
  tasks:
    # As every play of the gateway does: the inventory's checks, and the gateway role's variables (which
    # hosts form one gateway).
    - name: Check the inventory
      ansible.builtin.import_role:
        name: gateway
        tasks_from: validate
    - name: Create the secrets directory (the gateway role does on a host)
      ansible.builtin.file:
        path: "{{ gateway_config_dir }}/secrets"
        state: directory
        mode: "0700"
    - name: Provide the keys
      ansible.builtin.include_role:
        name: auth
        tasks_from: keys
"""


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != ".lock"}


def _inventory(tmp_path: Path, hosts: dict[str, Path], *, private: bool = True) -> Path:
    """inventory.example's group variables, with these hosts (connection local) in the gateway group, each
    with a private address unless `private` is false."""
    inventory = tmp_path / "inventory"
    if not inventory.exists():
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "group_vars" / "gateway.yml").write_text((INVENTORY / "group_vars" / "gateway.yml").read_text())
        (inventory / "files").symlink_to(INVENTORY / "files")  # the example's pip_lock paths
    # Host variables: they win over the example's group_vars file (its GitHub app placeholders).
    # Hosts that name a private address are one gateway behind one name; without, each is its own.
    host_vars = {
        name: {"gateway_config_dir": str(root), **GITHUB_APP}
        | ({"gateway_private_address": f"10.0.2.{100 + index}"} if private else {})
        for index, (name, root) in enumerate(hosts.items(), start=1)
    }
    # Several hosts behind one name need an ACME challenge that reaches the host that asked (the preflight):
    # the example's HTTP-01, as behind a balancer that pins the challenge path to one host.
    group_vars = {"ansible_connection": "local", "auth_user": "root", "gateway_acme_http_pinned": private}
    (inventory / "hosts.yml").write_text(json.dumps({"gateway": {"hosts": host_vars, "vars": group_vars}}))
    return inventory


def _converge(tmp_path: Path, hosts: dict[str, Path], *, private: bool = True) -> str:
    playbook = tmp_path / "keys.yml"
    playbook.write_text(PLAY)
    inventory = _inventory(tmp_path, hosts, private=private)
    result = run_playbook(playbook, tmp_path / "ansible", {}, inventory=inventory, timeout=180)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_every_gateway_host_gets_the_first_hosts_keys_and_session_secret_and_its_rotations(tmp_path: Path) -> None:
    first, second = tmp_path / "gw1", tmp_path / "gw2"
    hosts = {"gw1": first, "gw2": second}
    out = _converge(tmp_path, hosts)
    first_keys, second_keys = first / "auth" / "keys", second / "auth" / "keys"
    assert list(_files(first_keys)) == ["signing-key.pem"]
    assert _files(second_keys) == _files(first_keys)
    secret = (first / "secrets" / "auth-secret-key").read_bytes()
    assert len(secret.strip()) == 64 and (second / "secrets" / "auth-secret-key").read_bytes().strip() == secret.strip()
    for path in [*second_keys.iterdir(), second / "secrets" / "auth-secret-key"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert secret.decode().strip() not in out  # never printed

    # A rotation on the first host (a new key and the list), then a retirement (a key removed).
    write_rsa_key(first_keys / "kid-new.pem")
    write_rsa_key(first_keys / "kid-old.pem")
    (first_keys / "keyring.json").write_text(json.dumps({"version": 1, "keys": ["kid-new", "kid-old"]}))
    (first_keys / ".lock").touch()
    _converge(tmp_path, hosts)
    assert sorted(_files(second_keys)) == ["keyring.json", "kid-new.pem", "kid-old.pem", "signing-key.pem"]
    assert _files(second_keys) == _files(first_keys)
    (first_keys / "kid-old.pem").unlink()
    (first_keys / "keyring.json").write_text(json.dumps({"version": 1, "keys": ["kid-new"]}))
    _converge(tmp_path, hosts)
    assert _files(second_keys) == _files(first_keys)
    assert not (second_keys / "kid-old.pem").exists()
    assert (second / "secrets" / "auth-secret-key").read_bytes().strip() == secret.strip()

    # A run that finds them equal changes nothing.
    again = _converge(tmp_path, hosts)
    assert "changed=0" in again.split("PLAY RECAP")[1], again[-2000:]


def test_gateway_hosts_without_a_private_address_are_gateways_of_their_own_with_their_own_keys(tmp_path: Path) -> None:
    """Two independent gateways in one inventory (as the tests' two guests): neither gets the other's keys
    or session secret."""
    first, second = tmp_path / "gw1", tmp_path / "gw2"
    _converge(tmp_path, {"gw1": first, "gw2": second}, private=False)
    first_key, second_key = (root / "auth" / "keys" / "signing-key.pem" for root in (first, second))
    assert first_key.exists() and second_key.exists()
    assert first_key.read_bytes() != second_key.read_bytes()
    secrets = [(root / "secrets" / "auth-secret-key").read_bytes().strip() for root in (first, second)]
    assert len(secrets[0]) == 64 and len(secrets[1]) == 64 and secrets[0] != secrets[1]


def test_rotate_keys_rotates_on_the_first_gateway_host_and_every_host_gets_the_key_before_it_signs(
    tmp_path: Path, redis_server: RedisServer, github_stub: GitHubStub
) -> None:
    hosts = {"gw1": tmp_path / "gw1", "gw2": tmp_path / "gw2"}
    _converge(tmp_path, hosts)
    first_keys, second_keys = (root / "auth" / "keys" for root in hosts.values())
    # The admin command on "each host" (both are this machine) reads the first host's key directory.
    settings = AuthService(
        tmp_path / "auth",
        issuer="https://auth.example.test",
        redis_url=redis_server.url,
        resources=[{"name": "time", "resource": "https://time.example.test/mcp"}],
        github_url=github_stub.url,
        github_api_url=f"{github_stub.url}/api/v3",
        github_client_id=github_stub.client_id,
        github_client_secret=github_stub.client_secret,
        signing_keys=[first_keys],
    )
    admin = {"MCP_GATEWAY_ENV_FILE": str(service_env_file(settings)), "MCP_GATEWAY_USER": "root"}
    before = time.time()
    result = run_playbook(
        REPO / "playbooks" / "rotate-keys.yml",
        tmp_path / "ansible",
        {},
        inventory=_inventory(tmp_path, hosts),
        timeout=240,
        env=admin,
    )
    out = " ".join(result.stdout.split())
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    ring = json.loads((first_keys / "keyring.json").read_text())
    new = ring["keys"][0]
    # Two hosts: the new key signs a minute on, time for the copy to reach the other hosts.
    assert new["signs_from"] >= int(before) + 60
    assert f"gw1: new key {new['kid']} signs from" in out
    assert _files(second_keys) == _files(first_keys)
    assert (second_keys / f"{new['kid']}.pem").stat().st_mode & 0o777 == 0o600
