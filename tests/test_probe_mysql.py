"""MySQL/MariaDB probe against real mariadbd servers from Debian's mariadb-server package.

Four servers on free loopback ports, started here and stopped at the end of the module: exposed
(root without a password, with the extortion campaign's ransom note), secured (random root
password), root:root (a vendor default) and one whose only way in is an anonymous account.
The machine's own MariaDB on 3306 is never used. Hostile servers (silent, dripping, garbage)
are small asyncio servers that send a recorded MariaDB greeting and then misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymysql
import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab.instances import Instance
from perisai.lab.seed import CHATLOG_DATABASE, RANSOM_BTC_ADDRESS, SEED, make_people
from perisai.lab.servers.mysql import (
    MARIADB_RANSOM_DATABASE,
    MARIADB_RANSOM_TABLE,
    MARIADB_USERS,
    MariaDBInstance,
    general_log_path,
    seed_mariadb,
    socket_path,
    start_mariadb,
)
from perisai.lab.servers.redis import start_redis
from perisai.probes import Probe, ScanConfig, probe_classes
from perisai.probes.credentials import default_logins
from perisai.probes.mysql import MySQLProbe, parse_greeting
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.conftest import LabServers

pytestmark = pytest.mark.servers

# What a MariaDB 10.11 server sent first, recorded from the lab (104 bytes, protocol 10).
MARIADB_GREETING = (
    b"d\x00\x00\x00\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x05\x00\x00\x00{&Gq&cEk\x00\xfe\xf7"
    b'\x08\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00mb"!{l.=)SIU\x00'
    b"mysql_native_password\x00"
)
# A MySQL 8.0 greeting as the protocol documents it: version, connection id, salt, filler,
# capabilities, charset, status, salt length, reserved, rest of the salt, auth plugin.
MYSQL8_PAYLOAD = (
    b"\x0a8.0.36\x00\x0b\x00\x00\x00abcdefgh\x00\xff\xff\xff\x02\x00\xff\xdf\x15"
    + b"\x00" * 10
    + b"ijklmnopqrst\x00caching_sha2_password\x00"
)
MYSQL8_GREETING = len(MYSQL8_PAYLOAD).to_bytes(3, "little") + b"\x00" + MYSQL8_PAYLOAD
HOST_NOT_ALLOWED = b"Host '203.0.113.9' is not allowed to connect to this MySQL server"
HOST_NOT_ALLOWED_PACKET = (
    (3 + len(HOST_NOT_ALLOWED)).to_bytes(3, "little")
    + b"\x00\xff"
    + (1130).to_bytes(2, "little")
    + HOST_NOT_ALLOWED
)
# Statements the probe may send; anything else in the general log fails the read-only proof.
ALLOWED_STATEMENTS = (
    "SET NAMES utf8mb4",
    "SET SESSION max_statement_time = ",
    "START TRANSACTION READ ONLY",
    "SELECT ",
    "ROLLBACK",
)
WRITES = re.compile(
    r"(?i)^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|TRUNCATE|RENAME|GRANT|REVOKE|"
    r"SET\s+GLOBAL|SET\s+PASSWORD|SET\s+@@GLOBAL|FLUSH|KILL|LOAD|LOCK|CALL|HANDLER|INSTALL|"
    r"UNINSTALL|OPTIMIZE|ANALYZE|REPAIR|SHUTDOWN|COMMIT|XA|PURGE|RESET|CHANGE|DO)\b"
)
_LOG_LINE = re.compile(r"^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\s+(\d+)\s+(\w[\w ]*?)\t(.*)$")


@pytest.fixture(scope="module")
def mariadb(
    tmp_path_factory: pytest.TempPathFactory, lab_server: LabServers
) -> Iterator[dict[str, Instance]]:
    """Exposed (the lab's twin, with a ransom note), secured (the lab's twin), root:root and
    anonymous-only servers, seeded."""
    base = tmp_path_factory.mktemp("mariadb")
    twins = {
        "exposed": lab_server("mysql", True, MariaDBInstance),
        "secured": lab_server("mysql", False, MariaDBInstance),
    }
    started: dict[str, Instance] = {}
    try:
        started["default"] = start_mariadb("mariadb-default", base, exposed=False, password="root")
        seed_mariadb(started["default"])
        started["anonymous"] = start_mariadb("mariadb-anonymous", base, exposed=False)
        seed_mariadb(started["anonymous"])
        with _admin(started["anonymous"]) as cursor:
            cursor.execute("CREATE USER ''@'127.0.0.1'")
            cursor.execute(f"GRANT SELECT ON `{CHATLOG_DATABASE}`.* TO ''@'127.0.0.1'")
        yield {**twins, **started}
    finally:
        for instance in started.values():
            instance.stop()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    instance = start_redis("redis-beside-mariadb", tmp_path_factory.mktemp("redis"), exposed=True)
    try:
        yield instance.port
    finally:
        instance.stop()


@contextlib.contextmanager
def _admin(instance: Instance) -> Iterator[pymysql.cursors.Cursor]:
    """The test harness's own root session, over the server's unix socket."""
    conn = pymysql.connect(
        unix_socket=str(socket_path(instance)),
        user="root",
        password=instance.password or "",
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def _probes(config: ScanConfig) -> list[Probe]:
    """Every registered probe, plus this one until it is registered (so others get asked too)."""
    probes: list[Probe] = [cls(config) for cls in probe_classes()]
    if not any(isinstance(probe, MySQLProbe) for probe in probes):
        probes.append(MySQLProbe(config))
    return probes


async def _scan(port: int, timeout: float = 2.0) -> list[Finding]:
    config = ScanConfig(timeout=timeout)
    scanner = Scanner(config, probes=_probes(config))
    report = await scanner.scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_exposed_mariadb_is_critical_with_personal_data_and_the_ransom_note(
    mariadb: dict[str, Instance],
) -> None:
    findings = await _scan(mariadb["exposed"].port)
    [main] = [f for f in findings if f.rule == "mysql.unauthenticated"]
    assert main.target.service == "mysql"  # recognised on a random port by its greeting
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 20
    assert main.data.entities["EMAIL"] >= 10
    assert main.data.entities["GEO_COORDINATE"] >= 1
    assert main.data.records_estimated and main.data.records_estimated >= 700
    texts = [e.text for e in main.evidence]
    assert any("'root' with an empty password" in t for t in texts)
    assert any(t.startswith("chatlog.messages: ~") and "PHONE" in t for t in texts)
    assert any("START TRANSACTION READ ONLY" in t for t in texts)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == f"{MARIADB_RANSOM_DATABASE}.{MARIADB_RANSOM_TABLE}"
    assert any("BTC" in e.text and "recover" in e.text for e in note.evidence)
    assert any(e.text == f"payment address: {RANSOM_BTC_ADDRESS}" for e in note.evidence)


async def test_what_the_sample_limits_leave_out_is_counted_never_hidden(
    mariadb: dict[str, Instance],
) -> None:
    """A database left unread makes the total a floor; tables left unsampled still count
    (TABLE_ROWS), so the total stays the whole database's."""

    async def main_finding(config: ScanConfig) -> tuple[Finding, str]:
        scanner = Scanner(config, probes=_probes(config))
        report = await scanner.scan(parse_targets([f"127.0.0.1:{mariadb['exposed'].port}"]))
        [main] = [f for f in report.findings if f.rule == "mysql.unauthenticated"]
        return main, "\n".join(e.text for e in main.evidence)

    main, text = await main_finding(ScanConfig(timeout=2.0, max_databases=1))
    assert "2 databases (first 1 of 2)" in text, text
    assert "1 more databases: not read (the first 1 were)" in text, text
    assert main.data.records_at_least and main.data.records_text.startswith("at least ")
    main, text = await main_finding(ScanConfig(timeout=2.0, max_tables=1))
    assert re.search(r"chatlog: \d+ smaller tables: ~\d+ rows; not sampled \(the 1 largest", text)
    assert not main.data.records_at_least
    assert main.data.records_estimated and main.data.records_estimated >= 700


async def test_secured_mariadb_is_info_never_open(mariadb: dict[str, Instance]) -> None:
    findings = await _scan(mariadb["secured"].port)
    assert [f.rule for f in findings] == ["mysql.auth-required"]
    [info] = findings
    assert info.severity is Severity.INFO
    assert info.auth is Auth.REQUIRED
    assert not info.data.has_personal_data
    defaults = len(default_logins("mysql", "root"))
    assert f"{defaults} vendor default credentials" in info.evidence[0].text


async def test_default_password_is_found(mariadb: dict[str, Instance]) -> None:
    findings = await _scan(mariadb["default"].port)
    [main] = [f for f in findings if f.rule == "mysql.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert any("'root' with a vendor default password" in e.text for e in main.evidence)
    assert not [f for f in findings if f.rule == "compromise.ransom-note"]


async def test_anonymous_account_is_found(mariadb: dict[str, Instance]) -> None:
    findings = await _scan(mariadb["anonymous"].port)
    [main] = [f for f in findings if f.rule == "mysql.anonymous-user"]
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL  # it was granted SELECT on the chat log
    assert main.data.entities["PHONE"] >= 1
    assert any("anonymous user" in e.text for e in main.evidence)


async def test_evidence_masks_every_seeded_phone_and_email(mariadb: dict[str, Instance]) -> None:
    findings = await _scan(mariadb["exposed"].port)
    output = json.dumps([f.to_dict() for f in findings], ensure_ascii=False)
    people = make_people(MARIADB_USERS, random.Random(SEED))  # the seeder's first draw
    for person in people:
        assert person.msisdn[-9:] not in output
        assert person.email not in output


def test_greeting_parser_on_recorded_bytes() -> None:
    mariadb = parse_greeting(MARIADB_GREETING)
    assert mariadb is not None
    assert mariadb.version == "10.11.19-MariaDB-0+deb12u1"
    assert mariadb.product == "MariaDB"
    mysql = parse_greeting(MYSQL8_GREETING)
    assert mysql is not None and mysql.version == "8.0.36" and mysql.product == "MySQL"
    refused = parse_greeting(HOST_NOT_ALLOWED_PACKET)
    assert refused is not None and refused.error_code == 1130
    for other in (
        b"",
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
        b"-ERR unknown command\r\n",
        b"+PONG\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        b"E\x00\x00\x00\x6cSFATAL\x00",  # a PostgreSQL error
        MARIADB_GREETING[:40],  # cut short
        MARIADB_GREETING[:4] + b"\x09" + MARIADB_GREETING[5:],  # another protocol version
    ):
        assert parse_greeting(other) is None, other


def test_declared_rules_are_valid() -> None:
    MySQLProbe.validate()
    assert {rule.id for rule in MySQLProbe.rules} >= {
        "mysql.unauthenticated",
        "mysql.anonymous-user",
        "mysql.default-credentials",
        "mysql.auth-required",
        "compromise.ransom-note",
    }


def test_default_credentials_come_from_the_data_file() -> None:
    credentials = default_logins("mysql", "root")
    assert ("root", "root") in credentials
    assert ("mysql", "mysql") in credentials
    assert 3 <= len(credentials) <= 12  # a short vendor list, never a brute-force dictionary
    assert len(set(credentials)) == len(credentials)


async def test_fingerprint_is_none_on_other_protocols(
    mariadb: dict[str, Instance], redis_port: int
) -> None:
    probe = MySQLProbe(ScanConfig(timeout=1.0))
    fingerprint = await probe.fingerprint("127.0.0.1", mariadb["exposed"].port)
    assert fingerprint is not None and fingerprint.detail.startswith("MariaDB 10.")
    assert await probe.fingerprint("127.0.0.1", redis_port) is None
    with _http_server() as http_port:
        assert await probe.fingerprint("127.0.0.1", http_port) is None
    with _silent_port() as silent:
        assert await probe.fingerprint("127.0.0.1", silent) is None


async def test_other_probes_do_not_claim_mariadb_nor_mysql_redis(
    mariadb: dict[str, Instance], redis_port: int
) -> None:
    """Every probe asks every open port; each answers only to its own protocol."""
    ports = [redis_port, mariadb["secured"].port]
    config = ScanConfig(timeout=2.0)
    report = await Scanner(config, probes=_probes(config)).scan(parse_targets(["127.0.0.1"]), ports)
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == {ports[0]: "redis", ports[1]: "mysql"}


def test_probe_sends_only_read_statements(mariadb: dict[str, Instance]) -> None:
    """The server's general query log sees every statement of the scan: none may write."""
    instance = mariadb["exposed"]
    log = general_log_path(instance)
    with _admin(instance) as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        row = cursor.fetchone()
        assert row is not None
        harness = int(row[0])
        offset = log.stat().st_size if log.exists() else 0
        cursor.execute("SET GLOBAL general_log = ON")
        try:
            asyncio.run(_scan(instance.port))
        finally:
            cursor.execute("SET GLOBAL general_log = OFF")
    entries = [e for e in _general_log(log, offset) if e[0] != harness]
    commands = {command for _, command, _ in entries}
    queries = [argument for _, command, argument in entries if command == "Query"]
    assert "Connect" in commands and queries, "the log saw the probe's session"
    assert commands <= {"Connect", "Query", "Quit"}
    assert "START TRANSACTION READ ONLY" in queries
    assert queries.index("START TRANSACTION READ ONLY") < min(
        i for i, q in enumerate(queries) if q.startswith("SELECT LEFT(")
    )
    for query in queries:
        assert not WRITES.match(query), query
        assert query.startswith(ALLOWED_STATEMENTS), query
        if query.startswith("SELECT LEFT("):  # a sample: bounded in bytes and rows
            assert query.endswith(f"LIMIT {ScanConfig().sample}"), query
            assert f", {ScanConfig().max_value_bytes})" in query, query


@pytest.mark.parametrize(
    "behaviour",
    ["silent after the greeting", "drips bytes", "answers garbage", "streams 16 MB packets"],
)
async def test_hostile_server_ends_in_one_clear_line(behaviour: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(MARIADB_GREETING)
        await writer.drain()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.read(4096)  # the client's login packet
            if behaviour == "drips bytes":
                # A well-formed header (255 bytes follow, sequence 2), then one byte every
                # 0.1 s: no single read ever times out, only the probe's overall limit can.
                writer.write(b"\xff\x00\x00\x02")
                for _ in range(300):
                    await asyncio.sleep(0.1)
                    writer.write(b"\x00")
                    await writer.drain()
            elif behaviour == "streams 16 MB packets":
                # Well-formed maximum-size packets, each announcing that another follows:
                # a client that believed it would read one endless reply into memory.
                chunk = b"a" * 65536
                for sequence in range(2, 12):
                    writer.write(b"\xff\xff\xff" + bytes([sequence]))
                    for _ in range(0xFFFFFF // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                    writer.write(chunk[: 0xFFFFFF % len(chunk)])
            elif behaviour == "answers garbage":
                writer.write(b"\x05\x00\x00\x07garbage" * 4)
                await writer.drain()
            await asyncio.sleep(30)

    async with _asyncio_server(handle) as port:
        findings = await _scan(port, timeout=0.5)
    [finding] = findings
    assert finding.target.service == "mysql"
    assert finding.rule == "scan.incomplete"
    [line] = [e.text for e in finding.evidence]
    assert line.startswith("probe stopped: MySQLProbeError: ") and "\n" not in line
    if behaviour == "drips bytes":
        assert "no answer to the login" in line
    if behaviour == "streams 16 MB packets":
        assert "MiB for one request" in line


def _general_log(path: Path, offset: int) -> list[tuple[int, str, str]]:
    """(connection id, command, argument) for every entry written after ``offset``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", "replace")
    entries: list[tuple[int, str, str]] = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            entries.append((int(match[1]), match[2].strip(), match[3].strip()))
        elif entries and line.strip() and not line.startswith(("/", "Tcp port", "Time")):
            thread, command, argument = entries[-1]  # a statement that spans lines
            entries[-1] = (thread, command, f"{argument} {line.strip()}")
    return entries


@contextlib.contextmanager
def _http_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def _silent_port() -> Iterator[int]:
    """A port that accepts connections (into the backlog) and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@contextlib.asynccontextmanager
async def _asyncio_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except asyncio.CancelledError:
            pass  # the test is over; a cancelled handler would be logged as an error
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
