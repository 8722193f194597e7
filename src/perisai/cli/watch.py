"""``perisai watch``: options in, a :class:`~perisai.watch.Watcher` run, one line per round."""

from __future__ import annotations

import re
import signal
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from perisai.cli.common import (
    DbOption,
    FromMasscanOption,
    FromNmapOption,
    FromShodanOption,
    RegionOption,
    fail,
    imported_targets,
    regions,
    say,
)
from perisai.probes import ScanConfig
from perisai.targets import TargetError, parse_ports
from perisai.usecases import DEFAULT_DB, UseCaseError
from perisai.watch import (
    Deliverer,
    EmailSink,
    RoundResult,
    SlackSink,
    Watcher,
    WatchMetrics,
    WatchPlan,
    WebhookSink,
    check_plan,
)
from perisai.watch.allowlist import AllowList, load_allowlist
from perisai.watch.delivery import Sink

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> float:
    """``90s``, ``15m``, ``1h30m``, ``2d`` → seconds; a bad one is one error line."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        fail(f"{option} {text!r}: give a duration like 90s, 15m, 1h30m or 2d")
    return sum(float(number) * _UNIT[unit] for number, unit in parts)


def _smtp(text: str | None) -> tuple[str, int]:
    host, _, port = (text or "").rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        fail("--alert-email needs --smtp HOST:PORT, the relay that sends the mail")
    return host.strip("[]"), int(port)


def _url(text: str, option: str) -> str:
    if not text.startswith(("http://", "https://")):
        fail(f"{option} {text!r}: give an http:// or https:// URL")
    return text


def watch(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="host, host:port, CIDR or @file; or none, with --from-nmap/-masscan/-shodan.",
            show_default=False,
        ),
    ] = None,
    ports: Annotated[
        str | None,
        typer.Option("--ports", "-p", help="Ports to check (default: every supported service's)."),
    ] = None,
    every: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Time from one round's start to the next (90s, 15m, 1h)."
        ),
    ] = "15m",
    rounds: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Stop after this many rounds.", show_default="until stopped"
        ),
    ] = None,
    remind: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Alert again about a finding still open after this long (e.g. 24h).",
            show_default="never",
        ),
    ] = None,
    alert_webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--alert-webhook",
            metavar="URL",
            help="POST each alert's JSON here (repeatable).",
            show_default=False,
        ),
    ] = None,
    alert_slack: Annotated[
        str | None,
        typer.Option(
            "--alert-slack", metavar="URL", help="A Slack incoming-webhook URL.", show_default=False
        ),
    ] = None,
    alert_email: Annotated[
        str | None,
        typer.Option(
            "--alert-email", metavar="ADDR", help="Mail each alert to ADDR.", show_default=False
        ),
    ] = None,
    smtp: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT", help="The relay --alert-email sends through.", show_default=False
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve Prometheus metrics on this port.",
            show_default="off",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host", metavar="ADDRESS", help="Address the metrics endpoint listens on."
        ),
    ] = "127.0.0.1",
    authorized: Annotated[
        bool,
        typer.Option(
            "--authorized",
            help="Confirm you may scan addresses outside loopback and private ranges.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=120, help="Seconds per connection attempt and per read.")
    ] = 3.0,
    region: RegionOption = None,
    db: DbOption = DEFAULT_DB,
    from_nmap: FromNmapOption = None,
    from_masscan: FromMasscanOption = None,
    from_shodan: FromShodanOption = None,
    allow: Annotated[
        Path | None,
        typer.Option(
            "--allow",
            metavar="FILE",
            help="Reviewed allow-list (YAML): findings it names do not alert until it expires.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Scan on a schedule and alert when a store opens, gets worse, or shows a ransom note."""
    try:
        port_list = parse_ports(ports) if ports else None
    except TargetError as error:
        fail(str(error))
    imported = imported_targets(from_nmap, from_masscan, from_shodan)
    sinks: list[Sink] = [WebhookSink(_url(u, "--alert-webhook")) for u in alert_webhook or ()]
    if alert_slack:
        sinks.append(SlackSink(_url(alert_slack, "--alert-slack")))
    if alert_email:
        sinks.append(EmailSink(alert_email, *_smtp(smtp)))
    if not sinks:
        say("no --alert-webhook, --alert-slack or --alert-email: changes are only printed")
    try:
        allowed = load_allowlist(allow, date.today()) if allow is not None else AllowList()
    except UseCaseError as error:
        fail(str(error))
    plan = WatchPlan(
        targets=(*(targets or ()), *(target.text for target in imported)),
        ports=port_list,
        every=parse_duration(every, "--every"),
        rounds=rounds,
        db=db,
        authorized=authorized,
        remind_after=parse_duration(remind, "--remind") if remind else None,
        config=ScanConfig(
            timeout=timeout, probe_deadline=max(60.0, timeout * 20), regions=regions(region)
        ),
        allow=allowed,
    )
    try:
        check_plan(plan)
    except UseCaseError as error:
        fail(str(error))
    metrics = WatchMetrics()
    if metrics_port is not None:
        try:
            metrics.serve(metrics_port, metrics_host)
        except OSError as error:
            why = error.strerror or error
            fail(f"--metrics-port {metrics_port}: cannot listen on {metrics_host}: {why}")
    watcher = Watcher(plan, Deliverer(sinks), metrics, on_round=_print_round)

    def finish_the_round(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if watcher.stopping:  # asked twice: the user wants out now, round or not
            say(f"{name} again: stopping now; this round's scan and alerts are dropped")
            raise SystemExit(128 + signum)
        say(f"{name}: finishing this round, then stopping (again to stop at once)")
        watcher.stop()

    signal.signal(signal.SIGTERM, finish_the_round)
    signal.signal(signal.SIGINT, finish_the_round)
    try:
        watcher.run()
    except (TargetError, UseCaseError) as error:
        fail(str(error))


def _print_round(result: RoundResult) -> None:
    """One line per round, then one per change and per failed delivery (stdout: a log)."""
    report = result.report
    line = (
        f"round {result.number}: scan {report.scan_id} · {len(report.findings)} findings · "
        f"{len(result.changes)} changes · {result.delivery.sent} alerts sent"
    )
    if result.delivery.failed:
        failed, kept = len(result.delivery.failed), result.delivery.pending
        line += f" · {failed} failed, {kept} kept for the next round"
    typer.echo(line)
    for change in result.changes:
        finding = change.finding
        typer.echo(f"  {change.kind}: {finding.where()}: {finding.title} [{finding.severity}]")
    if result.silenced:
        typer.echo(f"  {result.silenced} changes silenced by the allow-list")
    for note in result.notes:
        say(note)
    for failure in result.delivery.failed:
        say(f"alert not delivered: {failure}")
    if result.delivery.dropped:
        say(f"{result.delivery.dropped} undelivered alerts dropped (over the pending limit)")
    if result.store_error:
        say(f"round not saved, so not compared: {result.store_error}")
