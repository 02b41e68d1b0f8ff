"""Name the inventory's role variables that no role of the gateway reads (a misspelling, most often).

Ansible ignores a variable no task reads, so `auth_allowed_github_user` (singular) would leave the
allow-list empty and the user puzzled. The roles' `meta/argument_specs.yml` list every public
variable, so any name with a role prefix that none of them lists is a mistake worth naming.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml


def documented_variables(roles_dir: str) -> set[str]:
    """Every option of every entry point of every role under `roles_dir`."""
    names: set[str] = set()
    for spec_file in sorted(Path(roles_dir).glob("*/meta/argument_specs.yml")):
        specs = (yaml.safe_load(spec_file.read_text()) or {}).get("argument_specs") or {}
        for entry_point in specs.values():
            names.update((entry_point or {}).get("options") or {})
    # Role-private names (_role_x, __role_x) are no part of the interface, never suggested.
    return {name for name in names if not name.startswith("_")}


def unknown_variables(names: Iterable[str], roles_dir: str, prefixes: Sequence[str]) -> list[str]:
    """One message per name that carries a role prefix but is documented by no role."""
    known = documented_variables(roles_dir)
    messages = []
    for name in sorted({str(n) for n in names}):
        if not name.startswith(tuple(prefixes)) or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else " (no role of the gateway reads it)"
        messages.append(f"unknown variable {name}{hint}")
    return messages


class FilterModule:
    def filters(self) -> dict:
        return {"gateway_unknown_variables": unknown_variables}
