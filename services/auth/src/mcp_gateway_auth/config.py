"""Settings from the environment, checked once at start-up.

Every variable is documented in services/auth/README.md and services/auth/env.example.
A missing or malformed required setting raises ConfigError with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from .allowlist import Identity, admits, is_rule, normalize


class ConfigError(RuntimeError):
    """The service cannot start with this configuration."""


@dataclass(frozen=True)
class Resource:
    """One protected MCP service."""

    name: str
    resource: str  # canonical URL of the MCP endpoint, e.g. https://time.example.com/mcp
    allowed_users: frozenset[str] | None = None  # narrows the global allowlist when set (logins and rules)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def path(self) -> str:
        return urlsplit(self.resource).path


@dataclass(frozen=True)
class Settings:
    issuer: str
    redis_url: str
    github_client_id: str
    github_client_secret: str
    signing_key_paths: tuple[Path, ...]
    secret_key: str
    resources: tuple[Resource, ...]
    allowed_users: frozenset[str]  # lower-case logins and rules (allowlist.py); {"*"} means everyone
    idp: str = "github"  # who signs people in: "github" or "oidc"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: tuple[str, ...] = ("openid", "email", "profile")
    oidc_user_claim: str = "email"  # the claim that names the user
    oidc_groups_claim: str = "groups"
    oidc_max_unchecked_age: int = 86400  # life of a grant the provider gave no refresh token to re-check
    # extra parameters of the authorization request (Google's access_type=offline); never the protocol's own
    oidc_authorization_params: Mapping[str, str] = field(default_factory=dict)
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    access_token_ttl: int = 1800
    refresh_token_ttl: int = 2592000
    refresh_reuse_grace: int = 30  # seconds a lost rotation may be retried with the previous token; 0 = never
    code_ttl: int = 600
    client_ttl: int = 7776000
    consent_ttl: int = 7776000
    session_ttl: int = 86400
    trusted_proxy_hops: int = 1
    scopes: tuple[str, ...] = ("mcp",)
    cimd_test_allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    cimd_max_bytes: int = 16384
    cimd_timeout: float = 3.0
    cimd_cache_max: int = 86400
    verify_cache_seconds: float = 2.0
    max_body_bytes: int = 65536
    ratelimit_register: str = "20/minute"
    ratelimit_token: str = "120/minute"  # noqa: S105 - a rate, not a secret
    ratelimit_authorize: str = "60/minute"
    ratelimit_cimd: str = "30/minute"
    backup_age_recipients: tuple[str, ...] = ()  # age public keys `mcp-gateway backup` encrypts to
    # Redis through Sentinel (several state hosts): the Sentinels' addresses and the monitored master's
    # name; with these set, redis_url is empty and the primary is whichever the Sentinels name.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mcp-gateway"
    redis_password: str = ""
    redis_sentinel_password: str = ""
    redis_durable_replicas: int = 0  # replicas a durable write waits for (WAIT); 0 = do not wait
    redis_durable_timeout_ms: int = 1000
    test_settings: tuple[str, ...] = ()  # the AUTH_TEST_* settings in force; only ever set in test mode

    @property
    def test_mode(self) -> bool:
        return bool(self.test_settings)

    @property
    def limits_storage_uri(self) -> str:
        """The Redis URL in the form the `limits` library spells it."""
        if self.redis_sentinels:
            hosts = ",".join(f"{_url_host(host)}:{port}" for host, port in self.redis_sentinels)
            auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
            return f"redis+sentinel://{auth}{hosts}/{self.redis_sentinel_master}"
        if self.redis_url.startswith("unix://"):
            return "redis+unix://" + self.redis_url[len("unix://") :]
        return self.redis_url

    @property
    def limits_storage_options(self) -> dict[str, object]:
        """The `limits` storage's options: with Sentinel, the Sentinels' own password (the URL's is
        Redis's) and every count on the primary, so all gateway hosts share one budget."""
        options: dict[str, object] = {"socket_timeout": 5}
        if self.redis_sentinels:
            options["use_replicas"] = False
            options["sentinel_kwargs"] = {
                "password": self.redis_sentinel_password,
                "socket_timeout": 1,
                "socket_connect_timeout": 1,
            }
        return options

    def resource_by_url(self, url: str) -> Resource | None:
        for item in self.resources:
            if item.resource == url:
                return item
        return None

    def user_allowed(self, login: str, resource: Resource | None = None, identity: Identity | None = None) -> bool:
        """The global allowlist and the service's own admit the user. `identity` carries the claims
        that domain and group rules look at (kept with the grant); without it only logins match."""
        identity = identity or Identity(login.strip().lower())
        if not admits(self.allowed_users, identity):
            return False
        if resource is not None and resource.allowed_users is not None:
            return admits(resource.allowed_users, identity)
        return True

    @property
    def allowlist_setting(self) -> str:
        return "AUTH_ALLOWED_USERS" if self.idp == "oidc" else "AUTH_ALLOWED_GITHUB_USERS"

    @property
    def idp_name(self) -> str:
        """The provider's name on the pages a person sees."""
        return "GitHub" if self.idp == "github" else "identity provider"


def _logins(value: str | list, name: str, idp: str = "github") -> frozenset[str]:
    """Allowlist entries: logins, `*`, and with OpenID Connect `@domain` and `group:NAME` rules."""
    what = "GitHub logins" if idp == "github" else "logins, @domains or group:NAMEs"
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{name}: expected a list of {what}")
    entries = frozenset(normalize(i) for i in items if i.strip())
    if not entries:
        raise ConfigError(f"{name}: no entry given (use '*' to allow every user the provider signs in)")
    for entry in entries:
        if is_rule(entry) and idp != "oidc":
            raise ConfigError(f"{name}: {entry!r} is a domain or group rule, which needs AUTH_IDP=oidc")
        if entry in ("@", "group:") or (entry.startswith("@") and "." not in entry):
            raise ConfigError(f"{name}: {entry!r} names no domain or group (e.g. @example.com, group:mcp-users)")
    return entries


def _url(value: str, name: str, *, allow_path: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name}: {value!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or "#" in value:
        raise ConfigError(f"{name}: {value!r} must not carry a query or fragment")
    if not allow_path and parts.path not in ("",):
        raise ConfigError(f"{name}: {value!r} must have no path and no trailing slash")
    return value


def canonical_origin_url(value: str, name: str, *, require_https: bool = True) -> str:
    """Lower-case scheme and host, no default port, no trailing slash (RFC 8414 issuer form)."""
    parts = urlsplit(value)
    if require_https and parts.scheme != "https":
        raise ConfigError(f"{name}: {value!r} must be an https URL")
    _url(value, name, allow_path=True)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} has an invalid port") from exc
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, 443 if parts.scheme == "https" else 80) else f"{host}:{port}"
    if parts.username or parts.password:
        raise ConfigError(f"{name}: {value!r} must not carry credentials")
    return f"{parts.scheme}://{netloc}{parts.path}"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}: {value} must be {bound}")
    return value


def _resources(raw: str, idp: str = "github") -> tuple[Resource, ...]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"AUTH_RESOURCES: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not data:
        raise ConfigError("AUTH_RESOURCES: expected a non-empty JSON array of {name, resource} objects")
    result: list[Resource] = []
    for index, item in enumerate(data):
        where = f"AUTH_RESOURCES[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item.get("name"):
            raise ConfigError(f"{where}: expected an object with a non-empty 'name'")
        url = item.get("resource")
        if not isinstance(url, str):
            raise ConfigError(f"{where}: 'resource' must be the https URL of the MCP endpoint")
        canonical = canonical_origin_url(url, f"{where}.resource")
        if canonical != url or urlsplit(url).path in ("", "/") or url.endswith("/"):
            raise ConfigError(
                f"{where}.resource: {url!r} must be canonical (lower-case host, no default port), "
                "with a path and no trailing slash, e.g. https://time.example.com/mcp"
            )
        users = item.get("allowed_users")
        allowed = None if users is None else _logins(users, f"{where}.allowed_users", idp)
        extra = set(item) - {"name", "resource", "allowed_users"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {sorted(extra)}")
        result.append(Resource(name=item["name"], resource=url, allowed_users=allowed))
    if len({r.resource for r in result}) != len(result):
        raise ConfigError("AUTH_RESOURCES: the same resource URL appears twice")
    return tuple(result)


def _check_key_files(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in raw.split(",") if p.strip())
    if not paths:
        raise ConfigError("AUTH_SIGNING_KEYS: give at least one RSA private key PEM file, or a key directory")
    if len(paths) == 1:
        try:
            if paths[0].is_dir():
                return paths  # a key directory: keydir.py reads it
        except OSError as exc:
            raise ConfigError(f"AUTH_SIGNING_KEYS: {paths[0]} cannot be read ({exc.strerror})") from exc
    for path in paths:
        try:
            is_file = path.is_file()
        except OSError as exc:  # a folder on the way the service's user may not enter
            raise ConfigError(f"AUTH_SIGNING_KEYS: {path} cannot be read ({exc.strerror})") from exc
        if not is_file:
            raise ConfigError(f"AUTH_SIGNING_KEYS: {path} is not a readable file")
    return paths


# An age X25519 recipient: "age1" and 58 characters of bech32's alphabet (age's own spec).
_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")


def _age_recipients(raw: str) -> tuple[str, ...]:
    recipients = tuple(r for r in raw.replace(",", " ").split() if r)
    for recipient in recipients:
        if not _AGE_RECIPIENT.fullmatch(recipient):
            shown = recipient if recipient.startswith("age1") and len(recipient) < 80 else recipient[:8] + "..."
            raise ConfigError(
                f"AUTH_BACKUP_AGE_RECIPIENTS: {shown!r} is not an age public key (age1..., as age-keygen prints it)"
            )
    return recipients


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    from limits import parse_many

    value = str(env.get(name) or default)
    try:
        parse_many(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a rate limit such as '20/minute'") from exc
    return value


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    result: list[tuple[str, int]] = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
            raise ConfigError(f"AUTH_REDIS_SENTINELS: {item!r} is not host:port (e.g. 10.0.2.103:26379)")
        result.append((host, int(port)))
    if len(set(result)) != len(result):
        raise ConfigError("AUTH_REDIS_SENTINELS: the same Sentinel appears twice")
    return tuple(result)


# A Sentinel master name: what `sentinel monitor` takes (no spaces; kept to a safe alphabet).
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _redis_settings(env: Mapping[str, str]) -> dict[str, object]:
    """Where the state is: one Redis by URL, or the primary the Sentinels name (never both, so that
    no host quietly writes to a server the others do not read)."""
    url = str(env.get("AUTH_REDIS_URL") or "").strip()
    sentinels = _sentinels(str(env.get("AUTH_REDIS_SENTINELS") or ""))
    durable = {
        "redis_durable_replicas": _int(env, "AUTH_REDIS_DURABLE_REPLICAS", 0, minimum=0, maximum=16),
        "redis_durable_timeout_ms": _int(env, "AUTH_REDIS_DURABLE_TIMEOUT_MS", 1000, minimum=10, maximum=10000),
    }
    if url and sentinels:
        raise ConfigError("AUTH_REDIS_URL and AUTH_REDIS_SENTINELS: give one (the Sentinels name the primary)")
    if not sentinels:
        for name in ("AUTH_REDIS_SENTINEL_MASTER", "AUTH_REDIS_PASSWORD", "AUTH_REDIS_SENTINEL_PASSWORD"):
            if str(env.get(name) or "").strip():
                raise ConfigError(f"{name}: only read with AUTH_REDIS_SENTINELS; AUTH_REDIS_URL carries its password")
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("AUTH_REDIS_URL: expected redis://, rediss:// or unix:// URL")
        return {"redis_url": url, **durable}
    master = str(env.get("AUTH_REDIS_SENTINEL_MASTER") or "mcp-gateway").strip()
    if not _MASTER_NAME.fullmatch(master):
        raise ConfigError(f"AUTH_REDIS_SENTINEL_MASTER: {master!r} is not a master name such as mcp-gateway")
    password = str(env.get("AUTH_REDIS_PASSWORD") or "")
    if not password.strip():
        # The state hosts listen on a network: a Redis without a password there is open to every host on it.
        raise ConfigError("AUTH_REDIS_PASSWORD: required with AUTH_REDIS_SENTINELS (Redis listens on the network)")
    sentinel_password = str(env.get("AUTH_REDIS_SENTINEL_PASSWORD") or "")
    if not sentinel_password.strip():
        # An open Sentinel takes SENTINEL FAILOVER, RESET or REMOVE from anyone who reaches it.
        raise ConfigError(
            "AUTH_REDIS_SENTINEL_PASSWORD: required with AUTH_REDIS_SENTINELS (Sentinel listens on the network)"
        )
    return {
        "redis_url": "",
        "redis_sentinels": sentinels,
        "redis_sentinel_master": master,
        "redis_password": password,
        "redis_sentinel_password": sentinel_password,
        **durable,
    }


TEST_MODE = "AUTH_TEST_MODE"
TEST_PREFIX = "AUTH_TEST_"
# What test mode may change; each one weakens the service, so none is read outside test mode.
TEST_SETTINGS = frozenset({TEST_MODE, "AUTH_TEST_CIMD_ALLOWED_HOSTS"})


def _test_settings(env: Mapping[str, str]) -> tuple[str, ...]:
    """The test-only settings in force, refused unless the test harness started the service in test
    mode (AUTH_TEST_MODE=1, which the role refuses to pass like every other AUTH_TEST_* name)."""
    given = sorted(k for k, v in env.items() if k.startswith(TEST_PREFIX) and str(v).strip())
    mode = str(env.get(TEST_MODE) or "").strip()
    if mode not in ("", "1"):
        raise ConfigError(f"{TEST_MODE}: {mode!r}; only the test harness sets it, and to 1")
    if not mode:
        if given:
            raise ConfigError(
                f"{', '.join(given)}: a test-only setting, refused outside the test harness's test mode; "
                "remove it from the service's environment"
            )
        return ()
    unknown = [k for k in given if k not in TEST_SETTINGS]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a test setting (known: {', '.join(sorted(TEST_SETTINGS))})")
    return tuple(given)


REQUIRED = (
    "AUTH_ISSUER",
    "AUTH_GITHUB_CLIENT_ID",
    "AUTH_GITHUB_CLIENT_SECRET",
    "AUTH_ALLOWED_GITHUB_USERS",
    "AUTH_SIGNING_KEYS",
    "AUTH_SECRET_KEY",
    "AUTH_RESOURCES",
)
# With AUTH_IDP=oidc, the provider's settings and the provider-neutral allowlist replace GitHub's.
REQUIRED_OIDC = (
    "AUTH_ISSUER",
    "AUTH_OIDC_ISSUER",
    "AUTH_OIDC_CLIENT_ID",
    "AUTH_OIDC_CLIENT_SECRET",
    "AUTH_ALLOWED_USERS",
    "AUTH_SIGNING_KEYS",
    "AUTH_SECRET_KEY",
    "AUTH_RESOURCES",
)
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")
# The parameters the sign-in's security rests on, which authlib sets from the service's own settings and
# state (state, nonce, PKCE, where the code goes and how), or that would replace the whole request (a
# request object): an extra parameter of the same name would override or contradict them.
_PROTOCOL_PARAMS = frozenset(
    {
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "code_verifier",
        "redirect_uri",
        "client_id",
        "client_secret",
        "response_type",
        "response_mode",
        "scope",
        "request",
        "request_uri",
    }
)
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _authorization_params(env: Mapping[str, str]) -> dict[str, str]:
    """AUTH_OIDC_AUTHORIZATION_PARAMS: a JSON object of extra authorization request parameters, such
    as Google's {"access_type": "offline", "prompt": "consent"} (Google sends a refresh token, which
    the re-check at refresh needs, only then; other providers take the offline_access scope)."""
    name = "AUTH_OIDC_AUTHORIZATION_PARAMS"
    raw = str(env.get(name) or "").strip()
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: not JSON ({exc})") from exc
    if not isinstance(params, dict):
        raise ConfigError(f"{name}: expected a JSON object of parameter names and string values")
    for key, value in params.items():
        if not _PARAM_NAME.fullmatch(key):
            raise ConfigError(f"{name}: {key!r} is not a parameter name")
        if key.lower() in _PROTOCOL_PARAMS:
            raise ConfigError(
                f"{name}: {key!r} is set by the service itself (state, nonce, PKCE, redirect_uri, client_id, "
                "response_type, scope: use AUTH_OIDC_SCOPES) and cannot be overridden"
            )
        if not isinstance(value, str) or any(ord(c) < 0x20 for c in value):
            raise ConfigError(f"{name}: the value of {key!r} must be a string of printable characters")
    return params


def _idp(env: Mapping[str, str]) -> str:
    idp = str(env.get("AUTH_IDP") or "github").strip().lower()
    if idp not in ("github", "oidc"):
        raise ConfigError(f"AUTH_IDP: {idp!r}; expected github or oidc")
    other = "AUTH_ALLOWED_USERS" if idp == "github" else "AUTH_ALLOWED_GITHUB_USERS"
    if str(env.get(other) or "").strip():
        wanted = "AUTH_ALLOWED_GITHUB_USERS" if idp == "github" else "AUTH_ALLOWED_USERS"
        raise ConfigError(f"{other}: not read with AUTH_IDP={idp}; name who may sign in in {wanted}")
    return idp


def _oidc_settings(env: Mapping[str, str]) -> dict:
    issuer = env["AUTH_OIDC_ISSUER"].strip()
    parts = urlsplit(issuer)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"AUTH_OIDC_ISSUER: {issuer!r} must be the provider's https issuer URL, exactly as its "
            "/.well-known/openid-configuration states it"
        )
    scopes = tuple(s for s in (env.get("AUTH_OIDC_SCOPES") or "openid email profile").replace(",", " ").split() if s)
    if "openid" not in scopes:
        raise ConfigError("AUTH_OIDC_SCOPES: must include 'openid'")
    claims = {}
    for name, default in (("AUTH_OIDC_USER_CLAIM", "email"), ("AUTH_OIDC_GROUPS_CLAIM", "groups")):
        value = str(env.get(name) or default).strip()
        if not _CLAIM_NAME.fullmatch(value):
            raise ConfigError(f"{name}: {value!r} is not a claim name")
        claims[name] = value
    return {
        "oidc_issuer": issuer,
        "oidc_client_id": env["AUTH_OIDC_CLIENT_ID"].strip(),
        "oidc_client_secret": env["AUTH_OIDC_CLIENT_SECRET"].strip(),
        "oidc_scopes": scopes,
        "oidc_user_claim": claims["AUTH_OIDC_USER_CLAIM"],
        "oidc_groups_claim": claims["AUTH_OIDC_GROUPS_CLAIM"],
        "oidc_max_unchecked_age": _int(env, "AUTH_OIDC_MAX_UNCHECKED_AGE", 86400, minimum=60),
        "oidc_authorization_params": _authorization_params(env),
    }


def load_settings(overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the AUTH_* variables (overrides win over the environment)."""
    env: dict[str, str] = {k: v for k, v in (os.environ if environ is None else environ).items()}
    for key, value in (overrides or {}).items():
        env[key] = value if isinstance(value, str) else json.dumps(value)
    idp = _idp(env)
    required = REQUIRED_OIDC if idp == "oidc" else REQUIRED
    missing = [name for name in required if not str(env.get(name, "")).strip()]
    if not str(env.get("AUTH_REDIS_URL") or "").strip() and not str(env.get("AUTH_REDIS_SENTINELS") or "").strip():
        missing.insert(1, "AUTH_REDIS_URL (or AUTH_REDIS_SENTINELS)")
    if missing:
        raise ConfigError("missing required setting(s): " + ", ".join(missing))

    issuer = canonical_origin_url(env["AUTH_ISSUER"].strip(), "AUTH_ISSUER")
    if issuer != env["AUTH_ISSUER"].strip() or urlsplit(issuer).path:
        raise ConfigError(
            f"AUTH_ISSUER: {env['AUTH_ISSUER']!r} must be written canonically, e.g. https://auth.example.com "
            "(lower-case host, no default port, no path, no trailing slash)"
        )
    redis = _redis_settings(env)
    secret_key = env["AUTH_SECRET_KEY"]
    if len(secret_key) < 32:
        raise ConfigError("AUTH_SECRET_KEY: must be at least 32 characters of random data")
    github_url = _url(env.get("AUTH_GITHUB_URL") or "https://github.com", "AUTH_GITHUB_URL", allow_path=True)
    github_api = _url(
        env.get("AUTH_GITHUB_API_URL") or "https://api.github.com", "AUTH_GITHUB_API_URL", allow_path=True
    )
    scopes = tuple(s for s in (env.get("AUTH_SCOPES") or "mcp").replace(",", " ").split() if s)
    if not scopes:
        raise ConfigError("AUTH_SCOPES: at least one scope is needed")
    for scope in scopes:
        if not all(0x21 <= ord(c) <= 0x7E and c not in '"\\' for c in scope):
            raise ConfigError(f"AUTH_SCOPES: {scope!r} is not a valid scope token")
    test_settings = _test_settings(env)
    hosts = frozenset(
        h.strip().lower() for h in (env.get("AUTH_TEST_CIMD_ALLOWED_HOSTS") or "").split(",") if h.strip()
    )
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        raise ConfigError("AUTH_TEST_CIMD_ALLOWED_HOSTS: name hosts, not IP addresses")

    oidc = _oidc_settings(env) if idp == "oidc" else {}
    allowlist_name = "AUTH_ALLOWED_USERS" if idp == "oidc" else "AUTH_ALLOWED_GITHUB_USERS"

    return Settings(
        issuer=issuer,
        **redis,
        idp=idp,
        **oidc,
        github_client_id=str(env.get("AUTH_GITHUB_CLIENT_ID") or "").strip(),
        github_client_secret=str(env.get("AUTH_GITHUB_CLIENT_SECRET") or "").strip(),
        github_url=github_url.rstrip("/"),
        github_api_url=github_api.rstrip("/"),
        signing_key_paths=_check_key_files(env["AUTH_SIGNING_KEYS"]),
        secret_key=secret_key,
        resources=_resources(env["AUTH_RESOURCES"], idp),
        allowed_users=_logins(env[allowlist_name], allowlist_name, idp),
        access_token_ttl=_int(env, "AUTH_ACCESS_TOKEN_TTL", 1800, minimum=30, maximum=86400),
        refresh_token_ttl=_int(env, "AUTH_REFRESH_TOKEN_TTL", 2592000, minimum=60),
        refresh_reuse_grace=_int(env, "AUTH_REFRESH_REUSE_GRACE", 30, minimum=0, maximum=300),
        code_ttl=_int(env, "AUTH_CODE_TTL", 600, minimum=10, maximum=600),
        client_ttl=_int(env, "AUTH_CLIENT_TTL", 7776000, minimum=0),
        consent_ttl=_int(env, "AUTH_CONSENT_TTL", 7776000, minimum=60),
        session_ttl=_int(env, "AUTH_SESSION_TTL", 86400, minimum=60),
        trusted_proxy_hops=_int(env, "AUTH_TRUSTED_PROXY_HOPS", 1, minimum=0, maximum=5),
        scopes=scopes,
        cimd_test_allowed_hosts=hosts,
        cimd_timeout=float(_int(env, "AUTH_CIMD_TIMEOUT_MS", 3000, minimum=100, maximum=10000)) / 1000,
        verify_cache_seconds=float(_int(env, "AUTH_VERIFY_CACHE_MS", 2000, minimum=0, maximum=10000)) / 1000,
        ratelimit_register=_rate(env, "AUTH_RATELIMIT_REGISTER", "20/minute"),
        ratelimit_token=_rate(env, "AUTH_RATELIMIT_TOKEN", "120/minute"),
        ratelimit_authorize=_rate(env, "AUTH_RATELIMIT_AUTHORIZE", "60/minute"),
        ratelimit_cimd=_rate(env, "AUTH_RATELIMIT_CIMD", "30/minute"),
        backup_age_recipients=_age_recipients(env.get("AUTH_BACKUP_AGE_RECIPIENTS") or ""),
        test_settings=test_settings,
    )
