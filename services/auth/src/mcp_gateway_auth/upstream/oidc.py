"""Any OpenID Connect provider (Google, Entra ID, Okta, Keycloak, Authentik, ...) as the upstream
identity provider, through authlib's OpenID Connect client.

authlib does the protocol: discovery from `<issuer>/.well-known/openid-configuration`, state, nonce
and S256 PKCE towards the provider, the code exchange with the client secret, and the `id_token`
checks (signature against the provider's JWKS, `iss`, `aud` (made explicit here), `azp`, `exp`/`iat`,
`nonce`, `at_hash`).
This module adds the gateway's policy: which claim names the user, that an email naming or admitting
a user is verified, and the re-check at refresh.

Re-check at refresh: the grant keeps the provider's refresh token (encrypted with a key derived from
AUTH_SECRET_KEY) and each refresh of the gateway's token refreshes it at the provider, re-reading
the claims from the new `id_token` (or userinfo). A user the provider no longer signs in, or whose
claims no longer pass the allowlist (a group removed, another email domain), is refused then. A
provider that gave no refresh token cannot be asked: its grants keep the claims of the sign-in and
are refused at refresh once older than AUTH_OIDC_MAX_UNCHECKED_AGE.
"""

from __future__ import annotations

import base64
import time
import warnings
from typing import ClassVar

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OAuthError, OpenIDMixin

# authlib 1.9 prefers the httpx2 fork and warns, on import, when it falls back to httpx, which the service
# depends on: the warning would open every `mcp-gateway` command's output and every worker's journal.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "The httpx module is deprecated", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.errors import JoseError

from ..allowlist import LOGIN, Identity
from ..config import Settings
from . import Login, UpstreamError, UpstreamRefused


class _ProviderApp(OAuth2Mixin, OpenIDMixin, BaseApp):
    """authlib's OpenID Connect client app on httpx (which trusts SSL_CERT_FILE, as the rest of the
    service's outbound HTTPS does)."""

    client_cls = OAuth2Client


class UpstreamUnavailable(UpstreamRefused):
    """The provider could not be reached at refresh: not the user's fault, so nothing is revoked."""


def _token_cipher(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mcp-gateway upstream refresh token").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class OpenIDConnect:
    kind = "oidc"
    remembers_login = False
    _ERRORS: ClassVar[tuple[type[Exception], ...]] = (OAuthError, JoseError, httpx.HTTPError, ValueError, KeyError)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.callback_url = f"{settings.issuer}/callback"
        self.cipher = _token_cipher(settings.secret_key)
        self.app = _ProviderApp(
            framework=None,
            name="oidc",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(settings.oidc_scopes),
                "code_challenge_method": "S256",
                "timeout": 10.0,
                "follow_redirects": False,
                "headers": {"User-Agent": "mcp-gateway-auth"},
            },
        )

    def _metadata(self) -> dict:
        try:
            metadata = self.app.load_server_metadata()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError("The identity provider could not be reached") from exc
        if metadata.get("issuer") != self.settings.oidc_issuer:
            # OpenID Connect Discovery section 4.3: a document naming another issuer is not this provider's.
            self.app.server_metadata.pop("_loaded_at", None)
            raise UpstreamError("The identity provider's discovery document names another issuer")
        return metadata

    # -- sign-in ---------------------------------------------------------------------------------
    def begin(self, state: str) -> tuple[str, dict]:
        self._metadata()
        # the operator's extra parameters first: the configuration refused any the protocol sets itself
        extra = dict(self.settings.oidc_authorization_params)
        started = self.app.create_authorization_url(self.callback_url, **extra, state=state)
        return started["url"], {"verifier": started["code_verifier"], "nonce": started["nonce"]}

    def finish(self, code: str, saved: dict) -> Login:
        self._metadata()
        try:
            token = self.app.fetch_access_token(
                redirect_uri=self.callback_url, code=code, code_verifier=saved["verifier"]
            )
        except OAuthError as exc:
            raise UpstreamError(f"The identity provider refused the sign-in ({exc.error})") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError("The identity provider could not be reached") from exc
        claims = self._id_token_claims(token, saved["nonce"])
        identity = self._identity(self._with_userinfo(claims, token))
        upstream = {"sub": claims["sub"], "checked_at": int(time.time())}
        if token.get("refresh_token"):
            upstream["refresh_token"] = self.cipher.encrypt(token["refresh_token"].encode()).decode()
        return Login(identity, upstream)

    def _id_token_claims(self, token: dict, nonce: str | None) -> dict:
        if not token.get("id_token"):
            raise UpstreamError("The identity provider sent no id_token")
        # authlib checks `aud` only through `azp` by default: a token for another audience that
        # names this client as `azp` would pass. OpenID Connect Core 3.1.3.7 (3): the audience must
        # contain this client, so say it, and the issuer, explicitly.
        options = {
            "iss": {"essential": True, "value": self.settings.oidc_issuer},
            "aud": {"essential": True, "value": self.settings.oidc_client_id},
        }
        try:
            claims = self.app.parse_id_token(token, nonce=nonce, claims_options=options)
        except (JoseError, ValueError) as exc:
            # A forged, expired or replayed id_token, or one for another client or issuer.
            error = getattr(exc, "description", None) or getattr(exc, "error", None) or type(exc).__name__
            raise UpstreamError(f"The identity provider's id_token was refused ({error})") from exc
        if claims is None or not isinstance(claims.get("sub"), str):
            raise UpstreamError("The identity provider's id_token names no subject")
        return dict(claims)

    def _with_userinfo(self, claims: dict, token: dict) -> dict:
        """The id_token's claims, completed from userinfo when it lacks the user or groups claim
        (some providers put groups only there)."""
        wanted = (self.settings.oidc_user_claim, self.settings.oidc_groups_claim)
        endpoint = self.app.server_metadata.get("userinfo_endpoint")
        if all(name in claims for name in wanted) or not endpoint or not token.get("access_token"):
            return claims
        try:
            with httpx.Client(timeout=10.0, follow_redirects=False) as http:
                response = http.get(endpoint, headers={"Authorization": f"Bearer {token['access_token']}"})
            info = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError("The identity provider could not be reached") from exc
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            return claims  # OpenID Connect Core 5.3.2: userinfo for another subject must not be used
        return {**info, **claims}

    def _identity(self, claims: dict) -> Identity:
        name = self.settings.oidc_user_claim
        value = claims.get(name)
        if not isinstance(value, str) or not value.strip():
            raise UpstreamError(f"The identity provider did not send the '{name}' claim that names the user")
        login = value.strip().lower()
        if not LOGIN.fullmatch(login):
            raise UpstreamError(f"The identity provider's '{name}' claim cannot name a user")
        verified = claims.get("email_verified") in (True, "true")
        if name == "email" and not verified:
            raise UpstreamError("The identity provider has not verified this email address")
        email = claims.get("email") if verified and isinstance(claims.get("email"), str) else None
        groups = claims.get(self.settings.oidc_groups_claim)
        if isinstance(groups, str):
            groups = [groups]
        return Identity(
            login=login,
            email=email.strip().lower() if email else None,
            groups=frozenset(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else frozenset(),
        )

    # -- refresh ---------------------------------------------------------------------------------
    def recheck(self, login: str, upstream: dict | None, created_at: int) -> tuple[Identity, dict] | None:
        upstream = upstream or {}
        sealed = upstream.get("refresh_token")
        if not sealed:
            if time.time() - created_at > self.settings.oidc_max_unchecked_age:
                raise UpstreamRefused("The identity provider must be asked again: sign in again")
            return None
        try:
            refresh_token = self.cipher.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise UpstreamRefused("The identity provider's sign-in cannot be renewed: sign in again") from exc
        try:
            self._metadata()
            token = self.app.fetch_access_token(grant_type="refresh_token", refresh_token=refresh_token)
        except OAuthError as exc:
            raise UpstreamRefused(f"The identity provider no longer accepts this sign-in ({exc.error})") from exc
        except (UpstreamError, httpx.HTTPError, ValueError) as exc:
            raise UpstreamUnavailable("The identity provider could not be reached") from exc
        try:
            if token.get("id_token"):
                claims = self._id_token_claims(token, None)
                if claims["sub"] != upstream.get("sub"):
                    raise UpstreamRefused("The identity provider names another user now")
            else:
                claims = {"sub": upstream.get("sub")}
            identity = self._identity(self._with_userinfo(claims, token))
        except UpstreamError as exc:
            raise UpstreamRefused(str(exc)) from exc
        if identity.login != login:
            raise UpstreamRefused("The identity provider names this user differently now: sign in again")
        renewed = {"sub": upstream.get("sub"), "checked_at": int(time.time()), "refresh_token": sealed}
        if token.get("refresh_token"):
            renewed["refresh_token"] = self.cipher.encrypt(token["refresh_token"].encode()).decode()
        return identity, renewed
