"""Who may sign in: allowlist entries and the identity they are matched against.

An entry is a login (`alice`, `alice@example.org`: the name the identity provider gives the user,
lower case), `*` for everyone the provider signs in, or, with an OpenID Connect provider, a rule
on the user's claims: `@example.org` admits every user whose verified email is in that domain,
`group:mcp-users` every user whose groups claim lists `mcp-users` (case-sensitive, as providers
name groups).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

GROUP_PREFIX = "group:"
# A login, lower case: GitHub's (letters, digits, '-', and '_' on GitHub Enterprise), or an OpenID
# Connect claim such as an email address or a subject like `auth0|123`. It goes into Redis key
# names, headers and the operator's command line, so nothing else: no space, slash, '*' or leading
# punctuation.
LOGIN = re.compile(r"[a-z0-9][a-z0-9_.@+|:-]{0,254}")


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: the login, and the claims the allowlist's rules look at."""

    login: str  # lower case; the name in tokens, bans, X-Auth-User
    email: str | None = None  # only a verified email
    groups: frozenset[str] = field(default_factory=frozenset)

    def claims(self) -> dict:
        """What a grant keeps, so /verify and refresh can judge the rules without the provider."""
        return {"email": self.email, "groups": sorted(self.groups)}

    @classmethod
    def from_claims(cls, login: str, claims: dict | None) -> Identity:
        claims = claims if isinstance(claims, dict) else {}
        email = claims.get("email")
        groups = claims.get("groups")
        return cls(
            login=login,
            email=email if isinstance(email, str) else None,
            groups=frozenset(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else frozenset(),
        )


def is_rule(entry: str) -> bool:
    """An entry that names a domain or a group rather than one login."""
    return entry.startswith("@") or entry.startswith(GROUP_PREFIX)


def normalize(entry: str) -> str:
    """Logins and domains compare in lower case; group names as the provider writes them."""
    entry = entry.strip()
    if entry.startswith(GROUP_PREFIX):
        return GROUP_PREFIX + entry[len(GROUP_PREFIX) :].strip()
    return entry.lower()


def admits(entries: Iterable[str], identity: Identity) -> bool:
    login = identity.login.strip().lower()
    email = (identity.email or "").lower()
    for entry in entries:
        if entry == "*" or entry == login:
            return True
        if entry.startswith("@") and email and email.endswith(entry) and email.count("@") == 1:
            return True
        if entry.startswith(GROUP_PREFIX) and entry[len(GROUP_PREFIX) :] in identity.groups:
            return True
    return False
