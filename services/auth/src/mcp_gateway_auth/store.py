"""Redis storage with a narrow interface; every key starts with `mcpgw:`.

Secrets that only need comparing (client secrets, registration access tokens, refresh tokens,
authorization codes) are stored as SHA-256 digests: they are 256-bit random values, so a fast
hash is enough and a dump of Redis yields nothing usable. Codes and refresh tokens are consumed
by one Lua script, so two racing requests cannot both win; the script leaves a "used" marker
naming the grant, which turns a replay into the revocation of that grant.

With several state hosts the service finds the primary through Redis Sentinel, and the writes a client
must not lose in a failover (registrations, grants and their codes, consents, refresh rotations,
revocations, bans) are not acknowledged before AUTH_REDIS_DURABLE_REPLICAS replicas have them: each such
method ends with `_replicated()`, a WAIT. WAIT rather than the primary's `min-replicas-to-write`, which
only counts replicas that are connected and recently heard from: a write it admits may still be lost
with the primary, where WAIT answers after the replicas have acknowledged it.

A refresh rotation is one Lua script too: spending the old refresh token, storing its successor
and sliding the grant happen together or not at all, so a crash of the service (or a failure of
Redis) at any moment leaves the client either its old token or the new one, never neither.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Settings

PREFIX = "mcpgw:"
# Counters of `stats` are per 5-minute bucket: "the last hour" is the last 12 buckets, the current
# one included, so it is right to within 5 minutes; each bucket lives a day and a bucket more.
STATS_BUCKET = 300
STATS_KEEP = 86400 + STATS_BUCKET
# The audit list keeps the newest entries only; the journal keeps every line.
AUDIT_KEEP = 1000

_CONSUME = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  local gid = cjson.decode(v)['grant_id']
  redis.call('SET', KEYS[2], gid, 'EX', tonumber(ARGV[1]))
  return {1, v}
end
local g = redis.call('GET', KEYS[2])
if g then
  return {2, g}
end
return {0}
"""

# One refresh rotation, all or nothing. KEYS: 1 refresh:<old>, 2 refresh-used:<old> (the marker),
# 3 refresh:<new>, 4 grant:<gid>, 5 and 6 the client's and the user's grant index, 7 refresh:<successor>
# (the unclaimed successor a retry voids; in 'live' mode the same as KEYS[1]), 8 client-used:<client>.
# ARGV: 1 mode ('live': the old token is still stored; 'retry': it was rotated and its successor is
# unclaimed), 2 the new record, 3 the marker to leave, 4 refresh TTL, 5 grant TTL, 6 now, 7 index TTL,
# 8 grant id, 9 ('retry' only) the marker as it was read. Returns 1 done, 0 grant gone, -1 the state
# changed since it was read (another request won): nothing was written.
_ROTATE = """
if redis.call('EXISTS', KEYS[4]) == 0 then
  return 0
end
if ARGV[1] == 'live' then
  if redis.call('DEL', KEYS[1]) == 0 then
    return -1
  end
else
  if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('GET', KEYS[2]) ~= ARGV[9] then
    return -1
  end
  if redis.call('DEL', KEYS[7]) == 0 then
    return -1
  end
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[5])
local expiry = tonumber(ARGV[6]) + tonumber(ARGV[5])
for i = 5, 6 do
  redis.call('ZADD', KEYS[i], expiry, ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[6])
  redis.call('EXPIRE', KEYS[i], ARGV[7])
end
redis.call('SET', KEYS[8], ARGV[6], 'EX', ARGV[7])
return 1
"""

# How often lookup_refresh re-reads a marker that changed while it was being judged.
_LOOKUP_ATTEMPTS = 8


@dataclass
class RefreshState:
    """What a presented refresh token is, read in at most two round trips.

    - `live`: stored; `data` is its record.
    - `retry`: already rotated, but within the reuse grace and its successor was never used (the
      answer that carried the successor may have been lost); `data` is the successor's record.
    - `reused`: rotated before (outside the grace, or its successor was used); `grant_id` says whose.
    - `unknown`: not ours, expired, or voided.
    """

    status: str
    token: str
    data: dict | None = None
    grant: dict | None = None
    grant_id: str | None = None
    marker: str | None = None  # the old token's marker as read ('retry')
    successor: str | None = None  # digest of the unclaimed successor ('retry')
    rotated_at: int | None = None  # when the old token was first rotated ('retry')


def _parse_marker(raw: str) -> dict:
    """A refresh-used marker: {"g": grant id, "s": successor digest, "t": rotated at}. Markers written
    before rotation was atomic hold the bare grant id and allow no retry."""
    if raw.startswith("{"):
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("g"), str):
            return value
    return {"g": raw}


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same_secret(value: str | None, stored_digest: str | None) -> bool:
    if not value or not stored_digest:
        return False
    return hmac.compare_digest(digest(value), stored_digest)


def same_text(value: object, expected: object) -> bool:
    """Constant-time equality of two strings, any characters (hmac.compare_digest refuses non-ASCII str)."""
    if not isinstance(value, str) or not isinstance(expected, str) or not value or not expected:
        return False
    return hmac.compare_digest(value.encode(), expected.encode())


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


class NotReplicated(redis.exceptions.ConnectionError):
    """Fewer replicas than required acknowledged a write within the durable timeout (a failover in
    progress, replicas down). The write is on the primary but was not confirmed to the client: a
    ConnectionError, so every caller treats it as storage unavailable (503 with Retry-After)."""


def sentinel_client(settings: Settings, socket_timeout: float) -> redis.Redis:
    """A client of the primary the Sentinels name; redis-py asks them again after a connection error
    (and turns a READONLY answer, a demoted primary's, into one), so a failover is seen by the next
    command. Two quick retries ride out a pooled connection to the old primary without a 503."""
    sentinel = Sentinel(
        list(settings.redis_sentinels),
        sentinel_kwargs={
            "password": settings.redis_sentinel_password,
            "socket_timeout": 1,
            "socket_connect_timeout": 1,
        },
        password=settings.redis_password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
    )
    return sentinel.master_for(
        settings.redis_sentinel_master,
        decode_responses=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
    )


class Store:
    def __init__(
        self,
        url: str = "",
        index_ttl: int = 2592000,
        *,
        client: redis.Redis | None = None,
        durable_replicas: int = 0,
        durable_timeout_ms: int = 1000,
    ) -> None:
        # The per-client and per-user indexes of grant ids are sorted sets scored by each grant's
        # expiry: every write drops the members that have expired, so an index holds live grants
        # only, however long a client (one metadata-document client serves every user) or a person
        # keeps authorizing. The key itself lives as long as its longest-lived grant can.
        self.index_ttl = index_ttl
        self.durable_replicas = durable_replicas
        self.durable_timeout_ms = durable_timeout_ms
        self.redis = client or redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=_socket_timeout(durable_timeout_ms),
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        self._consume = self.redis.register_script(_CONSUME)
        self._rotate = self.redis.register_script(_ROTATE)

    @classmethod
    def for_settings(cls, settings: Settings) -> Store:
        """The store of a service with these settings (the service and the admin command alike)."""
        index_ttl = max(settings.refresh_token_ttl, settings.access_token_ttl, settings.code_ttl)
        timeout_ms = settings.redis_durable_timeout_ms
        client = sentinel_client(settings, _socket_timeout(timeout_ms)) if settings.redis_sentinels else None
        return cls(
            settings.redis_url,
            index_ttl,
            client=client,
            durable_replicas=settings.redis_durable_replicas,
            durable_timeout_ms=timeout_ms,
        )

    def _replicated(self) -> None:
        """Return once `durable_replicas` replicas have every write made so far, or raise NotReplicated.

        WAIT counts the replicas that acknowledged its own connection's last write, and the write being
        made durable may have gone through another pooled connection: so the barrier writes a key first
        on the connection that waits. Replication is one ordered stream, so a replica that has the
        barrier has everything written before it, from any connection."""
        if not self.durable_replicas:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(PREFIX + "durable-barrier", int(time.time()), ex=60)
        pipe.wait(self.durable_replicas, self.durable_timeout_ms)
        _, acknowledged = pipe.execute()
        if int(acknowledged) < self.durable_replicas:
            raise NotReplicated(
                f"{acknowledged} of {self.durable_replicas} replica(s) acknowledged within {self.durable_timeout_ms} ms"
            )

    # -- helpers ---------------------------------------------------------------------------------
    def _set_json(self, key: str, value: dict, ttl: int | None) -> None:
        self.redis.set(PREFIX + key, json.dumps(value), ex=ttl if ttl else None)

    def _get_json(self, key: str) -> dict | None:
        raw = self.redis.get(PREFIX + key)
        return json.loads(raw) if raw else None

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def persistence(self) -> dict[str, Any]:
        """Redis's INFO persistence (aof_enabled, aof_last_write_status, ...), for `health`."""
        return dict(self.redis.info("persistence"))

    # -- clients ---------------------------------------------------------------------------------
    def save_client(self, record: dict, ttl: int) -> None:
        self._set_json(f"client:{record['client_id']}", record, ttl or None)
        self._replicated()

    def update_client(self, record: dict) -> None:
        key = PREFIX + f"client:{record['client_id']}"
        self.redis.set(key, json.dumps(record), keepttl=True)
        self._replicated()

    def keep_client(self, client_id: str) -> None:
        """A registration in use lives its full life (until `expires_at`, 0 = for ever)."""
        record = self.get_client(client_id)
        if record is None or not record.pop("unused", False):
            return
        expires_at = int(record.get("expires_at") or 0)
        if expires_at and expires_at <= time.time():
            return
        ttl = expires_at - int(time.time()) if expires_at else None
        self.redis.set(PREFIX + f"client:{client_id}", json.dumps(record), ex=ttl)

    def get_client(self, client_id: str) -> dict | None:
        if not client_id or len(client_id) > 2048:
            return None
        return self._get_json(f"client:{client_id}")

    def delete_client(self, client_id: str) -> int:
        """Delete a registration and revoke every grant issued to it; the number of grants revoked."""
        revoked = sum(self._revoke_grant(gid) for gid in self._indexed_grants("client", client_id))
        self.redis.delete(
            PREFIX + f"client:{client_id}",
            PREFIX + f"client-used:{client_id}",
            _index_key("client", client_id),
            _legacy_index_key("client", client_id),
        )
        self._replicated()
        return revoked

    def list_clients(self, batch: int = 500) -> Iterator[dict]:
        """Every stored registration, read with SCAN (never KEYS, which blocks Redis) and MGET in
        batches. Metadata-document clients are not registrations and are not listed."""
        keys: list[str] = []
        for key in self.redis.scan_iter(match=PREFIX + "client:*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                yield from self._records(keys)
                keys = []
        if keys:
            yield from self._records(keys)

    def clients_with_grants(self) -> list[str]:
        """The ids of every client with a grant index, metadata-document clients included (they
        have no registration to list)."""
        start = len(_index_key("client", ""))
        return sorted({key[start:] for key in self.redis.scan_iter(match=_index_key("client", "*"), count=500)})

    def users_with_grants(self) -> list[str]:
        """The logins with a grant index (some of its grants may have expired since)."""
        start = len(_index_key("user", ""))
        return sorted({key[start:] for key in self.redis.scan_iter(match=_index_key("user", "*"), count=500)})

    def clients_last_used(self, client_ids: list[str]) -> dict[str, int | None]:
        """When each client last obtained tokens (Unix time), None when not within a grant's life."""
        if not client_ids:
            return {}
        values = self.redis.mget([PREFIX + f"client-used:{c}" for c in client_ids])
        return {c: int(v) if v else None for c, v in zip(client_ids, values, strict=True)}

    def _records(self, keys: list[str]) -> Iterator[dict]:
        # A key may expire between SCAN and MGET: it is simply gone.
        for raw in self.redis.mget(keys):
            if raw:
                yield json.loads(raw)

    # -- pending authorization requests and the upstream leg --------------------------------------
    def save_pending(self, data: dict, ttl: int) -> str:
        pending_id = new_secret(24)
        self._set_json(f"pending:{pending_id}", data, ttl)
        return pending_id

    def get_pending(self, pending_id: str) -> dict | None:
        if not pending_id or len(pending_id) > 64:
            return None
        return self._get_json(f"pending:{pending_id}")

    def take_pending(self, pending_id: str) -> dict | None:
        """Get and delete at once, so one authorization request yields at most one code."""
        if not pending_id or len(pending_id) > 64:
            return None
        raw = self.redis.getdel(PREFIX + f"pending:{pending_id}")
        return json.loads(raw) if raw else None

    def delete_pending(self, pending_id: str) -> None:
        self.redis.delete(PREFIX + f"pending:{pending_id}")

    def save_upstream(self, state: str, data: dict, ttl: int) -> None:
        self._set_json(f"upstream:{digest(state)}", data, ttl)

    def pop_upstream(self, state: str) -> dict | None:
        raw = self.redis.getdel(PREFIX + f"upstream:{digest(state)}")
        return json.loads(raw) if raw else None

    # -- grants ----------------------------------------------------------------------------------
    def create_grant(
        self,
        *,
        user: str,
        client_id: str,
        resource: str,
        scope: str,
        ttl: int,
        claims: dict | None = None,
        upstream: dict | None = None,
    ) -> str:
        """`claims`: what the allowlist's domain and group rules read (email, groups); `upstream`:
        the identity provider's state for the re-check at refresh (its refresh token encrypted)."""
        gid = new_secret(18)
        record = {
            "grant_id": gid,
            "user": user,
            "client_id": client_id,
            "resources": [resource],
            "scope": scope,
            "created_at": int(time.time()),
        }
        if claims is not None:
            record["claims"] = claims
        if upstream is not None:
            record["upstream"] = upstream
        pipe = self.redis.pipeline()
        pipe.set(PREFIX + f"grant:{gid}", json.dumps(record), ex=ttl)
        self._index(pipe, gid, client_id, user, ttl)
        pipe.execute()
        return gid

    def _index(self, pipe: redis.client.Pipeline, gid: str, client_id: str, user: str, ttl: int) -> None:
        now = time.time()
        for key in (_index_key("client", client_id), _index_key("user", user)):
            pipe.zadd(key, {gid: now + ttl})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, max(self.index_ttl, ttl))

    def _indexed_grants(self, kind: str, name: str) -> set[str]:
        """Grant ids in an index, including a set left by a version that kept plain sets."""
        pipe = self.redis.pipeline()
        pipe.zrange(_index_key(kind, name), 0, -1)
        pipe.type(_legacy_index_key(kind, name))
        current, legacy_type = pipe.execute()
        gids = set(current)
        if legacy_type == "set":
            gids |= self.redis.smembers(_legacy_index_key(kind, name))
        return gids

    def update_grant_identity(self, gid: str, claims: dict, upstream: dict | None) -> bool:
        """Keep what the provider said at a refresh; never brings back a revoked grant (XX), nor
        changes its life (KEEPTTL). Whether the grant was still there."""
        grant = self.get_grant(gid)
        if grant is None:
            return False
        grant["claims"] = claims
        if upstream is not None:
            grant["upstream"] = upstream
        return bool(self.redis.set(PREFIX + f"grant:{gid}", json.dumps(grant), xx=True, keepttl=True))

    def get_grant(self, gid: str) -> dict | None:
        return self._get_json(f"grant:{gid}") if gid else None

    def client_grants(self, client_id: str) -> list[dict]:
        """The live grants of a client (oldest first), from its index: no scan of Redis."""
        return self._live_grants(self._indexed_grants("client", client_id))

    def user_grants(self, user: str) -> list[dict]:
        """The live grants of a GitHub login (lower case, oldest first), from its index."""
        return self._live_grants(self._indexed_grants("user", user))

    def _live_grants(self, gids: set[str]) -> list[dict]:
        if not gids:
            return []
        grants = list(self._records([PREFIX + f"grant:{gid}" for gid in sorted(gids)]))
        return sorted(grants, key=lambda grant: grant.get("created_at", 0))

    def revoke_grant(self, gid: str) -> bool:
        """End a grant and so every code, access token and refresh token issued from it; whether
        it was still live. Durable: a revocation lost in a failover would bring the tokens back."""
        revoked = self._revoke_grant(gid)
        self._replicated()
        return revoked

    def _revoke_grant(self, gid: str) -> bool:
        grant = self.get_grant(gid)
        pipe = self.redis.pipeline()
        pipe.delete(PREFIX + f"grant:{gid}")
        if grant:
            for kind, name in (("client", grant["client_id"]), ("user", grant["user"])):
                pipe.zrem(_index_key(kind, name), gid)
                pipe.srem(_legacy_index_key(kind, name), gid)
        pipe.execute()
        return grant is not None

    def all_grants(self, batch: int = 500) -> list[dict]:
        """Every live grant (oldest first), read with SCAN and MGET: for the operator, not a request."""
        keys = list(self.redis.scan_iter(match=PREFIX + "grant:*", count=batch))
        grants: list[dict] = []
        for start in range(0, len(keys), batch):
            grants.extend(self._records(keys[start : start + batch]))
        return sorted(grants, key=lambda grant: grant.get("created_at", 0))

    def revoke_user(self, user: str) -> int:
        """Revoke every grant of a GitHub login (lower case); the number of grants revoked."""
        revoked = sum(self._revoke_grant(gid) for gid in self._indexed_grants("user", user))
        self._replicated()
        return revoked

    # -- codes and refresh tokens ------------------------------------------------------------------
    def save_code(self, code: str, data: dict, ttl: int) -> None:
        """Durable, and with it the grant created just before (one WAIT covers both)."""
        self._set_json(f"code:{digest(code)}", data, ttl)
        self._replicated()

    def consume_code(self, code: str, ttl: int) -> tuple[str, Any]:
        """('ok', data) once; ('replayed', grant_id) afterwards; ('unknown', None) otherwise."""
        return self._consume_once(f"code:{digest(code)}", f"code-used:{digest(code)}", ttl)

    def issue_refresh(self, token: str, data: dict, ttl: int, grant_ttl: int) -> None:
        """A grant's first refresh token, and the grant slid to its full life, in one MULTI/EXEC."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(PREFIX + f"refresh:{digest(token)}", json.dumps(data), ex=ttl)
        self._slide_grant(pipe, data["grant_id"], data["client_id"], data["user"], grant_ttl)
        pipe.execute()
        self._replicated()

    def keep_grant(self, gid: str, client_id: str, user: str, ttl: int) -> None:
        """The grant (and its place in the indexes) lives `ttl` seconds from now.

        A grant is created for the life of its authorization code; the tokens issued from it must
        not outlive it, or /verify would call them revoked. Without a refresh token (which slides
        the grant in issue_refresh) the caller keeps it for the access token's life this way.
        """
        pipe = self.redis.pipeline(transaction=True)
        self._slide_grant(pipe, gid, client_id, user, ttl)
        pipe.execute()
        self._replicated()

    def _slide_grant(self, pipe: redis.client.Pipeline, gid: str, client_id: str, user: str, ttl: int) -> None:
        pipe.expire(PREFIX + f"grant:{gid}", ttl)
        self._index(pipe, gid, client_id, user, ttl)
        # When the client last got tokens, for `mcp-gateway clients`: in the same transaction, so no
        # extra round trip. A client unused for the index's life has no such key: "never", as far
        # as any live grant is concerned.
        pipe.set(PREFIX + f"client-used:{client_id}", int(time.time()), ex=max(self.index_ttl, ttl))

    def find_refresh(self, token: str) -> dict | None:
        return self._get_json(f"refresh:{digest(token)}")

    def lookup_refresh(self, token: str, grace: int) -> RefreshState:
        """Classify a presented refresh token (see RefreshState); writes nothing.

        A retry is judged on the old token's marker and its successor read together: a racing
        retry may void the successor and write a new marker between two reads, and judging the
        new state by the old marker would call an honest race a reuse and revoke the grant."""
        if not token or len(token) > 512:
            return RefreshState("unknown", token)
        key = digest(token)
        used_key = PREFIX + f"refresh-used:{key}"
        raw, marker = self.redis.mget(PREFIX + f"refresh:{key}", used_key)
        for _ in range(_LOOKUP_ATTEMPTS):
            if raw:
                data = json.loads(raw)
                return RefreshState("live", token, data, self.get_grant(data["grant_id"]), data["grant_id"])
            if not marker:
                return RefreshState("unknown", token)
            parsed = _parse_marker(marker)
            gid, successor, rotated_at = parsed["g"], parsed.get("s"), parsed.get("t")
            within_grace = isinstance(rotated_at, int) and 0 <= time.time() - rotated_at <= grace
            if grace <= 0 or not isinstance(successor, str) or not within_grace:
                return RefreshState("reused", token, grant_id=gid)
            succ_raw, grant_raw, marker_now = self.redis.mget(
                PREFIX + f"refresh:{successor}", PREFIX + f"grant:{gid}", used_key
            )
            if marker_now != marker:  # another request rotated in between: judge the new state
                raw, marker = None, marker_now
                continue
            if not (succ_raw and grant_raw):
                return RefreshState("reused", token, grant_id=gid)
            return RefreshState(
                "retry",
                token,
                json.loads(succ_raw),
                json.loads(grant_raw),
                gid,
                marker=marker,
                successor=successor,
                rotated_at=rotated_at,
            )
        # The marker kept changing under us: many requests race with this token. Refuse this one
        # without revoking; the race itself leaves exactly one live successor.
        return RefreshState("unknown", token)

    def rotate_refresh(self, state: RefreshState, new_token: str, data: dict, ttl: int, grant_ttl: int) -> str:
        """Spend `state.token` (or, for a retry, void its unclaimed successor), store `new_token` with
        `data` and slide the grant, in one script: 'ok', 'revoked' (the grant is gone) or 'conflict'
        (another request changed the token's state since `state` was read; nothing was written)."""
        if state.status not in ("live", "retry"):
            raise ValueError(f"cannot rotate a refresh token that is {state.status}")
        old, new, gid = digest(state.token), digest(new_token), data["grant_id"]
        now = int(time.time())
        rotated_at = state.rotated_at if state.status == "retry" and state.rotated_at is not None else now
        marker = json.dumps({"g": gid, "s": new, "t": rotated_at}, separators=(",", ":"))
        successor = PREFIX + f"refresh:{state.successor}" if state.status == "retry" else PREFIX + f"refresh:{old}"
        result = self._rotate(
            keys=[
                PREFIX + f"refresh:{old}",
                PREFIX + f"refresh-used:{old}",
                PREFIX + f"refresh:{new}",
                PREFIX + f"grant:{gid}",
                _index_key("client", data["client_id"]),
                _index_key("user", data["user"]),
                successor,
                PREFIX + f"client-used:{data['client_id']}",
            ],
            args=[
                state.status,
                json.dumps(data),
                marker,
                max(int(ttl), 1),
                max(int(grant_ttl), 1),
                now,
                max(self.index_ttl, int(grant_ttl)),
                gid,
                state.marker or "",
            ],
        )
        outcome = {1: "ok", 0: "revoked"}.get(int(result), "conflict")
        if outcome == "ok":
            self._replicated()
        return outcome

    def _consume_once(self, key: str, used_key: str, ttl: int) -> tuple[str, Any]:
        result = self._consume(keys=[PREFIX + key, PREFIX + used_key], args=[max(int(ttl), 1)])
        if result[0] == 1:
            return "ok", json.loads(result[1])
        if result[0] == 2:
            return "replayed", result[1]
        return "unknown", None

    # -- access tokens: the /verify state check is one round trip -----------------------------------
    def revoke_jti(self, jti: str, ttl: int) -> None:
        if ttl > 0:
            self.redis.set(PREFIX + f"revoked-jti:{jti}", "1", ex=ttl)
            self._replicated()

    def token_state(self, gid: str, jti: str, user: str) -> tuple[dict | None, bool, bool]:
        """(grant or None, jti revoked?, user banned?) in one MGET."""
        grant_raw, revoked, banned = self.redis.mget(
            PREFIX + f"grant:{gid}", PREFIX + f"revoked-jti:{jti}", _ban_key(user)
        )
        return (json.loads(grant_raw) if grant_raw else None), bool(revoked), bool(banned)

    # -- bans: kept without expiry, so they outlive restarts and re-converges ------------------------
    def ban(self, user: str, record: dict) -> tuple[bool, int]:
        """Ban a GitHub login (lower case) and revoke its grants: (newly banned?, grants revoked).
        The ban is written first, so a grant created while this runs is refused at /verify anyway."""
        created = bool(self.redis.set(_ban_key(user), json.dumps(record), nx=True))
        return created, self.revoke_user(user)  # revoke_user waits for the replicas, the ban included

    def unban(self, user: str) -> bool:
        removed = bool(self.redis.delete(_ban_key(user)))
        self._replicated()
        return removed

    def is_banned(self, user: str) -> bool:
        return bool(self.redis.exists(_ban_key(user)))

    def bans(self) -> dict[str, dict]:
        start = len(_ban_key(""))
        keys = list(self.redis.scan_iter(match=_ban_key("*"), count=500))
        values = self.redis.mget(keys) if keys else []
        return {key[start:]: json.loads(raw) for key, raw in zip(keys, values, strict=True) if raw}

    # -- counters for `stats`: one pipelined HINCRBY and EXPIRE, never a scan ------------------------
    def count(self, event: str) -> None:
        key = PREFIX + f"stats:{int(time.time()) // STATS_BUCKET}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, event, 1)
        pipe.expire(key, STATS_KEEP)
        pipe.execute()

    def counts(self, seconds: int) -> dict[str, int]:
        """Each counter summed over the buckets of the last `seconds` (the current bucket included)."""
        now = int(time.time()) // STATS_BUCKET
        pipe = self.redis.pipeline(transaction=False)
        for bucket in range(now - max(seconds // STATS_BUCKET, 1) + 1, now + 1):
            pipe.hgetall(PREFIX + f"stats:{bucket}")
        totals: dict[str, int] = {}
        for bucket in pipe.execute():
            for event, value in bucket.items():
                totals[event] = totals.get(event, 0) + int(value)
        return totals

    # -- the audit list: operator actions and security events, newest first, bounded ---------------
    def record_audit(self, entry: dict) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(PREFIX + "audit", json.dumps(entry, default=str))
        pipe.ltrim(PREFIX + "audit", 0, AUDIT_KEEP - 1)
        pipe.execute()

    def audit_entries(self, limit: int) -> list[dict]:
        return [json.loads(raw) for raw in self.redis.lrange(PREFIX + "audit", 0, max(limit, 1) - 1)]

    # -- backup and restore: the state clients need to carry on, as records -----------------------
    def dump(self, batch: int = 500) -> list[Record]:
        """Every live record of the kinds in BACKUP_KINDS, each with when it expires (None: never).

        Read with SCAN and pipelined GET + PTTL: not one instant (a refresh rotated meanwhile may be
        caught on either side), but every record read is whole. The grant indexes are not records:
        load() rebuilds them from the grants."""
        records: list[Record] = []
        for kind in BACKUP_KINDS:
            keys = list(self.redis.scan_iter(match=f"{PREFIX}{kind}:*", count=batch))
            start = len(PREFIX) + len(kind) + 1
            for first in range(0, len(keys), batch):
                chunk = keys[first : first + batch]
                pipe = self.redis.pipeline(transaction=False)
                for key in chunk:
                    pipe.get(key)
                    pipe.pttl(key)
                answers = pipe.execute()
                now = time.time()
                for key, value, pttl in zip(chunk, answers[0::2], answers[1::2], strict=True):
                    if value is None or pttl == -2:
                        continue  # expired between SCAN and GET
                    expires_at = None if pttl < 0 else round(now + pttl / 1000, 3)
                    records.append(Record(kind, key[start:], value, expires_at))
        return records

    def held(self) -> dict[str, int]:
        """How many records of each backed-up kind the store holds now (restore's "holds data")."""
        counts: dict[str, int] = {}
        for kind in BACKUP_KINDS:
            counts[kind] = sum(1 for _ in self.redis.scan_iter(match=f"{PREFIX}{kind}:*", count=500))
        return counts

    def compare(self, records: list[Record]) -> list[str]:
        """For each record: 'new' (nothing stored under its id), 'same' (stored as it is) or 'replace'."""
        keys = [PREFIX + f"{r.kind}:{r.id}" for r in records]
        current: list[str | None] = []
        for first in range(0, len(keys), 500):
            current.extend(self.redis.mget(keys[first : first + 500]))
        return [
            "new" if c is None else "same" if c == r.value else "replace" for r, c in zip(records, current, strict=True)
        ]

    def load(self, records: list[Record]) -> int:
        """Write the records in one MULTI/EXEC, each for its remaining life, and rebuild the grant
        indexes; records already expired are skipped. The number written.

        The caller checks every record with check_record first: nothing here can fail half-way."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        written = 0
        for record in records:
            ttl_ms = None if record.expires_at is None else int((record.expires_at - now) * 1000)
            if ttl_ms is not None and ttl_ms <= 0:
                continue
            pipe.set(PREFIX + f"{record.kind}:{record.id}", record.value, px=ttl_ms)
            if record.kind == "grant":
                grant = json.loads(record.value)
                ttl = max(ttl_ms // 1000, 1) if ttl_ms is not None else self.index_ttl
                self._index(pipe, record.id, grant["client_id"], grant["user"], ttl)
            written += 1
        pipe.execute()
        self._replicated()
        return written

    @staticmethod
    def check_record(record: Record) -> str | None:
        """Why this record cannot be restored, or None: known kind, a plain id, the value's shape."""
        if record.kind not in BACKUP_KINDS:
            return f"unknown kind {record.kind!r}"
        if not record.id or len(record.id) > 2048 or any(c.isspace() or not c.isprintable() for c in record.id):
            return f"{record.kind}: malformed id"
        if record.expires_at is not None and not isinstance(record.expires_at, int | float):
            return f"{record.kind} {record.id}: malformed expiry"
        required = _RECORD_FIELDS.get(record.kind)
        if required is None:
            return None if record.value else f"{record.kind} {record.id}: empty value"
        try:
            value = json.loads(record.value)
        except ValueError:
            return f"{record.kind} {record.id}: the value is not JSON"
        if not isinstance(value, dict) or not all(isinstance(value.get(name), str) for name in required):
            return f"{record.kind} {record.id}: expected an object with {', '.join(required) or 'fields'}"
        if record.kind in ("client", "grant") and value[required[0]] != record.id:
            return f"{record.kind} {record.id}: its {required[0]} is {value[required[0]]!r}"
        return None

    # -- consent ---------------------------------------------------------------------------------
    def get_consent(self, user: str, client_id: str) -> dict | None:
        return self._get_json(f"consent:{user}:{digest(client_id)}")

    def save_consent(
        self, user: str, client_id: str, resources: list[str], scope: str, redirect_target: str, ttl: int
    ) -> None:
        current = self.get_consent(user, client_id) or {}
        record = {
            "client_id": client_id,
            "resources": sorted(set(current.get("resources", [])) | set(resources)),
            "scopes": sorted(set(current.get("scopes", [])) | set(scope.split())),
            "redirect_targets": sorted(set(current.get("redirect_targets", [])) | {redirect_target}),
            "at": int(time.time()),
        }
        self._set_json(f"consent:{user}:{digest(client_id)}", record, ttl)
        self._replicated()

    # -- client metadata document cache ------------------------------------------------------------
    def get_cimd(self, url: str) -> dict | None:
        return self._get_json(f"cimd:{digest(url)}")

    def save_cimd(self, url: str, document: dict, ttl: int) -> None:
        if ttl > 0:
            self._set_json(f"cimd:{digest(url)}", document, ttl)


@dataclass(frozen=True)
class Record:
    """One stored object in a backup: its kind (the key's family), its id within the kind, the
    value as stored (a string) and when it expires (Unix seconds; None for never)."""

    kind: str
    id: str
    value: str
    expires_at: float | None


# What a backup holds, so that clients carry on without a new login: registrations and when they
# were last used, grants, refresh tokens and their rotation (retry) markers, revoked access tokens
# (or a restored key would make them valid again), consents and bans. Not codes, pending logins,
# the metadata-document cache, counters or the audit list: each is short-lived or rebuilt.
BACKUP_KINDS = ("client", "client-used", "grant", "refresh", "refresh-used", "revoked-jti", "consent", "ban")
# The string fields each JSON kind must carry (the first names the record's own id, where it has one).
_RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "client": ("client_id",),
    "grant": ("grant_id", "user", "client_id"),
    "refresh": ("grant_id", "client_id", "user"),
    "consent": ("client_id",),
    "ban": (),
}


def _socket_timeout(durable_timeout_ms: int) -> float:
    """A reply may take the WAIT's whole timeout: the socket waits longer than that."""
    return max(5.0, durable_timeout_ms / 1000 + 2)


def _index_key(kind: str, name: str) -> str:
    return PREFIX + f"{kind}-grant-index:{name}"


def _ban_key(user: str) -> str:
    return PREFIX + f"ban:{user}"


def _legacy_index_key(kind: str, name: str) -> str:
    return PREFIX + f"{kind}-grants:{name}"


def init_app(app: Flask) -> None:
    app.extensions["mcpgw_store"] = Store.for_settings(app.config["SETTINGS"])


def get_store() -> Store:
    return current_app.extensions["mcpgw_store"]
