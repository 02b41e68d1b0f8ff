"""Access tokens for playbooks/upgrade.yml's health gate: `tools/list` through Traefik needs one.

Run on the gateway host with the auth service's own Python, user and environment (the playbook starts
it with `systemd-run --property=EnvironmentFile=<auth.env> --uid=<auth user>`), so the token is signed
with the service's signing key and bound to a grant in its Redis exactly as a login's would be:

    python health_token.py mint RESOURCE_URL...   one JSON line: [{"resource", "grant", "token"}, ...]
    python health_token.py revoke GRANT_ID...     ends those grants (and so their tokens) at once

Each token lives 60 seconds (its grant too), so one left behind by an interrupted run dies on its own;
the playbook revokes them as soon as the check is done. Both actions write an operator audit line.
"""

from __future__ import annotations

import json
import sys
import time

from mcp_gateway_auth.config import Resource, Settings, load_settings
from mcp_gateway_auth.keys import KeyRing
from mcp_gateway_auth.logs import operator_audit
from mcp_gateway_auth.store import Store, digest, new_secret

LIFETIME = 60
CLIENT_ID = "mcp-gateway-upgrade"
# The identity used when every GitHub user may use the resource; otherwise the first allowed login.
ANYONE = "mcp-gateway-upgrade"


def login_for(settings: Settings, resource: Resource) -> str:
    """A GitHub login the resource accepts: ForwardAuth checks the allowlist for every request."""
    candidates = sorted((resource.allowed_users or frozenset()) - {"*"})
    candidates += sorted(settings.allowed_users - {"*"})
    for login in [*candidates, ANYONE]:
        if settings.user_allowed(login, resource):
            return login
    raise SystemExit(f"no GitHub login may use {resource.resource}: check auth_allowed_github_users")


def mint(settings: Settings, store: Store, urls: list[str]) -> list[dict[str, str]]:
    keys = KeyRing(settings.signing_key_paths)
    minted = []
    for url in urls:
        resource = settings.resource_by_url(url)
        if resource is None:
            raise SystemExit(f"{url} is not a resource of this auth service (AUTH_RESOURCES)")
        login = login_for(settings, resource)
        scope = " ".join(settings.scopes)
        grant = store.create_grant(user=login, client_id=CLIENT_ID, resource=url, scope=scope, ttl=LIFETIME)
        now = int(time.time())
        claims = {
            "iss": settings.issuer,
            "sub": login,
            "aud": url,
            "client_id": CLIENT_ID,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME,
            "jti": new_secret(18),
            "gid": grant,
        }
        operator_audit(
            "health_token_issued", "ok", resource=url, user=login, grant=digest(grant)[:12], expires_in=LIFETIME
        )
        minted.append({"resource": url, "grant": grant, "token": keys.sign(claims)})
    return minted


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in ("mint", "revoke"):
        raise SystemExit("usage: health_token.py mint RESOURCE_URL... | revoke GRANT_ID...")
    settings = load_settings()
    store = Store(settings.redis_url)
    if argv[1] == "mint":
        print(json.dumps(mint(settings, store, argv[2:])))
        return
    for grant in argv[2:]:
        live = store.revoke_grant(grant)
        operator_audit("health_token_revoked", "ok" if live else "not_found", grant=digest(grant)[:12])


if __name__ == "__main__":
    main(sys.argv)
