"""Reporters, one per output format; each returns a string."""

from __future__ import annotations

from enum import StrEnum
from typing import assert_never

from perisai.report.history import ScanHistory, load_history
from perisai.report.html import HtmlReporter
from perisai.report.interface import Reporter
from perisai.report.json import JsonReporter
from perisai.report.markdown import MarkdownReporter
from perisai.report.profiles import ClassifyFormat, render_classify
from perisai.report.sarif import SarifReporter
from perisai.report.terminal import TerminalReporter


class ReportFormat(StrEnum):
    """The formats the CLI offers (``--format``); a ``str`` so typer parses it directly."""

    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    HTML = "html"
    MD = "md"


def get_reporter(
    fmt: ReportFormat, *, color: bool = False, history: ScanHistory | None = None
) -> Reporter:
    """The reporter for ``fmt``; a format added to the enum but not here fails mypy.

    ``history`` (scans of the same targets, from the findings store) feeds the HTML report's
    trend charts and the first-seen dates of the HTML and Markdown reports; others ignore it.
    """
    if fmt is ReportFormat.TABLE:
        return TerminalReporter(color=color)
    if fmt is ReportFormat.JSON:
        return JsonReporter()
    if fmt is ReportFormat.SARIF:
        return SarifReporter()
    if fmt is ReportFormat.HTML:
        return HtmlReporter(history=history)
    if fmt is ReportFormat.MD:
        return MarkdownReporter(history=history)
    assert_never(fmt)


__all__ = [
    "ClassifyFormat",
    "HtmlReporter",
    "JsonReporter",
    "MarkdownReporter",
    "ReportFormat",
    "Reporter",
    "SarifReporter",
    "ScanHistory",
    "TerminalReporter",
    "get_reporter",
    "load_history",
    "render_classify",
]
