"""`mcp-gateway backup` and `mcp-gateway restore`: the state clients need, encrypted on the host.

`backup` encrypts to the age recipients of the inventory (AUTH_BACKUP_AGE_RECIPIENTS) with
Debian's `age` (run as a subprocess: the reference implementation, packaged by Debian, nothing to
bind), so the plaintext never touches the disk and the host never holds what decrypts it.
`restore` reads the decrypted stream on standard input (`age -d -i KEY FILE | sudo mcp-gateway
restore`), checks all of it (backup.py, store.check_record, the issuer, the keys) before it
writes anything, then adds the signing keys (verifying only) and writes the store in one
MULTI/EXEC.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from .. import backup as backup_format
from .. import events, keydir
from ..backup import Backup, BackupError
from .context import AdminContext, pass_admin
from .keys import adopt, ring
from .output import emit, json_option, table


def _age() -> str:
    age = shutil.which("age")
    if age is None:
        raise click.ClickException(
            "age is not installed (apt-get install age; the auth role installs it when "
            "auth_backup_age_recipients is set)"
        )
    return age


def _open_output(path: Path) -> int:
    """Opened as the invoking user (root), before the command becomes the service's user: the
    operator chooses where the backup goes. Never over an existing file."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise click.ClickException(f"{path} exists; the backup is never written over a file") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc


def _backup_keys(admin: AdminContext, now: float) -> list:
    """The keys that verify tokens still live; on another host the signing key verifies only."""
    ttl = admin.settings.access_token_ttl
    keys = []
    for entry, key in ring(admin).private_keys():
        if entry.verify_until is not None and entry.verify_until <= now:
            continue
        if entry.verify_until is None:
            entry = keydir.Entry(
                kid=entry.kid,
                file=f"{entry.kid}.pem",
                created_at=entry.created_at,
                signs_from=entry.signs_from,
                verify_until=int(now) + ttl + keydir.RETIRE_MARGIN,
            )
        keys.append((entry, key))
    return keys


@click.command("backup")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the encrypted backup to this new file (mode 0600) instead of standard output.",
)
@pass_admin
def backup_command(admin: AdminContext, output: Path | None) -> None:
    """Write an age-encrypted backup of registrations, grants, tokens, consents, bans and keys."""
    if output is None and sys.stdout.isatty():
        raise click.ClickException("standard output is a terminal: redirect it, or use --output FILE")
    fd = _open_output(output) if output is not None else None
    try:
        recipients = admin.settings.backup_age_recipients
        if not recipients:
            raise click.ClickException(
                "no age recipient to encrypt to: set auth_backup_age_recipients in the inventory "
                "(AUTH_BACKUP_AGE_RECIPIENTS in the service's env file)"
            )
        age = _age()
        now = time.time()
        content = Backup(created_at=round(now, 3), issuer=admin.settings.issuer)
        content.records = admin.store.dump()
        content.keys = _backup_keys(admin, now)
        argv = [age, "--encrypt", *(arg for r in recipients for arg in ("-r", r))]
        done = subprocess.run(argv, input=backup_format.write(content), capture_output=True, check=False)
        if done.returncode != 0:
            raise click.ClickException(f"age failed: {done.stderr.decode(errors='replace').strip()}")
        if fd is not None:
            with os.fdopen(fd, "wb") as file:
                fd = None
                file.write(done.stdout)
                file.flush()
                os.fsync(file.fileno())
        else:
            sys.stdout.buffer.write(done.stdout)
            sys.stdout.buffer.flush()
    except BaseException:
        if output is not None:
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(OSError):  # the service's user may not remove it
                output.unlink()
        raise
    events.operator(
        admin.store, admin.actor, "backup_written", "ok", records=len(content.records), keys=len(content.keys)
    )
    where = str(output) if output else "standard output"
    click.echo(
        f"backup of {len(content.records)} record(s) and {len(content.keys)} key(s) written to {where}, "
        f"encrypted to {len(recipients)} age recipient(s)",
        err=True,
    )


def _plan(admin: AdminContext, content: Backup) -> dict:
    """What restoring `content` would change, by kind, and whether the store holds data now."""
    now = time.time()
    live = [r for r in content.records if r.expires_at is None or r.expires_at > now]
    outcomes = admin.store.compare(live) if live else []
    kinds: dict[str, dict[str, int]] = {}
    for record, outcome in zip(live, outcomes, strict=True):
        counts = kinds.setdefault(record.kind, {"new": 0, "replace": 0, "same": 0, "expired": 0})
        counts[outcome] += 1
    for record in content.records:
        if record not in live:
            kinds.setdefault(record.kind, {"new": 0, "replace": 0, "same": 0, "expired": 0})["expired"] += 1
    known = {entry.kid for entry in ring(admin).entries()}
    keys = [entry.kid for entry, _ in content.keys if entry.kid not in known and (entry.verify_until or 0) > now]
    held = sum(admin.store.held().values())
    return {"created_at": content.created_at, "held": held, "kinds": kinds, "keys_added": keys}


def _render_plan(plan: dict, dry_run: bool) -> str:
    rows = [(kind, c["new"], c["replace"], c["same"], c["expired"]) for kind, c in sorted(plan["kinds"].items())]
    verb = "would add" if dry_run else "added"
    keys = ", ".join(plan["keys_added"]) or "none"
    return (
        table(rows, ["kind", "new", "replace", "same", "expired (skipped)"])
        + f"\n\nsigning keys {verb} (verifying only): {keys}"
    )


@click.command("restore")
@click.option("--dry-run", is_flag=True, help="Say what would change, and change nothing.")
@click.option("--force", is_flag=True, help="Restore onto a store that holds data (records of the backup replace it).")
@json_option
@pass_admin
def restore_command(admin: AdminContext, dry_run: bool, force: bool, as_json: bool) -> None:
    """Restore a decrypted backup read on standard input (age -d -i KEY FILE | mcp-gateway restore)."""
    if sys.stdin.isatty():
        raise click.ClickException("standard input is a terminal: pipe the decrypted backup into the command")
    data = sys.stdin.buffer.read()
    try:
        content = backup_format.read(data)
    except BackupError as exc:
        raise click.ClickException(f"refused: {exc}; nothing was changed") from exc
    settings = admin.settings
    if content.issuer != settings.issuer:
        raise click.ClickException(
            f"refused: the backup is of {content.issuer}, this service is {settings.issuer}; nothing was changed"
        )
    plan = _plan(admin, content)
    if plan["keys_added"] and ring(admin).directory is None:
        raise click.ClickException(
            "refused: the backup's signing keys need a key directory (AUTH_SIGNING_KEYS lists key files); "
            "nothing was changed"
        )
    if dry_run:
        emit(as_json, {"dry_run": True, **plan}, lambda: _render_plan(plan, True))
        return
    if plan["held"] and not force:
        raise click.ClickException(
            f"refused: the store holds {plan['held']} record(s); --force restores over them (the backup's records "
            "replace those with the same id, others stay); --dry-run shows what would change; nothing was changed"
        )
    now = time.time()
    keys = [(e, k) for e, k in content.keys if e.kid in plan["keys_added"] and (e.verify_until or 0) > now]
    added = adopt(ring(admin).directory, keys) if keys else []
    written = admin.store.load(content.records)
    plan["keys_added"] = added
    events.operator(
        admin.store,
        admin.actor,
        "backup_restored",
        "forced" if plan["held"] else "ok",
        records=written,
        keys=added,
        backup_created_at=content.created_at,
    )
    emit(as_json, {"dry_run": False, "written": written, **plan}, lambda: _render_plan(plan, False))
