"""Every role documents its variables in meta/argument_specs.yml, and its README and defaults agree with it."""

from __future__ import annotations

import pytest

from tests.ansible import role_docs

ROLES = role_docs.role_names()


def test_every_role_has_an_argument_spec() -> None:
    roles = sorted(p.name for p in role_docs.ROLES.iterdir() if p.is_dir())
    assert roles == ROLES
    assert {"gateway", "redis", "auth", "traefik", "mcp_servers"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_the_argument_spec(role: str) -> None:
    assert role_docs.mismatches(role) == []


@pytest.mark.parametrize("role", ROLES)
def test_readme_is_generated_from_the_argument_spec(role: str) -> None:
    assert role_docs.readme_section(role) == role_docs.generate(role), (
        f"roles/{role}/README.md is stale: run .venv/bin/python tests/ansible/role_docs.py --write"
    )


@pytest.mark.parametrize("role", ROLES)
def test_role_follows_the_house_layout(role: str) -> None:
    base = role_docs.ROLES / role
    for part in ("defaults/main.yml", "vars/main.yml", "meta/main.yml", "meta/argument_specs.yml", "tasks/main.yml"):
        assert (base / part).is_file(), f"roles/{role}/{part} is missing"
    for template in base.glob("templates/**/*.j2"):
        text = template.read_text()
        if text.startswith("#!"):  # a script: its interpreter line must come first
            text = text.split("\n", 1)[1]
        assert text.startswith("{{ ansible_managed | comment }}"), template
