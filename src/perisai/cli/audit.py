"""``perisai audit-api``: parse the options, call :mod:`perisai.api_audit`, render the report.

Exit codes as for ``scan``: 0 nothing at or above ``--fail-on``, 1 findings at or above it,
2 a usage or input error (one line on stderr).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Annotated

import phonenumbers
import typer

from perisai.api_audit.auditor import (
    AuditError,
    base_target,
    check_known_account,
    load_operations,
    plan,
    run_audit,
)
from perisai.api_audit.context import (
    DEFAULT_SINK_EMAIL,
    DEFAULT_SINK_PHONE,
    AuditConfig,
    AuditContext,
    mask_value,
)
from perisai.api_audit.sink import SinkError, parse_sink_address
from perisai.cli.common import EXIT_OK, FailOn, emit, exit_code, fail, say
from perisai.report import ReportFormat

__all__ = ["audit_api"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _headers(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values or []:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip() or not re.fullmatch(r"[!-9;-~]+", name.strip()):
            fail(f"--header {name.strip() or value!r}…: write it as 'Name: value'")
        out.append((name.strip(), rest.strip()))
    return tuple(out)


def _sink_phone(value: str | None) -> str:
    if value is None:
        return DEFAULT_SINK_PHONE
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        fail(f"--sink-phone {value!r}: give an E.164 number, e.g. +60123456789")
    if not value.startswith("+") or not phonenumbers.is_possible_number(number):
        fail(f"--sink-phone {value!r}: give an E.164 number, e.g. +60123456789")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def audit_api(
    spec: Annotated[
        str,
        typer.Option("--spec", help="OpenAPI 3.x or Swagger 2.0 spec: a file or an http(s) URL."),
    ],
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url", help="Where the API answers (default: the spec's first server URL)."
        ),
    ] = None,
    flows: Annotated[
        Path | None,
        typer.Option(
            "--flows",
            help="YAML stating roles the names miss: a list under 'flows:' of {operation: "
            "'POST /v2/sms/dispatch' (or an operationId), role: otp-send|otp-verify|"
            "account-lookup|mail-send|login|password-reset|none, fields: {dest: phone}}. "
            "The only way a DELETE, PUT or PATCH operation is ever sent.",
        ),
    ] = None,
    budget: Annotated[
        int,
        typer.Option("--budget", min=1, max=10000, help="Most requests the whole run may send."),
    ] = 100,
    sink_phone: Annotated[
        str | None,
        typer.Option(
            "--sink-phone",
            help="Your test number (E.164) that OTP sends go to.",
            show_default="+447700900555, a reserved drama-range number",
        ),
    ] = None,
    sink_email: Annotated[
        str, typer.Option("--sink-email", help="The only address mail tests name.")
    ] = DEFAULT_SINK_EMAIL,
    smtp_sink: Annotated[
        str | None,
        typer.Option(
            "--smtp-sink",
            help="Run perisai's SMTP sink on HOST:PORT (loopback) and prove "
            "mail relay by a marker arriving there.",
        ),
    ] = None,
    sms_sink: Annotated[
        str | None,
        typer.Option(
            "--sms-sink",
            help="Run perisai's SMS sink on HOST:PORT (loopback): point the staging app's SMS "
            "provider URL at it (Twilio Messages API, Vonage, or POST /sms JSON) and a send "
            "finding is proven by the message arriving, not read into a 200.",
        ),
    ] = None,
    known_account: Annotated[
        str | None,
        typer.Option(
            "--known-account",
            help="An account you own on the target, whose phone and e-mail are your sinks: "
            "its username, ID, phone or e-mail (a phone or e-mail must be the --sink-phone or "
            "--sink-email). The enumeration, login and reset checks ask about it, and the "
            "target may message it.",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="'Name: value' sent with requests (repeatable); checked to be accepted first.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and send nothing.")
    ] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print each operation's role and why, send nothing.")
    ] = False,
    authorized: Annotated[
        bool,
        typer.Option(
            "--authorized",
            help="Confirm you are authorised to test an API outside loopback and private ranges.",
        ),
    ] = False,
    otp_sends: Annotated[
        int, typer.Option("--otp-sends", min=1, max=100, help="Sends per OTP endpoint (K).")
    ] = 12,
    verify_attempts: Annotated[
        int,
        typer.Option(
            "--verify-attempts", min=1, max=200, help="Wrong codes per verify endpoint (M)."
        ),
    ] = 20,
    pace: Annotated[
        float, typer.Option("--pace", min=0.0, max=10.0, help="Seconds between requests.")
    ] = 0.05,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=120.0, help="Seconds per request.")
    ] = 10.0,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
    ] = ReportFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to FILE, not stdout.")
    ] = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding is at or above this severity.",
            case_sensitive=False,
        ),
    ] = FailOn.HIGH,
) -> None:
    """Prove whether your own API's OTP, e-mail and account endpoints can be abused: OTP
    bombing, any-recipient sends, OTP brute force, codes in responses, account enumeration,
    mail relay (end to end through perisai's SMTP sink) and missing challenges."""
    headers = _headers(header)
    phone = _sink_phone(sink_phone)
    if not _EMAIL.match(sink_email):
        fail(f"--sink-email {sink_email!r} is not an e-mail address")
    try:
        sink_address = parse_sink_address(smtp_sink) if smtp_sink else None
        sms_address = parse_sink_address(sms_sink, "--sms-sink") if sms_sink else None
        operations, servers, warnings = load_operations(spec, flows, timeout)
    except (AuditError, SinkError) as error:
        fail(str(error))
    for warning in warnings:
        say(f"warning: {warning}")
    if explain:
        for classified in operations:
            role = classified.role.value if classified.role else "-"
            print(f"{classified.operation.key:50} {role:15} {'; '.join(classified.reasons)}")
        raise typer.Exit(EXIT_OK)
    if not any(c.role for c in operations):
        say(
            f"no OTP, e-mail or account endpoints found among the spec's "
            f"{len(operations)} operations; nothing to test (state roles with --flows, "
            "see --explain)"
        )
        raise typer.Exit(EXIT_OK)
    url = base_url or next((s for s in servers if s.startswith(("http://", "https://"))), None)
    if url is None:
        fail("no --base-url given and the spec names no absolute server URL")
    config = AuditConfig(
        base_url=url,
        budget=budget,
        sink_phone=phone,
        sink_email=sink_email,
        known_account=known_account,
        headers=headers,
        smtp_sink=sink_address,
        sms_sink=sms_address,
        otp_sends=otp_sends,
        verify_attempts=verify_attempts,
        pace=pace,
        timeout=timeout,
    )
    try:
        target = base_target(url, authorized)
        check_known_account(config)
    except AuditError as error:
        fail(str(error))
    ctx = AuditContext(config, operations)
    if dry_run:
        _print_plan(ctx)
        raise typer.Exit(EXIT_OK)
    try:
        report = asyncio.run(run_audit(ctx, target))
    except AuditError as error:
        fail(str(error))
    report.notes[:0] = warnings
    emit(report, output_format, output)
    for note in report.notes:
        say(note)
    raise typer.Exit(exit_code(report.findings, fail_on))


def _print_plan(ctx: AuditContext) -> None:
    steps = plan(ctx)
    left = ctx.config.budget - 1 - (1 if ctx.config.headers else 0)
    print(f"dry run: nothing is sent. Target {ctx.config.base_url}, budget {ctx.config.budget}")
    print(
        f"  preflight: {'GET with and without --header' if ctx.config.headers else 'GET /'} "
        "(reachability)"
    )
    for step in steps:
        requests = max(0, min(step.requests, left))
        left -= requests
        print(f"  {step.check.rule.id:28} {step.operation.key:45} {requests:3}  {step.description}")
    total = ctx.config.budget - max(left, 0)
    print(
        f"at most {total} requests; recipients: {mask_value(ctx.config.sink_phone)}, "
        f"{mask_value(ctx.config.sink_email)}, reserved +44 7700 900xxx numbers"
    )
