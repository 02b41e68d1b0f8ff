"""Run ansible-playbook from the repository on this machine (the harness's runner), for the Ansible suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.harness.playbook import (
    INVENTORY,
    REPO,
    VENV_BIN,
    ansible_env,
    example_group_vars,
    read_env_file,
    render,
    run_playbook,
)

__all__ = [
    "INVENTORY",
    "REPO",
    "VALIDATE_PLAYBOOK",
    "VENV_BIN",
    "ansible_env",
    "changed_count",
    "example_group_vars",
    "read_env_file",
    "render",
    "run_playbook",
]

VALIDATE_PLAYBOOK = Path(__file__).with_name("validate.yml")


def changed_count(result: subprocess.CompletedProcess[str]) -> int:
    for line in result.stdout.splitlines():
        if "changed=" in line and "ok=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no play recap in:\n{result.stdout[-2000:]}")
