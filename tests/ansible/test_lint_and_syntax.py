"""The playbooks, roles and molecule scenarios pass ansible-lint (production profile, the project's one
ansible-lint run: scripts/test leaves it to this suite, where it runs beside other tests), and the
playbooks pass Ansible's syntax check. yamllint runs once, over the whole tree, in scripts/test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.playbook import INVENTORY, REPO, VENV_BIN, ansible_env

PLAYBOOKS = ["site.yml", *sorted(str(p.relative_to(REPO)) for p in (REPO / "playbooks").glob("*.yml"))]


def run(argv: list[str], tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=ansible_env(tmp), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(960)
def test_ansible_lint_production_profile_passes(ansible_tmp: Path) -> None:
    # Every Ansible file of the repository (.ansible-lint excludes services/, tests/ and the rest).
    # ansible-lint takes minutes of CPU: on a loaded machine, beside the other tests, it needs a long limit.
    argv = [str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"]
    result = run(argv, ansible_tmp, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_passes_syntax_check(playbook: str, ansible_tmp: Path) -> None:
    result = run([str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), "--syntax-check", playbook], ansible_tmp)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_part_has_a_playbook_and_site_imports_them_in_order() -> None:
    site = (REPO / "site.yml").read_text()
    imports = [line.split(":", 1)[1].strip() for line in site.splitlines() if "import_playbook:" in line]
    parts = ["redis", "auth", "mcp_servers", "traefik"]
    assert imports == [f"playbooks/{part}.yml" for part in parts]
    for path in imports:
        assert (REPO / path).is_file()
