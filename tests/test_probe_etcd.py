"""etcd probe against real etcd 3.4 servers (Debian's etcd-server) on free loopback ports.

Three servers are started once for the module: an exposed one (no auth, the v2 API on, a
ransom-note key), a secured one (v3 auth, random root password) and one whose root password is
a vendor default. Read-only proof: etcd counts every gRPC call by method on ``/metrics``
(``grpc_server_started_total``) and every v2 store write; a full probe may move only the Range
and Authenticate counters, and must leave the store's revision where it was. The look-alike
HTTP services in the fingerprint test are small local servers, not etcd.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from perisai.findings import Auth, Finding, Severity
from perisai.lab import Instance
from perisai.lab.seed import RANSOM_BTC_ADDRESS
from perisai.lab.servers.etcd import ETCD_RANSOM_KEY, seed_etcd, start_etcd
from perisai.lab.servers.http_store import HttpStoreInstance
from perisai.probes import Probe, ProbeResult, ProbeSkipped, ScanConfig
from perisai.probes import etcd as etcd_probe
from perisai.probes.clickhouse import ClickHouseProbe
from perisai.probes.etcd import EtcdProbe, _Session
from perisai.probes.http import Deadline, http_client
from perisai.probes.influxdb import InfluxDBProbe
from perisai.probes.postgres import PostgresProbe
from perisai.probes.redis import RedisProbe
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.fakes import http_server, misbehave
from tests.twins import started_in_parallel

pytestmark = pytest.mark.servers

CONFIG = ScanConfig(timeout=2.0)
# gRPC methods a probe may call: a Range reads, an Authenticate logs in (and writes no key).
READ_ONLY_METHODS = {"Range", "Authenticate"}
_GRPC_STARTED = re.compile(r'^grpc_server_started_total\{grpc_method="(\w+)",[^}]*\} (\d+)', re.M)
_V2_WRITES = re.compile(r"^etcd_debugging_store_writes_total\{[^}]*\} (\d+)", re.M)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, HttpStoreInstance]]:
    """Exposed (v2 on, ransom note), secured (random root password) and default ("root")."""
    base = tmp_path_factory.mktemp("etcd")
    # name: (exposed, root password, v2 API on)
    plans: dict[str, tuple[bool, str | None, bool]] = {
        "exposed": (True, None, True),
        "secured": (False, None, False),
        "default": (False, "root", False),
    }

    def start(name: str) -> HttpStoreInstance:
        exposed, password, v2 = plans[name]
        return start_etcd(f"etcd-{name}", base, exposed=exposed, password=password, enable_v2=v2)

    def seed(name: str, instance: HttpStoreInstance) -> None:
        seed_etcd(instance, ransom_note=name == "exposed", v2=plans[name][2])

    with started_in_parallel(plans, start, seed) as started:
        yield started


def _probes() -> list[Probe]:
    return [
        EtcdProbe(CONFIG),
        ClickHouseProbe(CONFIG),
        InfluxDBProbe(CONFIG),
        RedisProbe(CONFIG),
        PostgresProbe(CONFIG),
    ]


async def _scan(port: int) -> list[Finding]:
    """A scan of one loopback port with every probe: etcd must be recognised by its answer."""
    scanner = Scanner(CONFIG, probes=_probes())
    report = await scanner.scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def _probe(instance: HttpStoreInstance) -> ProbeResult:
    probe = EtcdProbe(CONFIG)
    fingerprint = await probe.fingerprint(instance.host, instance.port)
    assert fingerprint is not None and fingerprint.service == "etcd"
    result = await probe.probe(instance.host, instance.port, fingerprint)
    assert isinstance(result, ProbeResult), getattr(result, "reason", "")
    return result


async def test_exposed_etcd_is_critical_with_personal_data_and_the_note(
    etcd: dict[str, HttpStoreInstance],
) -> None:
    findings = await _scan(etcd["exposed"].port)
    [main] = [f for f in findings if f.rule == "etcd.unauthenticated"]
    assert main.target.service == "etcd"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    assert main.data.records_estimated is not None and main.data.records_estimated >= 250
    assert any("answered without any login" in e.text for e in main.evidence)
    assert any(e.text.startswith("v2 API readable without a login") for e in main.evidence)
    assert any("/chat/" in e.text and "/users/" in e.text for e in main.evidence)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert note.object == ETCD_RANSOM_KEY
    assert f"payment address: {RANSOM_BTC_ADDRESS}" in [e.text for e in note.evidence]


async def test_secured_etcd_is_info_never_open(etcd: dict[str, HttpStoreInstance]) -> None:
    findings = await _scan(etcd["secured"].port)
    assert [f.rule for f in findings] == ["etcd.auth-required"]
    [info] = findings
    assert info.severity is Severity.INFO and info.auth is Auth.REQUIRED
    assert not info.data.has_personal_data
    assert "user name is empty" in info.evidence[0].text
    assert "vendor default root passwords refused" in info.evidence[0].text


async def test_default_root_password_is_found(etcd: dict[str, HttpStoreInstance]) -> None:
    findings = await _scan(etcd["default"].port)
    [main] = [f for f in findings if f.rule == "etcd.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert any(
        "logged in as 'root' with a vendor default password" in e.text for e in main.evidence
    )
    assert not any(f.rule == "compromise.ransom-note" for f in findings)


def _counters(instance: HttpStoreInstance) -> tuple[dict[str, int], int]:
    """etcd's own record of calls: gRPC calls started per method, and v2 store writes."""
    text = httpx.get(f"{instance.url}/metrics", timeout=5.0, trust_env=False).text
    calls: dict[str, int] = {}
    for method, count in _GRPC_STARTED.findall(text):
        calls[method] = calls.get(method, 0) + int(count)
    return calls, sum(int(n) for n in _V2_WRITES.findall(text))


def _revision(instance: HttpStoreInstance) -> tuple[int, int]:
    """The store's revision and key count, read with the lab's own credentials."""
    with instance.client() as client:
        answer = client.post(
            "/v3/kv/range", json={"key": "AA==", "range_end": "AA==", "count_only": True}
        ).json()
    return int(answer["header"]["revision"]), int(answer.get("count", 0))


@pytest.mark.parametrize("name", ["exposed", "default"])
def test_probe_is_read_only(etcd: dict[str, HttpStoreInstance], name: str) -> None:
    """Only Range (and, for a default login, Authenticate) calls; the revision stays put."""
    instance = etcd[name]
    revision_before = _revision(instance)
    calls_before, v2_writes_before = _counters(instance)
    result = asyncio.run(_probe(instance))
    calls_after, v2_writes_after = _counters(instance)
    assert _revision(instance) == revision_before
    moved = {m for m, n in calls_after.items() if n != calls_before.get(m, 0)}
    assert moved - READ_ONLY_METHODS == set()
    assert calls_after["Range"] - calls_before["Range"] > CONFIG.sample  # it did read keys
    assert v2_writes_after == v2_writes_before
    assert any(f.data.has_personal_data for f in result.findings)


async def test_values_are_read_only_up_to_the_byte_cap(etcd: dict[str, HttpStoreInstance]) -> None:
    """A value longer than max_value_bytes is cut: only its base64 prefix is decoded."""
    instance = etcd["exposed"]
    probe = EtcdProbe(ScanConfig(timeout=2.0, max_value_bytes=64))
    async with http_client(instance.host, instance.port, timeout=2.0) as client:
        value = await probe._read_value(
            client, Deadline(10.0), _Session("/v3", Auth.NONE), ETCD_RANSOM_KEY.encode()
        )
    assert value is not None and len(value) == 64
    assert value.decode().startswith("All your data is backed up")


class _LookAlike(BaseHTTPRequestHandler):
    """An HTTP service that is not etcd: JSON everywhere, but no etcdserver/etcdcluster."""

    def do_GET(self) -> None:
        body = json.dumps({"version": "1.0", "status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def look_alike() -> Iterator[int]:
    with http_server(_LookAlike) as port:
        yield port


async def test_fingerprint_is_none_on_other_protocols(
    redis_default_password: Instance, look_alike: int
) -> None:
    probe = EtcdProbe(CONFIG)
    assert await probe.fingerprint("127.0.0.1", redis_default_password.port) is None
    assert await probe.fingerprint("127.0.0.1", look_alike) is None
    findings = await _scan(look_alike)
    assert [f.target.service for f in findings] == ["unknown"]


async def _claims(probe: Probe, port: int) -> bool:
    """Whether ``probe`` takes the port for its own (a timeout or refusal is "no", as in the
    scanner)."""
    try:
        return await probe.fingerprint("127.0.0.1", port) is not None
    except (OSError, TimeoutError, EOFError, ValueError):
        return False


async def test_other_probes_do_not_claim_etcd(etcd: dict[str, HttpStoreInstance]) -> None:
    for name in ("exposed", "secured"):
        for probe in _probes()[1:]:
            assert not await _claims(probe, etcd[name].port), type(probe).__name__


class _Spent(Deadline):
    """A probe deadline already used up once the login is done: no time left to sample."""

    @classmethod
    def for_probe(cls, config: ScanConfig) -> Deadline:
        return cls(60.0)

    @property
    def expired(self) -> bool:
        return True


async def test_a_spent_deadline_still_reports_the_exposure(
    etcd: dict[str, HttpStoreInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of time before sampling: the probe says so and keeps what it had proven."""
    monkeypatch.setattr(etcd_probe, "Deadline", _Spent)
    instance = etcd["exposed"]
    probe = EtcdProbe(CONFIG)
    fingerprint = await probe.fingerprint(instance.host, instance.port)
    assert fingerprint is not None
    result = await probe.probe(instance.host, instance.port, fingerprint)
    assert isinstance(result, ProbeSkipped)
    assert result.reason == "probe deadline reached after reading 0 keys; stopped"
    [main] = [f for f in result.findings if f.rule == "etcd.unauthenticated"]
    assert main.auth is Auth.NONE and main.data.records_estimated


class _Hostile(BaseHTTPRequestHandler):
    """Answers GET /version as etcd, then misbehaves on every Range: drips a byte at a time or
    streams without end (for a few seconds at most, or until the client hangs up)."""

    mode = "drip"

    def do_GET(self) -> None:
        if self.path != "/version":
            self.send_error(404)
            return
        body = b'{"etcdserver":"3.5.9","etcdcluster":"3.5.0"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        misbehave(self.wfile, self.mode, b'{"header":{"revision":"1"},"kvs":[' * 4, b"A" * 65536)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("mode", "why"), [("drip", "too slow"), ("endless", "too big")])
async def test_hostile_server_ends_the_probe_with_a_reason(mode: str, why: str) -> None:
    with http_server(type("Hostile", (_Hostile,), {"mode": mode})) as port:
        probe = EtcdProbe(ScanConfig(timeout=1.0))
        fingerprint = await probe.fingerprint("127.0.0.1", port)
        assert fingerprint is not None
        result = await asyncio.wait_for(probe.probe("127.0.0.1", port, fingerprint), 60)
    assert isinstance(result, ProbeSkipped)
    assert result.reason == f"POST /v3/kv/range: the answer was cut short ({why}); stopped"
    assert result.findings == ()


async def test_prefix_counts_from_part_of_the_keys_say_which_part(
    etcd: dict[str, HttpStoreInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are counted by prefix from one bounded listing (1,000 keys; 5 here): with more
    keys than that, the line says how many of how many it counted."""
    monkeypatch.setattr(etcd_probe, "MAX_KEYS_LISTED", 5)
    findings = await _scan(etcd["exposed"].port)
    [main] = [f for f in findings if f.rule == "etcd.unauthenticated"]
    lines = [e.text for e in main.evidence if e.text.startswith("keys by prefix")]
    assert len(lines) == 1 and re.match(r"keys by prefix \(the first 5 of [\d,]+ v3 keys", lines[0])
