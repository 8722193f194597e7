"""The table an engineer reads in the terminal right after a scan."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from perisai.findings import Finding, ScanDiff, ScanReport, Severity, sort_findings
from perisai.probes.common import entity_summary
from perisai.report.interface import Reporter

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class TerminalReporter(Reporter):
    def __init__(self, color: bool = False, width: int = 140) -> None:
        self.color = color
        self.width = width

    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=self.width,
            force_terminal=self.color,
            no_color=not self.color,
            highlight=False,
            emoji=False,
        )
        scan = f"scan {report.scan_id}" if report.scan_id is not None else "scan (not saved)"
        console.print(
            Text(f"perisai {report.version} · {scan} · {report.started} → {report.finished}")
        )
        console.print(Text(f"targets: {' '.join(report.targets)} · ports: {report.ports}"))
        console.print(Text(_counts(report.findings)))
        if diff is None:
            self._findings(console, report.findings)
        elif diff.previous is None:
            console.print(Text("no previous scan of these targets: everything is new"))
            self._findings(console, report.findings)
        else:
            console.print(Text(f"\nNew since scan {diff.previous.scan_id}: {len(diff.new)}"))
            self._findings(console, list(diff.new))
            console.print(
                Text(f"\nResolved since scan {diff.previous.scan_id}: {len(diff.resolved)}")
            )
            self._findings(console, list(diff.resolved), details=False)
        return buffer.getvalue()

    def _findings(self, console: Console, findings: list[Finding], details: bool = True) -> None:
        if not findings:
            console.print(Text("No findings."))
            return
        table = Table(show_lines=False, expand=False)
        for column in (
            "severity",
            "service",
            "target",
            "auth",
            "records",
            "personal data",
            "note",
            "finding",
        ):
            table.add_column(column, overflow="fold")
        ordered = sort_findings(findings)
        for finding in ordered:
            records = finding.data.records_estimated
            table.add_row(
                Text(finding.severity.value, style=_STYLE[finding.severity]),
                Text(finding.target.service),
                Text(f"{finding.target.host}:{finding.target.port}"),
                Text(finding.auth.value),
                Text("" if records is None else f"{records:,}"),
                Text(entity_summary(finding.data.entities) if finding.data.entities else ""),
                Text("RANSOM" if finding.ransom_note else ""),
                Text(finding.title),
            )
        console.print(table)
        if not details:
            return
        for finding in ordered:
            if finding.severity is Severity.INFO and not finding.evidence:
                continue
            console.print(
                Text(
                    f"\n[{finding.severity.value}] {finding.title} — "
                    f"{finding.target.uri(finding.object)} ({finding.rule})"
                )
            )
            for line in finding.evidence:
                console.print(Text(f"    {line.text}"))
            if finding.remediation and finding.severity is not Severity.INFO:
                console.print(Text(f"    fix: {finding.remediation}"))


def _counts(findings: list[Finding]) -> str:
    counts = {severity: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity] += 1
    return "findings: " + ", ".join(f"{counts[s]} {s.value}" for s in Severity)
