"""Several state hosts: the preflight refuses inventories that cannot fail over safely, and the redis and
auth roles write Redis replication, Sentinel and the service's Sentinel settings, without undoing a
failover on a re-run."""

from __future__ import annotations

import base64
import copy
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.playbooks import changed_count
from tests.harness.playbook import INVENTORY, RENDER_PLAYBOOK, read_env_file, render_overrides, run_playbook

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SHAPE_PLAYBOOK = HERE / "validate_state.yml"
EVERY_HOST_PLAYBOOK = HERE / "validate_every_host.yml"
RENDER_STATE_PLAYBOOK = HERE / "render_state.yml"

ADDRESSES = {"s1": "10.0.2.103", "s2": "10.0.2.104", "s3": "10.0.2.105"}
GATEWAY_ADDRESSES = {"gw1": "10.0.2.101", "gw2": "10.0.2.102"}
PASSWORDS = {"redis_password": "test-redis-password", "redis_sentinel_password": "test-sentinel-password"}


def inventory(
    *,
    gateway: list[str] | None = None,
    redis: list[str] | None = None,
    sentinel: list[str] | None = None,
    host_vars: dict[str, dict] | None = None,
    group_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A gateway host and three state hosts that are Redis servers and Sentinels both (the shape of the
    contract, with one gateway host unless `gateway` names more), changed by the arguments."""
    gateway = ["gw1"] if gateway is None else gateway
    redis = ["s1", "s2", "s3"] if redis is None else redis
    sentinel = ["s1", "s2", "s3"] if sentinel is None else sentinel
    hosts = {name: {"gateway_private_address": a} for name, a in {**GATEWAY_ADDRESSES, **ADDRESSES}.items()}
    for name, values in (host_vars or {}).items():
        hosts.setdefault(name, {}).update(values)
    groups: dict[str, Any] = {
        "gateway": {"hosts": {h: hosts.get(h, {}) for h in gateway}},
        "redis": {"hosts": {h: hosts.get(h, {}) for h in redis}},
        "sentinel": {"hosts": {h: hosts.get(h, {}) for h in sentinel}},
    }
    variables = {"gateway_private_network": "10.0.2.0/24", **PASSWORDS, **(group_vars or {})}
    return {"all": {"vars": variables, "children": {k: v for k, v in groups.items() if v["hosts"]}}}


def write_inventory(root: Path, shape: dict[str, Any]) -> Path:
    """The example inventory's settings for every host (group_vars/all), with `shape` for hosts and groups."""
    path = root / "inventory"
    (path / "group_vars").mkdir(parents=True, exist_ok=True)
    (path / "group_vars" / "all.yml").write_text((INVENTORY / "group_vars" / "gateway.yml").read_text())
    (path / "files").symlink_to(INVENTORY / "files")
    (path / "hosts.yml").write_text(yaml.safe_dump(shape))
    return path


# case: (the inventory, what the refusal must say; None: accepted)
SHAPES: dict[str, tuple[dict[str, Any], str | None]] = {
    "three state hosts that are also the Sentinels": (inventory(), None),
    "the initial primary named": (inventory(host_vars={"s2": {"redis_initial_primary": True}}), None),
    "two Sentinels": (
        inventory(sentinel=["s1", "s2"]),
        "the sentinel group has 2 host(s); it needs 3 or more",
    ),
    "four Sentinels": (
        inventory(sentinel=["s1", "s2", "s3", "gw1"]),
        "the sentinel group has 4 hosts; use an odd number",
    ),
    "a quorum larger than the Sentinels": (
        inventory(group_vars={"redis_sentinel_quorum": 4}),
        "redis_sentinel_quorum is 4, more than the 3 Sentinels: they could never agree",
    ),
    "a quorum below a majority": (
        inventory(group_vars={"redis_sentinel_quorum": 1}),
        "redis_sentinel_quorum is 1, less than a majority of the 3 Sentinels (2)",
    ),
    "redis without sentinel": (
        inventory(sentinel=[]),
        "the redis group needs a sentinel group",
    ),
    "sentinel without redis": (
        inventory(redis=[]),
        "The inventory has a sentinel group but no redis group",
    ),
    "two gateway hosts and three state hosts on the private network": (inventory(gateway=["gw1", "gw2"]), None),
    "a state host without its private address": (
        inventory(host_vars={"s2": {"gateway_private_address": ""}}),
        "gateway_private_address is missing on s2: with a redis group every host of the gateway, redis and"
        " sentinel groups needs one",
    ),
    "a gateway host without its private address": (
        inventory(gateway=["gw1", "gw2"], host_vars={"gw2": {"gateway_private_address": ""}}),
        "gateway_private_address is missing on gw2: with a redis group",
    ),
    "several hosts without their private address, all named": (
        inventory(
            gateway=["gw1", "gw2"],
            host_vars={"gw1": {"gateway_private_address": ""}, "s3": {"gateway_private_address": ""}},
        ),
        "gateway_private_address is missing on gw1, s3: with a redis group",
    ),
    "a private address that is not an address": (
        inventory(host_vars={"s1": {"gateway_private_address": "state1.internal"}}),
        "the gateway_private_address of s1 (state1.internal) is not an IP address",
    ),
    "a gateway host outside the private network": (
        inventory(gateway=["gw1", "gw2"], host_vars={"gw2": {"gateway_private_address": "10.0.3.102"}}),
        "the gateway_private_address of gw2 (10.0.3.102) is outside gateway_private_network 10.0.2.0/24",
    ),
    "a state host outside the private network": (
        inventory(host_vars={"s3": {"gateway_private_address": "192.168.1.5"}}),
        "the gateway_private_address of s3 (192.168.1.5) is outside gateway_private_network 10.0.2.0/24",
    ),
    "hosts on an IPv6 private network": (
        inventory(
            gateway=["gw1", "gw2"],
            host_vars={
                name: {"gateway_private_address": f"fd00:2::{index}"}
                for index, name in enumerate(["gw1", "gw2", "s1", "s2", "s3"], start=1)
            },
            group_vars={"gateway_private_network": "fd00:2::/64"},
        ),
        None,
    ),
    "no private network named": (
        inventory(group_vars={"gateway_private_network": ""}),
        "gateway_private_network must name the private network",
    ),
    "passwords left to be generated": (
        inventory(group_vars={"redis_password": "", "redis_sentinel_password": ""}),
        "set redis_password and redis_sentinel_password in the inventory",
    ),
    "one state host": (
        inventory(redis=["s1"]),
        "the redis group has 1 host; it needs a primary and at least one replica",
    ),
    "two initial primaries": (
        inventory(host_vars={"s1": {"redis_initial_primary": True}, "s2": {"redis_initial_primary": True}}),
        "redis_initial_primary is true on s1 and s2",
    ),
}


@pytest.fixture(scope="module")
def shape_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each case's ansible-playbook output; a few inventories at a time (one play per inventory)."""
    root = tmp_path_factory.mktemp("state-shapes")

    def check(item: tuple[int, str]) -> tuple[str, str]:
        index, case = item
        case_root = root / f"case-{index}"
        path = write_inventory(case_root, SHAPES[case][0])
        result = run_playbook(SHAPE_PLAYBOOK, case_root / "ansible", {}, inventory=path)
        return case, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"

    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(check, enumerate(SHAPES)))


@pytest.mark.parametrize("case", list(SHAPES))
def test_the_preflight_refuses_state_hosts_that_cannot_fail_over_safely(
    case: str, shape_outcomes: dict[str, str]
) -> None:
    expected = SHAPES[case][1]
    output = shape_outcomes[case]
    if expected is None:
        assert output.startswith("rc=0"), output[-3000:]
    else:
        assert not output.startswith("rc=0"), output[-3000:]
        assert expected in output, output[-3000:]


def test_a_refusal_names_only_what_is_wrong(shape_outcomes: dict[str, str]) -> None:
    """The quorum case's message says nothing of the Sentinels' number, which is fine."""
    output = shape_outcomes["a quorum larger than the Sentinels"]
    assert "odd number" not in output and "3 or more" not in output


def test_state_hosts_need_none_of_the_gateways_own_settings(tmp_path: Path) -> None:
    """The gateway's settings (domain, identity provider, MCP servers) in group_vars/gateway.yml, as the
    README's multi-host inventory has them: the state hosts pass the checks every play starts with, and a
    gateway host is still checked."""
    path = write_inventory(tmp_path, inventory())
    settings = yaml.safe_load((path / "group_vars" / "all.yml").read_text())
    credentials = {"auth_github_client_id": "test-client", "auth_github_client_secret": "test-secret"}
    (path / "group_vars" / "gateway.yml").write_text(yaml.safe_dump({**settings, **credentials}))
    (path / "group_vars" / "all.yml").write_text(yaml.safe_dump(inventory()["all"]["vars"]))
    result = run_playbook(EVERY_HOST_PLAYBOOK, tmp_path / "ansible", {}, inventory=path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "ok: [s1]" in result.stdout and "ok: [gw1]" in result.stdout, result.stdout[-3000:]

    (path / "group_vars" / "gateway.yml").write_text(yaml.safe_dump({**settings, **credentials, "gateway_domain": ""}))
    result = run_playbook(EVERY_HOST_PLAYBOOK, tmp_path / "ansible-2", {}, inventory=path)
    assert result.returncode != 0 and "gateway_domain must be a lower-case DNS name" in result.stdout
    assert "failed: [s1]" not in result.stdout and "fatal: [s1]" not in result.stdout, result.stdout[-3000:]


def test_a_refusal_of_private_addresses_names_the_hosts_at_fault_and_no_other(shape_outcomes: dict[str, str]) -> None:
    missing = shape_outcomes["a gateway host without its private address"]
    assert "missing on gw2:" in missing and "gw1" not in missing.split("missing on")[1].split(":")[0]
    outside = shape_outcomes["a gateway host outside the private network"]
    assert "of gw1" not in outside and "of s1" not in outside and "missing on" not in outside


# -- what the roles write ------------------------------------------------------------------------------
STATE_FILES = {
    "_redis_config_path": "etc/redis/redis.conf",
    "_redis_replication_config_path": "var/lib/redis/replication.conf",
    "_redis_dropin_dir": "etc/systemd/system/redis-server.service.d",
    "_redis_sentinel_state_path": "var/lib/redis/sentinel.conf",
    "_redis_sentinel_config_path": "etc/redis/sentinel-mcp-gateway.conf",
    "_redis_sentinel_dropin_dir": "etc/systemd/system/redis-sentinel.service.d",
}


def render_state(root: Path, inventory_path: Path) -> Any:
    overrides = {
        name: f"{{{{ render_root }}}}/{{{{ inventory_hostname }}}}/{path}" for name, path in STATE_FILES.items()
    }
    result = run_playbook(
        RENDER_STATE_PLAYBOOK,
        root / "ansible",
        {"render_root": str(root), "gateway_manage_services": False, "_gateway_unit_check": "true %s", **overrides},
        inventory=inventory_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def state_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("state-files")
    path = write_inventory(root, inventory(host_vars={"s2": {"redis_initial_primary": True}}))
    return root, path, render_state(root, path)


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_each_state_host_runs_redis_on_loopback_and_its_private_address(state_files) -> None:
    root, _, _ = state_files
    for host, address in ADDRESSES.items():
        config = lines(root / host / STATE_FILES["_redis_config_path"])
        assert f"bind 127.0.0.1 -::1 {address}" in config
        assert f"replica-announce-ip {address}" in config
        assert "requirepass test-redis-password" in config
        assert "masterauth test-redis-password" in config
        assert "maxmemory-policy noeviction" in config
        dropin = (root / host / STATE_FILES["_redis_dropin_dir"] / "mcp-gateway.conf").read_text()
        # Redis reads the file it rewrites first, and the role's settings last, so the role's win.
        assert (
            f"ExecStart=/usr/bin/redis-server {root}/{host}/var/lib/redis/replication.conf "
            f"--include {root}/{host}/etc/redis/redis.conf --supervised systemd --daemonize no"
        ) in dropin


def test_the_named_primary_starts_as_primary_and_the_others_as_its_replicas(state_files) -> None:
    root, _, _ = state_files
    assert lines(root / "s2" / STATE_FILES["_redis_replication_config_path"]) == []
    for host in ("s1", "s3"):
        assert lines(root / host / STATE_FILES["_redis_replication_config_path"]) == ["replicaof 10.0.2.104 6379"]


def test_each_sentinel_monitors_the_primary_with_passwords(state_files) -> None:
    root, _, _ = state_files
    for host, address in ADDRESSES.items():
        assert lines(root / host / STATE_FILES["_redis_sentinel_state_path"]) == [
            "sentinel monitor mcp-gateway 10.0.2.104 6379 2"
        ]
        config = lines(root / host / STATE_FILES["_redis_sentinel_config_path"])
        assert f"bind 127.0.0.1 -::1 {address}" in config
        assert "port 26379" in config
        assert "requirepass test-sentinel-password" in config
        assert "sentinel sentinel-pass test-sentinel-password" in config
        assert "sentinel auth-pass mcp-gateway test-redis-password" in config
        assert f"sentinel announce-ip {address}" in config
        dropin = (root / host / STATE_FILES["_redis_sentinel_dropin_dir"] / "mcp-gateway.conf").read_text()
        assert f"--include {root}/{host}/etc/redis/sentinel-mcp-gateway.conf" in dropin


def test_a_rerun_after_a_failover_leaves_what_sentinel_wrote(state_files) -> None:
    """After a failover Redis and Sentinel have rewritten their state files (s3 is the primary now): a
    re-run changes nothing and puts back no replicaof of the old primary."""
    root, path, _ = state_files
    failed_over = {
        "s1": "replicaof 10.0.2.105 6379\n",
        "s2": "replicaof 10.0.2.105 6379\n",
        "s3": "# Generated by CONFIG REWRITE\n",
    }
    for host, text in failed_over.items():
        (root / host / STATE_FILES["_redis_replication_config_path"]).write_text(text)
        (root / host / STATE_FILES["_redis_sentinel_state_path"]).write_text(
            "sentinel monitor mcp-gateway 10.0.2.105 6379 2\n"
        )
    assert changed_count(render_state(root, path)) == 0
    for host, text in failed_over.items():
        assert (root / host / STATE_FILES["_redis_replication_config_path"]).read_text() == text
        assert "10.0.2.105" in (root / host / STATE_FILES["_redis_sentinel_state_path"]).read_text()


def test_the_auth_service_is_given_the_sentinels(tmp_path: Path) -> None:
    shape = inventory()
    path = write_inventory(tmp_path, shape)
    sentinel_password = {"content": base64.b64encode(b"test-sentinel-password").decode()}
    overrides = render_overrides(tmp_path, __auth_redis_sentinel_password_file=sentinel_password)
    # The env file is checked by the service's own loader before it lands: a render that passes is one the
    # service would start with.
    result = run_playbook(RENDER_PLAYBOOK, tmp_path / "ansible", overrides, inventory=path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    env = read_env_file(tmp_path / "etc" / "mcp-gateway" / "auth.env")
    assert "AUTH_REDIS_URL" not in env
    assert env["AUTH_REDIS_SENTINELS"] == "10.0.2.103:26379,10.0.2.104:26379,10.0.2.105:26379"
    assert env["AUTH_REDIS_SENTINEL_MASTER"] == "mcp-gateway"
    assert env["AUTH_REDIS_PASSWORD"] == "test-redis-password"
    assert env["AUTH_REDIS_SENTINEL_PASSWORD"] == "test-sentinel-password"
    assert env["AUTH_REDIS_DURABLE_REPLICAS"] == "1"
    assert env["AUTH_REDIS_DURABLE_TIMEOUT_MS"] == "1000"


def test_one_host_keeps_its_redis_url_and_waits_for_no_replica(tmp_path: Path) -> None:
    shape = copy.deepcopy(inventory())
    shape["all"]["children"] = {"gateway": shape["all"]["children"]["gateway"]}
    for name in ("redis_password", "redis_sentinel_password", "gateway_private_network"):
        shape["all"]["vars"].pop(name)
    path = write_inventory(tmp_path, shape)
    result = run_playbook(RENDER_PLAYBOOK, tmp_path / "ansible", render_overrides(tmp_path), inventory=path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    env = read_env_file(tmp_path / "etc" / "mcp-gateway" / "auth.env")
    assert re.fullmatch(r"redis://:test-redis-password@127\.0\.0\.1:\d+/0", env["AUTH_REDIS_URL"])
    assert "AUTH_REDIS_SENTINELS" not in env
    assert env["AUTH_REDIS_DURABLE_REPLICAS"] == "0"
