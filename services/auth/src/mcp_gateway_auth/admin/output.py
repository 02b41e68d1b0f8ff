"""Output of the admin command: aligned tables for people, `--json` for scripts.

Times are Unix seconds in JSON (scripts compare them) and UTC dates in tables (people read them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")(function)


def when(value: object) -> str:
    if not isinstance(value, int | float) or not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))


def cell(value: object) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    # A client's name is its registrant's text: never let it move the cursor or rewrite a line.
    return "".join(char if char.isprintable() else "?" for char in str(value))


def table(rows: Iterable[Sequence[object]], headers: Sequence[str]) -> str:
    lines = [[cell(value) for value in row] for row in rows]
    if not lines:
        return "(none)"
    widths = [max(len(header), *(len(line[i]) for line in lines)) for i, header in enumerate(headers)]
    out = ["  ".join(header.upper().ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


def emit(as_json: bool, data: object, render: Callable[[], str]) -> None:
    """`data` as JSON, or what `render` makes of it for a person."""
    click.echo(json.dumps(data, indent=2, sort_keys=False) if as_json else render())
