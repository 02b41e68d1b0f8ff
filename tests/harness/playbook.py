"""Run the project's playbooks on this machine (connection local), and render the roles' files for tests.

`render(root, **variables)` runs `render.yml` (next to this module) into `root`, the way the roles write
the gateway's files on a host. `rendered(cache, variables)` does the same once per distinct set of
variables and role sources, shared by every test and every pytest-xdist worker of a run: the first caller
renders under a file lock, the others wait for it and reuse the result. Values that differ per running
gateway (free ports, a per-run password) are rendered as stand-ins (`Blanks`) and put in when the files are
copied for one gateway (`RenderedFiles.fill`), so the many gateways of a run share one `ansible-playbook`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventory.example"
RENDER_PLAYBOOK = Path(__file__).with_name("render.yml")
# Everything a rendering depends on besides the variables: a change to any of these renders again.
RENDER_SOURCES = (REPO / "roles", INVENTORY, RENDER_PLAYBOOK, REPO / "ansible.cfg")


def ansible_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_HOME": str(tmp / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
        }
    )
    return env


def run_playbook(
    playbook: Path,
    tmp: Path,
    extra_vars: Mapping[str, Any],
    *,
    inventory: Path = INVENTORY,
    timeout: float = 240,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook against the inventory's gateway group, on this machine (connection local);
    `env` adds to Ansible's environment (callbacks, for instance)."""
    tmp.mkdir(parents=True, exist_ok=True)
    variables = {"ansible_python_interpreter": sys.executable, "ansible_connection": "local", **extra_vars}
    vars_file = tmp / f"extra-vars-{len(list(tmp.glob('extra-vars-*')))}.json"
    vars_file.write_text(json.dumps(variables))
    return subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-e", f"@{vars_file}"],
        cwd=REPO,
        env={**ansible_env(tmp), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def example_group_vars() -> dict[str, Any]:
    return yaml.safe_load((INVENTORY / "group_vars" / "gateway.yml").read_text())


def render_overrides(root: Path, **extra: Any) -> dict[str, Any]:
    """Variables that point every rendered file into `root` and keep systemd out of it."""
    return {
        "gateway_config_dir": str(root / "etc" / "mcp-gateway"),
        "traefik_config_dir": str(root / "etc" / "traefik"),
        "traefik_state_dir": str(root / "var" / "lib" / "traefik"),
        "_auth_units_dir": str(root / "etc" / "systemd" / "system"),
        "traefik_user": os.environ.get("USER") or "root",
        "auth_user": "root",
        # The env file's validate: runs the admin command of the tests' own environment.
        "_auth_admin_command": str(VENV_BIN / "mcp-gateway"),
        "gateway_manage_services": False,
        # The programs that check the configuration before it lands (the templates' validate:) are this
        # venv's, where the host has them under gateway_install_dir.
        "_mcp_servers_proxy_venv": str(VENV_BIN.parent),
        "_traefik_home": str(root / "opt" / "traefik"),
        "_traefik_venv": str(VENV_BIN.parent),
        # Units name programs installed on the host only (systemd-analyze verify would refuse them here);
        # the host scenarios check every unit as it lands.
        "_gateway_unit_check": "true %s",
        "traefik_listen_address": "127.0.0.1",
        "auth_github_client_id": "Iv1.test-client-id",
        "auth_github_client_secret": "test-client-secret",
        "render_secret_key": "test-session-secret-" + "0123456789abcdef" * 3,
        "render_redis_password": "test-redis-password",
        **extra,
    }


def render(root: Path, *, scratch: Path | None = None, **extra: Any) -> subprocess.CompletedProcess[str]:
    """Render the gateway's files for inventory.example (plus `extra`) under `root`; assert success.
    Ansible's own scratch files go to `scratch` (default `root/ansible`)."""
    result = run_playbook(RENDER_PLAYBOOK, scratch or root / "ansible", render_overrides(root, **extra))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a systemd EnvironmentFile the way systemd does for the forms the roles write."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, raw = line.partition("=")
        if raw.startswith('"') and raw.endswith('"'):
            out, chars, i = [], raw[1:-1], 0
            while i < len(chars):
                if chars[i] == "\\" and i + 1 < len(chars) and chars[i + 1] in '"\\`$':
                    out.append(chars[i + 1])
                    i += 2
                else:
                    out.append(chars[i])
                    i += 1
            values[name.strip()] = "".join(out)
        else:
            values[name.strip()] = raw
    return values


# Stand-in ports lie above the bridge ports the roles derive (21000-24999) and above Linux's ephemeral range
# (32768-60999), and are replaced only as whole numbers, so no other number in a rendered file is taken for
# one; stand-in texts are words no template writes.
_FIRST_STANDIN_PORT = 61001
# What a filled-in value may contain: the rendered text is not re-escaped (systemd quoting, YAML, JSON).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.~:/@+-]+")


class Blanks:
    """Stand-ins for the values each running gateway has its own of: free ports, and texts such as a
    per-run password. Render with `port(name)` and `text(name)` in the variables; `fill()` with the real
    values for one gateway. Stand-ins are numbered in the order asked, so the same calls in any process
    give the same variables (and the same cache entry)."""

    def __init__(self) -> None:
        self._ports: dict[str, int] = {}
        self._texts: dict[str, str] = {}

    def port(self, name: str) -> int:
        return self._ports.setdefault(name, _FIRST_STANDIN_PORT + len(self._ports))

    def text(self, name: str) -> str:
        return self._texts.setdefault(name, f"standin{re.sub(r'[^a-z0-9]', '', name.lower())}{len(self._texts)}x")

    @property
    def names(self) -> list[str]:
        return [*self._ports, *self._texts]

    def replacements(self, values: Mapping[str, int | str]) -> dict[str, str]:
        """Stand-in -> real value, for every blank; a missing or extra name is a mistake in the test."""
        names = set(self._ports) | set(self._texts)
        if set(values) != names:
            missing, extra = names - set(values), set(values) - names
            raise ValueError(f"fill every blank and nothing else: missing {missing}, extra {extra}")
        for name, value in values.items():
            if not _PLAIN_VALUE.fullmatch(str(value)):
                raise ValueError(f"{name}={value!r} would need quoting in the rendered files")
        out = {str(standin): str(values[name]) for name, standin in self._ports.items()}
        out.update({standin: str(values[name]) for name, standin in self._texts.items()})
        return out


@dataclass(frozen=True)
class RenderedFiles:
    """One cached rendering: `root` holds `etc/` and `var/` as the roles wrote them (read-only: shared)."""

    root: Path
    blanks: Blanks

    def fill(self, dest: Path, values: Mapping[str, int | str]) -> Path:
        """Copy the files to `dest` with the real values in place of the stand-ins (and `dest` in place of
        the cache's path, which every rendered path starts with); returns `dest`."""
        replacements = {str(self.root): str(dest), **self.blanks.replacements(values)}
        # Ports are replaced as whole numbers only, texts anywhere; one pass, so no value is replaced twice.
        pattern = re.compile(
            "|".join(
                rf"(?<!\d){re.escape(old)}(?!\d)" if old.isdigit() else re.escape(old)
                for old in sorted(replacements, key=len, reverse=True)
            )
        )
        for source in sorted(self.root.rglob("*")):
            target = dest / source.relative_to(self.root)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            text = pattern.sub(lambda m: replacements[m.group(0)], source.read_text())
            target.write_text(text)
            shutil.copymode(source, target)
        return dest


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for source in RENDER_SOURCES:
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def rendered(cache: Path, blanks: Blanks, **variables: Any) -> RenderedFiles:
    """The roles' files for inventory.example plus `variables` (which may hold `blanks`' stand-ins),
    rendered once per distinct variables and role sources under `cache` and reused after that."""
    key = hashlib.sha256(
        json.dumps({"variables": variables, "sources": _sources_digest()}, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / key
    done = cache / f"{key}.done"
    with _locked(cache / f"{key}.lock"):
        if not done.exists():
            # Rendered in place (the files name their own directories); `done` marks a complete rendering,
            # so one that failed half-way is rendered again, never reused.
            shutil.rmtree(root, ignore_errors=True)
            render(root, scratch=cache / f"{key}.ansible", **variables)
            done.touch()
    return RenderedFiles(root, blanks)


def render_cache(basetemp: Path) -> Path:
    """Where a run keeps its renderings: beside the xdist workers' own folders (their parent is the
    run's folder), or in the run's folder without xdist."""
    return (basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp) / "rendered-roles"
