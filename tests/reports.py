"""Real findings and reports for reporter and store tests (no server needed)."""

from __future__ import annotations

from perisai.findings import Auth, DataProfile, Evidence, Finding, ScanReport, Severity, Target
from perisai.probes.redis import RedisProbe


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
            Evidence("e.g. PHONE: +60 12-*** **89"),
        ),
        remediation=RedisProbe.rule("redis.unauthenticated").remediation,
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
