"""InfluxDB probe against real InfluxDB 1.6 servers (Debian's influxdb), and 2.x replayed.

Three influxd are started once for the module, each with its own data directory and free
loopback ports: an exposed one (auth off, a ransom-note measurement), a secured one
(``auth-enabled`` with a random admin password) and one whose admin login is a vendor default.
Read-only proof: the server's HTTP access log shows only GETs from the probe, and its query log
only SHOW and SELECT statements (InfluxDB 1.x would run a write sent by GET, so this matters).

Only InfluxDB 1.6 installs here (Debian has no 2.x package), so the 2.x checks run against a
small local server that replays 2.x's documented answers: ``/ping`` with
``X-Influxdb-Version: v2.7.4``, ``GET /api/v2/setup`` with ``{"allowed": true}`` (never set
up) or ``false``, and 401 ``unauthorized access`` for the v1 ``/query`` without a token.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance
from perisai.lab.seed import CHATLOG_DATABASE, RANSOM_BTC_ADDRESS, RANSOM_TABLE
from perisai.lab.servers.http_store import HttpStoreInstance
from perisai.lab.servers.influxdb import seed_influxdb, start_influxdb
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
_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" \d+ \d+ "[^"]*" "(?P<ua>[^"]*)"'
)
_QUERY_LOG = re.compile(r'msg="Executing query".* query="(?P<query>(?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HttpStoreInstance]]:
    """Exposed (no auth, ransom note), secured (random admin password), default (admin:admin)."""
    base = tmp_path_factory.mktemp("influxdb")
    plans: dict[str, tuple[bool, str | None]] = {
        "exposed": (True, None),
        "secured": (False, None),
        "default": (False, "admin"),
    }

    def start(name: str) -> HttpStoreInstance:
        exposed, password = plans[name]
        return start_influxdb(f"influxdb-{name}", base, exposed=exposed, password=password)

    def seed(name: str, instance: HttpStoreInstance) -> None:
        seed_influxdb(instance, ransom_note=name == "exposed")

    with started_in_parallel(plans, start, seed) as started:
        yield started


def _probes() -> list[Probe]:
    return [
        InfluxDBProbe(CONFIG),
        EtcdProbe(CONFIG),
        ClickHouseProbe(CONFIG),
        RedisProbe(CONFIG),
        PostgresProbe(CONFIG),
    ]


async def _scan(port: int) -> list[Finding]:
    """A scan of one loopback port with every probe: InfluxDB must be recognised by its answer."""
    report = await Scanner(CONFIG, probes=_probes()).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_exposed_influxdb_is_critical_with_personal_data_and_the_note(
    influx: dict[str, HttpStoreInstance],
) -> None:
    findings = await _scan(influx["exposed"].port)
    [main] = [f for f in findings if f.rule == "influxdb.unauthenticated"]
    assert main.target.service == "influxdb"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    assert main.data.entities["GEO_COORDINATE"] >= 1 and main.data.entities["MESSAGE_BODY"] >= 1
    texts = [e.text for e in main.evidence]
    assert "GET /query ran SHOW DATABASES without credentials" in texts
    assert any(t.startswith("InfluxDB 1.6") and CHATLOG_DATABASE in t for t in texts)
    assert any(t.startswith(f"{CHATLOG_DATABASE}.messages: sampled 20 records") for t in texts)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == f"{CHATLOG_DATABASE}.{RANSOM_TABLE}"
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in [e.text for e in note.evidence]


async def test_secured_influxdb_is_info_never_open(influx: dict[str, HttpStoreInstance]) -> None:
    findings = await _scan(influx["secured"].port)
    assert [f.rule for f in findings] == ["influxdb.auth-required"]
    [info] = findings
    assert info.severity is Severity.INFO and info.auth is Auth.REQUIRED
    assert not info.data.has_personal_data
    assert "HTTP 401" in info.evidence[1].text
    assert "vendor default logins refused" in info.evidence[1].text


async def test_default_admin_login_is_found(influx: dict[str, HttpStoreInstance]) -> None:
    findings = await _scan(influx["default"].port)
    [main] = [f for f in findings if f.rule == "influxdb.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert "as 'admin' with a vendor default password" in main.evidence[0].text


def _log_lines(instance: HttpStoreInstance) -> tuple[int, int]:
    assert instance.access_log is not None
    return (
        len(instance.access_log.read_text(encoding="utf-8").splitlines()),
        len(instance.log_file.read_text(encoding="utf-8").splitlines()),
    )


@pytest.mark.parametrize("name", ["exposed", "default"])
def test_probe_sends_only_gets_and_read_statements(
    influx: dict[str, HttpStoreInstance], name: str
) -> None:
    """The access log shows only GETs from the probe; the query log only SHOW and SELECT."""
    instance = influx[name]
    assert instance.access_log is not None
    access_before, queries_before = _log_lines(instance)

    async def probe() -> ProbeResult:
        influx_probe = InfluxDBProbe(CONFIG)
        fingerprint = await influx_probe.fingerprint(instance.host, instance.port)
        assert fingerprint is not None
        result = await influx_probe.probe(instance.host, instance.port, fingerprint)
        assert isinstance(result, ProbeResult)
        return result

    asyncio.run(probe())
    access = instance.access_log.read_text(encoding="utf-8").splitlines()[access_before:]
    requests = [m for m in (_ACCESS.search(line) for line in access) if m]
    assert len(requests) == len(access) and requests
    assert all(m["ua"].startswith("perisai/") for m in requests)
    assert {m["method"] for m in requests} == {"GET"}
    assert {m["path"].split("?")[0] for m in requests} == {"/ping", "/query"}
    log = instance.log_file.read_text(encoding="utf-8").splitlines()[queries_before:]
    statements = [m["query"] for m in (_QUERY_LOG.search(line) for line in log) if m]
    assert any(s.startswith("SELECT * FROM") for s in statements)
    for statement in statements:
        assert statement.split()[0] in ("SHOW", "SELECT"), statement
        assert " INTO " not in statement.upper(), statement


class _InfluxV2Replay(BaseHTTPRequestHandler):
    """InfluxDB 2.x as its API reference documents it; every request is recorded."""

    allowed: ClassVar[bool] = True
    seen: ClassVar[list[tuple[str, str]]] = []
    server_port: ClassVar[int] = 0

    def _answer(self, status: int, body: object | None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Influxdb-Build", "OSS")
        self.send_header("X-Influxdb-Version", "v2.7.4")
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        type(self).seen.append(("GET", self.path))
        path = self.path.split("?")[0]
        if path == "/ping":
            self._answer(204, None)
        elif path == "/api/v2/setup":
            self._answer(200, {"allowed": type(self).allowed})
        else:
            self._answer(401, {"code": "unauthorized", "message": "unauthorized access"})

    def do_POST(self) -> None:
        type(self).seen.append(("POST", self.path))
        self._answer(401, {"code": "unauthorized", "message": "unauthorized access"})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def influx_v2() -> Iterator[type[_InfluxV2Replay]]:
    """A replayed InfluxDB 2.x on a free loopback port (``server_port`` on the class)."""

    class Replay(_InfluxV2Replay):  # fresh class state for each test
        seen: ClassVar[list[tuple[str, str]]] = []

    with http_server(Replay) as port:
        Replay.server_port = port
        yield Replay


async def test_unclaimed_influxdb2_is_critical_and_never_set_up(
    influx_v2: type[_InfluxV2Replay],
) -> None:
    findings = await _scan(influx_v2.server_port)
    assert [f.rule for f in findings] == ["influxdb.unclaimed-setup"]
    [unclaimed] = findings
    assert unclaimed.severity is Severity.CRITICAL and unclaimed.auth is Auth.NONE
    assert unclaimed.evidence[0].text == "InfluxDB v2.7.4 OSS"
    assert ("GET", "/api/v2/setup") in influx_v2.seen
    assert not [request for request in influx_v2.seen if request[0] != "GET"]


async def test_claimed_influxdb2_requires_auth(influx_v2: type[_InfluxV2Replay]) -> None:
    influx_v2.allowed = False
    findings = await _scan(influx_v2.server_port)
    assert [f.rule for f in findings] == ["influxdb.auth-required"]
    assert "unauthorized access" in findings[0].evidence[1].text
    assert not [request for request in influx_v2.seen if request[0] != "GET"]


class _NotInflux(BaseHTTPRequestHandler):
    """An HTTP service with a /ping that is not InfluxDB (no X-Influxdb-Version header)."""

    def do_GET(self) -> None:
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def look_alike() -> Iterator[int]:
    with http_server(_NotInflux) as port:
        yield port


async def test_fingerprint_is_none_on_other_protocols(
    redis_default_password: Instance, look_alike: int
) -> None:
    probe = InfluxDBProbe(CONFIG)
    assert await probe.fingerprint("127.0.0.1", redis_default_password.port) is None
    assert await probe.fingerprint("127.0.0.1", look_alike) is None


async def _claims(probe: Probe, port: int) -> bool:
    try:
        return await probe.fingerprint("127.0.0.1", port) is not None
    except (OSError, TimeoutError, EOFError, ValueError):
        return False


async def test_other_probes_do_not_claim_influxdb(influx: dict[str, HttpStoreInstance]) -> None:
    for name in ("exposed", "secured"):
        for probe in _probes()[1:]:
            assert not await _claims(probe, influx[name].port), type(probe).__name__


class _Hostile(BaseHTTPRequestHandler):
    """Answers /ping as InfluxDB 1.8, then misbehaves on every /query: drips a byte at a time or
    streams without end (a few seconds at most)."""

    mode = "drip"

    def do_GET(self) -> None:
        if self.path.startswith("/ping"):
            self.send_response(204)
            self.send_header("X-Influxdb-Version", "1.8.10")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Influxdb-Version", "1.8.10")
        self.end_headers()
        misbehave(self.wfile, self.mode, b'{"results":[{"statement_id":0,' * 4, b"[" * 65536)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("mode", "why"), [("drip", "too slow"), ("endless", "too big")])
async def test_hostile_server_ends_the_probe_with_a_reason(mode: str, why: str) -> None:
    with http_server(type("Hostile", (_Hostile,), {"mode": mode})) as port:
        probe = InfluxDBProbe(ScanConfig(timeout=1.0))
        fingerprint = await probe.fingerprint("127.0.0.1", port)
        assert fingerprint is not None
        result = await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), 60)
    assert isinstance(result, ProbeSkipped)
    assert result.reason == f"GET /query SHOW DATABASES: the answer was cut short ({why}); stopped"
    assert result.findings == ()


async def test_a_measurement_listing_cut_at_its_limit_says_at_least(
    influx: dict[str, HttpStoreInstance],
) -> None:
    """SHOW MEASUREMENTS asks for one more than it reads: a cut listing says so."""
    config = ScanConfig(timeout=2.0, max_tables=1)
    report = await Scanner(config, probes=[InfluxDBProbe(config)]).scan(
        parse_targets([f"127.0.0.1:{influx['exposed'].port}"])
    )
    [main] = [f for f in report.findings if f.rule == "influxdb.unauthenticated"]
    text = "\n".join(e.text for e in main.evidence)
    assert re.search(r"at least \d+ measurements \(listing cut in ", text), text
    assert "more measurements: not listed (the first 1 were)" in text, text
