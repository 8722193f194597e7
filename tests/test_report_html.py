"""The HTML report: self-contained, complete, and inert whatever a scanned server wrote.

The hostile case is a real ``redis-server`` (started by the lab machinery on a free loopback
port) whose key names and values carry ``<script>``, an ``onerror`` attribute breakout and
U+202E (right-to-left override); it goes through a real scan and the page is checked with
Python's own HTML parser: no element or attribute came from the server, and its text is shown
literally (direction overrides written as ``\\u202e``). ``test_report_browser.py`` checks the
same page in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis

from perisai.findings import ScanReport
from perisai.lab import Instance, start_redis
from perisai.probes import ScanConfig
from perisai.report import HtmlReporter, ReportFormat, ScanHistory, get_reporter
from perisai.report.history import personal_data_records
from perisai.scanner import Scanner
from perisai.store import open_store
from perisai.targets import parse_targets
from tests.clirun import perisai
from tests.reports import MASKED_PHONE, redis_exposed, redis_secured, report, unknown_rule

SCRIPT = "<script>alert('key')</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
RLO = "\u202e"
# Note-like key names (so the probe reports them as ransom notes, by name) holding the payloads.
HOSTILE_KEYS = {
    f"README{SCRIPT}": (
        f"{BREAKOUT} All your data is backed up. Pay 0.0105 BTC to "
        "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh to recover your database. " + SCRIPT
    ),
    f"RECOVER_YOUR_DATA{RLO}txt.exe{BREAKOUT}": (
        f"{RLO}Your database was downloaded and deleted. Send 0.01 BTC to the wallet "
        "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh to restore the data. "
        "<svg onload=alert(2)>"
    ),
}


def start_hostile_redis(base_dir: Path) -> Instance:
    """A real, exposed Redis seeded with hostile key names and values (caller stops it)."""
    instance = start_redis("hostile-redis", base_dir, exposed=True)
    client = redis.Redis(host=instance.host, port=instance.port, socket_timeout=5)
    try:
        for key, value in HOSTILE_KEYS.items():
            client.set(key.encode(), value.encode())
        client.hset(f"user:{BREAKOUT}".encode(), mapping={"phone": "+60123456789", "x": SCRIPT})
    finally:
        client.close()
    return instance


def scan_of(*instances: Instance) -> ScanReport:
    """A real scan of these loopback servers, as ``perisai scan`` runs it."""
    ports = [instance.port for instance in instances]
    return asyncio.run(Scanner(ScanConfig(timeout=3.0)).scan(parse_targets(["127.0.0.1"]), ports))


@pytest.fixture(scope="module")
def hostile_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_hostile_redis(tmp_path_factory.mktemp("hostile"))
    try:
        yield instance
    finally:
        instance.stop()


class Page(HTMLParser):
    """What a browser would build from the page: elements, attributes, scripts, text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.text_parts: list[str] = []
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def csp(self) -> str:
        metas = [a for a in self.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
        assert len(metas) == 1
        return metas[0]["content"] or ""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assert_inert(page: Page) -> None:
    """Only our one script runs; nothing fetches; no server-made element or handler exists."""
    assert len(page.scripts) == 1 and len(page.all("script")) == 1
    assert page.all("script")[0] == {}  # inline, no src
    csp = page.csp()
    assert "default-src 'none'" in csp
    assert f"script-src {_sha256(page.scripts[0])}" in csp  # nothing else may run
    assert f"style-src {_sha256(page.styles[0])}" in csp
    for tag, attrs in page.tags:
        assert tag not in ("img", "iframe", "object", "embed", "base", "svg:script"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "xlink:href"):
                assert value is not None
                assert value.startswith(("#", "https://", "data:,")), (tag, name, value)


def test_report_is_self_contained_and_complete() -> None:
    scan = report(redis_exposed(), redis_secured(), unknown_rule())
    scan.scan_id = 7
    html = HtmlReporter().render(scan)
    page = Page(html)
    assert_inert(page)
    assert not re.search(
        r"(?i)<link[^>]+stylesheet|@import|url\(|https?://[^\"<\s]*\.(js|css)", html
    )
    text = page.text
    assert "Redis readable without authentication" in text
    assert MASKED_PHONE in text  # masked evidence, as the probe wrote it
    assert "+60123456789" not in html
    assert "redis-cli -h 127.0.0.1 -p 6379 INFO keyspace" in text  # how to verify
    assert "requirepass" in text and "protected-mode yes" in text  # concrete config lines
    assert "CWE-306" in text and "OWASP API8:2023" in text
    cards = page.all("article")
    assert [c["data-severity"] for c in cards] == ["critical", "medium", "info"]
    assert {c["data-service"] for c in cards} == {"redis", "example"}
    summary = {a["data-summary"]: a for a in page.all("span") if "data-summary" in a}
    assert set(summary) >= {"critical", "high", "medium", "low", "info", "exposed", "records"}
    assert len(page.all("svg")) == 2  # severity and entities; no history, no trend charts
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.all(
        "meta"
    )
    assert "@media print" in page.styles[0] and "@media (max-width" in page.styles[0]


def _numbers(html: str) -> dict[str, int]:
    found = re.findall(r'data-summary="([a-z-]+)">([\d,]+)<', html)
    return {name: int(value.replace(",", "")) for name, value in found}


def test_summary_counts_match_the_findings() -> None:
    findings = [redis_exposed(), redis_exposed(port=6390), redis_secured(), unknown_rule()]
    numbers = _numbers(HtmlReporter().render(report(*findings)))
    assert numbers["critical"] == 2 and numbers["medium"] == 1 and numbers["info"] == 1
    assert numbers["high"] == numbers["low"] == 0
    assert numbers["exposed"] == 2  # two readable Redis servers
    assert numbers["records"] == 240 == personal_data_records(findings)
    assert numbers["entity-types"] == 2  # PHONE, EMAIL


def test_history_draws_trends_and_first_seen() -> None:
    older = report(redis_exposed())
    older.scan_id, older.started = 1, "2026-11-16T01:00:00+00:00"
    now = report(redis_exposed(), redis_exposed(port=6390))
    now.scan_id = 2
    page = Page(HtmlReporter(ScanHistory.from_reports([now, older])).render(now))
    charts = {a["data-chart"] for a in page.all("svg")}
    assert charts == {"severity", "entities", "exposed-over-time", "records-over-time"}
    assert "#1" in page.text and "#2" in page.text
    assert "2026-11-16T01:00:00+00:00" in page.text  # the older finding's first-seen date

    first = report(redis_exposed())
    first.scan_id = 1
    alone = Page(HtmlReporter(ScanHistory.from_reports([first])).render(first))
    assert {a["data-chart"] for a in alone.all("svg")} == {"severity", "entities"}
    assert "A trend needs two scans of these targets" in alone.text  # one bar says nothing


def test_info_findings_are_folded_and_the_rest_open() -> None:
    """What needs action leads the page: an info card shows its title, its details fold."""
    html = HtmlReporter().render(report(redis_exposed(), redis_secured(), unknown_rule()))
    cards = {
        chunk.split('"', 1)[0]: chunk.split("</article>", 1)[0]
        for chunk in html.split('data-severity="')[1:]
    }
    assert '<details class="folded"><summary>details</summary>' in cards["info"]
    assert "Redis requires authentication" in cards["info"].split("<details", 1)[0]
    assert "<details" not in cards["critical"] and "<details" not in cards["medium"]


def test_unsafe_reference_urls_are_not_links() -> None:
    scan = report(redis_exposed())
    rule = scan.rules["redis.unauthenticated"]
    scan.rules[rule.id] = replace(rule, references=("javascript:alert(1)",))
    page = Page(HtmlReporter().render(scan))
    assert_inert(page)
    assert "javascript:alert(1)" in page.text


@pytest.mark.servers
def test_hostile_server_text_is_escaped_and_shown_literally(hostile_redis: Instance) -> None:
    scan = scan_of(hostile_redis)
    notes = [f for f in scan.findings if f.rule == "compromise.ransom-note"]
    assert len(notes) == 2, [f.title for f in scan.findings]
    html = get_reporter(ReportFormat.HTML).render(scan)
    page = Page(html)
    assert_inert(page)
    text = page.text
    # The markup shows as text, exactly; the override is shown as an escape, never applied.
    assert SCRIPT in text and BREAKOUT in text and "<svg onload=alert(2)>" in text
    assert "RECOVER_YOUR_DATA\\u202etxt.exe" in text
    assert RLO not in html
    assert "<script>alert" not in html and "<img" not in html and "<svg onload" not in html
    assert "+60123456789" not in html


@pytest.mark.servers
def test_scan_and_report_commands_write_html(hostile_redis: Instance, tmp_path: Path) -> None:
    db = tmp_path / "findings.db"
    out = tmp_path / "scan.html"
    scanned = perisai(
        "scan", "127.0.0.1", "--ports", str(hostile_redis.port), "--db", str(db),
        "--format", "html", "-o", str(out), "--fail-on", "never",
    )  # fmt: skip
    assert scanned.returncode == 0, scanned.stderr
    assert_inert(Page(out.read_text(encoding="utf-8")))
    again = perisai("scan", "127.0.0.1", "--ports", str(hostile_redis.port), "--db", str(db),
                    "--format", "json", "--fail-on", "never")  # fmt: skip
    assert again.returncode == 0, again.stderr
    target = tmp_path / "report.html"
    shown = perisai("report", "--db", str(db), "--format", "html", "-o", str(target),
                    "--fail-on", "never")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    page = Page(target.read_text(encoding="utf-8"))
    assert_inert(page)
    charts = {a["data-chart"] for a in page.all("svg")}
    assert {"exposed-over-time", "records-over-time"} <= charts
    with open_store(str(db)) as store:
        assert [s.scan_id for s in store.list_scans()] == [2, 1]
    assert "#1" in page.text and "#2" in page.text  # both scans on the trend charts
