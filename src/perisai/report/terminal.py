"""The table an engineer reads in the terminal right after a scan."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from perisai.assets import asset_note
from perisai.evidence import printable
from perisai.findings import (
    Auth,
    Finding,
    ScanDiff,
    ScanReport,
    Severity,
    asset_severities,
    compromised_ids,
    entity_summary,
    sort_findings,
)
from perisai.report.history import exposed_services
from perisai.report.interface import Reporter

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

_COLUMNS = (
    "severity",
    "service",
    "target",
    "auth",
    "records (est.)",
    "personal data",
    "note",
    "finding",
)
# an API audit's table: the operation and who could call it, no store columns
_API_COLUMNS = ("severity", "operation", "caller", "finding")

# Titles, evidence and object names come from the scanned store, i.e. from whoever wrote
# into it (a ransom note, say): the scanner escapes them (perisai.evidence), and so does the
# table again, for reports of scans stored before it did. Rich strips only a few itself.


def _text(value: str, style: str = "") -> Text:
    """Plain text, never parsed as rich markup, never a control sequence."""
    return Text(printable(value), style=style)


class TerminalReporter(Reporter):
    """A rich table as a string; colour only when the caller says the output is a terminal."""

    def __init__(self, color: bool = False, width: int = 140) -> None:
        self.color = color
        self.width = width

    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=self.width,
            force_terminal=self.color,  # explicit either way: FORCE_COLOR etc. do not leak in
            color_system="standard" if self.color else None,
            no_color=not self.color,
            highlight=False,
            emoji=False,
            markup=False,
        )
        scan = f"scan {report.scan_id}" if report.scan_id is not None else "scan (not saved)"
        console.print(
            _text(f"perisai {report.version} · {scan} · {report.started} → {report.finished}")
        )
        if report.is_api_audit:
            sent = len(report.requests)
            console.print(_text(f"API: {' '.join(report.targets)} · {sent} requests sent"))
        else:
            console.print(_text(f"targets: {' '.join(report.targets)} · ports: {report.ports}"))
        console.print(_text(_counts(report.findings, api=report.is_api_audit)))
        api = report.is_api_audit
        marked = compromised_ids(report.findings)
        servers = asset_severities(report.findings)
        if diff is None:
            self._findings(console, report.findings, marked, servers, api=api)
        elif diff.previous is None:
            console.print(_text("no previous scan of these targets: everything is new"))
            self._findings(console, report.findings, marked, servers, api=api)
        else:
            since = diff.previous.scan_id
            console.print()
            console.print(_text(f"New since scan {since}: {len(diff.new)}"))
            self._findings(console, list(diff.new), marked, servers, api=api)
            console.print()
            console.print(_text(f"Resolved since scan {since}: {len(diff.resolved)}"))
            self._findings(console, list(diff.resolved), marked, servers, details=False, api=api)
            console.print()
            console.print(_text(f"Unchanged since scan {since}: {len(diff.unchanged)}"))
        return buffer.getvalue()

    def _findings(
        self,
        console: Console,
        findings: list[Finding],
        compromised: frozenset[str],
        servers: dict[str, Severity],
        details: bool = True,
        api: bool = False,
    ) -> None:
        if not findings:
            console.print(_text("No findings."))
            return
        table = Table(show_lines=False, expand=False)
        for column in _API_COLUMNS if api else _COLUMNS:
            table.add_column(column, overflow="fold")
        ordered = sort_findings(findings)
        for finding in ordered:
            records = finding.data.records_estimated
            if api:
                table.add_row(
                    _text(finding.severity.value, _STYLE[finding.severity]),
                    _text(finding.where()),
                    _text("anyone" if finding.auth is Auth.NONE else "with your headers"),
                    _text(finding.title.split(": ", 1)[0]),
                )
                continue
            table.add_row(
                _text(finding.severity.value, _STYLE[finding.severity]),
                _text(finding.target.service),
                _text(_host_port(finding)),
                _text(finding.auth.value),
                _text("" if records is None else finding.data.records_text),
                _text(entity_summary(finding.data.entities) if finding.data.entities else ""),
                _text(_mark(finding, compromised), "bold red"),
                _text(finding.title),
            )
        console.print(table)
        if details:
            for finding in ordered:
                _details(console, finding, asset_note(finding, servers))


def _mark(finding: Finding, compromised: frozenset[str]) -> str:
    """The note column: a ransom note by name, any other sign of compromise as such."""
    if finding.ransom_note:
        return "RANSOM NOTE"
    return "COMPROMISED" if finding.id in compromised else ""


def _details(console: Console, finding: Finding, server: str) -> None:
    """Evidence (already masked) and the fix, under the table, for findings that have them;
    ``server`` names the server's other ports, when it answered on several."""
    if finding.severity is Severity.INFO and not finding.evidence:
        return
    console.print()
    console.print(
        _text(f"[{finding.severity.value}] {finding.title} — {finding.where()} ({finding.rule})")
    )
    if server:
        console.print(_text(f"    {server}"))
    for line in finding.evidence:
        console.print(_text(f"    {line.text}"))
    if finding.remediation and finding.severity is not Severity.INFO:
        console.print(_text(f"    fix: {finding.remediation}"))


def _host_port(finding: Finding) -> str:
    host = finding.target.host
    return f"[{host}]:{finding.target.port}" if ":" in host else f"{host}:{finding.target.port}"


def _counts(findings: list[Finding], api: bool = False) -> str:
    counts = dict.fromkeys(Severity, 0)
    for finding in findings:
        counts[finding.severity] += 1
    line = "findings: " + ", ".join(f"{counts[s]} {s.value}" for s in Severity)
    if api:
        return line
    exposed = len(exposed_services(findings))
    return f"{line} · exposed services: {exposed} (a server's ports count once)"
