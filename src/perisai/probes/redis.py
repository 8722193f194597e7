"""Redis: PING without AUTH, INFO keyspace, a bounded SCAN sample read by type.

Only commands that cannot change data are sent: PING, AUTH, INFO, SELECT (per connection),
SCAN, TYPE, GETRANGE, HSCAN, LRANGE, SSCAN, ZRANGE and XRANGE. KEYS is never used (it blocks
the server), nor GET (a string may be gigabytes; GETRANGE reads a bounded prefix).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis._parsers import _AsyncRESP2Parser as _PARSER
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from perisai.compromise import (
    RULE_PLANTED_PAYLOAD,
    RULE_RANSOM_NOTE,
    is_note_name,
)
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.interleave import round_robin
from perisai.probes.common import (
    ReplyTooLarge,
    bound_stream,
    exchange,
)
from perisai.probes.credentials import Credential, default_credentials
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult
from perisai.probes.sampling import Sampler


class _BoundedConnection(aioredis.Connection):
    """A redis-py connection that refuses replies over LARGEST_REPLY_BYTES (see bound_stream).

    It always parses in Python (:data:`_PARSER`): hiredis, when installed, reads the socket
    in blocks of its own and would never ask for the announced length that the bound checks,
    so a "1 GB follows" would be read up to the connection's budget instead of refused."""

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[no-untyped-call]
        if self._reader is not None:
            bound_stream(self._reader)


MAX_SCAN_CALLS = 64  # SCAN pages (of about 100 key names) per database
MAX_TELLING_KEYS = 8  # note-like or backup-like keys read in each database, before the sample
MAX_KEY_FAMILIES = 256  # kinds of key told apart for the sample; later kinds share one
_DIGIT_RUN = re.compile(r"\d+")
_BACKUP_KEY = re.compile(r"(?i)backup\d{0,2}")

_REMEDIATION = (
    "Require authentication: set `requirepass` to a long random secret (or define ACL users "
    "and `user default off`), `bind` Redis to 127.0.0.1 or a private interface only, keep "
    "`protected-mode yes`, and block port 6379 from the internet."
)


class RedisProbe(Probe):
    """Finds Redis servers anyone can read, and what their keys hold."""

    service = "redis"
    default_ports = (6379,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "redis-cli -h {host} -p {port} PING",
        "redis-cli -h {host} -p {port} INFO keyspace",
        "redis-cli -h {host} -p {port} --scan --count 100 | head",
    )
    fix = (  # configuration lines that close it
        "# redis.conf",
        "requirepass <a long random secret>",
        "bind 127.0.0.1 10.0.0.5",
        "protected-mode yes",
        'rename-command CONFIG ""',
    )
    rules = (
        Rule(
            id="redis.unauthenticated",
            name="RedisUnauthenticated",
            description="Redis answers commands without authentication; anyone who reaches the "
            "port can read (and wipe) every key.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/306.html",),
        ),
        Rule(
            id="redis.default-credentials",
            name="RedisDefaultPassword",
            description="Redis accepts a password shipped in vendor configs or images.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="redis.auth-required",
            name="RedisAuthRequired",
            description="Redis is reachable and requires authentication.",
            remediation="Keep the password long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        Rule(
            id="redis.protected-mode",
            name="RedisProtectedMode",
            description="Redis refuses remote clients in protected mode: no password is set, "
            "and turning protected mode off would expose it.",
            remediation="Set a password before changing `protected-mode` or `bind`.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
        RULE_PLANTED_PAYLOAD,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        answer = await exchange(host, port, b"PING\r\n", self.config.timeout)
        if answer.startswith(b"+PONG"):
            return Fingerprint(self.service, "open", Access.OPEN)
        if answer.startswith(b"-NOAUTH"):
            return Fingerprint(self.service, "auth required", Access.AUTH_REQUIRED)
        if answer.startswith(b"-DENIED") and b"protected mode" in answer:
            return Fingerprint(self.service, "protected mode", Access.REFUSED)
        return None

    def _client(
        self, host: str, port: int, login: Credential | None, db: int = 0
    ) -> aioredis.Redis:
        pool = aioredis.ConnectionPool(
            connection_class=_BoundedConnection,
            max_connections=1,
            host=host,
            port=port,
            db=db,
            username=None if login is None else login.user,
            password=None if login is None else login.password,
            socket_timeout=self.config.timeout,
            socket_connect_timeout=self.config.timeout,
            driver_info=None,  # no CLIENT SETINFO: the probe sends only read commands
            retry=Retry(NoBackoff(), 0),  # one attempt: a refused login is an answer
            protocol=2,
            parser_class=_PARSER,
        )
        return aioredis.Redis.from_pool(pool)

    async def _login(self, host: str, port: int) -> tuple[aioredis.Redis | None, Auth, int]:
        """A client that is let in, how it got in, and how many default passwords were tried."""
        client = self._client(host, port, None)
        try:
            await client.ping()
            return client, Auth.NONE, 0
        except redis_errors.AuthenticationError:
            await client.aclose()
        if not self.config.try_default_credentials:
            return None, Auth.REQUIRED, 0
        defaults = default_credentials(self.service)  # passwords alone (AUTH <password>)
        for tried, login in enumerate(defaults, start=1):
            client = self._client(host, port, login)
            try:
                await client.ping()
                return client, Auth.DEFAULT_CREDENTIALS, tried
            except (redis_errors.AuthenticationError, redis_errors.ResponseError):
                await client.aclose()
        return None, Auth.REQUIRED, len(defaults)

    async def probe(self, host: str, port: int, fingerprint: Fingerprint) -> ProbeResult:
        target = Target(host, port, self.service)
        if fingerprint.access is Access.REFUSED:
            rule = self.rule("redis.protected-mode")
            return ProbeResult((_info(rule, target, "PING answered -DENIED (protected mode)"),))
        client, auth, tried = await self._login(host, port)
        if client is None:
            rule = self.rule("redis.auth-required")
            detail = f"PING answered -NOAUTH; {tried} vendor default passwords refused"
            return ProbeResult((_info(rule, target, detail),))
        try:
            return await self._inspect(client, host, port, target, auth)
        finally:
            await client.aclose()

    async def _inspect(
        self, client: aioredis.Redis, host: str, port: int, target: Target, auth: Auth
    ) -> ProbeResult:
        used = client.connection_pool.connection_kwargs  # the login that got in, for other dbs
        password = used.get("password")
        login = None if password is None else Credential(used.get("username"), password)
        server = await client.info("server")
        memory = await client.info("memory")
        keyspace = await client.info("keyspace")
        evidence = [
            Evidence(
                "PING answered +PONG without AUTH"
                if auth is Auth.NONE
                else "a vendor default password was accepted by AUTH"
            ),
            Evidence(
                f"Redis {server.get('redis_version', '?')}, "
                f"{memory.get('used_memory_human', '?')} memory used"
            ),
        ]
        sampler = Sampler(self, target, auth)
        databases = sorted(
            (int(name[2:]), int(info.get("keys", 0)))
            for name, info in keyspace.items()
            if name.startswith("db") and name[2:].isdigit() and isinstance(info, dict)
        )
        for db, keys in databases[: self.config.max_databases]:
            db_client = client if db == 0 else self._client(host, port, login, db)
            try:
                records, unread = await self._sample_db(db_client, db, sampler)
            finally:
                if db_client is not client:
                    await db_client.aclose()
            sampler.sample(f"db{db}", records, estimated=keys, head=f"{keys} keys")
            evidence.extend(Evidence(problem) for problem in unread[:3])
        return ProbeResult(
            sampler.findings(
                evidence,
                (
                    "Redis readable without authentication",
                    "Redis accepts a vendor default password",
                ),
            )
        )

    async def _sample_db(
        self, client: aioredis.Redis, db: int, sampler: Sampler
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Up to ``sample`` keys of one database, one of each kind of key in turn (see
        :func:`_key_family`), each value read by type with a byte cap; also what could not be
        read, and why. Each value is shown to ``sampler`` for ransom notes and planted payloads.

        Key names go on being scanned after the sample is full (names only, MAX_SCAN_CALLS
        pages at most) so that a note or a planted ``backup1`` key among millions is still read.
        """
        families: dict[str, list[bytes | str]] = {}
        telling: list[bytes | str] = []
        cursor: int = 0
        for _ in range(MAX_SCAN_CALLS):
            cursor, keys = await client.scan(cursor=cursor, count=100)
            for raw_key in keys:
                name = _text(raw_key, 256)
                if _telling_name(name):
                    if len(telling) < MAX_TELLING_KEYS:
                        telling.append(raw_key)
                    continue
                family = _key_family(name) if len(families) < MAX_KEY_FAMILIES else ""
                members = families.setdefault(family, [])
                if len(members) < self.config.sample:
                    members.append(raw_key)
            if cursor == 0:
                break
        records: list[dict[str, Any]] = []
        unread: list[str] = []
        picked = round_robin(families.values(), max(0, self.config.sample - len(telling)))
        for raw_key in telling + picked:
            key = _text(raw_key, self.config.max_value_bytes)
            try:
                value = await self._read_value(client, raw_key)
            except ReplyTooLarge as error:
                unread.append(f"db{db}/{key[:64]!r} not read: {error}")
                continue
            records.append({"key": key, "value": value})
            if isinstance(value, str):  # cron jobs and SSH keys are stored as strings
                sampler.spot_note(f"db{db}/{key}", value)
                sampler.spot_payload(f"db{db}/{key}", value)
        return records, unread

    async def _read_value(self, client: aioredis.Redis, key: bytes | str) -> object:
        """A bounded read of one key's value, or ``None`` for types we do not read."""
        cap, count = self.config.max_value_bytes, self.config.sample
        kind = _text(await client.type(key), 32)
        with contextlib.suppress(redis_errors.ResponseError):
            if kind == "string":
                return _text(await client.getrange(key, 0, cap - 1), cap)
            if kind == "hash":
                fields: Any
                _, fields = await client.hscan(key, 0, count=count)
                return {_text(k, 256): _text(v, cap) for k, v in list(fields.items())[:count]}
            if kind == "list":
                return [_text(v, cap) for v in await client.lrange(key, 0, count - 1)]
            if kind == "set":
                _, members = await client.sscan(key, 0, count=count)
                return [_text(v, cap) for v in list(members)[:count]]
            if kind == "zset":
                return [_text(v, cap) for v in await client.zrange(key, 0, count - 1)]
            if kind == "stream":
                entries: Any = await client.xrange(key, count=count)
                return [
                    {_text(k, 256): _text(v, cap) for k, v in fields.items()}
                    for _, fields in entries
                ]
        return None


def _telling_name(key: str) -> bool:
    """A key an extortion bot or a Redis-to-shell attack would leave (README, backup1…)."""
    return is_note_name(key) or bool(_BACKUP_KEY.fullmatch(key))


def _key_family(key: str) -> str:
    """The kind of record a key names: its namespace (up to the last ``:``, Redis's custom),
    else the name with its numbers blanked, so ``user:17`` and ``user:abc`` are one kind and
    ``log:msg:3`` another. The sample takes every kind in turn: a few hundred log lines must
    not crowd the user hashes out of twenty keys."""
    namespace, colon, _ = key.rpartition(":")
    return namespace + colon if colon else _DIGIT_RUN.sub("#", key)


def _text(value: object, cap: int) -> str:
    if isinstance(value, bytes):
        return value[:cap].decode("utf-8", "replace")
    return str(value)[:cap]


def _info(rule: Rule, target: Target, detail: str) -> Finding:
    auth = Auth.REQUIRED
    return Finding(
        rule=rule.id,
        severity=rule.default_severity,
        title=f"Redis {'requires authentication' if 'NOAUTH' in detail else 'in protected mode'}",
        target=target,
        auth=auth,
        evidence=(Evidence(detail),),
        remediation=rule.remediation,
    )
