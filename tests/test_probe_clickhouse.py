"""ClickHouse probe against real ClickHouse 18.16 servers (Debian's clickhouse-server).

Three servers are started once for the module, in parallel, each with its own data directory
and free loopback HTTP and native ports: an exposed one (``default`` with an empty password,
a ransom-note table), a secured one (random password) and one whose ``default`` password is on
the vendor-default list. All run with ``log_queries``, so ``system.query_log`` is the read-only
proof: every query the probe sent must be a SELECT, carry ``readonly=1`` and write no row.

The look-alike services in the fingerprint tests are small local servers: an HTTP server that
answers ``Ok.`` without being ClickHouse, and a TCP server that replays a native port's answer
(naming an HTTP port where nothing listens).
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance
from perisai.lab.seed import CHATLOG_DATABASE, RANSOM_BTC_ADDRESS, RANSOM_TABLE
from perisai.lab.servers.clickhouse import seed_clickhouse, start_clickhouse
from perisai.lab.servers.http_store import HttpStoreInstance
from perisai.probes import Probe, ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes.clickhouse import ClickHouseProbe
from perisai.probes.etcd import EtcdProbe
from perisai.probes.influxdb import InfluxDBProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.fakes import http_server, misbehave
from tests.twins import started_in_parallel

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
SEEDED_ROWS = 250  # chatlog.messages 200 + chatlog.users 50 (MergeTree: counted by the server)
NOTE_TABLE = f"{CHATLOG_DATABASE}.{RANSOM_TABLE}"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HttpStoreInstance]]:
    """Exposed (empty password, ransom note), secured (random) and default ("clickhouse")."""
    base = tmp_path_factory.mktemp("clickhouse")
    plans: dict[str, tuple[bool, str | None]] = {
        "exposed": (True, None),
        "secured": (False, None),
        "default": (False, "clickhouse"),
    }

    def start(name: str) -> HttpStoreInstance:
        exposed, password = plans[name]
        return start_clickhouse(f"clickhouse-{name}", base, exposed=exposed, password=password)

    def seed(name: str, instance: HttpStoreInstance) -> None:
        seed_clickhouse(instance, ransom_note=name == "exposed")

    with started_in_parallel(plans, start, seed) as started:
        yield started


def _probes() -> list[Probe]:
    return [
        ClickHouseProbe(CONFIG),
        EtcdProbe(CONFIG),
        InfluxDBProbe(CONFIG),
        RedisProbe(CONFIG),
        PostgresProbe(CONFIG),
    ]


async def _scan(port: int) -> list[Finding]:
    """A scan of one loopback port with every probe: ClickHouse must be recognised by its answer."""
    report = await Scanner(CONFIG, probes=_probes()).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_exposed_clickhouse_is_critical_with_personal_data_and_the_note(
    clickhouse: dict[str, HttpStoreInstance],
) -> None:
    findings = await _scan(clickhouse["exposed"].port)
    [main] = [f for f in findings if f.rule == "clickhouse.unauthenticated"]
    assert main.target.service == "clickhouse"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    assert main.data.records_estimated == SEEDED_ROWS
    texts = [e.text for e in main.evidence]
    assert "queries ran with no credentials (user 'default', empty password)" in texts
    assert any(t.startswith("chatlog.messages (MergeTree): 200 rows") for t in texts)
    assert any("system.parts" in t for t in texts)  # 18.16: no total_rows in system.tables
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == NOTE_TABLE
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in [e.text for e in note.evidence]


async def test_native_port_is_reported_through_its_http_interface(
    clickhouse: dict[str, HttpStoreInstance],
) -> None:
    exposed = clickhouse["exposed"]
    assert exposed.native_port is not None
    findings = await _scan(exposed.native_port)
    [main] = [f for f in findings if f.rule == "clickhouse.unauthenticated"]
    assert main.target.port == exposed.native_port
    assert main.data.entities["PHONE"] >= 1
    assert f"port {exposed.port}" in main.evidence[0].text


async def test_secured_clickhouse_is_info_never_open(
    clickhouse: dict[str, HttpStoreInstance],
) -> None:
    secured = clickhouse["secured"]
    assert secured.native_port is not None
    for port in (secured.port, secured.native_port):
        findings = await _scan(port)
        assert [f.rule for f in findings] == ["clickhouse.auth-required"]
        [info] = findings
        assert info.severity is Severity.INFO and info.auth is Auth.REQUIRED
        assert not info.data.has_personal_data
        assert "Password required for user default" in info.evidence[-1].text
        assert "vendor default logins refused" in info.evidence[-1].text


async def test_default_password_is_found(clickhouse: dict[str, HttpStoreInstance]) -> None:
    findings = await _scan(clickhouse["default"].port)
    [main] = [f for f in findings if f.rule == "clickhouse.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert "queries ran as 'default' with a vendor default password" in main.evidence[0].text


def _admin(instance: HttpStoreInstance, sql: str) -> str:
    """A query as the lab's own user, outside the probe (its ids do not start with perisai-)."""
    with instance.client() as client:
        answer = client.post("/", content=sql.encode())
    assert answer.status_code == 200, answer.text
    return answer.text


def _probe_queries(instance: HttpStoreInstance) -> list[dict[str, Any]]:
    _admin(instance, "SYSTEM FLUSH LOGS")
    text = _admin(
        instance,
        "SELECT type, query_id, query, written_rows, Settings.Names AS names, "
        "Settings.Values AS vals "
        "FROM system.query_log WHERE query_id LIKE 'perisai-%' FORMAT JSONEachRow",
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _settled_queries(instance: HttpStoreInstance, seen: set[str]) -> list[dict[str, Any]]:
    """The probe's queries once query_log stops growing. The server logs a query when it has
    finished it, which can come after the client has its whole answer: under load, a
    SYSTEM FLUSH LOGS right after the probe returned missed its last queries, or all of them."""
    logged: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        now = [entry for entry in _probe_queries(instance) if entry["query_id"] not in seen]
        if now and len(now) == len(logged):
            return now
        logged = now
        time.sleep(0.5)
    return logged


@pytest.mark.parametrize("name", ["exposed", "default"])
def test_probe_sends_only_readonly_selects(
    clickhouse: dict[str, HttpStoreInstance], name: str
) -> None:
    """system.query_log: every query of the probe is a SELECT run with readonly=1."""
    instance = clickhouse[name]
    rows_before = _admin(instance, f"SELECT count() FROM {CHATLOG_DATABASE}.messages")

    async def probe() -> ProbeResult:
        clickhouse_probe = ClickHouseProbe(CONFIG)
        fingerprint = await clickhouse_probe.fingerprint(instance.host, instance.port)
        assert fingerprint is not None
        result = await clickhouse_probe.probe(instance.host, instance.port, fingerprint)
        assert isinstance(result, ProbeResult)
        return result

    seen = {entry["query_id"] for entry in _probe_queries(instance)}
    asyncio.run(probe())
    logged = _settled_queries(instance, seen)
    assert logged, "the probe left no query in system.query_log"
    for entry in logged:
        words = entry["query"].split()
        assert words[0].upper() in ("SELECT", "SHOW"), entry["query"]
        assert int(entry["written_rows"]) == 0  # UInt64: a JSON string
        if entry["type"] in (1, 2):  # started / finished (not refused before starting)
            settings = dict(zip(entry["names"], entry["vals"], strict=True))
            assert settings.get("readonly") == "1", entry
    queries = [entry["query"] for entry in logged]
    assert any("LIMIT 20 FORMAT JSONEachRow" in query for query in queries), queries
    assert _admin(instance, f"SELECT count() FROM {CHATLOG_DATABASE}.messages") == rows_before


class _OkServer(BaseHTTPRequestHandler):
    """An HTTP service that answers "Ok." to everything: not ClickHouse (no headers, no Code)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"Ok.\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NativeReplay(socketserver.BaseRequestHandler):
    """Replays what a ClickHouse native port says to an HTTP request (bare text, as newer
    versions send it), naming an HTTP port where nothing listens."""

    closed_port = 0

    def handle(self) -> None:
        self.request.settimeout(2.0)
        try:
            self.request.recv(1024)
            self.request.sendall(
                b"Port 9000 is for clickhouse-client program.\n"
                + f"You must use port {self.closed_port} for HTTP.\n".encode()
            )
        except OSError:
            pass


@pytest.fixture(scope="module")
def look_alikes() -> Iterator[dict[str, int]]:
    with socket.socket() as spare:  # a port that was free a moment ago: nothing listens there
        spare.bind(("127.0.0.1", 0))
        _NativeReplay.closed_port = spare.getsockname()[1]
    ok = ThreadingHTTPServer(("127.0.0.1", 0), _OkServer)
    native = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NativeReplay)
    native.daemon_threads = True
    for server in (ok, native):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"ok": ok.server_address[1], "native": native.server_address[1]}
    finally:
        for server in (ok, native):
            server.shutdown()
            server.server_close()


async def test_fingerprint_is_none_on_other_protocols(
    redis_default_password: Instance, look_alikes: dict[str, int]
) -> None:
    probe = ClickHouseProbe(CONFIG)
    assert await probe.fingerprint("127.0.0.1", redis_default_password.port) is None
    assert await probe.fingerprint("127.0.0.1", look_alikes["ok"]) is None


async def test_native_port_without_http_interface_is_info(look_alikes: dict[str, int]) -> None:
    """A native-port answer whose HTTP port is closed: seen, login not checked (replayed)."""
    findings = await _scan(look_alikes["native"])
    assert [f.rule for f in findings] == ["clickhouse.native-port"]
    [info] = findings
    assert info.severity is Severity.INFO and info.auth is Auth.UNKNOWN
    assert "did not answer as ClickHouse" in info.evidence[0].text


async def _claims(probe: Probe, port: int) -> bool:
    try:
        return await probe.fingerprint("127.0.0.1", port) is not None
    except (OSError, TimeoutError, EOFError, ValueError):
        return False


async def test_other_probes_do_not_claim_clickhouse(
    clickhouse: dict[str, HttpStoreInstance],
) -> None:
    secured = clickhouse["secured"]
    assert secured.native_port is not None
    for port in (clickhouse["exposed"].port, secured.port, secured.native_port):
        for probe in _probes()[1:]:
            assert not await _claims(probe, port), (type(probe).__name__, port)


class _Hostile(BaseHTTPRequestHandler):
    """Looks like ClickHouse to the fingerprint's GETs, then misbehaves on every query POST:
    drips a byte at a time or streams without end (a few seconds at most)."""

    mode = "drip"

    def do_GET(self) -> None:
        body = b"99.1.1\n" if "query=" in self.path else b"Ok.\n"
        self.send_response(200)
        self.send_header("X-ClickHouse-Server-Display-Name", "hostile")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("X-ClickHouse-Server-Display-Name", "hostile")
        self.end_headers()
        misbehave(self.wfile, self.mode, b"99.1.1" * 8, b"9" * 65536)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("mode", "why"), [("drip", "too slow"), ("endless", "too big")])
async def test_hostile_server_ends_the_probe_with_a_reason(mode: str, why: str) -> None:
    with http_server(type("Hostile", (_Hostile,), {"mode": mode})) as port:
        probe = ClickHouseProbe(ScanConfig(timeout=1.0))
        fingerprint = await probe.fingerprint("127.0.0.1", port)
        assert fingerprint is not None and fingerprint.detail == "ClickHouse 99.1.1, open"
        result = await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), 60)
    assert isinstance(result, ProbeSkipped)
    assert result.reason == f"SELECT version(): the answer was cut short ({why}); stopped"
    assert result.findings == ()


async def test_listings_cut_at_their_limit_say_so(
    clickhouse: dict[str, HttpStoreInstance],
) -> None:
    """With room for one database and one table, the probe asks for one more of each: the
    evidence says there were more, and the records total is a floor, never the whole."""
    config = ScanConfig(timeout=2.0, max_databases=1, max_tables=1)
    probe = ClickHouseProbe(config)
    report = await Scanner(config, probes=[probe]).scan(
        parse_targets([f"127.0.0.1:{clickhouse['exposed'].port}"])
    )
    [main] = [f for f in report.findings if f.rule == "clickhouse.unauthenticated"]
    text = "\n".join(e.text for e in main.evidence)
    assert "more than 1 databases, the first 1 read" in text, text
    assert "more databases: not listed (past the limit)" in text, text
    assert main.data.records_at_least  # never stated as the whole: "at least N" or "unknown"
    assert not main.data.records_text[0].isdigit()
