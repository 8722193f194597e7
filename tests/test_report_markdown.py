"""The Markdown disclosure: what, where, since when, how to verify, how to fix; inert text.

No Markdown renderer is involved: the escaping rules are CommonMark's
(any ASCII punctuation may be backslash-escaped; a code span or fence ends only at a backtick
run of its own length), so the tests assert on those rules directly. The hostile case is the
real Redis of ``test_report_html.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from perisai.lab import Instance
from perisai.report import MarkdownReporter, ReportFormat, ScanHistory, get_reporter
from perisai.report.markdown import md_block, md_code, md_text
from perisai.store import open_store
from tests.clirun import perisai
from tests.reports import MASKED_PHONE, redis_exposed, redis_secured, report
from tests.test_report_html import BREAKOUT, RLO, SCRIPT, scan_of, start_hostile_redis


@pytest.fixture(scope="module")
def hostile_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_hostile_redis(tmp_path_factory.mktemp("hostile-md"))
    try:
        yield instance
    finally:
        instance.stop()


def _unescape(markdown: str) -> str:
    """What CommonMark shows for backslash-escaped punctuation."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


@pytest.mark.parametrize(
    "hostile",
    [
        SCRIPT,
        BREAKOUT,
        "[click](javascript:alert(1))",
        "**bold** _it_ `code` | a | b |",
        "$x$ @all",
    ],
)
def test_prose_escapes_every_markdown_special(hostile: str) -> None:
    escaped = md_text(hostile)
    assert _unescape(escaped) == hostile  # shown exactly as the server wrote it
    assert not re.search(r"(?<!\\)[<>\[\]()*_`|$@!]", escaped.replace("\\\\", ""))


def test_direction_overrides_and_newlines_are_made_visible() -> None:
    assert md_text(f"a{RLO}b\nc") == "a\\\\u202eb\\\\nc"
    assert RLO not in md_code(RLO) and "\n" not in md_code("a\nb")


def test_code_spans_and_fences_cannot_be_closed_from_inside() -> None:
    assert md_code("a``b") == "```a``b```"
    assert md_code("`x`") == "`` `x` ``"
    block = md_block(["```", "````` and more"])
    fence = block.splitlines()[0]
    assert fence == "``````text" and block.endswith("\n``````")


def test_disclosure_has_what_where_since_verify_fix() -> None:
    older = report(redis_exposed())
    older.scan_id, older.started = 1, "2026-11-16T01:00:00+00:00"
    now = report(redis_exposed(), redis_secured())
    now.scan_id = 2
    text = MarkdownReporter(ScanHistory.from_reports([older, now])).render(now)
    assert text.startswith("# Security disclosure: 1 exposed service found by perisai\n")
    for part in (
        "**What:**",
        "**Where:**",
        "**Since when:**",
        "**How to verify**",
        "**How to fix:**",
    ):
        assert part in text
    assert "`redis://127.0.0.1:6379/0`" in text
    assert "first seen `2026-11-16T01:00:00+00:00` (findings store history)" in text
    assert "redis-cli -h 127.0.0.1 -p 6379 INFO keyspace" in text
    assert "requirepass <a long random secret>" in text  # inside a fence: not escaped
    assert MASKED_PHONE in text
    assert "CWE-306 (<https://cwe.mitre.org/data/definitions/306.html>)" in text
    assert "## Also seen: services that required authentication" in text
    assert "about 120 records (estimated) × 2 entity types (EMAIL, PHONE)" in text


@pytest.mark.servers
def test_hostile_server_text_is_escaped(hostile_redis: Instance) -> None:
    text = get_reporter(ReportFormat.MD).render(scan_of(hostile_redis))
    assert RLO not in text
    assert "\\<script\\>" in text  # in prose (titles): escaped
    prose = _outside_code(text)
    assert not re.search(r"(?<!\\)<(script|img|svg)", prose)  # no live HTML tag
    assert "\\<img src=x onerror=alert\\(1\\)\\>" in prose
    assert not re.search(r"(?<!\\)\]\(", prose.replace("](<https", ""))  # no live link
    assert "+60123456789" not in text
    assert "RECOVER\\_YOUR\\_DATA\\\\u202etxt.exe" in text


def _outside_code(markdown: str) -> str:
    """The Markdown with fenced blocks and code spans removed (where HTML would render)."""
    without_fences = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1$", "", markdown)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", without_fences)


@pytest.mark.servers
def test_report_command_writes_markdown_with_first_seen(
    hostile_redis: Instance, tmp_path: Path
) -> None:
    db = tmp_path / "findings.db"
    for _ in range(2):
        scanned = perisai("scan", "127.0.0.1", "--ports", str(hostile_redis.port),
                          "--db", str(db), "--format", "json", "--fail-on", "never")  # fmt: skip
        assert scanned.returncode == 0, scanned.stderr
    out = tmp_path / "disclosure.md"
    shown = perisai("report", "--db", str(db), "--format", "md", "-o", str(out),
                    "--fail-on", "never")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    text = out.read_text(encoding="utf-8")
    with open_store(str(db)) as store:
        first = store.get(1)
    assert first is not None
    assert f"first seen `{first.started}` (findings store history); still open" in text
    assert "from scan #2" in text
