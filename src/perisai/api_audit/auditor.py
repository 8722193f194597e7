"""Run the checks on a spec's operations against a base URL, within a request budget.

:func:`audit_api` is the library entry: spec in, :class:`ScanReport` out. The CLI adds only
argument parsing and rendering.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from perisai import __version__
from perisai.api_audit.checks import all_checks, all_rules
from perisai.api_audit.context import (
    AuditConfig,
    AuditContext,
    BudgetExhausted,
    account_kind,
    mask_value,
)
from perisai.api_audit.interface import (
    Check,
    CheckResult,
    CheckSkipped,
    ClassifiedOperation,
    FieldKind,
    Operation,
    Outcome,
)
from perisai.api_audit.roles import FlowsError, classify, load_flows, tokens, unused_flows
from perisai.api_audit.sink import SinkError, SmtpSink
from perisai.api_audit.sms_sink import SmsSink
from perisai.api_audit.spec import SpecError, load_spec
from perisai.findings import (
    API_AUDIT,
    Auth,
    DataProfile,
    Evidence,
    Finding,
    ScanReport,
    Target,
)
from perisai.targets import TargetError, check_scope, parse_target

__all__ = [
    "AuditError",
    "PlannedCheck",
    "audit_api",
    "base_target",
    "check_known_account",
    "load_operations",
    "plan",
    "run_audit",
]


class AuditError(Exception):
    """An input or target problem the user can fix; one line."""


@dataclass(frozen=True)
class PlannedCheck:
    check: Check
    operation: Operation
    requests: int
    description: str


def base_target(base_url: str, authorized: bool) -> Target:
    """The base URL as a :class:`Target`, refused outside loopback/private without authorisation."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AuditError(
            f"--base-url {base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8080)"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AuditError(f"--base-url {base_url!r} has a bad port") from None
    host = parts.hostname
    try:
        spec = parse_target(f"[{host}]" if ":" in host else host)
        check_scope([spec], authorized)
    except TargetError as error:
        raise AuditError(str(error)) from None
    return Target(host, port, parts.scheme)


def check_known_account(config: AuditConfig) -> None:
    """A known account named by phone or e-mail must be the sink: the checks ask the target
    about it, and the target may message it (a reset, a login code)."""
    known = config.known_account
    if not known:
        return
    kind = account_kind(known)
    if kind is FieldKind.PHONE and re.sub(r"\D", "", known) != re.sub(r"\D", "", config.sink_phone):
        raise AuditError(
            f"--known-account {mask_value(known)} is a phone number but not the --sink-phone: "
            "the checks make the target text the known account, so it must be your sink "
            "(give --sink-phone with the same number if it is yours)"
        )
    if kind is FieldKind.EMAIL and known.lower() != config.sink_email.lower():
        raise AuditError(
            f"--known-account {mask_value(known)} is an e-mail address but not the "
            "--sink-email: the checks make the target mail the known account, so it must be "
            "your sink (give --sink-email with the same address if it is yours)"
        )


def load_operations(
    spec: str, flows: Path | None = None, timeout: float = 10.0
) -> tuple[list[ClassifiedOperation], list[str], list[str]]:
    """Classified operations, the spec's server URLs, and warnings (unused --flows entries)."""
    try:
        operations, servers = load_spec(spec, timeout)
        stated = load_flows(flows) if flows is not None else {}
    except (SpecError, FlowsError) as error:
        raise AuditError(str(error)) from None
    warnings = [
        f"--flows names {key!r}, which is not in the spec"
        for key in unused_flows(stated, operations)
    ]
    return classify(operations, stated), servers, warnings


def plan(ctx: AuditContext) -> list[PlannedCheck]:
    """Every (check, operation) pair the run would test, in order, with its request count."""
    steps: list[PlannedCheck] = []
    for check in all_checks():
        for classified in ctx.operations:
            if classified.role in check.roles:
                op = classified.operation
                steps.append(
                    PlannedCheck(
                        check, op, check.planned_requests(op, ctx), check.describe(op, ctx)
                    )
                )
    return steps


def _auth_probe(ctx: AuditContext) -> str:
    """A GET path with no required parameters, preferring profile-like ones."""
    candidates = [
        c.operation
        for c in ctx.operations
        if c.operation.method == "GET"
        and "{" not in c.operation.path
        and not any(p.required for p in c.operation.params)
    ]
    preferred = {"me", "profile", "user", "account", "session", "whoami", "self"}
    candidates.sort(key=lambda op: not (set(tokens(op.path)) & preferred))
    return candidates[0].path if candidates else "/"


async def _preflight(ctx: AuditContext, notes: list[str]) -> None:
    """Reachability, and whether supplied auth headers are accepted (with and without)."""
    base = ctx.config.base_url
    if not ctx.config.headers:
        first = await ctx.send_raw("GET", "/", anonymous=True)
        if first.outcome is Outcome.UNREACHABLE:
            raise AuditError(f"cannot reach {base}: no answer (is the service running?)")
        return
    path = _auth_probe(ctx)
    with_auth = await ctx.send_raw("GET", path)
    if with_auth.outcome is Outcome.UNREACHABLE:
        raise AuditError(f"cannot reach {base}: no answer (is the service running?)")
    without = await ctx.send_raw("GET", path, anonymous=True)
    names = ", ".join(name for name, _ in ctx.config.headers)
    if with_auth.status in (401, 403):
        raise AuditError(
            f"the --header credentials ({names}) were refused: GET {path} answered "
            f"{with_auth.status} with them; fix or renew them"
        )
    if without.status in (401, 403) and 200 <= with_auth.status < 300:
        notes.append(
            f"auth headers accepted: GET {path} answered {with_auth.status} with {names}, "
            f"{without.status} without"
        )
    else:
        notes.append(
            f"could not confirm the auth headers: GET {path} answered {with_auth.status} with "
            f"{names} and {without.status} without"
        )


def _finding(result: CheckResult, target: Target, anonymous_run: bool) -> Finding:
    rule = all_rules()[result.rule]
    return Finding(
        rule=rule.id,
        severity=result.severity or rule.default_severity,
        title=f"{rule.name}: {result.operation.key}",
        target=target,
        auth=Auth.NONE if (result.anonymous and anonymous_run) else Auth.UNKNOWN,
        data=DataProfile(entities=dict(result.entities)),
        evidence=(Evidence(result.summary), *(Evidence(line) for line in result.evidence)),
        remediation=rule.remediation,
        object=result.operation.key,
    )


async def run_audit(ctx: AuditContext, target: Target) -> ScanReport:
    """Run every planned check within the budget: findings for flaws, notes for the rest."""
    started = _now()
    notes: list[str] = []
    findings: list[Finding] = []
    steps = plan(ctx)
    sink = None
    if ctx.config.smtp_sink is not None:
        sink = SmtpSink(*ctx.config.smtp_sink)
        try:
            sink.start()
        except SinkError as error:
            raise AuditError(str(error)) from None
        ctx.sink = sink
    if ctx.config.sms_sink is not None:
        sms_sink = SmsSink(*ctx.config.sms_sink)
        try:
            sms_sink.start()
        except SinkError as error:
            if sink is not None:
                sink.stop()
            raise AuditError(str(error)) from None
        ctx.sms_sink = sms_sink
    try:
        async with httpx.AsyncClient(
            timeout=ctx.config.timeout, trust_env=False, follow_redirects=False
        ) as client:
            ctx.client = client
            try:
                await _preflight(ctx, notes)
            except BudgetExhausted:
                raise AuditError("--budget is too small for even the reachability check") from None
            for step in steps:
                if ctx.budget_left <= 0:
                    notes.append(
                        f"{step.check.rule.id} {step.operation.key}: skipped, budget spent"
                    )
                    continue
                ctx.begin(step.requests)
                ctx.checking = step.check.rule.id
                result = await step.check.run(step.operation, ctx)
                if isinstance(result, CheckSkipped):
                    notes.append(f"{result.rule} {step.operation.key}: skipped: {result.reason}")
                elif result.vulnerable:
                    findings.append(_finding(result, target, not ctx.config.headers))
                else:
                    notes.append(
                        f"{result.rule} {step.operation.key}: not vulnerable: {result.summary}"
                    )
    finally:
        if sink is not None:
            sink.stop()
            ctx.sink = None
        if ctx.sms_sink is not None:
            ctx.sms_sink.stop()
            ctx.sms_sink = None
        ctx.client = None
    notes.append(f"{ctx.spent} of {ctx.config.budget} requests used")
    return ScanReport(
        version=__version__,
        started=started,
        finished=_now(),
        targets=(ctx.config.base_url,),
        ports=str(target.port),
        findings=findings,
        rules=all_rules(),
        notes=notes,
        requests=list(ctx.sent),
        kind=API_AUDIT,
    )


def audit_api(
    spec: str,
    config: AuditConfig,
    *,
    flows: Path | None = None,
    authorized: bool = False,
) -> ScanReport:
    """Audit the API described by ``spec`` (path or URL) at ``config.base_url``."""
    target = base_target(config.base_url, authorized)
    check_known_account(config)
    operations, _, warnings = load_operations(spec, flows, config.timeout)
    ctx = AuditContext(config, operations)
    report = asyncio.run(run_audit(ctx, target))
    report.notes[:0] = warnings
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
