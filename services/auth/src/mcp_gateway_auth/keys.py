"""Signing keys: RS256 JWT access tokens and the JWKS.

The first configured key signs; every configured key verifies and is published, so a rotated-out
key keeps verifying the tokens it signed until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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


class KeyRing:
    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._private: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._public: dict[str, rsa.RSAPublicKey] = {}
        self._jwks: list[dict[str, str]] = []
        for path in paths:
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
            jwk = public_jwk(key.public_key())
            if jwk["kid"] in self._public:
                continue
            self._private.append((jwk["kid"], key))
            self._public[jwk["kid"]] = key.public_key()
            self._jwks.append(jwk)

    @property
    def signing_kid(self) -> str:
        return self._private[0][0]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self._jwks)}

    def sign(self, claims: dict) -> str:
        kid, key = self._private[0]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE})

    def verify(self, token: str, *, issuer: str, audience: str | None) -> dict:
        """Claims of a valid access token; raises jwt.InvalidTokenError otherwise.

        Only RS256 with a published kid is accepted: `alg: none` and HS256 signed with the public
        key (the classic confusion attacks) fail here. So does any JWT that is not typed as an access
        token (RFC 9068 section 4): a JWT of another kind signed with the same key must never pass.
        """
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise jwt.InvalidAlgorithmError("only RS256 is accepted")
        if not is_access_token_type(header.get("typ")):
            raise NotAnAccessTokenError("not an access token (typ must be at+jwt)")
        key = self._public.get(str(header.get("kid")))
        if key is None:
            raise jwt.InvalidSignatureError("unknown kid")
        options = {"require": ["exp", "iat", "iss", "sub", "aud", "jti"], "verify_aud": audience is not None}
        return jwt.decode(token, key, algorithms=["RS256"], issuer=issuer, audience=audience, options=options, leeway=5)
