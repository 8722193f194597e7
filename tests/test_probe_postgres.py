"""PostgreSQL probe against real servers: trust auth, scram with a strong password, a default."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from psycopg import sql

from perisai.findings import Auth, Finding, Severity
from perisai.probes import ScanConfig
from perisai.scanner import Scanner
from perisai.targets import parse_targets

pytestmark = pytest.mark.servers


async def _scan(port: int) -> list[Finding]:
    report = await Scanner(ScanConfig(timeout=2.0)).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_exposed_postgres_is_critical_with_data_and_the_ransom_note(
    lab: dict[str, Any],
) -> None:
    findings = await _scan(lab["postgres-exposed"].port)
    [main] = [f for f in findings if f.rule == "postgres.unauthenticated"]
    assert main.target.service == "postgres"
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.ransom_note
    assert main.data.entities["PHONE"] >= 1 and main.data.entities["EMAIL"] >= 1
    assert main.data.records_estimated and main.data.records_estimated >= 500
    assert any("chatlog.public.messages" in e.text for e in main.evidence)
    [note] = [f for f in findings if f.rule == "compromise.ransom-note"]
    assert note.severity is Severity.CRITICAL
    assert "README_TO_RECOVER_YOUR_DATA" in note.object
    assert any(e.text.startswith("payment address: bc1") for e in note.evidence)


async def test_what_the_sample_limits_leave_out_is_counted_never_hidden(
    lab: dict[str, Any],
) -> None:
    """One database and one table read: the catalogue still counts every database and the
    other tables' rows, and the records total says it is a floor (other databases unread)."""
    config = ScanConfig(timeout=2.0, max_databases=1, max_tables=1)
    report = await Scanner(config).scan(
        parse_targets([f"127.0.0.1:{lab['postgres-exposed'].port}"])
    )
    [main] = [f for f in report.findings if f.rule == "postgres.unauthenticated"]
    text = "\n".join(e.text for e in main.evidence)
    databases = re.search(r"; (\d+) databases \(the first 1 read\)", text)
    assert databases is not None and int(databases.group(1)) >= 2, text
    assert re.search(r"\d+ more databases: not read \(the first 1 were\)", text), text
    assert re.search(r"smaller tables: ~\d+ rows; not sampled \(the 1 largest were\)", text), text
    assert main.data.records_at_least and main.data.records_text.startswith("at least ")


async def test_secured_postgres_is_info_never_open(lab: dict[str, Any]) -> None:
    findings = await _scan(lab["postgres-secured"].port)
    assert [f.rule for f in findings] == ["postgres.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED


async def test_default_password_is_found(postgres_default_password: Any) -> None:
    findings = await _scan(postgres_default_password.port)
    [main] = [f for f in findings if f.rule == "postgres.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert any("vendor default password" in e.text for e in main.evidence)


async def test_redis_port_is_not_taken_for_postgres(lab: dict[str, Any]) -> None:
    """Both probes ask every open port; each answers only to its own protocol."""
    ports = [lab["redis-exposed"].port, lab["postgres-exposed"].port]
    report = await Scanner(ScanConfig(timeout=2.0)).scan(parse_targets(["127.0.0.1"]), ports)
    services = {f.target.port: f.target.service for f in report.findings}
    assert services == {ports[0]: "redis", ports[1]: "postgres"}


WRITES = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|COPY|VACUUM|"
    r"REINDEX|CLUSTER|COMMENT|SECURITY|LOCK|NOTIFY|CALL|DO|PREPARE TRANSACTION|"
    r"SET\s+(?!LOCAL|SESSION|statement_timeout|default_transaction_read_only))\b",
    re.IGNORECASE,
)


async def test_probe_issues_no_write_in_the_servers_own_statement_log(
    lab: dict[str, Any],
) -> None:
    """With log_statement=all on the server, every statement the probe sent is a read."""
    instance = lab["postgres-exposed"]
    settings = {"log_statement": "all", "log_line_prefix": "%m [%p] app=%a "}
    with psycopg.connect(instance.url, autocommit=True) as admin:
        for name, value in settings.items():
            admin.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), value))
        admin.execute("SELECT pg_reload_conf()")
    before = instance.log_file.stat().st_size
    try:
        findings = await _scan(instance.port)
        assert any(f.rule == "postgres.unauthenticated" for f in findings)
    finally:
        with psycopg.connect(instance.url, autocommit=True) as admin:
            for name in settings:
                admin.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
            admin.execute("SELECT pg_reload_conf()")
    with instance.log_file.open(encoding="utf-8", errors="replace") as log:
        log.seek(before)
        lines = [line for line in log if "app=perisai" in line and "statement:" in line]
    statements = [line.split("statement:", 1)[1].strip() for line in lines]
    assert len(statements) >= 5  # the log really held the probe's session
    assert any(s.upper().startswith("SELECT") for s in statements)
    assert [s for s in statements if WRITES.search(s.split("--")[0])] == []
