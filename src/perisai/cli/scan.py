"""``perisai scan`` and ``perisai report``: options in, one library call, the report out."""

from __future__ import annotations

from typing import Annotated

import typer

from perisai.cli.common import (
    DbOption,
    FailOn,
    FailOnOption,
    FormatOption,
    FromMasscanOption,
    FromNmapOption,
    FromShodanOption,
    OutputOption,
    RegionOption,
    emit,
    exit_code,
    fail,
    imported_targets,
    progress,
    regions,
    say,
)
from perisai.probes import ScanConfig
from perisai.report import ReportFormat
from perisai.target_files import hint_notes
from perisai.targets import TargetError, parse_ports
from perisai.usecases import DEFAULT_DB, UseCaseError, saved_scan, scan_and_save

# Formats that show history over scans (trend charts, first-seen dates) from the store.
HISTORY_FORMATS = (ReportFormat.HTML, ReportFormat.MD)


def scan(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="host, host:port, CIDR, or @file (one target per line, # comments); "
            "or none, with --from-nmap/--from-masscan/--from-shodan.",
            show_default=False,
        ),
    ] = None,
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
        int,
        typer.Option(
            min=1,
            max=4096,
            help="Connections in flight during discovery (per worker with --cluster).",
        ),
    ] = 256,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=120, help="Seconds per connection attempt and per read.")
    ] = 3.0,
    deadline: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=3600,
            help="Seconds one service's probe may take in all.",
            show_default="60, or 20 × --timeout",
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
    from_nmap: FromNmapOption = None,
    from_masscan: FromMasscanOption = None,
    from_shodan: FromShodanOption = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="ADDRESS",
            help="Run discovery and probes on the workers of this Dask scheduler, e.g. "
            "tcp://127.0.0.1:8786 (pip install 'perisai[cluster]'); with --authorized, "
            "ranges up to a /8.",
        ),
    ] = None,
) -> None:
    """Find data stores readable without auth or with default credentials; sample them
    read-only, count the personal data inside, spot ransom notes."""
    try:
        port_list = parse_ports(ports) if ports else None
    except TargetError as error:
        fail(str(error))
    imported = imported_targets(from_nmap, from_masscan, from_shodan)
    targets = [*(targets or ()), *(target.text for target in imported)]
    if not targets:
        fail("nothing to scan: give targets, or --from-nmap/--from-masscan/--from-shodan")
    config = ScanConfig(
        timeout=timeout,
        probe_deadline=deadline or max(60.0, timeout * 20),
        sample=sample,
        deep=deep,
        concurrency=concurrency,
        regions=regions(region),
    )
    try:
        with progress() as bar:
            outcome = scan_and_save(
                targets,
                port_list,
                config=config,
                authorized=authorized,
                db=None if no_store else db,
                with_history=output_format in HISTORY_FORMATS,
                progress=bar,
                cluster=cluster,
            )
    except (TargetError, UseCaseError) as error:
        fail(str(error))
    outcome.report.notes.extend(hint_notes(outcome.report, imported))
    emit(outcome.report, output_format, output, history=outcome.history)
    for note in outcome.report.notes:
        say(note)
    if outcome.store_error:
        fail(f"scan not saved: {outcome.store_error}")  # the report above is still complete
    raise typer.Exit(exit_code(outcome.judged, fail_on))


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
    try:
        outcome = saved_scan(db, scan_id, diff=diff, with_history=output_format in HISTORY_FORMATS)
    except UseCaseError as error:
        fail(str(error))
    emit(outcome.report, output_format, output, outcome.changes, outcome.history)
    raise typer.Exit(exit_code(outcome.judged, fail_on))
