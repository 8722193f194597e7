"""PostgreSQL: log in without a password (trust auth) or with a vendor default, then sample.

Every session is opened with ``default_transaction_read_only=on`` and a ``statement_timeout``;
samples are ``SELECT left(col::text, cap) … LIMIT n``, so neither rows nor bytes are unbounded.
Row counts come from ``pg_class.reltuples`` (the planner's estimate), never ``count(*)``.
"""

from __future__ import annotations

import asyncio
import getpass
import struct
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from perisai.compromise import RULE_RANSOM_NOTE
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    exchange,
    first_line,
    human_bytes,
)
from perisai.probes.credentials import default_logins
from perisai.probes.interface import Fingerprint, Probe, ProbeResult
from perisai.probes.sampling import Sampler

SUPERUSER = "postgres"  # whose password a bare line of defaults/postgres.txt is
MAX_COLUMNS = 64
# libpq warns about /dev/null as a password file but silently skips a missing one.
_NO_PASSFILE = "/nonexistent/perisai/pgpass"

_REMEDIATION = (
    "Replace `trust` (and vendor default passwords) in pg_hba.conf with `scram-sha-256` for every "
    "host line, e.g. `host all all 10.0.0.0/8 scram-sha-256`; set `listen_addresses` to the "
    "interfaces that need it, and block port 5432 from the internet."
)

_USER_TABLES = """
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
"""
_TABLES = f"""
SELECT n.nspname, c.relname, c.oid::bigint, c.reltuples::bigint, pg_total_relation_size(c.oid)
{_USER_TABLES}
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname
LIMIT %s
"""
# the catalogue's own totals, so a database with more tables than are sampled is not
# reported as holding only the sampled ones' rows
_TABLE_TOTALS = f"""
SELECT count(*), sum(greatest(c.reltuples, 0))::bigint, bool_or(c.reltuples < 0)
{_USER_TABLES}
"""
_DATABASES = "FROM pg_database WHERE datallowconn AND NOT datistemplate"
_COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT %s
"""


@dataclass(frozen=True)
class _Login:
    user: str
    password: str | None
    auth: Auth
    dbname: str


# AuthenticationRequest codes: ok, Kerberos, cleartext, MD5, GSS, GSS-continue, SSPI, SASL(…).
_AUTH_METHODS = frozenset({0, 2, 3, 5, 7, 8, 9, 10, 11, 12})


class PostgresProbe(Probe):
    """Finds PostgreSQL servers that let anyone in, and the personal data in their tables."""

    service = "postgres"
    default_ports = (5432,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "psql -h {host} -p {port} -U postgres -w -c '\\l'",
        "psql -h {host} -p {port} -U postgres -w -c 'SELECT relname, reltuples FROM pg_class "
        "WHERE relkind = '\\''r'\\'' ORDER BY reltuples DESC LIMIT 20'",
    )
    fix = (  # configuration lines that close it
        "# pg_hba.conf: no `trust` lines for hosts",
        "host    all    all    10.0.0.0/8    scram-sha-256",
        "# postgresql.conf",
        "listen_addresses = 'localhost,10.0.0.5'",
        "password_encryption = scram-sha-256",
    )
    rules = (
        Rule(
            id="postgres.unauthenticated",
            name="PostgresTrustAuth",
            description="PostgreSQL lets a client log in without a password (trust auth); "
            "anyone who reaches the port reads every database.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://www.postgresql.org/docs/current/auth-pg-hba-conf.html",
            ),
        ),
        Rule(
            id="postgres.default-credentials",
            name="PostgresDefaultPassword",
            description="PostgreSQL accepts a well-known default user and password.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="postgres.auth-required",
            name="PostgresAuthRequired",
            description="PostgreSQL is reachable and requires a password.",
            remediation="Keep passwords long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        # A protocol 3.0 StartupMessage: a server answers 'R' (auth request) or 'E' (error).
        params = b"user\x00perisai\x00database\x00perisai\x00\x00"
        startup = struct.pack("!ii", 8 + len(params), 196608) + params
        answer = await exchange(host, port, startup, self.config.timeout)
        if len(answer) < 5 or answer[:1] not in (b"R", b"E"):
            return None
        (length,) = struct.unpack("!i", answer[1:5])
        if not 4 <= length <= 65536:
            return None
        if answer[:1] == b"R":
            # A real auth request names a method PostgreSQL has; a MySQL greeting that happens
            # to start with "R" does not.
            if len(answer) < 9 or struct.unpack("!i", answer[5:9])[0] not in _AUTH_METHODS:
                return None
            return Fingerprint(self.service, "auth request")
        if b"SFATAL" in answer or b"VFATAL" in answer:
            return Fingerprint(self.service, "error")
        return None

    async def _connect(self, host: str, port: int, login: _Login) -> psycopg.AsyncConnection[Any]:
        timeout_ms = int(self.config.timeout * 1000)
        return await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                host=host,
                port=port,
                user=login.user,
                password=login.password or "",
                dbname=login.dbname,
                connect_timeout=max(2, int(self.config.timeout + 0.999)),
                passfile=_NO_PASSFILE,  # never use the scanning user's own saved passwords
                gssencmode="disable",
                sslmode="prefer",
                application_name="perisai",
                options=f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}",
                autocommit=True,
            ),
            self.config.timeout * 2,
        )

    async def _login(self, host: str, port: int) -> tuple[_Login | None, int]:
        """The first login that works (no password first, then defaults) and defaults tried."""
        attempts = [_Login(user, None, Auth.NONE, "postgres") for user in _passwordless_users()]
        if self.config.try_default_credentials:
            attempts.extend(
                _Login(user, password, Auth.DEFAULT_CREDENTIALS, "postgres")
                for user, password in default_logins(self.service, SUPERUSER)
            )
        tried = 0
        for login in attempts:
            tried += login.password is not None
            for dbname in ("postgres", "template1", login.user):
                candidate = _Login(login.user, login.password, login.auth, dbname)
                try:
                    conn = await self._connect(host, port, candidate)
                except psycopg.OperationalError as error:
                    if "database" in str(error) and "does not exist" in str(error):
                        continue  # authenticated, but no such database: try the next one
                    break
                await conn.close()
                return candidate, tried
        return None, tried

    async def probe(self, host: str, port: int, fingerprint: Fingerprint) -> ProbeResult:
        target = Target(host, port, self.service)
        login, tried = await self._login(host, port)
        if login is None:
            rule = self.rule("postgres.auth-required")
            return ProbeResult(
                (
                    Finding(
                        rule=rule.id,
                        severity=rule.default_severity,
                        title="PostgreSQL requires a password",
                        target=target,
                        auth=Auth.REQUIRED,
                        evidence=(
                            Evidence(
                                f"no passwordless login; {tried} vendor default credentials refused"
                            ),
                        ),
                        remediation=rule.remediation,
                    ),
                )
            )
        conn = await self._connect(host, port, login)
        async with conn:
            version = await _scalar(conn, "SHOW server_version")
            in_all = int(await _scalar(conn, f"SELECT count(*) {_DATABASES}"))
            databases = [
                row[0]
                for row in await _rows(
                    conn,
                    sql.SQL(f"SELECT datname {_DATABASES} ORDER BY datname LIMIT %s"),
                    (self.config.max_databases,),
                )
            ]
        how = "without a password" if login.auth is Auth.NONE else "with a vendor default password"
        read = "" if in_all <= len(databases) else f" (the first {len(databases)} read)"
        evidence = [
            Evidence(f"logged in as {login.user!r} {how}"),
            Evidence(f"PostgreSQL {version}; {in_all} databases{read}: {', '.join(databases)}"),
        ]
        sampler = Sampler(self, target, login.auth)
        if in_all > len(databases):  # their rows are nobody's count: the total is a floor
            sampler.listed(
                f"{in_all - len(databases)} more databases",
                unread=f"not read (the first {len(databases)} were)",
            )
        for dbname in databases:
            db_login = _Login(login.user, login.password, login.auth, dbname)
            try:
                db_conn = await self._connect(host, port, db_login)
            except psycopg.OperationalError as error:
                evidence.append(Evidence(f"{dbname}: not readable ({first_line(error)})"))
                continue
            async with db_conn:
                await self._sample_database(db_conn, dbname, sampler)
        return ProbeResult(
            sampler.findings(
                evidence,
                (
                    "PostgreSQL readable without a password",
                    "PostgreSQL accepts a vendor default password",
                ),
            )
        )

    async def _sample_database(
        self, conn: psycopg.AsyncConnection[Any], dbname: str, sampler: Sampler
    ) -> None:
        tables = await _rows(conn, sql.SQL(_TABLES), (self.config.max_tables,))
        sampled_rows = 0
        for schema, table, oid, reltuples, size in tables:
            name = f"{dbname}.{schema}.{table}"
            records = await self._sample_table(conn, schema, table, oid)
            rows = max(int(reltuples), 0) if reltuples >= 0 else None
            sampled_rows += rows or 0
            head = f"{'?' if rows is None else f'~{rows}'} rows, {human_bytes(int(size))}"
            sampler.sample(name, records, estimated=rows, head=head)
            sampler.spot_notes(name, records)
        ((count, rows_in_all, unanalysed),) = await _rows(conn, sql.SQL(_TABLE_TOTALS), ())
        rest = int(count) - len(tables)
        if rest > 0:  # the smaller tables past the sample's limit: counted, not read
            estimate = None if unanalysed else max(int(rows_in_all or 0) - sampled_rows, 0)
            sampler.listed(
                f"{dbname}: {rest} smaller tables",
                estimated=estimate,
                head=f"{'?' if estimate is None else f'~{estimate}'} rows",
                unread=f"not sampled (the {len(tables)} largest were)",
            )

    async def _sample_table(
        self, conn: psycopg.AsyncConnection[Any], schema: str, table: str, oid: int
    ) -> list[dict[str, Any]]:
        columns = [row[0] for row in await _rows(conn, sql.SQL(_COLUMNS), (oid, MAX_COLUMNS))]
        if not columns:
            return []
        cap = self.config.max_value_bytes
        query = sql.SQL("SELECT {} FROM {}.{} LIMIT {}").format(
            sql.SQL(", ").join(
                sql.SQL("left(CAST({} AS text), {})").format(sql.Identifier(c), sql.Literal(cap))
                for c in columns
            ),
            sql.Identifier(schema),
            sql.Identifier(table),
            sql.Literal(self.config.sample),
        )
        try:
            rows = await _rows(conn, query, ())
        except psycopg.Error:
            return []  # no SELECT privilege, a timeout: the table stays counted, unsampled
        return [dict(zip(columns, row, strict=True)) for row in rows]


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: sql.SQL | sql.Composed, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(query, params)
        return list(await cursor.fetchall())


async def _scalar(conn: psycopg.AsyncConnection[Any], query: LiteralString) -> str:
    async with conn.cursor() as cursor:
        await cursor.execute(sql.SQL(query))
        row = await cursor.fetchone()
        return str(row[0]) if row else "?"


def _passwordless_users() -> list[str]:
    users = ["postgres"]
    with_os = getpass.getuser()
    if with_os not in users:
        users.append(with_os)
    return users
