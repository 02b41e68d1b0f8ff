"""Certificates with several gateway hosts behind one name (docs/scale-out.md): every host runs its own Traefik
with its own ACME account and obtains its own certificate for the same names with DNS-01, so the CA needs no
inbound traffic and it does not matter which host DNS or a balancer sends it to.

Two gateway hosts on loopback, gw1 at 127.0.0.2 and gw2 at 127.0.0.3 (`traefik_listen_address`), configured
by the roles with `gateway_acme_challenge: dns` and lego's `exec` provider: its script
(tests/harness/challtestsrv_txt.py, EXEC_PATH in `gateway_acme_dns_env`, so in traefik.env) sets and clears the
TXT records through pebble-challtestsrv's management API, and lego checks them at challtestsrv's DNS server
(`gateway_acme_dns_resolvers`, `gateway_acme_dns_propagation: resolvers`), the one Pebble asks. Both real
Traefiks start at once against one Pebble whose HTTP-01 and TLS-ALPN-01 ports are ports nothing listens on:
only DNS-01 can succeed.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.harness.gateway import DOMAIN, Gateway, gateway_files
from tests.harness.pebble import Pebble
from tests.harness.playbook import REPO, Blanks, RenderedFiles, read_env_file, render_cache
from tests.harness.procs import LOOPBACK, free_port

pytestmark = pytest.mark.slow

ADDRESSES = {"gw1": "127.0.0.2", "gw2": "127.0.0.3"}
# The names asked for first: the auth service's and one MCP server's (Traefik asks for the others after).
NAMES = [f"auth.{DOMAIN}", f"time.{DOMAIN}"]
EXEC_SCRIPT = REPO / "tests" / "harness" / "challtestsrv_txt.py"


def render(cache: Path) -> RenderedFiles:
    """The roles' files for a gateway host, with DNS-01 through challtestsrv. Every gateway host of the group
    gets the same variables, so the same files: rendered once, filled in with each host's own address."""
    blanks = Blanks()
    return gateway_files(
        cache,
        blanks,
        traefik_listen_address=blanks.text("address"),
        gateway_acme_challenge="dns",
        gateway_acme_dns_provider="exec",
        gateway_acme_dns_env={
            "EXEC_PATH": str(EXEC_SCRIPT),
            # Bounded: a record that never shows fails the order in seconds, not lego's default minute.
            "EXEC_PROPAGATION_TIMEOUT": "20",
            "EXEC_POLLING_INTERVAL": "1",
            "CHALLTESTSRV_URL": f"http://{LOOPBACK}:{blanks.port('challtestsrv')}",
            "CHALLTESTSRV_RECORDS": blanks.text("txt-records"),
        },
        gateway_acme_dns_resolvers=[f"{LOOPBACK}:{blanks.port('dns')}"],
        gateway_acme_dns_propagation="resolvers",
    )


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    cache = render_cache(tmp_path_factory.getbasetemp())
    workdir = tmp_path_factory.mktemp("certificates")
    files = render(cache)
    # Nothing listens on the ports Pebble would validate HTTP-01 and TLS-ALPN-01 on.
    pebble = Pebble(workdir / "pebble", http_port=free_port(), tls_port=free_port())
    backends = {
        # The services behind Traefik do not run: certificates need none of them.
        **{name: free_port() for name in ("auth", "redis", "github")},
        **dict.fromkeys(("redis-password", "github-client-id", "github-client-secret"), "unused"),
        "challtestsrv": pebble.challtest_management_port,
        "dns": pebble.dns_port,
        "txt-records": str(workdir / "txt-records.json"),
    }
    gateways = {
        name: Gateway(workdir / name, files, {**backends, "address": address}, pebble=pebble)
        for name, address in ADDRESSES.items()
    }
    with ExitStack() as stack:
        pebble.start()
        stack.callback(pebble.stop)
        for gateway in gateways.values():
            stack.callback(gateway.stop)
        hostnames = [name.removesuffix(f".{DOMAIN}") for name in NAMES]
        with ThreadPoolExecutor(len(gateways)) as pool:
            for started in [pool.submit(g.start, hostnames, 45) for g in gateways.values()]:
                started.result()
        yield gateways


def served_certificate(gateway: Gateway, name: str) -> bytes:
    """The certificate a client gets for `name` from this host, verified against Pebble's root (DER)."""
    context = ssl.create_default_context(cafile=str(gateway.ca_file))
    with socket.create_connection((gateway.address, gateway.https_port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_the_rendered_configuration_asks_for_dns_01_through_the_exec_provider(hosts: dict[str, Gateway]) -> None:
    for gateway in hosts.values():
        env = read_env_file(gateway.traefik_dir / "traefik.env")
        assert env["EXEC_PATH"] == str(EXEC_SCRIPT)
        assert (gateway.traefik_dir / "traefik.env").stat().st_mode & 0o077 == 0  # credentials: owner only


@pytest.mark.parametrize("name", NAMES)
def test_each_gateway_host_serves_its_own_pebble_certificate_for_the_name(hosts: dict[str, Gateway], name: str) -> None:
    # Verified against Pebble's root alone (from its management API) and for this name: the handshake checks
    # the chain and the host name, and Traefik's own self-signed default certificate would fail it.
    certificates = {host: served_certificate(gateway, name) for host, gateway in hosts.items()}
    # Each host got its own: two certificates, not one copied between them.
    assert len({hashlib.sha256(der).hexdigest() for der in certificates.values()}) == len(hosts)


def test_each_gateway_host_has_its_own_acme_account(hosts: dict[str, Gateway]) -> None:
    accounts = []
    for gateway in hosts.values():
        stored = json.loads((gateway.root / "var/lib/traefik/acme.json").read_text())["gateway"]
        accounts.append(stored["Account"]["Registration"]["uri"])
        domains = {certificate["domain"]["main"] for certificate in stored["Certificates"] or []}
        assert set(NAMES) <= domains, domains
    assert len(set(accounts)) == len(accounts), accounts


def test_the_challenge_records_are_removed_once_the_hosts_are_done(hosts: dict[str, Gateway]) -> None:
    pebble = next(iter(hosts.values())).pebble
    for name in NAMES:
        assert pebble.txt_records(f"_acme-challenge.{name}") == []
