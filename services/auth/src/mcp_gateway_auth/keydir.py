"""The signing-key directory: PEM files and `keyring.json`, the ordered list that says which signs.

The service reads it (keys.KeyRing); only the admin command (`mcp-gateway keys`, `restore`) writes
it, as the service's user. `keyring.json`:

    {"version": 1, "keys": [{"kid": ..., "file": "<kid>.pem", "created_at": t,
                             "signs_from": t, "verify_until": t or null}, ...]}

Newest first. The key that signs is the first whose `signs_from` has come; every listed key
verifies and is published in the JWKS. A rotation lists the new key with `signs_from` a few
seconds ahead (ACTIVATION_DELAY), longer than any worker goes without re-reading the file
(keys.RELOAD_INTERVAL): every worker publishes and accepts the new key before any worker signs
with it, so no worker ever meets a token signed by a key it does not know yet.

`verify_until` is when the last access token a key signed expires (null while it signs); retire
refuses a key before then. A directory without `keyring.json` holds one PEM file (as the role
first writes it), which signs; the first change lists a copy of it (listed_entries).

Writes are safe against readers and each other: PEM files are written whole before the list
names them, the list is replaced with rename(2), and writers hold an flock on `.lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .config import ConfigError

MANIFEST = "keyring.json"
VERSION = 1
# Seconds between a rotation and the new key's first signature: > keys.RELOAD_INTERVAL, with room
# for a worker busy with a slow request.
ACTIVATION_DELAY = 5
# Added to a key's last possible signature + the access-token lifetime: the JWT leeway and the reload.
RETIRE_MARGIN = 10
NEW_KEY_BITS = 3072


@dataclass(frozen=True)
class Entry:
    kid: str
    file: str
    created_at: int
    signs_from: int
    verify_until: int | None = None

    def state(self, now: float, signer: str | None) -> str:
        if self.kid == signer:
            return "signing"
        if self.signs_from > now:
            return "next"
        if self.verify_until is not None and self.verify_until <= now:
            return "retirable"
        return "verifying"


def manifest_path(directory: Path) -> Path:
    return directory / MANIFEST


def load_pem(path: Path) -> rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} cannot be read ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} must be an RSA key of at least 2048 bits")
    return key


def pem_bytes(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def read_entries(directory: Path) -> list[Entry] | None:
    """The listed keys, newest first; None when the directory has no list yet."""
    path = manifest_path(directory)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} cannot be read ({exc.strerror})") from exc
    try:
        data = json.loads(raw)
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
        entries = [Entry(**item) for item in data["keys"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} is not a key list this version reads ({exc})") from exc
    for entry in entries:
        if Path(entry.file).name != entry.file or not entry.file.endswith(".pem"):
            raise ConfigError(f"AUTH_SIGNING_KEYS: {path}: {entry.file!r} must be a .pem file in the directory")
    if not entries:
        raise ConfigError(f"AUTH_SIGNING_KEYS: {path} lists no key")
    return entries


def initial_entry(directory: Path, kid_of: Callable[[rsa.RSAPublicKey], str]) -> Entry:
    """The one PEM file of a directory without a list (as the role first provides it)."""
    pems = sorted(p for p in directory.glob("*.pem") if p.is_file())
    if len(pems) != 1:
        found = ", ".join(p.name for p in pems) or "none"
        raise ConfigError(
            f"AUTH_SIGNING_KEYS: {directory} has no {MANIFEST} and so must hold exactly one .pem key (found: {found})"
        )
    key = load_pem(pems[0])
    created = int(pems[0].stat().st_mtime)
    return Entry(kid=kid_of(key.public_key()), file=pems[0].name, created_at=created, signs_from=created)


def listed_entries(directory: Path, kid_of: Callable[[rsa.RSAPublicKey], str]) -> list[Entry]:
    """The list, made when the directory has none yet: the role's one key is copied to `<kid>.pem`
    and listed under that name, so that what the role later does to its own file (write the
    inventory's key again, or generate one after a retire) never changes a listed key. Call it
    holding the lock."""
    entries = read_entries(directory)
    if entries is not None:
        return entries
    seed = initial_entry(directory, kid_of)
    entry = replace(seed, file=add_key(directory, load_pem(directory / seed.file), seed.kid))
    write_entries(directory, [entry])
    return [entry]


def remove_keys(directory: Path, kids: set[str], kid_of: Callable[[rsa.RSAPublicKey], str]) -> None:
    """Delete every PEM file in the directory that holds one of `kids` (the role's seed file too)."""
    for path in directory.glob("*.pem"):
        try:
            if kid_of(load_pem(path).public_key()) in kids:
                path.unlink()
        except ConfigError:
            continue


def signer(entries: list[Entry], now: float) -> Entry | None:
    return next((entry for entry in entries if entry.signs_from <= now), None)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One writer at a time (two operators rotating at once must not lose a key)."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_entries(directory: Path, entries: list[Entry]) -> None:
    """Replace the list at once: a reader sees the old list or the new one, never half of one."""
    path = manifest_path(directory)
    temporary = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    body = json.dumps({"version": VERSION, "keys": [asdict(e) for e in entries]}, indent=2) + "\n"
    _write_new(temporary, body.encode())
    os.replace(temporary, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def add_key(directory: Path, key: rsa.RSAPrivateKey, kid: str) -> str:
    """Write a key's PEM file (before any list names it); its file name."""
    name = f"{kid}.pem"
    path = directory / name
    if path.exists():
        if load_pem(path).private_numbers() != key.private_numbers():
            raise ConfigError(f"{path} exists and holds another key")
        return name
    _write_new(path, pem_bytes(key))
    return name


def superseded(entries: list[Entry], at: int, access_token_ttl: int) -> list[Entry]:
    """The entries once a new key signs from `at`: each key that could still sign until then is
    needed until the last token it may sign has expired."""
    until = at + access_token_ttl + RETIRE_MARGIN
    return [replace(e, verify_until=until) if e.verify_until is None else e for e in entries]


def now() -> int:
    return int(time.time())
