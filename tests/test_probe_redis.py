"""Redis probe against real redis-server instances: exposed, secured, default password."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
import redis

from perisai.findings import Auth, Severity
from perisai.interleave import round_robin
from perisai.lab import start_redis
from perisai.probes import ScanConfig
from perisai.probes.redis import _key_family
from perisai.scanner import Scanner
from perisai.targets import parse_targets
from tests.clirun import perisai

pytestmark = pytest.mark.servers

READ_ONLY_COMMANDS = {
    "PING",
    "AUTH",
    "INFO",
    "SELECT",
    "SCAN",
    "TYPE",
    "GETRANGE",
    "HSCAN",
    "LRANGE",
    "SSCAN",
    "ZRANGE",
    "XRANGE",
    "HELLO",  # the connection handshake (protocol version); touches no data
}


async def _scan(port: int) -> list[Any]:
    report = await Scanner(ScanConfig(timeout=2.0)).scan(parse_targets([f"127.0.0.1:{port}"]))
    return report.findings


async def test_exposed_redis_is_critical_with_personal_data(lab: dict[str, Any]) -> None:
    exposed = lab["redis-exposed"]
    findings = await _scan(exposed.port)
    [main] = [f for f in findings if f.rule == "redis.unauthenticated"]
    assert main.target.service == "redis"  # recognised on a random port by its answer
    assert main.auth is Auth.NONE
    assert main.severity is Severity.CRITICAL
    assert main.data.entities["PHONE"] >= 1
    assert main.data.entities["EMAIL"] >= 1
    assert main.data.records_estimated and main.data.records_estimated >= 200
    assert any("+PONG without AUTH" in e.text for e in main.evidence)


async def test_planted_cron_job_is_found_among_hundreds_of_keys(lab: dict[str, Any]) -> None:
    findings = await _scan(lab["redis-exposed"].port)
    [planted] = [f for f in findings if f.rule == "compromise.planted-payload"]
    assert planted.severity is Severity.CRITICAL
    assert planted.object == "db0/backup1"
    assert "cron job" in planted.evidence[0].text and "curl" in planted.evidence[0].text


async def test_sample_reaches_every_kind_of_key(tmp_path: Path) -> None:
    """Two user hashes among 600 counters: a sample of the first keys SCAN returns would miss
    them (SCAN's order is the server's hash order, random per start); one per kind does not."""
    instance = start_redis("redis-many-counters", tmp_path, exposed=True)
    try:
        client = redis.Redis(host=instance.host, port=instance.port)
        pipe = client.pipeline(transaction=False)
        for n in range(600):
            pipe.set(f"metrics:requests:{n}", str(n * 7))
        pipe.hset("user:1", mapping={"email": "siti.aminah@example.org", "plan": "free"})
        pipe.hset("user:2", mapping={"email": "wei.ling@example.net", "plan": "pro"})
        pipe.execute()
        client.close()
        findings = await _scan(instance.port)
    finally:
        instance.stop()
    [main] = [f for f in findings if f.rule == "redis.unauthenticated"]
    assert main.data.entities.get("EMAIL") == 2
    assert main.severity is Severity.CRITICAL


def test_key_families_and_turns() -> None:
    assert _key_family("log:msg:17") == _key_family("log:msg:abc") == "log:msg:"
    assert _key_family("user:17") != _key_family("log:msg:17")
    assert _key_family("backup12") == _key_family("backup3") == "backup#"
    groups: list[list[bytes | str]] = [["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]
    assert round_robin(groups, 5) == ["a1", "b1", "c1", "a2", "c2"]
    assert round_robin(groups, 0) == []
    assert round_robin(groups, 99) == ["a1", "b1", "c1", "a2", "c2", "a3"]


async def test_secured_redis_is_info_never_open(lab: dict[str, Any]) -> None:
    findings = await _scan(lab["redis-secured"].port)
    assert [f.rule for f in findings] == ["redis.auth-required"]
    assert findings[0].severity is Severity.INFO
    assert findings[0].auth is Auth.REQUIRED
    assert not findings[0].data.has_personal_data


async def test_default_password_is_found(redis_default_password: Any) -> None:
    findings = await _scan(redis_default_password.port)
    [main] = [f for f in findings if f.rule == "redis.default-credentials"]
    assert main.auth is Auth.DEFAULT_CREDENTIALS
    assert main.severity in (Severity.HIGH, Severity.CRITICAL)


def _phone_digits_in(port: int, password: str | None = None) -> set[str]:
    """Every phone number stored in the server, as a bare digit string (what must not leak)."""
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    found: set[str] = set()
    for key in client.scan_iter(count=500):
        if client.type(key) != b"string":
            continue
        text = client.get(key).decode("utf-8", "replace")  # type: ignore[union-attr]
        for match in phonenumbers.PhoneNumberMatcher(text, "MY"):
            found.add(str(match.number.national_number))
    client.close()
    return found


def test_json_output_masks_every_number(lab: dict[str, Any], tmp_path: Path) -> None:
    port = lab["redis-exposed"].port
    result = perisai("scan", f"127.0.0.1:{port}", "--format", "json", cwd=tmp_path)
    assert result.returncode == 1  # critical ≥ the default --fail-on high
    document = json.loads(result.stdout)
    [main] = [f for f in document["findings"] if f["rule"] == "redis.unauthenticated"]
    assert main["auth"] == "none" and main["data"]["entities"]["PHONE"] >= 1
    # a masked number of any region: country code, some digits starred, the last two shown
    assert any(re.search(r"PHONE: \+\d+ [\d -]*\*[\d* -]*\d\d$", e) for e in main["evidence"])
    assert any(e.startswith("e.g. EMAIL: ") for e in main["evidence"])  # one of each kind first
    stored = _phone_digits_in(port)
    assert stored, "the lab holds phone numbers"
    whole_output = result.stdout + result.stderr
    for digits in stored:
        assert digits not in whole_output
    database = (tmp_path / "perisai.db").read_bytes()
    for digits in stored:
        assert digits.encode() not in database


def test_probe_sends_only_read_commands(lab: dict[str, Any]) -> None:
    """Redis MONITOR sees every command the scan sends: none of them may write."""
    port = lab["redis-exposed"].port
    marker = "perisai-test-end-of-scan"
    watcher = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    seen: list[str] = []
    with watcher.monitor() as feed:  # type: ignore[no-untyped-call]
        asyncio.run(_scan(port))
        redis.Redis(host="127.0.0.1", port=port).echo(marker)  # the test's own end marker
        for event in feed.listen():
            if marker in str(event["command"]):
                break
            seen.append(str(event["command"]).split(" ", 1)[0].upper())
            assert len(seen) < 5000, "the scan sent far more commands than a bounded sample needs"
    watcher.close()
    assert {"PING", "INFO", "SCAN"} <= set(seen)
    assert set(seen) - READ_ONLY_COMMANDS == set()


def test_library_scan_without_the_cli(lab: dict[str, Any]) -> None:
    import perisai

    scan = perisai.scan(["127.0.0.1"], ports=[lab["redis-secured"].port])
    assert [f.rule for f in scan.findings] == ["redis.auth-required"]
    assert scan.to_dict()["tool"] == "perisai"
