"""Pebble (Let's Encrypt's test ACME CA, Debian package `pebble`) with its DNS test server.

`pebble-challtestsrv` answers every A query with 127.0.0.1, so any test domain resolves
to loopback for Pebble's validation; Pebble validates HTTP-01 on `http_port` and
TLS-ALPN-01 on `tls_port`, which a test points at its Traefik's entry points.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import struct
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

    def txt_records(self, name: str) -> list[str]:
        """The TXT values challtestsrv's DNS server answers for `name` now (what Pebble would see)."""
        query_id = secrets.randbits(16)
        labels = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
        # One question, recursion desired; QTYPE TXT (16), QCLASS IN (1).
        query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 16, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(query, (LOOPBACK, self.dns_port))
            answer = sock.recv(4096)
        answer_id, _, _, count = struct.unpack("!HHHH", answer[:8])
        assert answer_id == query_id
        offset, values = len(query), []
        for _ in range(count):
            # The answer's name (labels up to a zero byte, or ending in a 2-byte pointer), then type, class,
            # TTL, length and data.
            while answer[offset] and answer[offset] < 0xC0:
                offset += 1 + answer[offset]
            offset += 2 if answer[offset] >= 0xC0 else 1
            kind, _, _, length = struct.unpack("!HHIH", answer[offset : offset + 10])
            offset += 10
            data, offset = answer[offset : offset + length], offset + length
            if kind == 16:
                values.append(data[1 : 1 + data[0]].decode())
        return values

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
