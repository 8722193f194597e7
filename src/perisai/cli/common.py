"""What every perisai command shares: exit codes, the one error line, the options several
commands take, progress on a terminal, and writing a report. The commands only parse
options, call the library and hand its result here."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import phonenumbers
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from perisai.findings import Finding, ScanDiff, ScanReport, Severity
from perisai.report import ReportFormat, ScanHistory, get_reporter
from perisai.target_files import ImportedTarget, read_masscan, read_nmap, read_shodan
from perisai.targets import TargetError

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


def exit_code(findings: Iterable[Finding], fail_on: FailOn) -> int:
    """1 when a finding is at or above ``fail_on``, else 0."""
    threshold = fail_on.threshold
    if threshold is None:
        return EXIT_OK
    found = any(finding.severity.at_least(threshold) for finding in findings)
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


DbOption = Annotated[
    str,
    typer.Option("--db", help="Findings store: a SQLite path or a postgresql:// URL."),
]
FormatOption = Annotated[
    ReportFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to FILE, not stdout.")
]
FailOnOption = Annotated[
    FailOn,
    typer.Option(
        "--fail-on",
        help="Exit 1 when a finding is at or above this severity.",
        case_sensitive=False,
    ),
]
RegionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--region",
        help="Regions whose national-format numbers to read (ISO codes: MY,SG,ID or repeated).",
        show_default="MY",
    ),
]


def regions(region: list[str] | None) -> tuple[str, ...]:
    """``--region MY,SG --region ID`` → ("MY", "SG", "ID"); an unknown code is one error line."""
    if not region:
        return ("MY",)
    codes = tuple(
        code.strip().upper() for item in region for code in item.split(",") if code.strip()
    )
    unknown = [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]
    if unknown or not codes:
        fail(f"--region {unknown[0] if unknown else ''!r}: give ISO region codes, e.g. MY,SG,ID")
    return codes


class _RichProgress:
    """Draws the library's progress on a terminal's stderr."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: TaskID | None = None

    def phase(self, name: str, total: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, visible=False)
        self.task = self.bar.add_task(name, total=total)

    def advance(self, steps: float = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, steps)


class _LineProgress:
    """Progress for a pipe or a log: a ``perisai: probe 12/31`` line at most every
    :data:`LINE_EVERY` seconds, so a long run is never silent and a short one says nothing."""

    def __init__(self) -> None:
        self.name, self.total, self.done = "", 0, 0.0
        self.said = time.monotonic()

    def phase(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0.0
        self._tick()

    def advance(self, steps: float = 1) -> None:
        self.done += steps
        self._tick()

    def _tick(self) -> None:
        if time.monotonic() - self.said >= LINE_EVERY:
            self._say()

    def _say(self) -> None:
        self.said = time.monotonic()
        say(f"{self.name} {min(self.done, self.total):,.0f}/{self.total:,}")


LINE_EVERY = 10.0  # seconds between progress lines on a pipe


@contextmanager
def progress() -> Iterator[_RichProgress | _LineProgress]:
    """A progress bar on stderr when it is a terminal; periodic lines otherwise."""
    if not _stderr.is_terminal:
        yield _LineProgress()
        return
    columns = (
        TextColumn("{task.description:9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_stderr, transient=True) as bar:
        yield _RichProgress(bar)


def spinner(message: str) -> AbstractContextManager[object]:
    """A spinner with ``message`` on stderr while a long step runs; piped, one line saying it."""
    if not _stderr.is_terminal:
        say(message)
        return nullcontext()
    return _stderr.status(message)


FromNmapOption = Annotated[
    Path | None,
    typer.Option("--from-nmap", help="Targets: the open TCP ports of an nmap -oX file."),
]
FromMasscanOption = Annotated[
    Path | None,
    typer.Option("--from-masscan", help="Targets: the open ports of masscan -oJ or -oL output."),
]
FromShodanOption = Annotated[
    Path | None,
    typer.Option(
        "--from-shodan",
        help="Targets: a device search engine's JSON-lines export (ip_str, port; .gz too).",
    ),
]


def imported_targets(
    nmap: Path | None, masscan: Path | None, shodan: Path | None
) -> list[ImportedTarget]:
    """The open ports the named files list (their service names kept as hints only)."""
    found: list[ImportedTarget] = []
    try:
        if nmap is not None:
            found += read_nmap(nmap)
        if masscan is not None:
            found += read_masscan(masscan)
        if shodan is not None:
            found += read_shodan(shodan)
    except TargetError as error:
        fail(str(error))
    if (nmap or masscan or shodan) and not found:
        fail("the imported files list no open TCP port: nothing to scan")
    return found
