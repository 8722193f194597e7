"""One self-contained HTML page for the person who decides: summary, charts, a card per finding.

Self-contained: the CSS and the script are inline, the charts are SVG drawn here at build time,
and a Content-Security-Policy allows nothing but that CSS and that script (by hash), so the page
fetches nothing and runs nothing else, even if a string slipped through unescaped.

Untrusted text: every title, object name, evidence line and banner came from a scanned server
(or whoever wrote into it). Jinja autoescapes all of it, and every value first goes through
:func:`~perisai.report.terminal.printable`, so control characters and Unicode direction overrides
(U+202E) show as ``\\u202e`` instead of reordering the text a reader sees.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup

from perisai import __version__
from perisai.assets import asset_note
from perisai.evidence import printable
from perisai.findings import (
    Finding,
    ScanDiff,
    ScanReport,
    Severity,
    asset_severities,
    compromised_ids,
    entity_summary,
    sort_findings,
)
from perisai.report.guidance import Reference, config_lines, references, verify_commands
from perisai.report.history import (
    ScanHistory,
    exposed_services,
    is_exposure,
    personal_data_records,
)
from perisai.report.interface import Reporter

SEVERITY_COLOURS: dict[Severity, str] = {
    Severity.CRITICAL: "#b00020",
    Severity.HIGH: "#d84315",
    Severity.MEDIUM: "#f9a825",
    Severity.LOW: "#0277bd",
    Severity.INFO: "#757575",
}
_TEMPLATES = "templates"
TREND_MIN_SCANS = 2  # scans of the same targets before the trend charts are drawn


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: its label, value and length in chart units (0-100)."""

    label: str
    value: int
    length: float
    colour: str = "#37474f"
    caption: str = ""


def _bars(items: list[tuple[str, int, str]], caption: str = "") -> list[Bar]:
    top = max((value for _, value, _ in items), default=0)
    return [
        Bar(label, value, 0.0 if top == 0 else round(100 * value / top, 2), colour, caption)
        for label, value, colour in items
    ]


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are links; anything else (``javascript:``) stays text."""
    if url is None:
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: control and bidi characters made visible, then autoescaped."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return printable(value)


def _number(value: int) -> str:
    return f"{value:,}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("perisai.report", _TEMPLATES),
        autoescape=True,  # every template, whatever its name
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _number
    return env


def _asset(name: str) -> str:
    return (resources.files("perisai.report") / _TEMPLATES / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def host_port(finding: Finding) -> str:
    host = finding.target.host
    return f"[{host}]:{finding.target.port}" if ":" in host else f"{host}:{finding.target.port}"


@dataclass(frozen=True)
class Summary:
    """The numbers at the top of the page (and what the browser test checks against JSON)."""

    counts: dict[str, int]
    exposed_total: int
    exposed_by_service: dict[str, int]
    personal_data_records: int
    entity_types: list[str]
    entity_counts: dict[str, int]
    compromised: list[Finding]
    servers: dict[str, Severity]  # each asset's worst severity (asset_severities)

    @property
    def marked(self) -> frozenset[str]:
        """The ids of the compromised findings (``compromised_ids``, computed once)."""
        return frozenset(f.id for f in self.compromised)

    @property
    def compromised_stores(self) -> int:
        """Distinct servers (assets) with a ransom note or a planted payload."""
        return len({f.server.id for f in self.compromised})


def summarise(findings: list[Finding]) -> Summary:
    marked = compromised_ids(findings)
    counts = {severity.value: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity.value] += 1
    exposed = exposed_services(findings)
    by_service = Counter(exposed.values())
    entities: Counter[str] = Counter()
    for finding in findings:
        if is_exposure(finding) and not finding.is_compromise:
            entities.update({k: v for k, v in finding.data.entities.items() if v > 0})
    return Summary(
        counts=counts,
        exposed_total=len(exposed),
        exposed_by_service=dict(sorted(by_service.items(), key=lambda kv: (-kv[1], kv[0]))),
        personal_data_records=personal_data_records(findings),
        entity_types=sorted(entities),
        entity_counts=dict(entities.most_common()),
        compromised=[f for f in sort_findings(findings) if f.id in marked],
        servers=asset_severities(findings),
    )


class HtmlReporter(Reporter):
    """The report as one HTML page; ``history`` (from the findings store) draws the trends."""

    def __init__(self, history: ScanHistory | None = None) -> None:
        self.history = history or ScanHistory()
        self._env = _environment()

    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        findings = sort_findings(report.findings)
        summary = summarise(findings)
        css, script = _asset("report.css"), _asset("report.js")
        csp = (
            "default-src 'none'; "
            f"style-src {_csp_hash(css)}; script-src {_csp_hash(script)}; "
            "img-src data:; base-uri 'none'; form-action 'none'"
        )
        new_ids = {f.id for f in diff.new} if diff is not None else set()
        severity_bars = _bars(
            [(s.value, summary.counts[s.value], SEVERITY_COLOURS[s]) for s in Severity]
        )
        entity_bars = _bars([(name, n, "#00695c") for name, n in summary.entity_counts.items()])
        # a trend needs two scans: one bar each on a first scan says nothing
        points = self.history.points if len(self.history.points) >= TREND_MIN_SCANS else ()
        trend_services = _bars(
            [(_scan_label(p.scan_id, p.started), p.exposed_services, "#d84315") for p in points]
        )
        trend_records = _bars(
            [
                (_scan_label(p.scan_id, p.started), p.personal_data_records, "#6a1b9a")
                for p in points
            ]
        )
        template = self._env.get_template("report.html.j2")
        return template.render(
            version=__version__,
            report=report,
            api=report.is_api_audit,
            api_operations=len(
                {
                    f.object
                    for f in findings
                    if report.is_api_audit and f.severity is not Severity.INFO
                }
            ),
            scan_label="not saved" if report.scan_id is None else f"#{report.scan_id}",
            summary=summary,
            severities=[s.value for s in Severity],
            severity_colours={s.value: c for s, c in SEVERITY_COLOURS.items()},
            services=sorted({f.target.service for f in findings}),
            cards=[self._card(f, report, f.id in new_ids, summary) for f in findings],
            severity_bars=severity_bars,
            entity_bars=entity_bars,
            trend_services=trend_services,
            trend_records=trend_records,
            diff=diff,
            # Our own packaged files, never input: inlined verbatim so their CSP hashes hold.
            css=Markup(css),  # noqa: S704
            script=Markup(script),  # noqa: S704
            csp=csp,
        )

    def _card(
        self, finding: Finding, report: ScanReport, new: bool, summary: Summary
    ) -> dict[str, Any]:
        rule = report.rules.get(finding.rule)
        refs: list[Reference] = references(finding, rule)
        actionable = finding.severity is not Severity.INFO
        return {
            "finding": finding,
            "anchor": f"f-{finding.id}",
            "where": finding.where(),
            "host_port": host_port(finding),
            "entities": entity_summary(finding.data.entities) if finding.data.entities else "",
            "first_seen": self.history.first_seen.get(finding.id),
            "new": new,
            "compromised": finding.id in summary.marked,
            "server": asset_note(finding, summary.servers),
            "verify": verify_commands(finding, report.rules),
            "config": config_lines(finding, report.rules) if actionable else [],
            "remediation": finding.remediation or (rule.remediation if rule else ""),
            "description": rule.description if rule else "",
            "references": [(ref.label, _safe_url(ref.url)) for ref in refs],
        }


def _scan_label(scan_id: int | None, started: str) -> str:
    day = started[:10]
    return f"#{scan_id} {day}" if scan_id is not None else f"now {day}"
