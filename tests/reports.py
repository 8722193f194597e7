"""Real findings and reports for reporter and store tests (no server needed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from perisai.findings import Auth, DataProfile, Evidence, Finding, ScanReport, Severity, Target
from perisai.probes.redis import RedisProbe

MASKED_PHONE = "+60 12-*** **89"


def redis_exposed(port: int = 6379, phones: int = 3) -> Finding:
    return Finding(
        rule="redis.unauthenticated",
        severity=Severity.CRITICAL,
        title="Redis readable without authentication",
        target=Target("127.0.0.1", port, "redis"),
        auth=Auth.NONE,
        data=DataProfile(records_estimated=120, entities={"PHONE": phones, "EMAIL": 1}),
        evidence=(
            Evidence("PING answered +PONG without AUTH"),
            Evidence(f"e.g. PHONE: {MASKED_PHONE}"),
        ),
        remediation=RedisProbe.rule("redis.unauthenticated").remediation,
        object="0",
    )


def redis_secured(port: int = 6380) -> Finding:
    return Finding(
        rule="redis.auth-required",
        severity=Severity.INFO,
        title="Redis requires authentication",
        target=Target("127.0.0.1", port, "redis"),
        auth=Auth.REQUIRED,
        evidence=(Evidence("PING answered -NOAUTH"),),
    )


def unknown_rule(port: int = 7000) -> Finding:
    return Finding(
        rule="example.not-declared",
        severity=Severity.MEDIUM,
        title="A rule no probe declares",
        target=Target("::1", port, "example"),
        auth=Auth.UNKNOWN,
        object="db/1",
        remediation="Fix it.",
    )


def finding_of(severity: Severity, port: int = 9000, **changes: Any) -> Finding:
    """A finding of any severity, under a rule of its own, for mapping tests."""
    base = Finding(
        rule=f"example.{severity.value}",
        severity=severity,
        title=f"An example {severity.value} finding",
        target=Target("127.0.0.1", port, "example"),
        auth=Auth.UNKNOWN,
        remediation=f"Fix the {severity.value} issue.",
    )
    return replace(base, **changes)


def report(*findings: Finding, targets: tuple[str, ...] = ("127.0.0.1",)) -> ScanReport:
    rules = {r.id: r for r in RedisProbe.rules if any(f.rule == r.id for f in findings)}
    return ScanReport(
        version="0.1.0",
        started="2026-11-23T01:00:00+00:00",
        finished="2026-11-23T01:00:05+00:00",
        targets=targets,
        ports="6379-6380",
        findings=list(findings),
        rules=rules,
    )
