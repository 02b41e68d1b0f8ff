"""Client records, the redirect URI policy and registration metadata checks."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import ClassVar
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list
from authlib.oauth2.rfc7591 import ClientMetadataClaims
from joserfc.errors import InvalidClaimError

from .store import new_secret, same_secret

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
GRANT_TYPES = ("authorization_code", "refresh_token")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
_FORBIDDEN_SCHEMES = {"http", "https", "javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"}
MAX_REDIRECT_URIS = 10
MAX_URI_LENGTH = 2000


def new_client_id() -> str:
    """A fresh client id (192 random bits, URL-safe) that never begins with "-", so that an operator
    can pass it to a command as it is, without it being read as an option."""
    while True:
        client_id = new_secret(24)
        if not client_id.startswith("-"):
            return client_id


# Invisible characters that reorder the text around them: "Notes\u202eexe.lanretni" shows as
# "Notesinternal.exe". (Unicode's bidirectional formatting characters, UAX #9.)
_BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def display_text_problem(text: str) -> str | None:
    """Why client-supplied text cannot be shown to a person as it is (on the consent page, in a
    terminal), or None. Letters, marks and symbols of any script are fine."""
    for char in text:
        code = ord(char)
        category = unicodedata.category(char)
        if code in _BIDI_CONTROLS:
            return f"contains U+{code:04X}, a bidirectional control that reorders the text around it"
        if code == 0x1B:
            return "contains U+001B (escape), which starts terminal escape sequences"
        if category == "Cc":
            return f"contains U+{code:04X}, a control character"
        if category in ("Zl", "Zp"):
            return f"contains U+{code:04X}, a line or paragraph separator"
        if category == "Cs":
            return f"contains U+{code:04X}, an unpaired surrogate, which is not text"
    return None


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.1, [::1] and `localhost` exactly; `localhost.evil.com` is a different host."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redirect_uri_problem(uri: object, application_type: str = "native") -> str | None:
    """Why a redirect URI cannot be registered, or None when it can."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        return "must be a non-empty string of at most 2000 characters"
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        return "must not contain spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "is not a valid URI"
    if parts.fragment or "#" in uri:
        return "must not contain a fragment"
    if parts.username is not None or parts.password is not None:
        return "must not contain user information"
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if parts.hostname else "needs a host"
    if scheme == "http":
        if is_loopback_host(parts.hostname):
            return None
        return "http is only allowed for loopback hosts (127.0.0.1, [::1], localhost)"
    if scheme and _SCHEME.match(scheme) and scheme not in _FORBIDDEN_SCHEMES:
        if application_type != "native":
            return "private-use URI schemes are only allowed for native applications"
        return None
    return "must be https, loopback http, or a private-use scheme"


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact match, except that a loopback http URI matches on any port (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    try:
        reg, req = urlsplit(registered), urlsplit(requested)
        if reg.scheme != "http" or req.scheme != "http" or not is_loopback_host(reg.hostname):
            return False
        req.port  # noqa: B018
    except ValueError:
        return False
    return (
        reg.hostname == req.hostname
        and reg.path == req.path
        and reg.query == req.query
        and req.username is None
        and not req.fragment
        and "#" not in requested
    )


class RegistrationClaims(ClientMetadataClaims):
    """RFC 7591 metadata with this gateway's policy on top of authlib's checks."""

    REGISTERED_CLAIMS: ClassVar[list[str]] = [*ClientMetadataClaims.REGISTERED_CLAIMS, "application_type"]

    def validate(self, now=None, leeway=0):
        for key in (
            "client_name",
            "client_uri",
            "logo_uri",
            "tos_uri",
            "policy_uri",
            "scope",
            "software_id",
            "software_version",
            "application_type",
            "token_endpoint_auth_method",
        ):
            value = self.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 500):
                raise InvalidClaimError(key)
        # The consent page shows the name; other text it shows is ASCII already (redirect hosts).
        name = self.get("client_name")
        problem = display_text_problem(name) if isinstance(name, str) else None
        if problem:
            raise InvalidClaimError("client_name", f"client_name {problem}")
        for key in ("grant_types", "response_types", "contacts"):
            value = self.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise InvalidClaimError(key)
        self.validate_application_type()
        super().validate(now, leeway)

    def validate_redirect_uris(self):
        uris = self.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
            raise InvalidClaimError("redirect_uris")
        app_type = self.get("application_type") or "web"
        for uri in uris:
            if redirect_uri_problem(uri, app_type):
                raise InvalidClaimError("redirect_uris")

    def validate_token_endpoint_auth_method(self):
        super().validate_token_endpoint_auth_method()
        if self["token_endpoint_auth_method"] not in AUTH_METHODS:
            raise InvalidClaimError("token_endpoint_auth_method")

    @classmethod
    def get_claims_options(cls, metadata):
        # Grant and response types are checked below, tolerating extra ones (see supported_grant_types).
        options = super().get_claims_options(metadata)
        options.pop("grant_types", None)
        options.pop("response_types", None)
        return options

    def validate_grant_types(self):
        if supported_grant_types(self.get("grant_types")) is None:
            raise InvalidClaimError("grant_types")

    def validate_response_types(self):
        if "code" not in (self.get("response_types") or ["code"]):
            raise InvalidClaimError("response_types")

    def validate_application_type(self):
        if self.get("application_type") not in (None, "native", "web"):
            raise InvalidClaimError("application_type")

    def get_registered_claims(self):
        claims = super().get_registered_claims()
        # RFC 7591 section 3.2.1: the server registers what it supports and says so in the answer.
        claims["grant_types"] = supported_grant_types(claims.get("grant_types"))
        claims["response_types"] = ["code"]
        return claims


def supported_grant_types(requested: object) -> list[str] | None:
    """The grant types of a client's metadata that this server supports, or None when that leaves no
    authorization code flow. Extra types are ignored rather than refused: VS Code, for one, lists
    the device code grant in its registration and in its metadata document, which it cannot tailor
    to each server."""
    if requested is None or requested == []:
        return ["authorization_code"]
    if not isinstance(requested, list) or not all(isinstance(g, str) for g in requested):
        return None
    if "authorization_code" not in requested:
        return None
    return [g for g in GRANT_TYPES if g in requested]


class Client(ClientMixin):
    """A registered (RFC 7591) or metadata-document (CIMD) client, as authlib sees it."""

    def __init__(self, record: dict, default_scopes: tuple[str, ...]) -> None:
        self.record = record
        self.client_id: str = record["client_id"]
        self.metadata: dict = record.get("metadata", {})
        self._default_scopes = default_scopes

    @property
    def kind(self) -> str:
        return self.record.get("kind", "dcr")

    @property
    def client_name(self) -> str:
        name = self.metadata.get("client_name")
        # A name stored before names were checked (or in a cached document) is not shown.
        if not isinstance(name, str) or not name or display_text_problem(name):
            return self.client_id
        return name

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.metadata.get("redirect_uris") or [])

    @property
    def token_endpoint_auth_method(self) -> str:
        return self.metadata.get("token_endpoint_auth_method", "client_secret_basic")

    # authlib ClientMixin -----------------------------------------------------------------------
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope):
        allowed = scope_to_list(self.metadata.get("scope")) if self.metadata.get("scope") else None
        allowed = set(allowed or self._default_scopes) & set(self._default_scopes)
        if not scope:
            return list_to_scope([s for s in self._default_scopes if s in allowed])
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri):
        return any(redirect_uri_matches(r, redirect_uri) for r in self.redirect_uris)

    def check_client_secret(self, client_secret):
        return same_secret(client_secret, self.record.get("client_secret_hash"))

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in (self.metadata.get("grant_types") or ["authorization_code"])

    # for the consent page ----------------------------------------------------------------------
    def redirect_hosts(self) -> list[str]:
        hosts = []
        for uri in self.redirect_uris:
            parts = urlsplit(uri)
            hosts.append(parts.hostname or f"{parts.scheme}:")
        return sorted(set(hosts))

    def localhost_only(self) -> bool:
        return all(is_loopback_host(urlsplit(u).hostname) for u in self.redirect_uris)
