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

from perisai.findings import Auth, Finding, Severity
from perisai.lab import CATALOG, Lab, LabInstance, LabServer, scan_ports
from perisai.probes import ScanConfig
from perisai.scanner import Scanner
from perisai.targets import parse_targets

OPEN = (Auth.NONE, Auth.DEFAULT_CREDENTIALS)
COMPROMISE = ("compromise.ransom-note", "compromise.planted-payload")

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def scanned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[tuple[LabServer, LabInstance, list[Finding]]]]:
    """Each lab server, its running instance and the findings on its ports."""
    lab = Lab(tmp_path_factory.mktemp("full-lab") / "state")
    instances = lab.up()
    try:
        ports = [port for instance in instances for port in scan_ports(instance)]
        config = ScanConfig(timeout=3.0, deep=True)
        report = asyncio.run(Scanner(config).scan(parse_targets(["127.0.0.1"]), ports))
        by_port: dict[int, list[Finding]] = {}
        for finding in report.findings:
            by_port.setdefault(finding.target.port, []).append(finding)
        servers = {server.name: server for server in CATALOG}
        yield [
            (
                servers[instance.name],
                instance,
                [f for port in scan_ports(instance) for f in by_port.get(port, [])],
            )
            for instance in instances
        ]
    finally:
        lab.down()


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
