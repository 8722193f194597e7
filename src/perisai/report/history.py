"""History over scans for reports: what each past scan of the same targets saw, and since when.

Built from :class:`~perisai.findings.ScanReport` objects (the findings store keeps them), so a
reporter never talks to a store; :func:`load_history` is the one place that reads one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from perisai.findings import Auth, Finding, ScanReport, Severity
from perisai.store.interface import FindingsStore

HISTORY_SCANS = 30  # points on the over-time charts
_SUMMARIES_SCANNED = 500  # recent scans looked through for ones of the same scope


def is_exposure(finding: Finding) -> bool:
    """A service anyone (or anyone with a vendor default password) can read."""
    return finding.auth in (Auth.NONE, Auth.DEFAULT_CREDENTIALS) and finding.severity.at_least(
        Severity.HIGH
    )


def exposed_services(findings: Iterable[Finding]) -> dict[str, str]:
    """The servers (asset id → service) readable without real credentials: a server whose
    HTTP and native ports both answered counts once."""
    return {f.server.id: f.target.service for f in findings if is_exposure(f)}


def personal_data_records(findings: Iterable[Finding]) -> int:
    """Estimated records in exposed servers whose sample held personal data.

    Counted once per server (the finding with the largest estimate), so a ransom-note finding
    about one table of a database, or the same tables read through a second port, do not
    count that database twice.
    """
    best: dict[str, int] = {}
    for f in findings:
        if not is_exposure(f) or not f.data.has_personal_data:
            continue
        key = f.server.id
        best[key] = max(best.get(key, 0), f.data.records_estimated or 0)
    return sum(best.values())


@dataclass(frozen=True)
class HistoryPoint:
    """One past (or the current) scan, as the over-time charts plot it."""

    scan_id: int | None
    started: str
    exposed_services: int
    personal_data_records: int
    findings: int


@dataclass(frozen=True)
class ScanHistory:
    """Scans of the same scope, oldest first, and when each finding id was first seen."""

    points: tuple[HistoryPoint, ...] = ()
    first_seen: dict[str, str] = field(default_factory=dict)  # finding id -> ISO 8601 start

    @classmethod
    def from_reports(cls, reports: Iterable[ScanReport]) -> ScanHistory:
        ordered = sorted(reports, key=lambda r: (r.scan_id is None, r.scan_id or 0, r.started))
        first_seen: dict[str, str] = {}
        points = []
        for report in ordered:
            for finding in report.findings:
                first_seen.setdefault(finding.id, report.started)
            points.append(
                HistoryPoint(
                    scan_id=report.scan_id,
                    started=report.started,
                    exposed_services=len(exposed_services(report.findings)),
                    personal_data_records=personal_data_records(report.findings),
                    findings=len(report.findings),
                )
            )
        return cls(points=tuple(points), first_seen=first_seen)


def load_history(
    store: FindingsStore, report: ScanReport, limit: int = HISTORY_SCANS
) -> ScanHistory:
    """``report`` and the scans of its scope saved before it (at most ``limit`` in all)."""
    reports = [report]
    for summary in store.list_scans(_SUMMARIES_SCANNED):
        if len(reports) >= limit:
            break
        if summary.scope_key != report.scope_key:
            continue
        if report.scan_id is not None and summary.scan_id >= report.scan_id:
            continue
        earlier = store.get(summary.scan_id)
        if earlier is not None:
            reports.append(earlier)
    return ScanHistory.from_reports(reports)
