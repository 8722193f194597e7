"""One evidence path (issue 16 item 2): a real Redis whose key names carry personal data, the
common key shape ``inbox:<email>:<phone>``, and a terminal escape; none of it may reach any
report format or either findings store unmasked, while the findings themselves are made."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from perisai.evidence import printable, safe_findings, server_text
from perisai.findings import Evidence, Finding, Severity, Target
from perisai.lab import start_redis
from perisai.lab.seed import RANSOM_NOTE
from perisai.probes.common import LARGEST_REPLY_BYTES
from tests.clirun import perisai

pytestmark = pytest.mark.servers

NOTE_KEY = "README:siti.aminah@example.org:+60198765432"
BIG_KEY = "inbox:wei.ling@example.net:+60123456789"
ID_KEY = "user:900101-14-5678"
ESCAPE_KEY = "\x1b[31mred\x1b[0m"
SECRETS = ("siti.aminah", "wei.ling", "198765432", "123456789", "900101", "\x1b")


@pytest.fixture
def named_redis(tmp_path: Path) -> Iterator[int]:
    instance = start_redis("redis-named-keys", tmp_path, exposed=True)
    try:
        client = redis.Redis(host=instance.host, port=instance.port)
        client.set(NOTE_KEY, RANSOM_NOTE)
        client.hset(BIG_KEY, mapping={"body": "x" * (LARGEST_REPLY_BYTES + 10)})  # "not read"
        client.hset(ID_KEY, mapping={"plan": "free"})
        client.set(ESCAPE_KEY, "hello there")
        client.close()
        yield instance.port
    finally:
        instance.stop()


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_key_names_reach_no_report_or_store_unmasked(named_redis: int, tmp_path: Path) -> None:
    store = tmp_path / "perisai.db"
    scan = perisai(
        "scan", f"127.0.0.1:{named_redis}", "--format", "json", "--db", str(store),
        "--fail-on", "never", cwd=tmp_path,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    document = json.loads(scan.stdout)
    rules = {finding["rule"] for finding in document["findings"]}
    assert {"redis.unauthenticated", "compromise.ransom-note"} <= rules
    [note] = [f for f in document["findings"] if f["rule"] == "compromise.ransom-note"]
    assert note["object"].startswith("db0/README:") and "@example.org" in note["object"]
    assert any("not read" in line for f in document["findings"] for line in f["evidence"])
    outputs = {"scan json": scan.stdout + scan.stderr}
    for fmt in ("table", "json", "sarif", "html", "md"):
        shown = perisai("report", "--db", str(store), "--format", fmt, "--fail-on", "never")
        assert shown.returncode == 0, shown.stderr
        outputs[fmt] = shown.stdout
    for name, text in outputs.items():
        assert _leaks(text) == [], name
    assert _leaks(_stored_text(store)) == []


def _stored_text(store: Path) -> str:
    """Every text value in the SQLite store. Not the file's bytes: a one-byte secret (ESC) turns
    up there by chance, in page headers and integers, as one run in four showed."""
    with sqlite3.connect(store) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        values = [
            value
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')  # names read from the schema
            for value in row
        ]
    assert values, "the store holds nothing"
    return "\n".join(value for value in values if isinstance(value, str))


def test_postgres_store_holds_no_key_name_unmasked(
    named_redis: int, postgres_store_url: str, tmp_path: Path
) -> None:
    scan = perisai(
        "scan", f"127.0.0.1:{named_redis}", "--db", postgres_store_url, "--fail-on", "never",
        cwd=tmp_path,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    with psycopg.connect(postgres_store_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT * FROM perisai_findings").fetchall()
        scans = conn.execute("SELECT * FROM perisai_scans").fetchall()
    assert rows
    assert _leaks(repr(rows) + repr(scans)) == []


def test_masking_twice_and_twins_stay_apart() -> None:
    """Server text already made safe is unchanged by a second pass, and two objects that
    mask alike keep two ids."""
    target = Target("127.0.0.1", 6379, "redis")

    def note(key: str) -> Finding:
        return Finding(
            "compromise.ransom-note", Severity.CRITICAL, f"Ransom note at db0/{key}", target,
            evidence=(Evidence(f"note at db0/{key}\x1b[2J"),), object=f"db0/{key}",
        )  # fmt: skip

    first, second = safe_findings(
        [note("README:siti@example.org"), note("README:sam@example.org")], ("MY",)
    )
    assert first.id != second.id and second.object.endswith(" #2")
    assert "siti" not in first.title + first.object + first.evidence[0].text
    assert "\x1b" not in first.evidence[0].text and "\\x1b" in first.evidence[0].text
    assert safe_findings([first], ("MY",))[0] == first
    assert server_text(printable("\u202eevil"), ("MY",)) == "\\u202eevil"
