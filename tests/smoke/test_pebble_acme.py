"""Pebble issues a certificate to the real Traefik through the ACME flow, trusted via Pebble's root."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.harness.procs import wait_until


def _served_certificate_issuer(port: int, name: str, cafile: str) -> str | None:
    context = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                issuer = dict(item[0] for item in tls.getpeercert()["issuer"])
                return issuer.get("commonName")
    except (ssl.SSLError, OSError):
        return None


@pytest.mark.parametrize("challenge", ["tls", "http"])
def test_pebble_issues_a_certificate_that_traefik_serves(acme_traefik, tmp_path, challenge):
    dynamic = {
        "http": {
            "routers": {
                "site": {
                    "rule": "Host(`site.example.test`)",
                    "entryPoints": ["websecure"],
                    "service": "noop@internal",
                    "tls": {"certResolver": "acme"},
                }
            }
        }
    }
    proxy, pebble = acme_traefik(dynamic, challenge=challenge)
    root = pebble.write_root(tmp_path / "pebble-root.pem")
    issued = wait_until(
        lambda: _served_certificate_issuer(proxy.https_port, "site.example.test", str(root)) is not None,
        timeout=60,
        interval=0.5,
    )
    assert issued, f"no Pebble-issued certificate was served; traefik log:\n{proxy.log_tail()}"
    assert "Pebble" in (_served_certificate_issuer(proxy.https_port, "site.example.test", str(root)) or "")
