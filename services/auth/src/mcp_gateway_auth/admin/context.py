"""The service's own configuration for the admin command: its env file, its user, its store.

The command runs as root (or through sudo) and reads the env file the auth role writes
(`/etc/mcp-gateway/auth.env`, mode 0600 root: only root can), then drops to the service's user
before anything else: the signing keys it names are the service user's own (mode 0600), and the
store is reached as the service reaches it. So nobody types a venv path or loads an env file, and
nothing the command does needs more than the service itself has.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..config import ConfigError, Settings, load_settings
from ..logs import actor
from ..store import Store

DEFAULT_ENV_FILE = "/etc/mcp-gateway/auth.env"
DEFAULT_USER = "mcp-auth"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Inside double quotes systemd takes a backslash as an escape only before these (env-file.c,
# SHELL_NEED_ESCAPE); before anything else both characters stay.
_DOUBLE_QUOTE_ESCAPES = '"\\`$'


class EnvFileError(ValueError):
    """The file is not a systemd environment file the service could be started from."""


def parse_env_file(text: str) -> dict[str, str]:
    """Variables of a systemd EnvironmentFile, by systemd's rules (systemd.exec(5)).

    Neither shlex nor python-dotenv reads it as systemd does (`\\$` inside double quotes, `;`
    comments, values continued over lines inside quotes), and the command must see exactly what
    the service sees.
    """
    variables: dict[str, str] = {}
    pos, end, line_no = 0, len(text), 1
    while pos < end:
        # Start of a line: skip blanks, comments and blank lines.
        while pos < end and text[pos] in " \t\r":
            pos += 1
        if pos >= end:
            break
        if text[pos] == "\n":
            pos, line_no = pos + 1, line_no + 1
            continue
        if text[pos] in "#;":
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline
            continue
        equals, newline = text.find("=", pos), text.find("\n", pos)
        if equals < 0 or (0 <= newline < equals):
            raise EnvFileError(f"line {line_no}: expected NAME=value")
        name = text[pos:equals].strip()
        if not _NAME.fullmatch(name):
            raise EnvFileError(f"line {line_no}: {name!r} is not a variable name")
        pos = equals + 1
        while pos < end and text[pos] in " \t":
            pos += 1
        value: list[str] = []
        trailing = 0  # unquoted whitespace at the end is dropped, as systemd does
        while pos < end and text[pos] != "\n":
            char = text[pos]
            if char in "\"'":
                close = pos + 1
                while True:
                    if close >= end:
                        raise EnvFileError(f"line {line_no}: {name}: the {char} quote is never closed")
                    current = text[close]
                    if current == char:
                        break
                    if char == '"' and current == "\\" and close + 1 < end:
                        following = text[close + 1]
                        if following == "\n":
                            line_no += 1
                        elif following in _DOUBLE_QUOTE_ESCAPES:
                            value.append(following)
                        else:
                            value.append("\\" + following)
                        close += 2
                        continue
                    if current == "\n":
                        line_no += 1
                    value.append(current)
                    close += 1
                pos, trailing = close + 1, 0
                continue
            if char == "\\" and pos + 1 < end:
                if text[pos + 1] != "\n":
                    value.append(text[pos + 1])
                else:
                    line_no += 1
                pos, trailing = pos + 2, 0
                continue
            value.append(char)
            trailing = trailing + 1 if char in " \t\r" else 0
            pos += 1
        variables[name] = "".join(value[: len(value) - trailing] if trailing else value)
    return variables


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of the env file, or a ClickException (exit 1) saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot read {path}: {exc.strerror}; run the command as root (sudo mcp-gateway ...)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return parse_env_file(text)
    except EnvFileError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


def drop_privileges(user: str) -> None:
    """Become the service's user (and its groups) when running as root; as anyone else, stay."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise click.ClickException(f"no such user: {user} (the auth service's user; see --user)") from exc
    if entry.pw_uid == 0:
        return
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)


@dataclass
class AdminContext:
    """What every subcommand needs, loaded on first use: settings read as root, then the drop."""

    env_file: Path
    service_user: str
    actor: str = field(default_factory=actor)  # who ran it, taken before the drop changes the uid
    variables: dict[str, str] = field(default_factory=dict)  # the env file's, once settings are loaded
    _settings: Settings | None = None
    _store: Store | None = None

    def load_env(self, path: Path | None = None) -> dict[str, str]:
        """Read an env file as the invoking user (root), then drop to the service's user."""
        variables = read_env_file(path or self.env_file)
        drop_privileges(self.service_user)
        return variables

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            variables = self.load_env()
            self.variables = variables
            try:
                self._settings = load_settings(environ=variables)
            except ConfigError as exc:
                raise click.ClickException(f"{self.env_file}: {exc}") from exc
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.for_settings(self.settings)
        return self._store


pass_admin = click.make_pass_decorator(AdminContext)
