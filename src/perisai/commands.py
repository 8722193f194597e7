"""What every perisai command shares: exit codes, the one error line, ``--fail-on`` and
writing a report. The commands (:mod:`perisai.cli`, :mod:`perisai.api_audit.cli`) only
parse options, call the library and hand its report here."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from perisai.findings import ScanDiff, ScanReport, Severity
from perisai.report import ReportFormat, ScanHistory, get_reporter

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
_stderr = Console(stderr=True, highlight=False)


class FailOn(StrEnum):
    """``--fail-on``: a :class:`Severity` (its values, tested to stay the same) or never."""

    CRITICAL = Severity.CRITICAL.value
    HIGH = Severity.HIGH.value
    MEDIUM = Severity.MEDIUM.value
    LOW = Severity.LOW.value
    INFO = Severity.INFO.value
    NEVER = "never"

    @property
    def threshold(self) -> Severity | None:
        return None if self is FailOn.NEVER else Severity(self.value)


def fail(message: str) -> NoReturn:
    """One clear line on stderr and exit 2: how every user error ends."""
    _stderr.print(f"perisai: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def say(line: str) -> None:
    """One ``perisai: …`` line on stderr (notes, warnings, skipped files), never markup."""
    _stderr.print(f"perisai: {line}", markup=False, soft_wrap=True)


def exit_code(report: ScanReport, fail_on: FailOn) -> int:
    """1 when a finding is at or above ``fail_on``, else 0."""
    threshold = fail_on.threshold
    if threshold is None:
        return EXIT_OK
    found = any(finding.severity.at_least(threshold) for finding in report.findings)
    return EXIT_FINDINGS if found else EXIT_OK


def emit(
    report: ScanReport,
    fmt: ReportFormat,
    output: Path | None,
    diff: ScanDiff | None = None,
    history: ScanHistory | None = None,
) -> None:
    """The report rendered to stdout or ``output``; if the file cannot be written, the
    report goes to stdout and the error is one line (nothing found is lost)."""
    color = output is None and fmt is ReportFormat.TABLE and sys.stdout.isatty()
    text = get_reporter(fmt, color=color, history=history).render(report, diff)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        sys.stdout.write(text)
        fail(f"cannot write {output}: {error.strerror or error}; the report went to stdout")
