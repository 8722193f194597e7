"""MySQL / MariaDB: root without a password, the anonymous user or a vendor default, then sample.

The fingerprint reads the greeting a server sends unasked (protocol 10 and its version string)
and sends nothing. Logins go in this order: ``root`` with an empty password, the anonymous user
(an empty user name), then the short list in ``defaults/mysql.txt``; each is tried once.

Once in, the probe issues only these statements: ``SET NAMES`` (sent by the client library on
connect), ``SET SESSION max_statement_time`` (MariaDB; MySQL gets a ``MAX_EXECUTION_TIME``
hint on each SELECT instead), ``START TRANSACTION READ ONLY``, ``SELECT``s from
``information_schema`` (SCHEMATA, TABLES, COLUMNS), ``SELECT LEFT(col, cap)… FROM db.table
LIMIT n`` on base tables only (never views, which may call functions), and ``ROLLBACK``. Row
counts are ``information_schema.TABLES.TABLE_ROWS`` (the engine's estimate), never ``count(*)``.

Why pymysql in worker threads rather than aiomysql: pymysql is the well-kept pure-Python driver
(typed through ``types-PyMySQL``, so mypy checks the calls); aiomysql is an untyped fork of
pymysql's internals pinned to a range of its versions. Each blocking call runs under
``asyncio.to_thread`` with socket timeouts, inside ``asyncio.wait_for``; a call that overruns
(a server that drips bytes) shuts the probe's own socket down, which ends the read in its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pymysql
from pymysql.connections import Connection

from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    CONNECTION_BUDGET_BYTES,
    ReplyTooLarge,
    auth_required_finding,
    human_bytes,
)
from perisai.probes.credentials import default_logins
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = [
    "MySQLProbe",
    "MySQLProbeError",
    "ServerGreeting",
    "parse_greeting",
]

T = TypeVar("T")

SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "mysql", "sys")
MAX_COLUMNS = 64  # columns read per sampled table
MAX_LISTED = 1000  # schema / table names fetched before note-like names are put first
MAX_GREETING = 1024  # a real greeting is about 80-130 bytes
SUPERUSER = "root"  # whose password a bare line of defaults/mysql.txt is
PROGRAM_NAME = "perisai"  # shown to the server's admin in its connection attributes

# Server error codes that mean "these credentials do not get in" (the next ones may):
# access denied, no password for a socket-auth account, old client, plugin missing, must
# change password, account locked (MySQL / MariaDB).
_REFUSED_CODES = frozenset({1045, 1698, 1251, 1524, 1862, 3118, 4151})
# Client-side codes for an auth plugin the client cannot speak: the login was not tried.
_UNTRIED_CODES = frozenset({2059, 2061})
# Errors a MySQL server sends instead of a greeting: too many connections, host blocked
# after connection errors, host not allowed, too many connections for this user.
_GREETING_ERRORS = frozenset({1040, 1129, 1130, 1203})
_REFUSED_DETAIL = "refused before login"

_REMEDIATION = (
    "Give every account a long random password (`ALTER USER 'root'@'%' IDENTIFIED BY …`), "
    "drop anonymous users (`DROP USER ''@'localhost'`, or run mariadb-secure-installation), "
    "set `bind-address` to the interfaces that need it, and block port 3306 from the internet."
)


class MySQLProbeError(Exception):
    """The server spoke MySQL's greeting but then failed the probe; one line says how."""


@dataclass(frozen=True)
class ServerGreeting:
    """What a server's unasked first packet said: its version, or why it refused us."""

    version: str = ""
    error_code: int = 0
    error_message: str = ""

    @property
    def product(self) -> str:
        return "MariaDB" if "mariadb" in self.version.lower() else "MySQL"


@dataclass(frozen=True)
class _Login:
    user: str
    password: str
    auth: Auth
    rule_id: str
    label: str  # how the evidence names this login


def parse_greeting(packet: bytes) -> ServerGreeting | None:
    """Parse a server's first packet (header included); ``None`` unless it is MySQL's.

    A protocol-10 handshake must carry a printable version string starting with a digit, a
    connection id, an 8-byte salt and a zero filler byte. An error packet in its place counts
    only with one of the error codes servers send before a handshake.
    """
    if len(packet) < 5 or packet[3] != 0:
        return None
    length = int.from_bytes(packet[:3], "little")
    payload = packet[4:]
    if length != len(payload) or not 7 <= length <= MAX_GREETING:
        return None
    if payload[0] == 10:
        end = payload.find(b"\x00", 1)
        if end < 2 or end > 80 or len(payload) < end + 1 + 4 + 8 + 1:
            return None
        raw_version = payload[1:end]
        if not raw_version[:1].isdigit() or not all(32 <= b < 127 for b in raw_version):
            return None
        if payload[end + 1 + 4 + 8] != 0:  # the filler after the first part of the salt
            return None
        version = raw_version.decode("ascii")
        if version.startswith("5.5.5-") and "mariadb" in version.lower():
            version = version[len("5.5.5-") :]  # MariaDB's prefix for old replication clients
        return ServerGreeting(version=version)
    if payload[0] == 0xFF:
        (code,) = struct.unpack("<H", payload[1:3])
        message = payload[3:]
        if message[:1] == b"#":
            message = message[6:]  # a SQL state marker, as newer servers send
        text = message.decode("utf-8", "replace")
        if code in _GREETING_ERRORS and text.isprintable():
            return ServerGreeting(error_code=code, error_message=text[:200])
    return None


class _BoundedSocket(socket.socket):
    """A socket that refuses to receive more than ``budget`` bytes per call of the probe.

    pymysql reads multi-packet replies into memory without a limit; this caps what a hostile
    server's "16 MB packet, and another, and another" can cost. :class:`ReplyTooLarge` is not
    an OSError, so pymysql closes the connection and passes it on unchanged.
    """

    budget = CONNECTION_BUDGET_BYTES
    spent = 0

    def _spend(self, count: int) -> int:
        self.spent += count
        if self.spent > self.budget:
            raise ReplyTooLarge(f"the server sent over {self.budget >> 20} MiB for one request")
        return count

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self._spend(len(data))
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._spend(super().recv_into(buffer, nbytes, flags))


class _Session:
    """One pymysql connection driven from asyncio: every call runs in a worker thread, bounded.

    A call that overruns its limit, or whose caller is cancelled, shuts the socket down, which
    ends the blocked read in the worker; the session is dead after that. Each call may receive
    at most ``CONNECTION_BUDGET_BYTES`` (an honest sample is a fraction of that).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.conn: Connection[Any] | None = None
        self.aborted = False
        self.server_version = ""
        self._sock: _BoundedSocket | None = None
        self._lock = threading.Lock()

    @property
    def call_limit(self) -> float:
        """Seconds one call may take: the server's statement limit, a read timeout, a margin."""
        return self.timeout * 2 + 1

    async def run(self, call: Callable[[], T], limit: float | None = None) -> T:
        if self._sock is not None:
            self._sock.spent = 0
        try:
            return await asyncio.wait_for(asyncio.to_thread(call), limit or self.call_limit)
        except (TimeoutError, asyncio.CancelledError):
            self.abort()
            raise
        except ReplyTooLarge:
            self.aborted = True  # pymysql has already closed the connection
            raise

    def open(self, host: str, port: int, user: str, password: str) -> None:
        """Connect and log in (runs in a worker thread)."""
        plain = socket.create_connection((host, port), self.timeout)
        sock = _BoundedSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.settimeout(self.timeout)
        with self._lock:
            if self.aborted:
                sock.close()
                raise TimeoutError("aborted")
            self._sock = sock
        conn: Connection[Any] = Connection(
            host=host,
            port=port,
            user=user or "anonymous",
            password=password,
            charset="utf8mb4",
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            write_timeout=self.timeout,
            autocommit=None,  # keep the server's mode: no SET AUTOCOMMIT
            local_infile=False,  # a hostile server may not read the scanner's files
            program_name=PROGRAM_NAME,
            defer_connect=True,
        )
        if not user:
            conn.user = ""  # pymysql turns an empty user name into the OS user's name
        conn.connect(sock)
        self.server_version = str(getattr(conn, "server_version", "") or "?")
        self.conn = conn

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def query(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        conn = self.conn
        if conn is None or self.aborted:
            raise MySQLProbeError("the connection was closed after a timeout")
        return await self.run(partial(_fetch_all, conn, sql, args))

    async def close(self) -> None:
        """Say goodbye (COM_QUIT) and close; after an abort, the worker closes the socket."""
        conn = self.conn
        if conn is None or self.aborted:
            return
        with contextlib.suppress(TimeoutError, pymysql.err.MySQLError, OSError):
            await self.run(partial(_quit, conn), self.timeout + 1)


def _fetch_all(
    conn: Connection[Any], sql: str, args: tuple[Any, ...] | None
) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return [tuple(row) for row in cursor.fetchall()]


def _quit(conn: Connection[Any]) -> None:
    if conn.open:
        conn.close()


class MySQLProbe(Probe):
    """Finds MySQL and MariaDB servers anyone can log in to, and the personal data they hold."""

    service = "mysql"
    default_ports = (3306,)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "mysql -h {host} -P {port} -u root --skip-password -e 'SHOW DATABASES'",
        "mysql -h {host} -P {port} -u root --skip-password -e 'SELECT table_schema, "
        "table_name, table_rows FROM information_schema.tables LIMIT 20'",
    )
    fix = (  # configuration lines that close it
        "# my.cnf [mysqld]",
        "bind-address = 127.0.0.1",
        "# and give root a password:",
        "ALTER USER 'root'@'%' IDENTIFIED BY '<a long random secret>';",
    )
    rules = (
        Rule(
            id="mysql.unauthenticated",
            name="MySQLRootWithoutPassword",
            description="MySQL/MariaDB lets `root` log in with an empty password; anyone who "
            "reaches the port reads (and can wipe) every database.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://mariadb.com/kb/en/mariadb-secure-installation/",
            ),
        ),
        Rule(
            id="mysql.anonymous-user",
            name="MySQLAnonymousUser",
            description="MySQL/MariaDB accepts a login with an empty user name (an anonymous "
            "account); whatever it is granted, anyone can read.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://dev.mysql.com/doc/refman/8.0/en/default-privileges.html",
            ),
        ),
        Rule(
            id="mysql.default-credentials",
            name="MySQLDefaultPassword",
            description="MySQL/MariaDB accepts a well-known default user and password.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="mysql.auth-required",
            name="MySQLAuthRequired",
            description="MySQL/MariaDB is reachable and requires a password.",
            remediation="Keep passwords long and random; restrict who can reach the port.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        try:
            packet = await self._read_greeting(host, port)
        except (OSError, TimeoutError, EOFError):
            return None
        greeting = parse_greeting(packet)
        if greeting is None:
            return None
        if greeting.error_code:
            detail = f"{_REFUSED_DETAIL}: error {greeting.error_code}: {greeting.error_message}"
            return Fingerprint(self.service, detail, Access.REFUSED)
        detail = f"{greeting.product} {greeting.version}"
        return Fingerprint(self.service, detail, version=greeting.version)

    async def _read_greeting(self, host: str, port: int) -> bytes:
        """The server's first packet, header included: read by its length, bounded, unasked."""
        timeout = self.config.timeout
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            header = await asyncio.wait_for(reader.readexactly(4), timeout)
            length = int.from_bytes(header[:3], "little")
            if header[3] != 0 or not 7 <= length <= MAX_GREETING:
                return header
            return header + await asyncio.wait_for(reader.readexactly(length), timeout)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _logins(self) -> list[_Login]:
        logins = [
            _Login("root", "", Auth.NONE, "mysql.unauthenticated", "'root' with an empty password"),
            _Login("", "", Auth.NONE, "mysql.anonymous-user", "the anonymous user (empty name)"),
        ]
        if self.config.try_default_credentials:
            logins.extend(
                _Login(
                    user,
                    password,
                    Auth.DEFAULT_CREDENTIALS,
                    "mysql.default-credentials",
                    f"{user!r} with a vendor default password",
                )
                for user, password in default_logins(self.service, SUPERUSER)
                if password or user != SUPERUSER
            )
        return logins

    async def _login(self, host: str, port: int) -> tuple[_Session | None, _Login | None, str]:
        """The first login that works, or None and a line saying what was refused."""
        refused: list[_Login] = []
        untried: list[_Login] = []
        untried_reason = ""
        for login in self._logins():
            session = _Session(self.config.timeout)
            try:
                await session.run(
                    partial(session.open, host, port, login.user, login.password),
                    self.config.timeout * 3 + 1,
                )
            except TimeoutError:
                raise MySQLProbeError(
                    f"no answer to the login as {login.label} within "
                    f"{self.config.timeout * 3 + 1:.1f}s"
                ) from None
            except pymysql.err.MySQLError as error:
                code = _error_code(error)
                if code in _REFUSED_CODES:
                    refused.append(login)
                    continue
                if code in _UNTRIED_CODES:
                    untried.append(login)
                    untried_reason = _first_line(error)
                    continue
                raise MySQLProbeError(f"login as {login.label}: {_first_line(error)}") from error
            except RuntimeError as error:  # e.g. an RSA exchange without `cryptography`
                untried.append(login)
                untried_reason = _first_line(error)
                continue
            except ReplyTooLarge as error:
                raise MySQLProbeError(f"login as {login.label}: {error}") from None
            except (OSError, ValueError, LookupError, struct.error, UnicodeError) as error:
                raise MySQLProbeError(
                    f"login as {login.label}: the server's answer made no sense "
                    f"({type(error).__name__}: {_first_line(error)})"
                ) from error
            return session, login, ""
        return None, None, _refused_line(refused, untried, untried_reason)

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        started = time.monotonic()
        target = Target(host, port, self.service)
        if fingerprint.access is Access.REFUSED:
            return ProbeResult((self._auth_required(target, f"the server {fingerprint.detail}"),))
        session, login, refused_line = await self._login(host, port)
        if session is None or login is None:
            return ProbeResult((self._auth_required(target, refused_line),))
        try:
            return await self._inspect(session, login, target, started)
        finally:
            await session.close()

    def _auth_required(self, target: Target, detail: str) -> Finding:
        return auth_required_finding(
            self, target, "MySQL/MariaDB requires a password", Evidence(detail)
        )

    async def _inspect(
        self, session: _Session, login: _Login, target: Target, started: float
    ) -> ProbeResult | ProbeSkipped:
        version = session.server_version
        greeting = ServerGreeting(version=version)
        if version.startswith("5.5.5-") and "mariadb" in version.lower():
            version = version[len("5.5.5-") :]
        mariadb = greeting.product == "MariaDB"
        limit_seconds = max(1, round(self.config.timeout))
        hint = "" if mariadb else f"/*+ MAX_EXECUTION_TIME({limit_seconds * 1000}) */ "
        used = ["SET NAMES (client library)"]
        if mariadb:
            try:
                await session.query(f"SET SESSION max_statement_time = {limit_seconds}")
                used.append(f"SET SESSION max_statement_time = {limit_seconds}")
            except pymysql.err.MySQLError:
                pass  # too old for it: the client's read timeout still bounds every call
        else:
            used.append(f"MAX_EXECUTION_TIME({limit_seconds * 1000}) hints")
        read_only = True
        try:
            await session.query("START TRANSACTION READ ONLY")
            used.append("START TRANSACTION READ ONLY")
        except pymysql.err.MySQLError:
            read_only = False
        who = await session.query("SELECT CURRENT_USER()")
        account = str(who[0][0]) if who else "?"
        names = [
            str(row[0])
            for row in await session.query(
                f"SELECT {hint}SCHEMA_NAME FROM information_schema.SCHEMATA "
                f"WHERE SCHEMA_NAME NOT IN ({', '.join(['%s'] * len(SYSTEM_SCHEMAS))}) "
                f"ORDER BY SCHEMA_NAME LIMIT {MAX_LISTED}",
                SYSTEM_SCHEMAS,
            )
        ]
        databases = _notes_first(names)[: self.config.max_databases]
        used.append(
            "SELECT from information_schema.SCHEMATA, TABLES, COLUMNS; "
            f"SELECT LEFT(col, {self.config.max_value_bytes})… FROM db.table "
            f"LIMIT {self.config.sample} per base table; ROLLBACK"
        )
        listed = ", ".join(databases) if databases else "none besides the system schemas"
        floor = "at least " if len(names) >= MAX_LISTED else ""  # the listing's own cap
        more = (
            f" (first {len(databases)} of {floor}{len(names)})"
            if len(names) > len(databases)
            else ""
        )
        evidence = [
            Evidence(f"logged in as {login.label}, account {account}"),
            Evidence(
                f"{greeting.product} {version}; {floor}{_count(len(names), 'database')}{more}: "
                f"{listed}"
            ),
            Evidence("read-only statements used: " + "; ".join(used)),
        ]
        if not read_only:
            evidence.append(
                Evidence("no sample read: the server refused START TRANSACTION READ ONLY")
            )
        evidence.extend(
            Evidence(f"database {name!r} is named like a ransom note")
            for name in databases
            if is_note_name(name)
        )
        hard_stop = started + self.config.probe_deadline - 2 * session.call_limit
        sampler = Sampler(self, target, login.auth)
        if len(names) > len(databases):  # their rows are nobody's count: the total is a floor
            sampler.listed(
                f"{floor}{len(names) - len(databases)} more databases",
                unread=f"not read (the first {len(databases)} were)",
            )
        stopped = ""
        for database in databases:
            try:
                stopped = await self._sample_database(
                    session, database, hint, read_only, hard_stop, sampler
                )
            except TimeoutError:
                stopped = f"a query in {database!r} ran past {session.call_limit:.0f}s"
            except ReplyTooLarge as error:
                stopped = f"{database!r}: {error}"
            except pymysql.err.MySQLError as error:
                evidence.append(Evidence(f"{database}: not readable ({_first_line(error)})"))
            if stopped:
                break
        if stopped:
            evidence.append(Evidence(f"sampling stopped early: {stopped}"))
            sampler.stop(f"sampling stopped early: {stopped}")
        if read_only and not session.aborted:
            with contextlib.suppress(TimeoutError, pymysql.err.MySQLError):
                await session.query("ROLLBACK")
        title = _TITLES[login.rule_id]
        exposure, *others = sampler.findings(evidence, (title, title), rule_id=login.rule_id)
        if login.rule_id == "mysql.anonymous-user" and not databases and not sampler.notes:
            # An anonymous account that sees no data is a weakness, not yet an open database.
            exposure = dataclasses.replace(exposure, severity=Severity.MEDIUM)
        if sampler.stopped:
            return ProbeSkipped(sampler.stopped, (exposure, *others))
        return ProbeResult((exposure, *others))

    async def _sample_database(
        self,
        session: _Session,
        database: str,
        hint: str,
        read_only: bool,
        hard_stop: float,
        sampler: Sampler,
    ) -> str:
        """Enumerate and sample one database into ``sampler``; why it stopped early."""
        rows = await session.query(
            f"SELECT {hint}TABLE_NAME, TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
            f"ORDER BY DATA_LENGTH DESC, TABLE_NAME LIMIT {MAX_LISTED}",
            (database,),
        )
        by_name = {str(row[0]): row for row in rows}
        chosen = _notes_first(list(by_name))[: self.config.max_tables]
        self._list_the_rest(database, by_name, chosen, sampler)
        for table in chosen:
            if time.monotonic() > hard_stop:
                return f"the probe deadline came before {database}.{table}"
            _, table_rows, data_length = by_name[table]
            name = f"{database}.{table}"
            estimated = None if table_rows is None else max(int(table_rows), 0)
            shown = "?" if estimated is None else f"~{estimated}"
            head = f"{shown} rows, {human_bytes(int(data_length or 0))} data"
            if not read_only:
                sampler.listed(name, estimated=estimated, head=head)
                continue
            records = await self._sample_table(session, database, table, hint)
            sampler.sample(name, records, estimated=estimated, head=head)
            sampler.spot_notes(name, records)
        return ""

    @staticmethod
    def _list_the_rest(
        database: str,
        by_name: dict[str, tuple[Any, ...]],
        chosen: list[str],
        sampler: Sampler,
    ) -> None:
        """The tables past the sample's limit, counted (TABLE_ROWS) but not read, so the
        database's total is not only the sampled tables' rows."""
        rest = [row for name, row in by_name.items() if name not in chosen]
        if not rest:
            return
        floor = len(by_name) >= MAX_LISTED  # the listing itself stopped at its cap
        known = [int(row[1]) for row in rest if row[1] is not None]
        estimate = max(sum(known), 0) if known else None
        container = sampler.listed(
            f"{database}: {'at least ' if floor else ''}{len(rest)} smaller tables",
            estimated=estimate,
            head=f"{'?' if estimate is None else f'~{estimate}'} rows",
            unread=f"not sampled (the {len(chosen)} largest were)",
        )
        container.profile.records_at_least = floor or len(known) < len(rest)

    async def _sample_table(
        self, session: _Session, database: str, table: str, hint: str
    ) -> list[dict[str, Any]]:
        columns = [
            str(row[0])
            for row in await session.query(
                f"SELECT {hint}COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                f"ORDER BY ORDINAL_POSITION LIMIT {MAX_COLUMNS}",
                (database, table),
            )
        ]
        if not columns:
            return []
        cap = self.config.max_value_bytes
        selected = ", ".join(f"LEFT({_ident(c)}, {cap})" for c in columns)
        query = (
            f"SELECT {hint}{selected} FROM {_ident(database)}.{_ident(table)} "
            f"LIMIT {self.config.sample}"
        )
        try:
            rows = await session.query(query)
        except pymysql.err.MySQLError:
            return []  # no SELECT privilege, the statement limit: counted, unsampled
        return [
            {column: _value(value, cap) for column, value in zip(columns, row, strict=False)}
            for row in rows
        ]


_TITLES = {
    "mysql.unauthenticated": "MySQL/MariaDB root logs in without a password",
    "mysql.anonymous-user": "MySQL/MariaDB accepts anonymous logins",
    "mysql.default-credentials": "MySQL/MariaDB accepts a vendor default password",
}


def _refused_line(refused: list[_Login], untried: list[_Login], reason: str) -> str:
    """``'root' with an empty password, the anonymous user and 6 vendor defaults refused``."""

    def describe(logins: list[_Login]) -> str:
        parts = [login.label for login in logins if login.auth is Auth.NONE]
        defaults = sum(login.auth is Auth.DEFAULT_CREDENTIALS for login in logins)
        if defaults:
            parts.append(f"{defaults} vendor default credentials")
        return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]

    line = f"refused: {describe(refused)}" if refused else "no login refused"
    if untried:
        line += f"; not tried: {describe(untried)} ({reason})"
    return line


def _notes_first(names: list[str]) -> list[str]:
    """Names that look like ransom notes first (a cap must never cut them), order kept."""
    return sorted(names, key=lambda name: not is_note_name(name))


def _ident(name: str) -> str:
    """A backtick-quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def _value(value: object, cap: int) -> str | None:
    """A sampled value as text of at most ``cap`` UTF-8 bytes."""
    if value is None:
        return None
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
    return raw[:cap].decode("utf-8", "ignore" if not isinstance(value, bytes) else "replace")


def _error_code(error: BaseException) -> int:
    code = error.args[0] if error.args else 0
    return code if isinstance(code, int) else 0


def _first_line(error: BaseException) -> str:
    text = str(error.args[1]) if len(error.args) > 1 else str(error)
    return (text.strip().splitlines() or [type(error).__name__])[0][:200]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
