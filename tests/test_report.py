"""Reporters: the JSON findings contract, SARIF 2.1.0 structure, the terminal table."""

from __future__ import annotations

import json
from typing import Any

from perisai.findings import ENTITY_TYPES, ScanDiff
from perisai.report import ReportFormat, get_reporter
from tests.reports import redis_exposed, redis_secured, report, unknown_rule

SEVERITIES = {"critical", "high", "medium", "low", "info"}
AUTHS = {"none", "default-credentials", "required", "unknown"}


def _render(fmt: ReportFormat, diff: ScanDiff | None = None) -> Any:
    scan = report(redis_exposed(), redis_secured(), unknown_rule())
    return get_reporter(fmt).render(scan, diff)


def test_json_follows_the_findings_contract() -> None:
    document = json.loads(_render(ReportFormat.JSON))
    assert document["tool"] == "perisai"
    assert {"version", "started", "finished", "findings"} <= document.keys()
    assert len(document["findings"]) == 3
    for finding in document["findings"]:
        assert isinstance(finding["id"], str) and len(finding["id"]) == 16
        assert finding["severity"] in SEVERITIES
        assert finding["auth"] in AUTHS
        assert set(finding["target"]) == {"host", "port", "service"}
        assert isinstance(finding["target"]["port"], int)
        assert set(finding["data"]) == {"records_estimated", "entities"}
        assert set(finding["data"]["entities"]) <= set(ENTITY_TYPES)
        assert isinstance(finding["ransom_note"], bool)
        assert all(isinstance(line, str) for line in finding["evidence"])
        assert isinstance(finding["remediation"], str) and isinstance(finding["title"], str)
    assert document["findings"][0]["severity"] == "critical"  # worst first


def test_json_diff_lists_new_ids_and_resolved_findings() -> None:
    before = report(redis_secured())
    after = report(redis_exposed())
    before.scan_id, after.scan_id = 1, 2
    document = json.loads(
        get_reporter(ReportFormat.JSON).render(after, ScanDiff.between(after, before))
    )
    assert document["diff"]["previous_scan_id"] == 1
    assert document["diff"]["new"] == [redis_exposed().id]
    assert [f["rule"] for f in document["diff"]["resolved"]] == ["redis.auth-required"]


def test_sarif_structure() -> None:
    sarif = json.loads(_render(ReportFormat.SARIF))
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    [run] = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert run["tool"]["driver"]["name"] == "perisai"
    for rule in rules:
        assert rule["help"]["text"] and rule["shortDescription"]["text"]
        float(rule["properties"]["security-severity"])  # a number, as a string
        assert isinstance(rule["properties"]["security-severity"], str)
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
    levels = {}
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
        assert result["partialFingerprints"]["perisaiFindingId/v1"]
        levels[result["ruleId"]] = result["level"]
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert "://" in uri
    assert levels == {
        "redis.unauthenticated": "error",
        "redis.auth-required": "note",
        "example.not-declared": "warning",
    }
    uris = {
        r["ruleId"]: r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in run["results"]
    }
    assert uris["redis.unauthenticated"] == "redis://127.0.0.1:6379"
    assert uris["example.not-declared"] == "example://[::1]:7000/db/1"
    [synthesised] = [rule for rule in rules if rule["id"] == "example.not-declared"]
    assert synthesised["help"]["text"] == "Fix it."


def test_terminal_table_shows_findings_and_masked_evidence() -> None:
    text = _render(ReportFormat.TABLE)
    assert "findings: 1 critical, 0 high, 1 medium, 0 low, 1 info" in text
    assert "Redis readable without authentication" in text
    assert "+60 12-*** **89" in text
    assert "\x1b[" not in text  # no colour codes unless asked


def test_terminal_diff_and_empty_report() -> None:
    before, after = report(redis_secured()), report(redis_exposed())
    before.scan_id, after.scan_id = 4, 5
    text = get_reporter(ReportFormat.TABLE).render(after, ScanDiff.between(after, before))
    assert "New since scan 4: 1" in text and "Resolved since scan 4: 1" in text
    first = get_reporter(ReportFormat.TABLE).render(after, ScanDiff.between(after, None))
    assert "no previous scan of these targets" in first
    assert "No findings." in get_reporter(ReportFormat.TABLE).render(report())
