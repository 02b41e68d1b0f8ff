"""`mcp-gateway`: the operator's command on the host (console script of this package).

Run it as root or through sudo: it reads the service's env file, drops to the service's user and
works through the store (store.py), never on Redis keys of its own. Exit codes: 0 done, 1 the
thing asked for failed or does not exist, 2 bad usage.

Each subcommand group lives in its own module; SUBCOMMANDS below is the one place they are
registered.
"""

from __future__ import annotations

from pathlib import Path

import click
import redis

from . import audit, backup, check_config, clients, grants, health, keys, stats, users
from .context import DEFAULT_ENV_FILE, DEFAULT_USER, AdminContext

SUBCOMMANDS: tuple[click.Command, ...] = (
    clients.group,
    grants.group,
    users.group,
    keys.group,
    backup.backup_command,
    backup.restore_command,
    health.command,
    stats.command,
    audit.command,
    check_config.command,
)


class _Main(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:
            # redis-py's messages name the address and the failure, never the password.
            raise click.ClickException(f"the store (Redis) cannot be used: {exc}") from exc


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env-file",
    envvar="MCP_GATEWAY_ENV_FILE",
    default=DEFAULT_ENV_FILE,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auth service's environment file.",
)
@click.option(
    "--user",
    "service_user",
    envvar="MCP_GATEWAY_USER",
    default=DEFAULT_USER,
    show_default=True,
    help="The auth service's user, which the command becomes after reading the env file as root.",
)
@click.pass_context
def main(ctx: click.Context, env_file: Path, service_user: str) -> None:
    """Operate the MCP gateway's auth service: clients, grants, users and bans, keys, stats, audit."""
    ctx.obj = AdminContext(env_file, service_user)


for _command in SUBCOMMANDS:
    main.add_command(_command)
