"""The ``perisai`` command: parses arguments, calls the library, renders. Nothing else.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 usage or input
error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

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

from perisai import __version__
from perisai.api_audit.cli import audit_api
from perisai.bounded import DecompressionCapped, not_a_regular_file, open_text
from perisai.classify.files import FileProfile, iter_files, profile_file
from perisai.classify.profile import classifier_for
from perisai.commands import EXIT_OK, FailOn, emit, exit_code, fail, say
from perisai.findings import ScanDiff, ScanReport
from perisai.guard.cli import guard_app
from perisai.lab import SERVICES as LAB_SERVICES
from perisai.lab import Lab, LabError, MissingBinary, scan_ports
from perisai.lab.api_server import KNOWN_ACCOUNT, ApiInstance
from perisai.probes import ScanConfig
from perisai.progress import NoProgress
from perisai.redact import RedactionMode, Redactor, RedactorError, redact_stream
from perisai.report import ReportFormat, load_history
from perisai.report.profiles import render_profiles
from perisai.scanner import Scanner
from perisai.store import StoreError, open_store
from perisai.targets import TargetError, check_scope, parse_ports, parse_targets

DEFAULT_DB = "perisai.db"

app = typer.Typer(
    name="perisai",
    help="Find data stores anyone can read, the personal data inside, and ransom notes left "
    "there. Exit codes: 0 = nothing at or above --fail-on, 1 = findings at or above it, "
    "2 = usage or input error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(
    help="A deliberately exposed local lab: every store perisai probes, exposed and secured "
    "twins, on loopback.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")
app.add_typer(guard_app, name="guard")
app.command("audit-api")(audit_api)

_stderr = Console(stderr=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"perisai {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """perisai: shield for exposed personal data."""


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


@app.command()
def scan(
    targets: Annotated[
        list[str],
        typer.Argument(help="host, host:port, CIDR, or @file (one target per line, # comments)."),
    ],
    ports: Annotated[
        str | None,
        typer.Option(
            "--ports",
            "-p",
            help="Ports to check, e.g. 6379,15000-15100 "
            "(default: the standard ports of every supported service).",
        ),
    ] = None,
    authorized: Annotated[
        bool,
        typer.Option(
            "--authorized",
            help="Confirm you are authorised to scan addresses "
            "outside loopback and private ranges.",
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=4096, help="Connections in flight during discovery.")
    ] = 256,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=120, help="Seconds per connection attempt and per read.")
    ] = 3.0,
    deadline: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=3600,
            help="Seconds one service's probe may take in all [default: 60, or 20 × --timeout].",
        ),
    ] = None,
    sample: Annotated[
        int, typer.Option(min=0, max=1000, help="Records sampled per database, table or keyspace.")
    ] = 20,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also read queued message bodies where the broker can only hand them out and "
            "take them back (RabbitMQ: they come back flagged redelivered). Off: counts only.",
        ),
    ] = False,
    region: RegionOption = None,
    output_format: FormatOption = ReportFormat.TABLE,
    output: OutputOption = None,
    db: DbOption = DEFAULT_DB,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not save the scan.")] = False,
    fail_on: FailOnOption = FailOn.HIGH,
) -> None:
    """Find data stores readable without auth or with default credentials; sample them
    read-only, count the personal data inside, spot ransom notes."""
    try:
        specs = parse_targets(targets)
        check_scope(specs, authorized)
        port_list = parse_ports(ports) if ports else None
    except TargetError as error:
        fail(str(error))
    regions = _regions(region)
    config = ScanConfig(
        timeout=timeout,
        probe_deadline=deadline or max(60.0, timeout * 20),
        sample=sample,
        deep=deep,
        concurrency=concurrency,
        regions=regions,
    )
    with _progress() as progress:
        report = asyncio.run(Scanner(config, progress=progress).scan(specs, port_list))
    store_error = None
    history = None
    if not no_store:
        try:
            with open_store(db) as store:
                store.save(report)
                if output_format in _HISTORY_FORMATS:
                    history = load_history(store, report)
        except StoreError as error:
            store_error = str(error)
    emit(report, output_format, output, history=history)
    for note in report.notes:
        say(note)
    if store_error:
        fail(f"scan not saved: {store_error}")  # the report above is still complete
    raise typer.Exit(exit_code(report, fail_on))


@app.command()
def report(
    scan_id: Annotated[
        int | None, typer.Option("--scan", help="Show this scan id (default: the latest).")
    ] = None,
    diff: Annotated[
        bool,
        typer.Option(
            "--diff",
            help="Show what is new and what is resolved "
            "since the previous scan of the same targets.",
        ),
    ] = False,
    output_format: FormatOption = ReportFormat.TABLE,
    output: OutputOption = None,
    db: DbOption = DEFAULT_DB,
    fail_on: FailOnOption = FailOn.HIGH,
) -> None:
    """Show a saved scan (the latest by default), optionally as a diff with the one before."""
    if "://" not in db and not Path(db).exists():
        fail(f"no findings store at {db}: run `perisai scan` first, or pass --db")
    try:
        with open_store(db) as store:
            chosen = store.get(scan_id) if scan_id is not None else store.latest()
            if chosen is None:
                fail(
                    f"no scan {scan_id} in {db}" if scan_id is not None else f"no scans in {db} yet"
                )
            changes = ScanDiff.between(chosen, store.previous(chosen)) if diff else None
            history = load_history(store, chosen) if output_format in _HISTORY_FORMATS else None
    except StoreError as error:
        fail(str(error))
    emit(chosen, output_format, output, changes, history)
    findings = list(changes.new) if changes else chosen.findings
    raise typer.Exit(
        exit_code(
            ScanReport(
                chosen.version,
                chosen.started,
                chosen.finished,
                chosen.targets,
                chosen.ports,
                findings,
            ),
            fail_on,
        )
    )


class DataFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command()
def classify(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories (recursive); .gz, JSON lines, CSV and plain text."
        ),
    ],
    output_format: Annotated[
        DataFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = DataFormat.TABLE,
    region: RegionOption = None,
) -> None:
    """Find personal data in files, dumps and logs: per-file and total entity counts, masked
    examples, and the share of records holding personal data."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or directory: {missing[0]}")
    classifier = classifier_for(_regions(region))
    files = list(iter_files(paths))
    results: list[FileProfile] = []
    sizes = [_size_mb(path) for path in files]
    with _progress() as progress:
        progress.phase("MB read", max(1, round(sum(sizes))))  # a single big log moves it too
        for path, size in zip(files, sizes, strict=True):
            read = 0.0

            def on_bytes(count: int, size: float = size) -> None:
                nonlocal read
                step = min(count / 1e6, size - read)  # a .gz holds more than its size
                read += step
                progress.advance(step)

            results.append(profile_file(path, classifier, on_bytes))
            progress.advance(size - read)
    total = FileProfile("TOTAL", kind="")
    for result in results:
        total.merge(result)
    if output_format is DataFormat.JSON:
        document = {
            "tool": "perisai",
            "version": __version__,
            "files": [r.to_dict() for r in results],
            "total": total.to_dict(),
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_profiles(results, total), end="")
    for result in results:
        if result.skipped:
            say(f"skipped {result.path}: {result.skipped}")


@app.command()
def redact(
    files: Annotated[
        list[str] | None, typer.Argument(help="Files to redact ('-' or none: standard input).")
    ] = None,
    mode: Annotated[
        RedactionMode,
        typer.Option(
            "--mode",
            case_sensitive=False,
            help="mask keeps a hint; hash gives a keyed token (joinable across "
            "records); tag keeps only the type.",
        ),
    ] = RedactionMode.MASK,
    key_env: Annotated[
        str,
        typer.Option(
            "--key-env", help="Environment variable holding the secret key for --mode hash."
        ),
    ] = "PERISAI_REDACT_KEY",
    region: RegionOption = None,
) -> None:
    """Redact personal data from logs, streaming to standard output; JSON lines stay valid
    JSON."""
    key = os.environ.get(key_env, "").encode() or None
    try:
        redactor = Redactor(mode, key=key, regions=_regions(region))
    except RedactorError as error:
        fail(str(error))
    sources = files or ["-"]
    for source in sources:
        if source == "-":
            continue
        if not Path(source).exists():
            fail(f"no such file: {source}")
        why = not_a_regular_file(Path(source))
        if Path(source).is_dir() or (why is not None and not Path(source).is_fifo()):
            fail(f"cannot redact {source}: {why or 'a directory'}")
    out = sys.stdout
    try:
        for source in sources:
            with _text_source(source) as stream:
                for piece in redact_stream(stream, redactor):
                    out.write(piece)
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
    except DecompressionCapped as error:
        out.flush()
        fail(f"{source}: {error}; what came before it was written")
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror or error}")


@contextmanager
def _text_source(source: str) -> Iterator[IO[str]]:
    if source == "-":
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return
    with open_text(Path(source)) as handle:
        yield handle


def _regions(region: list[str] | None) -> tuple[str, ...]:
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


StateDirOption = Annotated[
    Path, typer.Option("--state-dir", help="Where the lab keeps its servers' data and state.")
]
DEFAULT_LAB_DIR = Path(".perisai-lab")


@lab_app.command("up")
def lab_up(
    state_dir: StateDirOption = DEFAULT_LAB_DIR,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            help=f"Only this service (repeatable): {', '.join(LAB_SERVICES)}.",
            show_default="all",
        ),
    ] = None,
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Install missing server packages with apt-get (needs root) and npm.",
        ),
    ] = False,
) -> None:
    """Start exposed and secured twins of every data store perisai probes, on loopback,
    seeded with synthetic personal data."""
    try:
        with _stderr.status("starting the lab… (a minute or two for all services)"):
            instances = Lab(state_dir, services=service).up(install=install)
    except (LabError, MissingBinary) as error:
        fail(str(error))
    audits = []
    for instance in instances:
        kind = "exposed" if instance.exposed else "secured"
        ports = ",".join(str(port) for port in scan_ports(instance))
        where = f"{instance.host}:{ports}" if ports else instance.url
        print(f"{instance.name:20} {kind:8} {where}")
        if isinstance(instance, ApiInstance):
            audits.append(
                f"perisai audit-api --spec {instance.spec_url} --base-url {instance.url} "
                f"--smtp-sink {instance.smtp_relay} --known-account {KNOWN_ACCOUNT} "
                f"--sink-phone {KNOWN_ACCOUNT}"
            )
    ports = ",".join(str(port) for instance in instances for port in scan_ports(instance))
    print(f"\nscan it:  perisai scan 127.0.0.1 --ports {ports}")
    for command in audits:
        print(f"audit it: {command}")


@lab_app.command("status")
def lab_status(
    state_dir: StateDirOption = DEFAULT_LAB_DIR,
    ports_only: Annotated[
        bool,
        typer.Option(
            "--ports", help="Print only the ports, comma separated (for `perisai scan --ports`)."
        ),
    ] = False,
) -> None:
    """Show the lab's servers and whether each answers."""
    try:
        rows = Lab(state_dir).status()
    except LabError as error:
        fail(str(error))
    if not rows:
        fail(f"no lab is up in {state_dir}") if ports_only else print("no lab is up")
        return
    if ports_only:
        print(",".join(str(port) for instance, _ in rows for port in scan_ports(instance)))
        return
    for instance, answering in rows:
        ports = ",".join(str(port) for port in scan_ports(instance))
        state = "up" if answering else "NOT ANSWERING"
        print(f"{instance.name:20} {instance.host}:{ports:<12} {state}")


@lab_app.command("down")
def lab_down(state_dir: StateDirOption = DEFAULT_LAB_DIR) -> None:
    """Stop the lab's servers and remove their data."""
    try:
        Lab(state_dir).down()
    except LabError as error:
        fail(str(error))
    print("lab is down")


# Formats that show history over scans (trend charts, first-seen dates) from the store.
_HISTORY_FORMATS = (ReportFormat.HTML, ReportFormat.MD)


class _RichProgress:
    """Draws the scanner's progress on a terminal's stderr."""

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


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


@contextmanager
def _progress() -> Iterator[_RichProgress | NoProgress]:
    if not _stderr.is_terminal:
        yield NoProgress()
        return
    columns = (
        TextColumn("{task.description:9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_stderr, transient=True) as bar:
        yield _RichProgress(bar)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        _stderr.print("perisai: interrupted")
        sys.exit(130)
