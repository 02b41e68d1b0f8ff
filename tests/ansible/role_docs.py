"""Role documentation from meta/argument_specs.yml, the roles' API.

Each role's README carries a generated section between two markers; the tests check it is current and
that defaults/main.yml and the argument spec agree. Regenerate after changing a spec:

    .venv/bin/python tests/ansible/role_docs.py --write
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
BEGIN = "<!-- BEGIN generated from meta/argument_specs.yml -->"
END = "<!-- END generated from meta/argument_specs.yml -->"


def role_names() -> list[str]:
    return sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def load_spec(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def load_defaults(role: str) -> dict:
    path = ROLES / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def defaults_comments(role: str) -> dict[str, str]:
    """The comment block right above each top-level key of defaults/main.yml."""
    comments: dict[str, str] = {}
    block: list[str] = []
    path = ROLES / role / "defaults" / "main.yml"
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.startswith("# "):
            block.append(line[2:].strip())
        elif match := re.match(r"^([a-z0-9_]+):", line):
            comments[match.group(1)] = " ".join(block)
            block = []
        elif not line.startswith(" "):
            block = []
    return comments


def _text(value: str | list[str]) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _type(option: dict) -> str:
    kind = option.get("type", "str")
    if kind == "list" and "elements" in option:
        kind = f"list of {option['elements']}"
    if "choices" in option:
        kind += " (" + ", ".join(str(c) for c in option["choices"]) + ")"
    return kind


def _default(name: str, option: dict) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return "unset"
    if option.get("no_log") and option["default"] not in ("", {}, []):
        return "(secret)"
    return "`" + json.dumps(option["default"]) + "`"


def _table(options: dict, prefix: str = "") -> list[str]:
    rows = ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
    nested: list[str] = []
    for name, option in options.items():
        rows.append(
            f"| `{prefix}{name}` | {_cell(_type(option))} | {_cell(_default(name, option))} | "
            f"{_cell(_text(option.get('description', '')))} |"
        )
        if "options" in option:
            nested += ["", f"Keys of each `{prefix}{name}` entry:", "", *_table(option["options"])]
    return rows + nested


def generate(role: str) -> str:
    lines = [BEGIN, ""]
    for entry, spec in load_spec(role).items():
        title = "Variables" if entry == "main" else f"Entry point `{entry}` (`tasks_from: {entry}`)"
        lines += [f"## {title}", "", _text(spec.get("short_description", "")), ""]
        lines += [*_table(spec.get("options", {})), ""]
    return "\n".join([*lines, END])


def readme_section(role: str) -> str | None:
    path = ROLES / role / "README.md"
    if not path.is_file():
        return None
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def write(role: str) -> None:
    path = ROLES / role / "README.md"
    text = path.read_text() if path.is_file() else f"# Role `{role}`\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + generate(role) + text[end:])


def mismatches(role: str) -> list[str]:
    """Ways defaults/main.yml and the main entry point of the argument spec disagree."""
    problems = []
    options = load_spec(role).get("main", {}).get("options", {})
    defaults = load_defaults(role)
    comments = defaults_comments(role)
    for name, value in defaults.items():
        if name not in options:
            problems.append(f"{role}: default {name} is not in argument_specs")
            continue
        option = options[name]
        if "default" not in option:
            problems.append(f"{role}: {name} has a default but argument_specs gives none")
        elif option["default"] != value:
            problems.append(f"{role}: {name} defaults to {value!r} but argument_specs says {option['default']!r}")
        if _text(option.get("description", "")) != comments.get(name, ""):
            problems.append(f"{role}: {name}'s description differs from its comment in defaults/main.yml")
    for name, option in options.items():
        if name not in defaults and "default" in option:
            problems.append(f"{role}: argument_specs gives {name} a default that defaults/main.yml lacks")
        if not _text(option.get("description", "")):
            problems.append(f"{role}: {name} has no description")
    return problems


if __name__ == "__main__":
    if "--write" in sys.argv:
        for name in role_names():
            write(name)
    bad = [p for name in role_names() for p in mismatches(name)]
    bad += [f"{n}: README section is stale" for n in role_names() if readme_section(n) != generate(n)]
    print("\n".join(bad) or "role docs are current")
    sys.exit(1 if bad else 0)
