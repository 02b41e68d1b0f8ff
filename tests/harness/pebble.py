"""Pebble (Let's Encrypt's test ACME CA, Debian package `pebble`) with its DNS test server.

`pebble-challtestsrv` answers every A query with 127.0.0.1, so any test domain resolves
to loopback for Pebble's validation; Pebble validates HTTP-01 on `http_port` and
TLS-ALPN-01 on `tls_port`, which a test points at its Traefik's entry points.
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import httpx

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port
from tests.harness.tls import TestCA


class Pebble:
    def __init__(self, workdir: Path, *, http_port: int, tls_port: int) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        self.tls_port = tls_port
        self.acme_port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.challtest_management_port = free_port()
        # Pebble's own API is HTTPS; its certificate comes from a CA of ours that clients trust.
        self.api_ca = TestCA(self.workdir / "api-ca", name="Pebble API test CA")
        self._api_cert = self.api_ca.issue("localhost", LOOPBACK, stem="pebble-api")
        self._procs: list[ManagedProcess] = []

    @property
    def directory_url(self) -> str:
        return f"https://{LOOPBACK}:{self.acme_port}/dir"

    @property
    def api_ca_path(self) -> Path:
        """Trust this to talk to Pebble's ACME API (Traefik: LEGO_CA_CERTIFICATES)."""
        return self.api_ca.cert_path

    def start(self, timeout: float = 30.0) -> Pebble:
        config = self.workdir / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{LOOPBACK}:{self.acme_port}",
                        "managementListenAddress": f"{LOOPBACK}:{self.management_port}",
                        "certificate": str(self._api_cert.cert_path),
                        "privateKey": str(self._api_cert.key_path),
                        "httpPort": self.http_port,
                        "tlsPort": self.tls_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        challtest = ManagedProcess(
            "pebble-challtestsrv",
            [
                "pebble-challtestsrv",
                "-defaultIPv4",
                LOOPBACK,
                "-defaultIPv6",
                "",
                "-dns01",
                f"{LOOPBACK}:{self.dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"{LOOPBACK}:{self.challtest_management_port}",
            ],
            log_dir=self.workdir,
        )
        self._procs.append(challtest)
        challtest.start().wait_for_port(self.challtest_management_port, timeout=timeout)
        env = dict(os.environ)
        # No artificial validation delay, and no deliberately rejected nonces: tests want speed.
        env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        pebble = ManagedProcess(
            "pebble",
            ["pebble", "-config", config, "-dnsserver", f"{LOOPBACK}:{self.dns_port}"],
            log_dir=self.workdir,
            env=env,
        )
        self._procs.append(pebble)
        pebble.start().wait_for_http(self.directory_url, timeout=timeout, verify=self._verify())
        return self

    def _verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.api_ca_path))

    def root_pem(self) -> str:
        """The root that signs the certificates Pebble issues (new on every start)."""
        url = f"https://{LOOPBACK}:{self.management_port}/roots/0"
        response = httpx.get(url, verify=self._verify(), timeout=5)
        response.raise_for_status()
        return response.text

    def write_root(self, path: Path) -> Path:
        path.write_text(self.root_pem())
        return path

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
