"""Reporters, one per output format; each returns a string."""

from __future__ import annotations

from enum import StrEnum
from typing import assert_never

from perisai.report.interface import Reporter
from perisai.report.json import JsonReporter
from perisai.report.sarif import SarifReporter
from perisai.report.terminal import TerminalReporter


class ReportFormat(StrEnum):
    """The formats the CLI offers (``--format``); a ``str`` so typer parses it directly."""

    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


def get_reporter(fmt: ReportFormat, *, color: bool = False) -> Reporter:
    """The reporter for ``fmt``; a format added to the enum but not here fails mypy."""
    if fmt is ReportFormat.TABLE:
        return TerminalReporter(color=color)
    if fmt is ReportFormat.JSON:
        return JsonReporter()
    if fmt is ReportFormat.SARIF:
        return SarifReporter()
    assert_never(fmt)


__all__ = [
    "JsonReporter",
    "ReportFormat",
    "Reporter",
    "SarifReporter",
    "TerminalReporter",
    "get_reporter",
]
