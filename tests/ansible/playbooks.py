"""Helpers of the Ansible suite alone; the playbook runner and rendering are the harness's
(tests/harness/playbook.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

VALIDATE_PLAYBOOK = Path(__file__).with_name("validate.yml")


def changed_count(result: subprocess.CompletedProcess[str]) -> int:
    for line in result.stdout.splitlines():
        if "changed=" in line and "ok=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no play recap in:\n{result.stdout[-2000:]}")
