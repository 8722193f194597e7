"""What the SQLite and PostgreSQL stores share: rows in, reports out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from perisai.findings import ScanReport

SCAN_COLUMNS = "id, report_json, rules_json"


def report_from_row(row: Sequence[Any]) -> ScanReport:
    """A stored ``(id, report_json, rules_json)`` row back into a report."""
    scan_id, report_json, rules_json = row
    raw = json.loads(report_json) if isinstance(report_json, str) else report_json
    rules = json.loads(rules_json) if isinstance(rules_json, str) else rules_json
    report = ScanReport.from_dict(raw, rules)
    report.scan_id = int(scan_id)
    return report


def encode(report: ScanReport) -> tuple[str, str]:
    """The report and its rules as JSON text, ready to insert."""
    rules = {rule_id: rule.to_dict() for rule_id, rule in report.rules.items()}
    return json.dumps(report.to_dict(), ensure_ascii=False), json.dumps(rules, ensure_ascii=False)


def finding_rows(scan_id: int, report: ScanReport) -> list[tuple[Any, ...]]:
    """One row per finding, for queries that do not need the whole report."""
    return [
        (scan_id, f.id, f.rule, f.severity.value, f.target.host, f.target.port, f.target.service)
        for f in report.findings
    ]


def counts_from_json(report_json: Any) -> dict[str, int]:
    raw = json.loads(report_json) if isinstance(report_json, str) else report_json
    counts: dict[str, int] = {}
    for finding in raw.get("findings", ()):
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    return counts
