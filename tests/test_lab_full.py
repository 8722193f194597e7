"""The whole lab, scanned as a user scans it: the scanner's acceptance test, and the probe
contract, one case per probe.

Every service perisai probes runs here as an exposed and a secured twin (real servers from
Debian's packages and npm's pouchdb-server), except the few no package runs here (named in
NO_LAB_SERVER with where they are tested instead). One scan of all their ports must identify
every service by its answer, prove open access on every exposed twin, count the personal data
in each, find every ransom note and planted payload, rate the store without personal data
``high``, and report no secured twin as open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from perisai import audit_api
from perisai.api_audit.context import AuditConfig
from perisai.findings import Auth, Finding, ScanReport, Severity
from perisai.lab import CATALOG, Lab, LabInstance, LabServer, scan_ports
from perisai.lab.api_server import ApiInstance
from perisai.probes import ScanConfig, probe_classes
from perisai.report.guidance import verify_commands
from perisai.report.history import personal_data_records
from perisai.report.html import summarise
from perisai.scanner import Scanner
from perisai.targets import parse_targets

OPEN = (Auth.NONE, Auth.DEFAULT_CREDENTIALS)
COMPROMISE = ("compromise.ransom-note", "compromise.planted-payload")

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def lab_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LabInstance]]:
    """The whole lab, up for this module."""
    lab = Lab(tmp_path_factory.mktemp("full-lab") / "state")
    instances = lab.up()
    try:
        yield instances
    finally:
        lab.down()


# Probes with no server in the lab: no Debian or npm package runs one here. Each is tested in
# its own module against a fake that answers as its documentation says (named there).
NO_LAB_SERVER = {
    "elasticsearch": "tests/test_probe_elasticsearch.py: protocol fakes of Elasticsearch 7/8",
    "kibana": "tests/test_probe_kibana.py: protocol fakes of Kibana's status API",
    "mongodb": "tests/test_probe_mongodb.py: mockupdb, MongoDB's own wire-protocol test server",
}
PROBES = {probe.service: probe for probe in probe_classes()}


@dataclass(frozen=True)
class Twin:
    """One lab server of a service, its running instance and what one scan found on it."""

    server: LabServer
    instance: LabInstance
    findings: list[Finding]


@pytest.fixture(scope="module")
def scan(lab_instances: list[LabInstance]) -> tuple[ScanReport, list[Twin]]:
    """One scan of every lab store's ports, as a user scans; the report and each twin's part."""
    servers = {server.name: server for server in CATALOG}
    stores = [i for i in lab_instances if servers[i.name].kind == "store"]
    ports = [port for instance in stores for port in scan_ports(instance)]
    config = ScanConfig(timeout=3.0, deep=True)
    report = asyncio.run(Scanner(config).scan(parse_targets(["127.0.0.1"]), ports))
    by_port: dict[int, list[Finding]] = {}
    for finding in report.findings:
        by_port.setdefault(finding.target.port, []).append(finding)
    twins = [
        Twin(servers[i.name], i, [f for port in scan_ports(i) for f in by_port.get(port, [])])
        for i in stores
    ]
    return report, twins


def test_the_ports_to_scan_are_the_stores_only(lab_instances: list[LabInstance]) -> None:
    """`lab status --ports` (what `make demo` scans) lists every store's ports and none of the
    API twins', which `perisai audit-api` audits (scanned, they were unrecognised ports)."""
    kinds = {server.name: server.kind for server in CATALOG}
    for instance in lab_instances:
        assert bool(scan_ports(instance)) == (kinds[instance.name] == "store"), instance.name


def test_every_probe_has_a_lab_pair_or_says_why_not() -> None:
    """A new probe comes with an exposed and a secured lab server (or a named reason)."""
    in_lab = {(s.service, s.exposed) for s in CATALOG if s.kind == "store"}
    for service in PROBES:
        if service in NO_LAB_SERVER:
            assert (service, True) not in in_lab, f"{service} has a lab server now: test it here"
            continue
        assert {(service, True), (service, False)} <= in_lab, service


@pytest.mark.parametrize("service", sorted(set(PROBES) - set(NO_LAB_SERVER)))
def test_probe_contract_on_its_lab_servers(
    service: str, scan: tuple[ScanReport, list[Twin]]
) -> None:
    """What every probe promises, checked on its exposed and secured twins in one scan:

    each port is identified as the service; an exposed twin is proven open and its personal
    data counted (``critical``; ``high`` when it holds none); a secured twin is reported, never
    as open and only as ``info``; ransom notes and planted payloads are found exactly where the
    lab put them; every finding carries a rule its probe declares, with that probe's verify
    commands and config fix in the report.
    """
    report, twins = scan
    probe = PROBES[service]
    declared = {rule.id for rule in probe.report_rules()}
    for twin in (t for t in twins if t.server.service == service):
        name, findings = twin.server.name, twin.findings
        assert findings, name
        for port in scan_ports(twin.instance):
            services = {f.target.service for f in findings if f.target.port == port}
            assert services == {service}, (name, port, services)
        for finding in findings:
            assert finding.rule in declared, (name, finding.rule)
            assert finding.title and finding.evidence and finding.remediation, (name, finding)
            rule = report.rules[finding.rule]
            if finding.rule.startswith(f"{service}."):
                assert rule.verify == probe.verify and rule.fix == probe.fix, finding.rule
            expected = [c.replace("{host}", "127.0.0.1") for c in probe.verify]
            expected = [c.replace("{port}", str(finding.target.port)) for c in expected]
            assert verify_commands(finding, report.rules) == expected, (name, finding.rule)
        severities = {f.severity for f in findings}
        marks = [f for f in findings if f.rule in COMPROMISE]
        if not twin.server.exposed:
            assert not [f for f in findings if f.auth in OPEN], name
            assert severities == {Severity.INFO}, (name, findings)
            continue
        assert any(f.auth in OPEN for f in findings), (name, findings)
        entities = {e for f in findings for e, n in f.data.entities.items() if n}
        if twin.server.personal_data:
            assert entities and Severity.CRITICAL in severities, (name, severities)
        else:  # open, but nothing in it identifies anyone: high, not critical
            assert not entities and severities == {Severity.HIGH}, (name, entities, severities)
        if twin.server.compromised:
            assert marks and all(f.severity is Severity.CRITICAL for f in marks), name
        else:
            assert not marks, (name, marks)


def test_the_api_twins_audit_as_vulnerable_and_fixed(lab_instances: list[LabInstance]) -> None:
    """`perisai audit-api` on the lab's API twins, as `lab up` tells a user to run it."""
    twins = {i.name: i for i in lab_instances if isinstance(i, ApiInstance)}
    rules = {}
    for name in ("api-vulnerable", "api-fixed"):
        twin = twins[name]
        assert twin.smtp_relay is not None
        host, _, port = twin.smtp_relay.rpartition(":")
        config = AuditConfig(base_url=twin.url, smtp_sink=(host, int(port)), pace=0.0)
        report = audit_api(twin.spec_url, config)
        rules[name] = {f.rule for f in report.findings}
    assert {"api.otp-send-unlimited", "api.mail-relay"} <= rules["api-vulnerable"]
    assert rules["api-fixed"] == set()


@pytest.mark.parametrize("service", ["clickhouse", "rabbitmq"])
def test_a_server_on_two_ports_is_one_asset(
    service: str, scan: tuple[ScanReport, list[Twin]]
) -> None:
    """ClickHouse (HTTP + native) and RabbitMQ (AMQP + management) answer on two ports; what
    each port says about its server makes them one asset, whose severity is its worst port's.

    The secured RabbitMQ's management port refuses every login and says nothing about itself,
    so its two ports stay two assets (both info): never merged on a guess."""
    report, twins = scan
    summaries = {entry["id"]: entry for entry in report.to_dict()["assets"]}
    for twin in (t for t in twins if t.server.service == service):
        ports = scan_ports(twin.instance)
        assert len(ports) == 2, twin.server.name
        assets = {f.server for f in twin.findings}
        if service == "rabbitmq" and not twin.server.exposed:
            assert {a.ports for a in assets} == {(p,) for p in ports}, assets
            continue
        assert len(assets) == 1, (twin.server.name, assets)
        (asset,) = assets
        assert asset.ports == tuple(sorted(ports))
        worst = max((f.severity for f in twin.findings), key=lambda s: s.rank)
        assert summaries[asset.id]["severity"] == worst.value
        assert summaries[asset.id]["ports"] == sorted(ports)
        if twin.server.exposed:
            assert worst is Severity.CRITICAL, twin.server.name


def test_the_lab_counts_servers_not_ports(scan: tuple[ScanReport, list[Twin]]) -> None:
    """The summary counts one exposed service per exposed server, and each server's records
    once (ClickHouse's rows read through both its ports are not counted twice)."""
    report, twins = scan
    exposed = [t for t in twins if t.server.exposed]
    summary = summarise(report.findings)
    assert summary.exposed_total == len(exposed)
    assert summary.exposed_by_service["clickhouse"] == 1
    assert summary.exposed_by_service["rabbitmq"] == 1
    clickhouse = next(t for t in exposed if t.server.service == "clickhouse")
    per_port = {
        f.target.port: f.data.records_estimated or 0
        for f in clickhouse.findings
        if f.auth in OPEN and f.data.has_personal_data
    }
    assert len(per_port) == 2  # both ports read the same tables
    assert personal_data_records(clickhouse.findings) == max(per_port.values())
