"""What the SQLite and PostgreSQL stores share: rows in, reports out, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from perisai.findings import ScanReport
from perisai.store.interface import StoreError

SCAN_COLUMNS = "id, report_json, rules_json"


def report_from_row(row: Sequence[Any], where: str) -> ScanReport:
    """A stored ``(id, report_json, rules_json)`` row back into a report.

    A row someone edited by hand (or another tool's table of the same name) becomes a
    :class:`StoreError`, not a traceback.
    """
    scan_id, report_json, rules_json = row
    try:
        raw = json.loads(report_json) if isinstance(report_json, str) else report_json
        rules = json.loads(rules_json) if isinstance(rules_json, str) else rules_json
        report = ScanReport.from_dict(raw, rules)
        report.scan_id = int(scan_id)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StoreError(
            f"scan {scan_id} in findings store {where} is unreadable: {one_line(error)}"
        ) from None
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


def counts_from_rows(rows: Sequence[Sequence[Any]]) -> dict[int, dict[str, int]]:
    """``(scan_id, severity, count)`` rows grouped into counts per scan."""
    counts: dict[int, dict[str, int]] = {}
    for scan_id, severity, count in rows:
        counts.setdefault(int(scan_id), {})[str(severity)] = int(count)
    return counts


def one_line(error: BaseException) -> str:
    """Drivers' messages can span lines (hints, context); the user gets the first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
