"""Run ansible-playbook from the repository on this machine, and render the roles' files for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventory.example"
RENDER_PLAYBOOK = Path(__file__).with_name("render.yml")
VALIDATE_PLAYBOOK = Path(__file__).with_name("validate.yml")


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
        "traefik_user": os.environ.get("USER") or "root",
        "auth_user": "root",
        "gateway_manage_services": False,
        "traefik_listen_address": "127.0.0.1",
        "auth_github_client_id": "Iv1.test-client-id",
        "auth_github_client_secret": "test-client-secret",
        "render_secret_key": "test-session-secret-" + "0123456789abcdef" * 3,
        "render_redis_password": "test-redis-password",
        **extra,
    }


def render(root: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    """Render the gateway's files for inventory.example (plus `extra`) under `root`; assert success."""
    result = run_playbook(RENDER_PLAYBOOK, root / "ansible", render_overrides(root, **extra))
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


def changed_count(result: subprocess.CompletedProcess[str]) -> int:
    for line in result.stdout.splitlines():
        if "changed=" in line and "ok=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no play recap in:\n{result.stdout[-2000:]}")
