"""Read a systemd ``EnvironmentFile=`` the way systemd does, so that ``mcp-proxy --check-config FILE`` sees
exactly the variables the unit will be started with.

A port of the state machine of systemd's ``parse_env_file`` (src/basic/env-file.c): ``#`` and ``;`` start a
comment line; a line without ``=`` is ignored; whitespace around the name and before the value is dropped;
a value may be unquoted (a backslash takes the next character literally, a backslash at the end of the line
continues it, trailing whitespace is dropped), in single quotes (taken as is) or in double quotes (a
backslash escapes ``"``, ``\\``, ````` and ``$`` and continues a line; before anything else it stays), and
quoted and unquoted parts join up. Where systemd would drop an assignment with a warning (a name that is no
environment variable name, bytes that are not UTF-8), this parser refuses the file: a check should not pass
a file whose variables systemd would not all pass on.
"""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEWLINE = "\n\r"
_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"
_DOUBLE_QUOTE_ESCAPES = '"\\`$'


class EnvFileError(ValueError):
    """The file cannot be read as systemd would read it; the message names the file and the line."""


def parse_env_text(text: str, source: str = "<text>") -> dict[str, str]:
    values: dict[str, str] = {}
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    # Index in `value` from which it is trailing whitespace (None: no trailing whitespace so far).
    trailing: int | None = None
    line = 1
    key_line = 1

    def push() -> None:
        name = "".join(key).rstrip(_WHITESPACE)
        if not _NAME.fullmatch(name):
            raise EnvFileError(f"{source}:{key_line}: {name!r} is not an environment variable name")
        values[name] = "".join(value)

    for char in text:
        if state == "pre_key":
            if char in _COMMENTS:
                state = "comment"
            elif char not in _WHITESPACE:
                state, key, key_line = "key", [char], line
        elif state == "key":
            if char in _NEWLINE:
                state = "pre_key"  # a line without '=' is ignored
            elif char == "=":
                state, value, trailing = "pre_value", [], None
            else:
                key.append(char)
        elif state == "pre_value":
            if char in _NEWLINE:
                push()
                state = "pre_key"
            elif char == "'":
                state = "single_quote"
            elif char == '"':
                state = "double_quote"
            elif char == "\\":
                state = "value_escape"
            elif char not in _WHITESPACE:
                state, trailing = "value", None
                value.append(char)
        elif state == "value":
            if char in _NEWLINE:
                if trailing is not None:
                    del value[trailing:]
                push()
                state = "pre_key"
            elif char == "\\":
                state, trailing = "value_escape", None
            else:
                if char in _WHITESPACE:
                    trailing = len(value) if trailing is None else trailing
                else:
                    trailing = None
                value.append(char)
        elif state == "value_escape":
            state = "value"
            if char not in _NEWLINE:
                value.append(char)
        elif state == "single_quote":
            if char == "'":
                state = "pre_value"
            else:
                value.append(char)
        elif state == "double_quote":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_quote_escape"
            else:
                value.append(char)
        elif state == "double_quote_escape":
            state = "double_quote"
            if char in _DOUBLE_QUOTE_ESCAPES:
                value.append(char)
            elif char != "\n":
                value.extend(("\\", char))
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char in _NEWLINE:
                state = "pre_key"
        elif state == "comment_escape":
            state = "comment"
        if char == "\n":
            line += 1

    if state in ("single_quote", "double_quote", "double_quote_escape"):
        raise EnvFileError(f"{source}:{key_line}: the quoted value of {''.join(key).strip()!r} is never closed")
    if state in ("pre_value", "value", "value_escape"):
        if state == "value" and trailing is not None:
            del value[trailing:]
        push()
    return values


def read_env_file(path: str | Path) -> dict[str, str]:
    """The variables of a systemd environment file; EnvFileError (naming the file) when it cannot be used."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise EnvFileError(f"{path}: {error.strerror}") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise EnvFileError(f"{path}:{line}: not UTF-8") from error
    return parse_env_text(text, str(path))
