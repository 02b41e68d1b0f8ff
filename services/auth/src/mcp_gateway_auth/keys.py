"""Signing keys: RS256 JWT access tokens and the JWKS.

AUTH_SIGNING_KEYS names either PEM files (a fixed ring: the first signs) or one key directory
(keydir.py: its list says which key signs, and `mcp-gateway keys` rotates and retires). Every key
of the ring verifies and is published, so a rotated-out key keeps verifying the tokens it signed
until they expire. Each worker re-reads a key directory's list when it changed, checking at most
once per RELOAD_INTERVAL, so a rotation reaches every gunicorn worker without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from . import keydir
from .config import ConfigError

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    jwk = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    # RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    jwk["kid"] = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    jwk["use"] = "sig"
    jwk["alg"] = "RS256"
    return jwk


class NotAnAccessTokenError(jwt.InvalidTokenError):
    """A well-formed JWT of another kind (an ID token, a plain JWT) presented as an access token."""


def is_access_token_type(typ: object) -> bool:
    """RFC 9068 section 4: `typ` is `at+jwt`, compared case-insensitively, with or without the
    `application/` prefix (RFC 7515 section 4.1.9)."""
    if not isinstance(typ, str):
        return False
    media_type = typ.lower()
    if media_type.startswith("application/"):
        media_type = media_type[len("application/") :]
    return media_type == ACCESS_TOKEN_TYPE


RELOAD_INTERVAL = 1.0  # seconds; keydir.ACTIVATION_DELAY is larger

_log = logging.getLogger("mcp_gateway_auth")


def kid_of(public_key: rsa.RSAPublicKey) -> str:
    return public_jwk(public_key)["kid"]


@dataclass(frozen=True)
class _Ring:
    """One reading of the keys: (entry, private key) newest first."""

    keys: tuple[tuple[keydir.Entry, rsa.RSAPrivateKey], ...]
    public: dict[str, rsa.RSAPublicKey]
    jwks: tuple[dict[str, str], ...]


def _ring(pairs: list[tuple[keydir.Entry, rsa.RSAPrivateKey]]) -> _Ring:
    public: dict[str, rsa.RSAPublicKey] = {}
    jwks: list[dict[str, str]] = []
    kept: list[tuple[keydir.Entry, rsa.RSAPrivateKey]] = []
    for entry, key in pairs:
        jwk = public_jwk(key.public_key())
        if jwk["kid"] in public:
            continue
        if jwk["kid"] != entry.kid:
            raise ConfigError(f"AUTH_SIGNING_KEYS: {entry.file} holds key {jwk['kid']}, listed as {entry.kid}")
        public[jwk["kid"]] = key.public_key()
        jwks.append(jwk)
        kept.append((entry, key))
    return _Ring(tuple(kept), public, tuple(jwks))


def read_directory(directory: Path) -> list[tuple[keydir.Entry, rsa.RSAPrivateKey]]:
    """The keys of a key directory, newest first, each with its list entry."""
    entries = keydir.read_entries(directory)
    if entries is None:
        entries = [keydir.initial_entry(directory, kid_of)]
    return [(entry, keydir.load_pem(directory / entry.file)) for entry in entries]


def read_files(paths: tuple[Path, ...]) -> list[tuple[keydir.Entry, rsa.RSAPrivateKey]]:
    pairs = []
    for path in paths:
        key = keydir.load_pem(path)
        pairs.append((keydir.Entry(kid=kid_of(key.public_key()), file=str(path), created_at=0, signs_from=0), key))
    return pairs


def key_directory(paths: tuple[Path, ...]) -> Path | None:
    """The key directory AUTH_SIGNING_KEYS names, or None for a fixed list of files."""
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    return None


# A compact JWS as this service issues it: three base64url segments without padding (RFC 7515
# section 2). One regular expression checks the whole token's alphabet at C speed, so that reading
# the header does not take PyJWT's character-by-character check a second time: that check, run
# once for the header and once more by jwt.decode, cost more than the RSA signature itself.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


class _FastSegmentsJWS(jwt.PyJWS):
    """PyJWT's JWS with its segment decoding done at C speed: the same rules (base64url alphabet
    only, no padding, canonical encoding), checked by a regular expression and a re-encoding instead
    of a Python loop over every character. Signature and claims stay PyJWT's. Should a PyJWT upgrade
    rename the method, PyJWT's own check runs again: slower, never laxer."""

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
        except (TypeError, binascii.Error) as exc:
            raise jwt.DecodeError(f"Invalid {name} padding") from exc
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


_jwt = jwt.PyJWT()
# PyJWT builds its JWS with default options (signatures verified), as this one is.
_jwt._jws = _FastSegmentsJWS()


def unverified_header(token: str) -> dict:
    """The JOSE header of a compact JWS, before anything is verified; jwt.DecodeError when the token
    is not one."""
    if not _COMPACT_JWS.fullmatch(token):
        raise jwt.DecodeError("Not a compact JWS")
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise jwt.DecodeError("Invalid header") from exc
    if not isinstance(header, dict):
        raise jwt.DecodeError("Invalid header: must be a JSON object")
    return header


class KeyRing:
    def __init__(self, paths: tuple[Path, ...], reload_interval: float = RELOAD_INTERVAL) -> None:
        self.directory = key_directory(paths)
        self._paths = paths
        self._reload_interval = reload_interval
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp = self._manifest_stamp()
        self._current = _ring(read_directory(self.directory) if self.directory else read_files(paths))
        if not self._current.keys:
            raise ConfigError("AUTH_SIGNING_KEYS: no key")

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        if self.directory is None:
            return None
        try:
            stat = os.stat(keydir.manifest_path(self.directory))
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _ring_now(self) -> _Ring:
        """The current ring, re-read when the key list changed (checked at most once an interval)."""
        if self.directory is None or time.monotonic() - self._checked < self._reload_interval:
            return self._current
        with self._lock:
            if time.monotonic() - self._checked < self._reload_interval:
                return self._current
            self._checked = time.monotonic()
            stamp = self._manifest_stamp()
            if stamp != self._stamp:
                try:
                    self._current = _ring(read_directory(self.directory))
                    self._stamp = stamp
                    kids = [entry.kid for entry, _ in self._current.keys]
                    _log.info(json.dumps({"event": "signing_keys_loaded", "kids": kids}))
                except (ConfigError, OSError) as exc:
                    # Keep signing with the keys in hand; the next change of the list is tried again.
                    self._stamp = stamp
                    _log.error(json.dumps({"event": "signing_keys_unreadable", "error": str(exc)}))
            return self._current

    def _signer(self, ring: _Ring) -> tuple[keydir.Entry, rsa.RSAPrivateKey]:
        if self.directory is None:
            return ring.keys[0]
        now = time.time()
        # A list whose every key is still to come (a clock set back) signs with the oldest.
        return next(((e, k) for e, k in ring.keys if e.signs_from <= now), ring.keys[-1])

    @property
    def signing_kid(self) -> str:
        return self._signer(self._ring_now())[0].kid

    def entries(self) -> list[keydir.Entry]:
        return [entry for entry, _ in self._ring_now().keys]

    def private_keys(self) -> list[tuple[keydir.Entry, rsa.RSAPrivateKey]]:
        return list(self._ring_now().keys)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self._ring_now().jwks)}

    def sign(self, claims: dict) -> str:
        entry, key = self._signer(self._ring_now())
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": entry.kid, "typ": ACCESS_TOKEN_TYPE})

    def verify(self, token: str, *, issuer: str, audience: str | None) -> dict:
        """Claims of a valid access token; raises jwt.InvalidTokenError otherwise.

        Only RS256 with a published kid is accepted: `alg: none` and HS256 signed with the public
        key (the classic confusion attacks) fail here. So does any JWT that is not typed as an access
        token (RFC 9068 section 4): a JWT of another kind signed with the same key must never pass.
        """
        header = unverified_header(token)
        if header.get("alg") != "RS256":
            raise jwt.InvalidAlgorithmError("only RS256 is accepted")
        if not is_access_token_type(header.get("typ")):
            raise NotAnAccessTokenError("not an access token (typ must be at+jwt)")
        key = self._ring_now().public.get(str(header.get("kid")))
        if key is None:
            raise jwt.InvalidSignatureError("unknown kid")
        options = {"require": ["exp", "iat", "iss", "sub", "aud", "jti"], "verify_aud": audience is not None}
        return _jwt.decode(
            token, key, algorithms=["RS256"], issuer=issuer, audience=audience, options=options, leeway=5
        )
