"""The whole lab, scanned as a user scans it: the scanner's acceptance test.

Every service perisai probes runs here as an exposed and a secured twin (real servers from
Debian's packages and npm's pouchdb-server). One scan of all their ports must identify every
service by its answer, prove open access on every exposed twin, count the personal data in
each, find every ransom note and planted payload, rate the store without personal data
``high``, and report no secured twin as open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from perisai import audit_api
from perisai.api_audit.context import AuditConfig
from perisai.findings import Auth, Finding, Severity
from perisai.lab import CATALOG, Lab, LabInstance, LabServer, scan_ports
from perisai.lab.api_server import ApiInstance
from perisai.probes import ScanConfig
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


@pytest.fixture(scope="module")
def scanned(
    lab_instances: list[LabInstance],
) -> list[tuple[LabServer, LabInstance, list[Finding]]]:
    """Each lab store, its running instance and the findings of one scan on its ports."""
    servers = {server.name: server for server in CATALOG}
    stores = [i for i in lab_instances if servers[i.name].kind == "store"]
    ports = [port for instance in stores for port in scan_ports(instance)]
    config = ScanConfig(timeout=3.0, deep=True)
    report = asyncio.run(Scanner(config).scan(parse_targets(["127.0.0.1"]), ports))
    by_port: dict[int, list[Finding]] = {}
    for finding in report.findings:
        by_port.setdefault(finding.target.port, []).append(finding)
    return [
        (servers[i.name], i, [f for port in scan_ports(i) for f in by_port.get(port, [])])
        for i in stores
    ]


def test_every_port_is_identified_as_its_service(
    scanned: list[tuple[LabServer, LabInstance, list[Finding]]],
) -> None:
    for server, instance, findings in scanned:
        for port in scan_ports(instance):
            services = {f.target.service for f in findings if f.target.port == port}
            assert services == {server.service}, (server.name, port, services)


def test_open_access_is_proven_on_every_exposed_twin(
    scanned: list[tuple[LabServer, LabInstance, list[Finding]]],
) -> None:
    for server, _, findings in scanned:
        if server.exposed:
            assert any(f.auth in OPEN for f in findings), (server.name, findings)


def test_no_secured_twin_is_reported_open(
    scanned: list[tuple[LabServer, LabInstance, list[Finding]]],
) -> None:
    for server, _, findings in scanned:
        if not server.exposed:
            assert findings, server.name
            assert not [f for f in findings if f.auth in OPEN], server.name
            assert {f.severity for f in findings} == {Severity.INFO}, (server.name, findings)


def test_personal_data_is_counted_wherever_it_is(
    scanned: list[tuple[LabServer, LabInstance, list[Finding]]],
) -> None:
    for server, _, findings in scanned:
        if not server.exposed:
            continue
        entities = {e for f in findings for e, n in f.data.entities.items() if n}
        severities = {f.severity for f in findings}
        if server.personal_data:
            assert entities, server.name
            assert Severity.CRITICAL in severities, server.name
        else:  # open, but nothing in it identifies anyone: high, not critical
            assert not entities, (server.name, entities)
            assert severities == {Severity.HIGH}, (server.name, severities)


def test_every_ransom_note_and_planted_payload_is_found(
    scanned: list[tuple[LabServer, LabInstance, list[Finding]]],
) -> None:
    for server, _, findings in scanned:
        marks = [f for f in findings if f.rule in COMPROMISE]
        if server.compromised:
            assert marks, server.name
            assert all(f.severity is Severity.CRITICAL for f in marks)
        else:
            assert not marks, (server.name, marks)


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
