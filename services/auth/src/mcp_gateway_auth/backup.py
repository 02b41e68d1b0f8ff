"""The backup format: what `mcp-gateway backup` encrypts and `restore` reads, checked whole first.

JSON lines, UTF-8:

    {"format": "mcp-gateway-backup", "version": 1, "created_at": t, "issuer": "https://auth.example.com"}
    {"store": {"kind": "grant", "id": ..., "value": "...", "expires_at": t or null}}   (store.Record)
    {"key": {"kid": ..., "pem": "...", "created_at": t, "signs_from": t, "verify_until": t}}
    {"end": {"lines": n, "sha256": "<hex of every byte before this line>"}}

The header says what the stream is (a foreign file is refused before anything else is read) and
which version wrote it; the end line says the stream is whole (a truncated or altered file is
refused). The digest finds damage, not forgery: the age encryption around the file, and the
operator's keeping of it, are what vouch for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import keydir
from .keys import kid_of
from .store import Record, Store

FORMAT = "mcp-gateway-backup"
VERSION = 1


class BackupError(ValueError):
    """The stream is not a whole backup this version can restore; the message says why."""


@dataclass
class Backup:
    created_at: float
    issuer: str
    records: list[Record] = field(default_factory=list)
    keys: list[tuple[keydir.Entry, rsa.RSAPrivateKey]] = field(default_factory=list)


def _line(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def write(backup: Backup) -> bytes:
    body = _line({"format": FORMAT, "version": VERSION, "created_at": backup.created_at, "issuer": backup.issuer})
    for record in backup.records:
        body += _line(
            {"store": {"kind": record.kind, "id": record.id, "value": record.value, "expires_at": record.expires_at}}
        )
    for entry, key in backup.keys:
        pem = keydir.pem_bytes(key).decode()
        body += _line(
            {
                "key": {
                    "kid": entry.kid,
                    "pem": pem,
                    "created_at": entry.created_at,
                    "signs_from": entry.signs_from,
                    "verify_until": entry.verify_until,
                }
            }
        )
    lines = 2 + len(backup.records) + len(backup.keys)
    return body + _line({"end": {"lines": lines, "sha256": hashlib.sha256(body).hexdigest()}})


def read(data: bytes) -> Backup:
    """The backup in `data`, or BackupError naming the first thing wrong with it."""
    if not data:
        raise BackupError("the input is empty (restore reads the decrypted backup on standard input)")
    first, _, _ = data.partition(b"\n")
    try:
        header = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        hint = " (it looks encrypted: decrypt it with age first)" if data.startswith(b"age-encryption.org/") else ""
        raise BackupError(f"not an mcp-gateway backup{hint}")
    if header.get("version") != VERSION:
        raise BackupError(f"backup format version {header.get('version')!r}; this command restores version {VERSION}")
    if not data.endswith(b"\n"):
        raise BackupError("the backup is truncated (it does not end with a whole line)")
    lines = data.split(b"\n")[:-1]
    try:
        end = json.loads(lines[-1]).get("end")
    except (ValueError, UnicodeDecodeError, AttributeError):
        end = None
    if not isinstance(end, dict):
        raise BackupError("the backup is truncated (its end line is missing)")
    body = data[: len(data) - len(lines[-1]) - 1]
    if end.get("lines") != len(lines) or end.get("sha256") != hashlib.sha256(body).hexdigest():
        raise BackupError("the backup is damaged (its checksum does not match its content)")
    try:
        backup = Backup(created_at=float(header["created_at"]), issuer=str(header["issuer"]))
        for number, raw in enumerate(lines[1:-1], start=2):
            _add(backup, json.loads(raw), number)
    except BackupError:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise BackupError(f"the backup is malformed ({exc})") from exc
    return backup


def _add(backup: Backup, item: object, number: int) -> None:
    if not isinstance(item, dict) or len(item) != 1:
        raise BackupError(f"line {number}: not a record")
    if "store" in item:
        fields = item["store"]
        record = Record(str(fields["kind"]), str(fields["id"]), str(fields["value"]), fields["expires_at"])
        problem = Store.check_record(record)
        if problem:
            raise BackupError(f"line {number}: {problem}")
        backup.records.append(record)
    elif "key" in item:
        fields = item["key"]
        try:
            key = serialization.load_pem_private_key(str(fields["pem"]).encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"line {number}: not a PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey) or kid_of(key.public_key()) != fields["kid"]:
            raise BackupError(f"line {number}: the key does not match its kid")
        until = fields["verify_until"]
        entry = keydir.Entry(
            kid=fields["kid"],
            file=f"{fields['kid']}.pem",
            created_at=int(fields["created_at"]),
            signs_from=int(fields["signs_from"]),
            verify_until=None if until is None else int(until),
        )
        backup.keys.append((entry, key))
    else:
        raise BackupError(f"line {number}: unknown entry {next(iter(item))!r}")
