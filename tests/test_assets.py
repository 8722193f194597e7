"""Assets: the ports of one server are grouped by what the server says about itself, and every
count a security lead reads counts servers, not ports.

The grouping itself is checked here on findings shaped like the lab's (ClickHouse's HTTP and
native ports, RabbitMQ's AMQP and management ports); tests/test_lab_full.py checks it on the
real servers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from perisai.assets import PortSeen, asset_note, group_assets, with_assets
from perisai.findings import (
    Asset,
    Auth,
    DataProfile,
    Evidence,
    Finding,
    ScanReport,
    Severity,
    Target,
    asset_severities,
)
from perisai.report import ReportFormat, get_reporter
from perisai.report.history import exposed_services, personal_data_records
from perisai.report.html import summarise
from perisai.store.sqlite import SQLiteStore
from tests.reports import redis_exposed, report

HOST = "127.0.0.1"


def render(scan: ScanReport, fmt: str) -> str:
    return get_reporter(ReportFormat(fmt)).render(scan)


def _open(port: int, service: str, severity: Severity, records: int | None) -> Finding:
    entities = {"PHONE": 40} if severity is Severity.CRITICAL else {}
    return Finding(
        rule=f"{service}.unauthenticated",
        severity=severity,
        title=f"{service} readable on {port}",
        target=Target(HOST, port, service),
        auth=Auth.NONE,
        data=DataProfile(records_estimated=records, entities=entities),
        evidence=(Evidence("read"),),
        remediation="Require a password.",
    )


def _lab_like() -> list[Finding]:
    """One ClickHouse (HTTP 8123 + native 9000, the same 300 rows read through both), one
    RabbitMQ (AMQP 5672 high, management 15672 critical) and a Redis on one port."""
    seen = [
        PortSeen(HOST, 8123, "clickhouse", "http port 8123"),
        PortSeen(HOST, 9000, "clickhouse", "http port 8123"),
        PortSeen(HOST, 5672, "rabbitmq", "cluster rabbit@lab"),
        PortSeen(HOST, 15672, "rabbitmq", "cluster rabbit@lab"),
        PortSeen(HOST, 6379, "redis"),
    ]
    findings = [
        _open(8123, "clickhouse", Severity.CRITICAL, 300),
        _open(9000, "clickhouse", Severity.CRITICAL, 300),
        _open(5672, "rabbitmq", Severity.HIGH, None),
        _open(15672, "rabbitmq", Severity.CRITICAL, 90),
        redis_exposed(6379),
    ]
    return with_assets(findings, group_assets(seen))


def test_ports_with_one_identity_are_one_asset() -> None:
    assets = group_assets(
        [
            PortSeen(HOST, 8123, "clickhouse", "http port 8123"),
            PortSeen(HOST, 9000, "clickhouse", "http port 8123"),
            PortSeen(HOST, 18123, "clickhouse", "http port 18123"),
        ]
    )
    assert assets[HOST, 8123] == assets[HOST, 9000]
    assert assets[HOST, 8123].ports == (8123, 9000)
    assert assets[HOST, 18123].ports == (18123,)
    assert assets[HOST, 18123].id != assets[HOST, 8123].id


def test_nothing_is_merged_on_a_guess() -> None:
    """No identity: each port its own asset, even for one service on one host; the same
    identity on another host or of another service is another server."""
    assets = group_assets(
        [
            PortSeen(HOST, 5672, "rabbitmq"),
            PortSeen(HOST, 15672, "rabbitmq"),
            PortSeen("127.0.0.2", 5672, "rabbitmq", "cluster rabbit@lab"),
            PortSeen(HOST, 5673, "rabbitmq", "cluster rabbit@lab"),
            PortSeen(HOST, 9000, "clickhouse", "cluster rabbit@lab"),
        ]
    )
    assert len({asset.id for asset in assets.values()}) == 5
    assert assets[HOST, 5672] == Asset.of_port(Target(HOST, 5672, "rabbitmq"))


def test_asset_ids_are_stable_across_scans() -> None:
    """The same server gets the same id in the next scan (history and diffs rely on it)."""
    first = group_assets([PortSeen(HOST, 9000, "clickhouse", "http port 8123")])
    again = group_assets(
        [
            PortSeen(HOST, 8123, "clickhouse", "http port 8123"),
            PortSeen(HOST, 9000, "clickhouse", "http port 8123"),
        ]
    )
    assert first[HOST, 9000].id == again[HOST, 9000].id


def test_counts_and_records_count_servers() -> None:
    findings = _lab_like()
    exposed = exposed_services(findings)
    assert sorted(exposed.values()) == ["clickhouse", "rabbitmq", "redis"]
    # ClickHouse's 300 rows once (not 600), RabbitMQ's 90, Redis's 120
    assert personal_data_records(findings) == 300 + 90 + 120
    summary = summarise(findings)
    assert summary.exposed_total == 3
    assert summary.exposed_by_service == {"clickhouse": 1, "rabbitmq": 1, "redis": 1}


def test_an_asset_is_as_severe_as_its_worst_port() -> None:
    findings = _lab_like()
    amqp = next(f for f in findings if f.target.port == 5672)
    assert amqp.severity is Severity.HIGH  # the port's own finding keeps its own severity
    assert asset_severities(findings)[amqp.server.id] is Severity.CRITICAL
    assert asset_note(amqp, asset_severities(findings)) == (
        "one server with port 15672 (worst finding: critical)"
    )
    redis = next(f for f in findings if f.target.service == "redis")
    assert asset_note(redis, asset_severities(findings)) == ""


def test_every_format_names_the_asset() -> None:
    scan = report(*_lab_like())
    document = json.loads(render(scan, "json"))
    assets = {entry["service"]: entry for entry in document["assets"]}
    assert assets["rabbitmq"]["ports"] == [5672, 15672]
    assert assets["rabbitmq"]["severity"] == "critical"
    assert assets["clickhouse"]["findings"] == 2
    by_port = {f["target"]["port"]: f for f in document["findings"]}
    rabbitmq = {"id": assets["rabbitmq"]["id"], "ports": [5672, 15672]}
    assert by_port[5672]["asset"] == by_port[15672]["asset"] == rabbitmq
    assert by_port[6379]["asset"]["ports"] == [6379]
    sarif = json.loads(render(scan, "sarif"))
    in_sarif = {
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: result["properties"][
            "asset"
        ]
        for result in sarif["runs"][0]["results"]
    }
    assert [asset for uri, asset in in_sarif.items() if ":5672" in uri] == [rabbitmq]
    note = "one server with port 15672 (worst finding: critical)"
    assert note.replace("(", "\\(").replace(")", "\\)") in render(scan, "md")  # escaped
    assert note in render(scan, "table")
    assert note in render(scan, "html")
    assert "exposed services: 3" in render(scan, "table")


def test_assets_survive_the_store(tmp_path: Path) -> None:
    """Saved and loaded, a finding still names its asset; a report saved before assets
    existed loads with one asset per port."""
    store = SQLiteStore(tmp_path / "findings.db")
    loaded = store.get(store.save(report(*_lab_like())))
    store.close()
    assert loaded is not None
    original = {f.id: f.server for f in _lab_like()}
    assert {f.id: f.server for f in loaded.findings} == original
    legacy = report(_open(9000, "clickhouse", Severity.CRITICAL, 10)).to_dict()
    for finding in legacy["findings"]:
        del finding["asset"]
    rebuilt = ScanReport.from_dict(legacy)
    assert rebuilt.findings[0].server.ports == (9000,)
    assert replace(rebuilt.findings[0], asset=None) == rebuilt.findings[0]
