"""`mcp-gateway keys`: list, rotate and retire the keys that sign access tokens.

The keys live in the key directory AUTH_SIGNING_KEYS names (keydir.py); the running service
re-reads its list within a second, so no restart is needed. A rotated key signs a few seconds
after the command returns (keydir.ACTIVATION_DELAY), once every worker publishes it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import events, keydir
from ..config import ConfigError
from ..keys import KeyRing, kid_of
from .arguments import IdArguments
from .context import AdminContext, pass_admin
from .output import emit, json_option, table, when


def ring(admin: AdminContext) -> KeyRing:
    try:
        return KeyRing(admin.settings.signing_key_paths)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def key_directory(admin: AdminContext) -> Path:
    """The key directory, or a clear refusal when the service is given a fixed list of files."""
    keys = ring(admin)
    if keys.directory is None:
        raise click.ClickException(
            "AUTH_SIGNING_KEYS lists key files, which the command does not change: point it at a key "
            "directory (the auth role does) to rotate and retire keys with this command"
        )
    return keys.directory


def current_entries(directory: Path, *, write: bool = False) -> list[keydir.Entry]:
    """The directory's list; with `write` (holding the lock) it is made when the directory has none."""
    try:
        if write:
            return keydir.listed_entries(directory, kid_of)
        entries = keydir.read_entries(directory)
        return entries if entries is not None else [keydir.initial_entry(directory, kid_of)]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def describe(entries: list[keydir.Entry], now: float) -> list[dict]:
    signer = keydir.signer(entries, now)
    return [
        {
            "kid": e.kid,
            "state": e.state(now, signer.kid if signer else None),
            "file": e.file,
            "created_at": e.created_at,
            "signs_from": e.signs_from,
            "verify_until": e.verify_until,
        }
        for e in entries
    ]


def _render(rows: list[dict]) -> str:
    return table(
        [(r["kid"], r["state"], when(r["created_at"]), when(r["signs_from"]), when(r["verify_until"])) for r in rows],
        ["kid", "state", "created", "signs from", "needed until"],
    )


@click.group("keys")
def group() -> None:
    """The keys that sign access tokens: list, rotate, retire."""


@group.command("list")
@json_option
@pass_admin
def list_keys(admin: AdminContext, as_json: bool) -> None:
    """Each key, newest first: signing, next (signs soon), verifying (needed until), retirable."""
    keys = ring(admin)
    now = time.time()
    if keys.directory is not None:
        rows = describe(current_entries(keys.directory), now)
    else:
        signer = keys.signing_kid
        rows = [
            {"kid": e.kid, "state": "signing" if e.kid == signer else "verifying", "file": e.file}
            | {"created_at": None, "signs_from": None, "verify_until": None}
            for e in keys.entries()
        ]
    emit(as_json, {"keys": rows}, lambda: _render(rows))


@group.command("rotate")
@click.option(
    "--signs-in",
    type=click.IntRange(min=keydir.ACTIVATION_DELAY),
    default=keydir.ACTIVATION_DELAY,
    show_default=True,
    help="Seconds before the new key signs: long enough for the key directory to reach every gateway host.",
)
@json_option
@pass_admin
def rotate(admin: AdminContext, signs_in: int, as_json: bool) -> None:
    """Add a new key that signs from a few seconds on; the others keep verifying their tokens."""
    directory = key_directory(admin)
    ttl = admin.settings.access_token_ttl
    key = rsa.generate_private_key(public_exponent=65537, key_size=keydir.NEW_KEY_BITS)
    kid = kid_of(key.public_key())
    with keydir.locked(directory):
        entries = current_entries(directory, write=True)
        now = keydir.now()
        signs_from = now + signs_in
        new = keydir.Entry(kid=kid, file=keydir.add_key(directory, key, kid), created_at=now, signs_from=signs_from)
        entries = [new, *keydir.superseded(entries, signs_from, ttl)]
        keydir.write_entries(directory, entries)
    previous = [e.kid for e in entries[1:] if e.verify_until == signs_from + ttl + keydir.RETIRE_MARGIN]
    events.operator(admin.store, admin.actor, "key_rotated", "ok", kid=kid, signs_from=signs_from, superseded=previous)
    rows = describe(entries, time.time())
    emit(
        as_json,
        {"kid": kid, "signs_from": signs_from, "keys": rows},
        lambda: f"new key {kid} signs from {when(signs_from)}\n\n{_render(rows)}",
    )


@group.command("retire", cls=IdArguments)
@click.argument("kids", nargs=-1)
@click.option("--force", is_flag=True, help="Retire a key even though tokens it signed may still be live.")
@json_option
@pass_admin
def retire(admin: AdminContext, kids: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Remove the keys KIDS (default: every key no live token needs); their tokens are refused."""
    directory = key_directory(admin)
    with keydir.locked(directory):
        entries = current_entries(directory, write=True)
        now = time.time()
        signer = keydir.signer(entries, now)
        by_kid = {e.kid: e for e in entries}
        unknown = [kid for kid in kids if kid not in by_kid]
        if unknown:
            raise click.ClickException(f"no such key: {', '.join(unknown)} (see `mcp-gateway keys list`)")
        chosen = [by_kid[kid] for kid in kids] if kids else [e for e in entries if e.state(now, None) == "retirable"]
        for entry in chosen:
            state = entry.state(now, signer.kid if signer else None)
            if state in ("signing", "next"):
                raise click.ClickException(f"{entry.kid} signs access tokens ({state}): rotate first, then retire it")
            if state == "verifying" and not force:
                until = when(entry.verify_until) if entry.verify_until else "a rotation retires it"
                raise click.ClickException(
                    f"{entry.kid} is still needed until {until}: access tokens it signed may still be live "
                    "(--force retires it anyway, and those tokens are refused)"
                )
        gone = {e.kid for e in chosen}
        if gone:
            keydir.write_entries(directory, [e for e in entries if e.kid not in gone])
            keydir.remove_keys(directory, gone, kid_of)
    for entry in chosen:
        outcome = "forced" if entry.state(now, None) == "verifying" else "ok"
        events.operator(admin.store, admin.actor, "key_retired", outcome, kid=entry.kid)
    remaining = describe([e for e in entries if e.kid not in gone], time.time())
    emit(
        as_json,
        {"retired": sorted(gone), "keys": remaining},
        lambda: (f"retired {', '.join(sorted(gone))}" if gone else "no key to retire") + f"\n\n{_render(remaining)}",
    )


def adopt(directory: Path, keys: list[tuple[keydir.Entry, rsa.RSAPrivateKey]]) -> list[str]:
    """Add restored keys that verify only, after the keys in place; the kids added. (restore)"""
    with keydir.locked(directory):
        entries = current_entries(directory, write=True)
        known = {e.kid for e in entries}
        added = []
        for entry, key in keys:
            if entry.kid in known:
                continue
            name = keydir.add_key(directory, key, entry.kid)
            entries.append(replace(entry, file=name))
            added.append(entry.kid)
        if added:
            keydir.write_entries(directory, entries)
    return added
