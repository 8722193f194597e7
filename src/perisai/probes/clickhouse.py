"""ClickHouse: the HTTP interface read with ``readonly=1``; the native port recognised.

Recognised on any port by harmless requests: ``GET /`` answers ``Ok.`` (ClickHouse's default
HTTP answer), and ``GET /?query=SELECT version()`` confirms it with ``X-ClickHouse-*`` headers
or a ``Code: NNN`` exception text (194 "Password required", 516 "Authentication failed"). The
native port answers an HTTP request with "Port 9000 is for clickhouse-client program. You must
use port 8123 for HTTP." (an HTTP 400 body in 18.16, bare text elsewhere); the probe then reads
through that HTTP port of the same host (the native protocol itself is never spoken) and
reports on the native port.

Logins: first no credentials at all (the ``default`` user with its shipped empty password),
then the short list in ``defaults/clickhouse.txt``, sent as ``X-ClickHouse-User`` /
``X-ClickHouse-Key`` headers (never in the URL, which ends up in logs).

Every query is a POST whose URL carries ``readonly=1`` (ClickHouse then refuses any write, DDL
or setting change), ``max_execution_time``, ``max_result_rows``/``max_result_bytes`` with
``result_overflow_mode=break`` and a ``perisai-…`` query id; each answer is cut at a byte cap.
For a user whose profile is already read-only (it may change no setting) the same query goes
with no settings. Queries: ``SELECT version()``; ``system.databases``; ``system.tables`` with
``total_rows``/``total_bytes`` (ClickHouse 18.16 lacks those: then sums over active
``system.parts``); per table ``SELECT * FROM db.t LIMIT n FORMAT JSONEachRow``, only for
engines that keep their data locally (MergeTree and Log families, Memory): never Kafka,
RabbitMQ, NATS or S3Queue tables, whose SELECT consumes messages, nor tables that proxy another
server, nor views. GETs go through :func:`perisai.probes.http.bounded_get`, the queries' POSTs
through :func:`perisai.probes.http.bounded_post` (same byte cap and deadline), all within the
probe's deadline.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from perisai.compromise import RULE_RANSOM_NOTE, is_note_name
from perisai.findings import Auth, Evidence, Finding, Rule, Severity, Target
from perisai.probes.common import (
    auth_required_finding,
    exchange,
)
from perisai.probes.credentials import default_logins
from perisai.probes.http import (
    Deadline,
    HttpAnswer,
    HttpProbeError,
    bounded_get,
    bounded_post,
    clip_json,
    http_client,
    human_bytes,
    one_line,
)
from perisai.probes.interface import Access, Fingerprint, Probe, ProbeResult, ProbeSkipped
from perisai.probes.sampling import Sampler

__all__ = ["ClickHouseProbe"]

NATIVE_DETAIL = "native protocol"
FINGERPRINT_BYTES = 16 * 1024
MAX_SMALL_ANSWER = 64 * 1024
MAX_LIST_ANSWER = 2 * 1024 * 1024
MAX_TABLES_IN_EVIDENCE = 8
MAX_COLUMNS = 64
SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")
# Engines that keep rows in the server's own storage: reading them has no side effect.
_LOCAL_ENGINES = ("Log", "TinyLog", "StripeLog", "Memory", "MaterializedView")
_AUTH_CODES = {192, 193, 194, 195, 516}  # unknown user, wrong/required password, IP not allowed
_READONLY_CODE = 164  # "Cannot modify … setting in readonly mode"
_CODE = re.compile(rb"^\s*Code:\s*(\d+)")
_VERSION = re.compile(rb"^\d+\.\d+[\w.-]*\s*$")
_NATIVE_ANSWER = b"is for clickhouse-client program"
_NATIVE_HTTP_PORT = re.compile(rb"use port (\d{1,5}) for HTTP")
DEFAULT_USER = "default"  # for a password-only line in the defaults file

_REMEDIATION = (
    "Give the `default` user a strong password (`password_sha256_hex` in users.xml) or disable "
    "it, create per-application users with `readonly` profiles and `networks` restricted to "
    "the hosts that need them, set `listen_host` to private interfaces, and block ports 8123 "
    "and 9000 from the internet."
)


@dataclass(frozen=True)
class _Login:
    user: str
    password: str | None  # None: no credentials sent at all
    auth: Auth

    @property
    def headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        return {"X-ClickHouse-User": self.user, "X-ClickHouse-Key": self.password}


@dataclass
class _Table:
    database: str
    name: str
    engine: str
    rows: int | None
    size: int | None
    skipped: str = ""

    @property
    def label(self) -> str:
        return f"{self.database}.{self.name}"


class ClickHouseProbe(Probe):
    """Finds ClickHouse servers anyone can query, and the personal data in their tables."""

    service = "clickhouse"
    default_ports = (8123, 9000)
    verify = (  # read-only commands that show the exposure, as the probe saw it
        "curl -s 'http://{host}:{port}/?query=SHOW%20DATABASES'",
    )
    fix = (  # configuration lines that close it
        "<!-- users.d/default.xml -->",
        "<password_sha256_hex>…</password_sha256_hex>",
        "<networks><ip>10.0.0.0/8</ip></networks>",
        "<!-- config.d/listen.xml -->",
        "<listen_host>127.0.0.1</listen_host>",
    )
    rules = (
        Rule(
            id="clickhouse.unauthenticated",
            name="ClickHouseUnauthenticated",
            description="ClickHouse runs queries for the `default` user with no password; anyone "
            "who reaches the port can read (and drop) every table.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=(
                "https://cwe.mitre.org/data/definitions/306.html",
                "https://clickhouse.com/docs/en/operations/settings/settings-users",
            ),
        ),
        Rule(
            id="clickhouse.default-credentials",
            name="ClickHouseDefaultPassword",
            description="ClickHouse accepts a login shipped in configs, images or operators.",
            remediation=_REMEDIATION,
            default_severity=Severity.HIGH,
            references=("https://cwe.mitre.org/data/definitions/1392.html",),
        ),
        Rule(
            id="clickhouse.auth-required",
            name="ClickHouseAuthRequired",
            description="ClickHouse is reachable and requires a password.",
            remediation="Keep passwords long and random; restrict `networks` and who can reach "
            "the ports.",
            default_severity=Severity.INFO,
        ),
        Rule(
            id="clickhouse.native-port",
            name="ClickHouseNativePort",
            description="ClickHouse's native-protocol port is reachable, and the HTTP interface "
            "it names did not answer, so whether it requires a password was not checked "
            "(perisai does not speak the native protocol).",
            remediation="Check the `default` user's password by hand (`clickhouse-client "
            "--host … --user default`); block port 9000 from the internet.",
            default_severity=Severity.INFO,
        ),
        RULE_RANSOM_NOTE,
    )

    async def fingerprint(self, host: str, port: int) -> Fingerprint | None:
        timeout = self.config.timeout
        try:
            async with http_client(host, port, timeout=timeout) as client:
                root = await bounded_get(client, "/", max_bytes=FINGERPRINT_BYTES, timeout=timeout)
        except HttpProbeError:
            return await self._native_fingerprint(host, port)
        if _NATIVE_ANSWER in root.body:
            return self._native(root.body)
        if root.body.strip() != b"Ok." and not _has_clickhouse_header(root):
            return None
        async with http_client(host, port, timeout=timeout) as client:
            try:
                check = await bounded_get(
                    client,
                    "/",
                    params={"query": "SELECT version()"},
                    max_bytes=FINGERPRINT_BYTES,
                    timeout=timeout,
                )
            except HttpProbeError:
                return None
        code = _code(check)
        if check.status == 200 and _has_clickhouse_header(check):
            version = check.text(32).strip()
            return Fingerprint(
                self.service,
                f"ClickHouse {version}, open",
                Access.OPEN,
                version,
                "http",
                identity=_http_identity(port),
            )
        if code is not None and code in _AUTH_CODES:
            return Fingerprint(
                self.service,
                "auth required",
                Access.AUTH_REQUIRED,
                interface="http",
                identity=_http_identity(port),
            )
        if code is not None or _has_clickhouse_header(check):
            detail = f"ClickHouse (answered HTTP {check.status})"
            return Fingerprint(
                self.service, detail, interface="http", identity=_http_identity(port)
            )
        return None

    async def _native_fingerprint(self, host: str, port: int) -> Fingerprint | None:
        """A native port that answers HTTP without a status line (18.16 sends one)."""
        try:
            said = await exchange(host, port, b"GET / HTTP/1.0\r\n\r\n", self.config.timeout)
        except (OSError, TimeoutError):
            return None
        return self._native(said) if _NATIVE_ANSWER in said else None

    def _native(self, said: bytes) -> Fingerprint:
        found = _NATIVE_HTTP_PORT.search(said)
        http_port = int(found.group(1)) if found else None
        http = f"; HTTP on port {http_port}" if http_port is not None else ""
        return Fingerprint(
            self.service,
            f"{NATIVE_DETAIL}{http}",
            interface="native",
            related_port=http_port,
            identity="" if http_port is None else _http_identity(http_port),
        )

    async def probe(
        self, host: str, port: int, fingerprint: Fingerprint
    ) -> ProbeResult | ProbeSkipped:
        target = Target(host, port, self.service)
        deadline = Deadline.for_probe(self.config)
        http_port = port
        prelude: list[Evidence] = []
        if fingerprint.interface == "native":
            named = fingerprint.related_port
            http_fp = await self.fingerprint(host, named) if named is not None else None
            if named is None or http_fp is None or http_fp.interface == "native":
                return ProbeResult((self._native_only(target, named),))
            http_port = named
            prelude.append(
                Evidence(
                    f"native-protocol port: it names its HTTP interface, port {http_port}, "
                    "which shares its users; read through that"
                )
            )
        async with http_client(host, http_port, timeout=self.config.timeout) as client:
            try:
                login, first, tried = await self._login(client, deadline)
            except HttpProbeError as error:  # before anything was proven
                return ProbeSkipped(f"{error}; stopped")
            if login is None:
                return ProbeResult((self._auth_required(target, first, tried, prelude),))
            return await self._inspect(client, deadline, target, login, first, prelude)

    # --- auth -------------------------------------------------------------------------------

    def _defaults(self) -> tuple[tuple[str, str], ...]:
        if not self.config.try_default_credentials:
            return ()
        return tuple(
            login
            for login in default_logins(self.service, DEFAULT_USER)
            if login != (DEFAULT_USER, "")  # = no credentials, tried first
        )

    async def _login(
        self, client: httpx.AsyncClient, deadline: Deadline
    ) -> tuple[_Login | None, HttpAnswer, int]:
        """The first login that runs ``SELECT version()`` (none, then the defaults file), its
        answer (the refusal, when none did) and how many defaults were tried."""
        anonymous = _Login(DEFAULT_USER, None, Auth.NONE)
        first = await self._query(client, deadline, anonymous, "SELECT version()")
        if first.truncated:
            why = "too slow" if first.timed_out else "too big"
            raise HttpProbeError(f"SELECT version(): the answer was cut short ({why})")
        if first.status == 200 and not _VERSION.match(first.body):
            raise HttpProbeError(f"SELECT version() answered {first.text(40)!r}, not a version")
        if first.status == 200:
            return anonymous, first, 0
        if _code(first) not in _AUTH_CODES and first.status not in (401, 403):
            raise HttpProbeError(
                f"SELECT version() answered HTTP {first.status}: {_message(first)}"
            )
        defaults = self._defaults()
        for user, password in defaults:
            login = _Login(user, password, Auth.DEFAULT_CREDENTIALS)
            answer = await self._query(client, deadline, login, "SELECT version()")
            if answer.status == 200:
                return login, answer, defaults.index((user, password)) + 1
        return None, first, len(defaults)

    # --- reads ------------------------------------------------------------------------------

    async def _inspect(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        target: Target,
        login: _Login,
        version: HttpAnswer,
        prelude: list[Evidence],
    ) -> ProbeResult | ProbeSkipped:
        how = (
            "with no credentials (user 'default', empty password)"
            if login.auth is Auth.NONE
            else f"as {login.user!r} with a vendor default password"
        )
        evidence = [*prelude, Evidence(f"queries ran {how}")]
        sampler = Sampler(self, target, login.auth)
        sampler.reads_heading = (
            f"queries (each POSTed with readonly=1, max_execution_time={self._seconds()}, "
            "result_overflow_mode=break)"
        )
        sampler.read("SELECT version()")
        tables: list[_Table] = []
        sampled: set[str] = set()
        try:
            skip = ", ".join(_literal(name) for name in SYSTEM_DATABASES)
            listing = await self._rows(
                client,
                deadline,
                login,
                # one more than is read: whether the listing stopped at its limit
                f"SELECT name FROM system.databases WHERE name NOT IN ({skip}) ORDER BY name "
                f"LIMIT {self.config.max_databases + 1} FORMAT JSONEachRow",
            )
            databases = [str(row.get("name", ""))[:256] for row in listing]
            more = databases[self.config.max_databases :]
            databases = databases[: self.config.max_databases]
            sampler.read("SELECT name FROM system.databases")
            count = f"more than {len(databases)} databases, the first {len(databases)} read"
            evidence.append(
                Evidence(
                    f"ClickHouse {version.text(32).strip()}; "
                    f"{count if more else f'{len(databases)} databases'}: "
                    f"{', '.join(databases) or 'none'}"
                )
            )
            if more:  # their rows are nobody's count: the total is a floor
                sampler.listed("more databases", unread="not listed (past the limit)")
            for database in databases:
                found, how_counted = await self._tables(client, deadline, login, database)
                if len(found) > self.config.max_tables:
                    found = found[: self.config.max_tables]
                    sampler.listed(
                        f"{database}: more tables",
                        unread=f"not listed (the first {len(found)} by name were)",
                    )
                tables.extend(found)
                if how_counted not in sampler.reads:
                    sampler.read(how_counted)
            order = sorted(tables, key=lambda t: (not _note_named(t), -(t.size or 0), t.label))
            for table in (t for t in order if not t.skipped):
                if deadline.expired:
                    sampler.stop(
                        f"probe deadline reached after sampling {len(sampled)} tables; stopped"
                    )
                    break
                records = await self._sample(client, deadline, login, table)
                if records is None:
                    continue
                sampled.add(table.label)
                sampler.sample(_shown(table), records, estimated=table.rows, head=_head(table))
                sampler.spot_notes(table.label, records)
        except HttpProbeError as error:
            sampler.stop(f"{error} (after sampling {len(sampled)} tables); stopped")
        for table in tables:
            if table.label not in sampled:
                sampler.listed(_shown(table), estimated=table.rows, head=_head(table))
        skipped = [t for t in tables if t.skipped]
        if skipped:
            listed = ", ".join(f"{t.label} ({t.skipped})" for t in skipped[:MAX_TABLES_IN_EVIDENCE])
            evidence.append(Evidence(f"not sampled: {listed}"))
        if sampled:
            sampler.read(
                f"{len(sampled)} x SELECT * FROM db.table LIMIT {self.config.sample} "
                "FORMAT JSONEachRow"
            )
        return sampler.result(
            evidence,
            (
                "ClickHouse readable without a password",
                "ClickHouse accepts a vendor default login",
            ),
        )

    async def _tables(
        self, client: httpx.AsyncClient, deadline: Deadline, login: _Login, database: str
    ) -> tuple[list[_Table], str]:
        """The tables of one database with rows and bytes (one more than ``max_tables``, to
        tell a full listing from a cut one), and the query that counted them."""
        where = f"WHERE database = {_literal(database)} AND NOT is_temporary"
        limit = f"ORDER BY name LIMIT {self.config.max_tables + 1} FORMAT JSONEachRow"
        answer = await self._query(
            client,
            deadline,
            login,
            f"SELECT name, engine, total_rows, total_bytes FROM system.tables {where} {limit}",
            cap=MAX_LIST_ANSWER,
        )
        if answer.status == 200:
            tables = [
                _Table(database, _name(r), str(r.get("engine", ""))[:64], *_sizes(r))
                for r in _json_rows(answer)
            ]
            query = "SELECT name, engine, total_rows, total_bytes FROM system.tables"
        else:  # ClickHouse before system.tables had total_rows (18.16): sum the active parts
            rows = await self._rows(
                client, deadline, login, f"SELECT name, engine FROM system.tables {where} {limit}"
            )
            parts = await self._rows(
                client,
                deadline,
                login,
                "SELECT table AS name, sum(rows) AS total_rows, sum(bytes_on_disk) AS total_bytes "
                f"FROM system.parts WHERE active AND database = {_literal(database)} "
                f"GROUP BY table ORDER BY table LIMIT {self.config.max_tables + 1} "
                "FORMAT JSONEachRow",
            )
            sums = {_name(p): _sizes(p) for p in parts}
            tables = [
                _Table(
                    database, _name(r), str(r.get("engine", ""))[:64], *sums.get(_name(r), _NO_SIZE)
                )
                for r in rows
            ]
            query = (
                "SELECT name, engine FROM system.tables and sum(rows), sum(bytes_on_disk) FROM "
                "system.parts (no total_rows in this version)"
            )
        for table in tables:
            if not _stores_locally(table.engine):
                table.skipped = f"engine {table.engine or '?'}: a SELECT may have side effects"
        return tables, query

    async def _sample(
        self, client: httpx.AsyncClient, deadline: Deadline, login: _Login, table: _Table
    ) -> list[dict[str, Any]] | None:
        """Up to ``sample`` rows, every string cut to ``max_value_bytes`` (None: refused)."""
        cap = max(256 * 1024, self.config.sample * self.config.max_value_bytes * 8)
        answer = await self._query(
            client,
            deadline,
            login,
            f"SELECT * FROM {_ident(table.database)}.{_ident(table.name)} "
            f"LIMIT {self.config.sample} FORMAT JSONEachRow",
            cap=cap,
            rows=self.config.sample,
        )
        if answer.status != 200:
            table.skipped = f"SELECT refused: {_message(answer)[:80]}"
            return None
        records: list[dict[str, Any]] = []
        for row in _json_rows(answer)[: self.config.sample]:
            members = dict(list(row.items())[:MAX_COLUMNS])
            records.append(clip_json(members, self.config.max_value_bytes))
        return records

    async def _rows(
        self, client: httpx.AsyncClient, deadline: Deadline, login: _Login, sql: str
    ) -> list[dict[str, Any]]:
        answer = await self._query(client, deadline, login, sql, cap=MAX_LIST_ANSWER)
        if answer.status != 200:
            raise HttpProbeError(f"{sql.split(' WHERE ')[0][:80]}: {_message(answer)}")
        return _json_rows(answer)

    async def _query(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        login: _Login,
        sql: str,
        *,
        cap: int = MAX_SMALL_ANSWER,
        rows: int = 100_000,
    ) -> HttpAnswer:
        """POST one read-only query; a user whose profile is read-only gets no settings."""
        settings = {
            "readonly": "1",
            "max_execution_time": str(self._seconds()),
            "max_result_rows": str(rows),
            "max_result_bytes": str(cap),
            "result_overflow_mode": "break",
        }
        answer = await self._post(client, deadline, login, sql, cap, settings)
        if _code(answer) == _READONLY_CODE and "readonly" in _message(answer).lower():
            # The user's own profile is read-only and may change no setting: send none.
            answer = await self._post(client, deadline, login, sql, cap, {})
        return answer

    async def _post(
        self,
        client: httpx.AsyncClient,
        deadline: Deadline,
        login: _Login,
        sql: str,
        cap: int,
        settings: dict[str, str],
    ) -> HttpAnswer:
        return await bounded_post(
            client,
            "/",
            params={**settings, "query_id": f"perisai-{uuid.uuid4()}"},
            content=sql.encode(),
            headers=login.headers,
            max_bytes=cap,
            timeout=deadline.cap(self.config.timeout),
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _seconds(self) -> int:
        return max(1, math.ceil(self.config.timeout))

    def _auth_required(
        self, target: Target, answer: HttpAnswer, tried: int, prelude: list[Evidence]
    ) -> Finding:
        refused = f"; {tried} vendor default logins refused" if tried else ""
        return auth_required_finding(
            self,
            target,
            "ClickHouse requires a password",
            *prelude,
            Evidence(f"SELECT version() without credentials: {_message(answer)}{refused}"),
        )

    def _native_only(self, target: Target, named: int | None) -> Finding:
        rule = self.rule("clickhouse.native-port")
        said = (
            f"it names HTTP port {named}, which did not answer as ClickHouse"
            if named is not None
            else "it names no HTTP port"
        )
        return Finding(
            rule=rule.id,
            severity=rule.default_severity,
            title="ClickHouse native port reachable",
            target=target,
            auth=Auth.UNKNOWN,
            evidence=(
                Evidence(
                    f"answered an HTTP request with 'is for clickhouse-client program'; {said}"
                ),
            ),
            remediation=rule.remediation,
        )


def _http_identity(http_port: int) -> str:
    """One server's identity, as both its ports state it: the HTTP port answers on it, the
    native port names it ("You must use port 8123 for HTTP")."""
    return f"http port {http_port}"


def _code(answer: HttpAnswer) -> int | None:
    """ClickHouse's exception code, when the answer is one."""
    found = _CODE.match(answer.body)
    return int(found.group(1)) if found else None


def _message(answer: HttpAnswer) -> str:
    return one_line(answer.text(300)) or f"HTTP {answer.status}"


def _json_rows(answer: HttpAnswer) -> list[dict[str, Any]]:
    """The complete JSONEachRow lines of an answer (a cut last line is dropped)."""
    lines = answer.body.split(b"\n")
    if answer.truncated:
        lines = lines[:-1]
    rows: list[dict[str, Any]] = []
    for line in lines:
        if not line.strip():
            continue
        with contextlib.suppress(ValueError, RecursionError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _has_clickhouse_header(answer: HttpAnswer) -> bool:
    return any(name.lower().startswith("x-clickhouse-") for name in answer.headers)


def _stores_locally(engine: str) -> bool:
    return engine.endswith("MergeTree") or engine in _LOCAL_ENGINES


def _note_named(table: _Table) -> bool:
    return is_note_name(table.name) or is_note_name(table.database)


def _name(row: dict[str, Any]) -> str:
    return str(row.get("name", ""))[:256]


def _sizes(row: dict[str, Any]) -> tuple[int | None, int | None]:
    return _int(row.get("total_rows")), _int(row.get("total_bytes"))


_NO_SIZE: tuple[int | None, int | None] = (None, None)


def _shown(table: _Table) -> str:
    """``db.table (MergeTree)``: how evidence names a table."""
    return f"{table.label} ({table.engine})"


def _head(table: _Table) -> str:
    """``120 rows, 8 kB``: what system.tables said of a table."""
    rows = "? rows" if table.rows is None else f"{table.rows} rows"
    size = "" if table.size is None else f", {human_bytes(table.size)}"
    return f"{rows}{size}"


def _ident(name: str) -> str:
    """A ClickHouse identifier in backquotes, so no name can end the statement."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _int(value: object) -> int | None:
    """UInt64 columns arrive as JSON strings (output_format_json_quote_64bit_integers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
