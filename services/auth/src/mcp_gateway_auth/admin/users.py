"""`mcp-gateway users`: the allowlist in force per service, what each user holds, bans.

A ban is a key in Redis without expiry (so it outlives restarts and re-converges, which never
touch Redis) and revokes the user's grants at once. It is checked where a user could get back in:
at /verify (in the same MGET as the grant, so no extra round trip), at login (the page says the
account is banned) and at refresh (`invalid_grant`).
"""

from __future__ import annotations

import time

import click

from .. import events
from ..allowlist import LOGIN as LOGIN_PATTERN
from ..allowlist import Identity, is_rule
from .context import AdminContext, pass_admin
from .output import emit, json_option, table, when


class Login(click.ParamType):
    """A login, trimmed and lower-cased as the allowlist compares it."""

    name = "login"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        login = str(value).strip().lower()
        if not LOGIN_PATTERN.fullmatch(login) or is_rule(login):
            self.fail(
                f"{value!r} is not a login (a GitHub login, or the OpenID Connect claim that names the user)",
                param,
                ctx,
            )
        return login


LOGIN = Login()


@click.group("users")
def group() -> None:
    """Who may sign in, per service; what each user holds; bans."""


@group.command("list")
@json_option
@pass_admin
def list_users(admin: AdminContext, as_json: bool) -> None:
    """The allowlist in force per service, and each known user's services, grants and ban."""
    settings, store = admin.settings, admin.store
    services = []
    for resource in settings.resources:
        allowed = settings.allowed_users
        within = None
        if resource.allowed_users is not None and "*" not in resource.allowed_users:
            if any(is_rule(entry) for entry in allowed | resource.allowed_users) and "*" not in allowed:
                # Domain and group rules do not intersect as sets: a user must pass both lists.
                allowed, within = resource.allowed_users, sorted(settings.allowed_users)
            else:
                allowed = resource.allowed_users if "*" in allowed else allowed & resource.allowed_users
        entry = {"name": resource.name, "resource": resource.resource, "allowed": sorted(allowed)}
        if within is not None:
            entry["within"] = within
        services.append(entry)
    bans = store.bans()
    logins = {login for login in settings.allowed_users if LOGIN_PATTERN.fullmatch(login) and not is_rule(login)}
    logins |= set(store.users_with_grants()) | set(bans)
    users = []
    for login in sorted(logins):
        grants = store.user_grants(login)
        # The claims the newest grant keeps decide domain and group rules, as /verify does.
        identity = Identity.from_claims(login, grants[-1].get("claims") if grants else None)
        users.append(
            {
                "login": login,
                "services": [r.name for r in settings.resources if settings.user_allowed(login, r, identity)],
                "grants": len(grants),
                "clients": sorted({grant["client_id"] for grant in grants}),
                "banned": bans.get(login),
            }
        )

    def render() -> str:
        allow = table(
            [
                (
                    s["name"],
                    s["resource"],
                    ",".join(s["allowed"]) + (f" within {','.join(s['within'])}" if "within" in s else ""),
                )
                for s in services
            ],
            ["service", "resource", "allowed"],
        )
        held = table(
            [
                (
                    u["login"],
                    u["services"],
                    u["grants"],
                    u["clients"],
                    f"since {when(u['banned'].get('at'))}" if u["banned"] else "",
                )
                for u in users
            ],
            ["login", "services", "grants", "clients", "banned"],
        )
        return f"{allow}\n\n{held}"

    emit(as_json, {"services": services, "users": users}, render)


@group.command("ban")
@click.argument("login", type=LOGIN)
@click.option("--reason", default="", help="Why, kept with the ban and in the audit line.")
@json_option
@pass_admin
def ban(admin: AdminContext, login: str, reason: str, as_json: bool) -> None:
    """Ban LOGIN: revoke its grants and refuse it at /verify, login and refresh until unbanned."""
    store = admin.store
    created, revoked = store.ban(login, {"at": int(time.time()), "by": admin.actor, "reason": reason})
    outcome = "ok" if created else "already_banned"
    events.operator(store, admin.actor, "user_banned", outcome, user=login, grants_revoked=revoked, reason=reason)
    message = f"banned {login}" if created else f"{login} was already banned"
    emit(
        as_json,
        {"user": login, "changed": created, "grants_revoked": revoked},
        lambda: f"{message}; revoked {revoked} grant(s)",
    )


@group.command("unban")
@click.argument("login", type=LOGIN)
@json_option
@pass_admin
def unban(admin: AdminContext, login: str, as_json: bool) -> None:
    """Lift the ban of LOGIN (the allowlist still decides whether it may sign in)."""
    store = admin.store
    removed = store.unban(login)
    events.operator(store, admin.actor, "user_unbanned", "ok" if removed else "not_banned", user=login)
    emit(
        as_json,
        {"user": login, "changed": removed},
        lambda: f"unbanned {login}" if removed else f"{login} was not banned",
    )
