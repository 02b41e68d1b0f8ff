"""`mcp-gateway check-config [FILE]`: would the service start with this env file?

The service's own loader (config.load_settings) and key ring judge it, so the message is the one
the service would log; the auth role uses this as the `validate:` of its env-file template, which
keeps a bad file from replacing the running one. The file is read as root and judged as the
service's user, so a signing key that user cannot read is refused too.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import ConfigError, load_settings
from ..keys import KeyRing
from .context import AdminContext, pass_admin


@click.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_admin
def command(admin: AdminContext, file: Path | None) -> None:
    """Check FILE (default: the service's env file) with the service's own settings loader."""
    path = file or admin.env_file
    variables = admin.load_env(path)
    try:
        settings = load_settings(environ=variables)
        KeyRing(settings.signing_key_paths)
    except ConfigError as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    click.echo(f"{path}: ok")
