"""The HTML report in a real browser: Debian's Chromium, driven by Playwright (no download).

A lab scan (the session's exposed and secured Redis and PostgreSQL, plus the hostile Redis of
``test_report_html.py``) is saved twice to a findings store; ``perisai report --format html``
writes the page and ``--format json`` the findings it must agree with. The page is opened from
disk with every request other than the file itself aborted and recorded: the summary must equal
the JSON's numbers, the filters and the search must hide and show the right cards, no script
of the server's may run (no dialog, no console error, no CSP violation) and nothing may be
fetched. A screenshot goes into the test's tmp dir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

from perisai.lab import Instance, scan_ports
from tests.clirun import perisai
from tests.test_report_html import BREAKOUT, SCRIPT, start_hostile_redis

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed (apt-get install -y --no-install-recommends "
        "chromium; `make test` does it when root)",
    ),
]


@pytest.fixture(scope="module")
def hostile_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = start_hostile_redis(tmp_path_factory.mktemp("hostile-browser"))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def reports(
    lab: dict[str, Instance], hostile_redis: Instance, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """The HTML report of the latest of two lab scans, and its JSON twin."""
    workdir = tmp_path_factory.mktemp("browser-report")
    db = workdir / "findings.db"
    instances = [*lab.values(), hostile_redis]
    ports = ",".join(str(port) for instance in instances for port in scan_ports(instance))
    for _ in range(2):
        scanned = perisai("scan", "127.0.0.1", "--ports", ports, "--db", str(db),
                          "--format", "json", "--fail-on", "never")  # fmt: skip
        assert scanned.returncode == 0, scanned.stderr
    html = workdir / "report.html"
    shown = perisai("report", "--db", str(db), "--format", "html", "-o", str(html),
                    "--fail-on", "never")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    as_json = perisai("report", "--db", str(db), "--format", "json", "--fail-on", "never")
    assert as_json.returncode == 0, as_json.stderr
    return html, json.loads(as_json.stdout)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


def _expected(document: dict[str, Any]) -> dict[str, int]:
    """The summary numbers, computed from the JSON findings contract alone."""
    findings = document["findings"]
    numbers = {s: 0 for s in ("critical", "high", "medium", "low", "info")}
    records: dict[tuple[str, int, str], int] = {}
    exposed: set[tuple[str, int, str]] = set()
    entity_types: set[str] = set()
    for f in findings:
        numbers[f["severity"]] += 1
        key = (f["target"]["host"], f["target"]["port"], f["target"]["service"])
        if f["auth"] in ("none", "default-credentials") and f["severity"] in ("critical", "high"):
            exposed.add(key)
            if f["data"]["entities"]:
                records[key] = max(records.get(key, 0), f["data"]["records_estimated"] or 0)
                if not f["rule"].startswith("compromise."):
                    entity_types.update(f["data"]["entities"])
    numbers["exposed"] = len(exposed)
    numbers["records"] = sum(records.values())
    numbers["entity-types"] = len(entity_types)
    return numbers


class Watched:
    """A page whose console errors, dialogs and network requests are recorded."""

    def __init__(self, browser: Browser, html: Path, width: int = 1280) -> None:
        self.page: Page = browser.new_page(viewport={"width": width, "height": 900})
        self.url = html.resolve().as_uri()
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.route("**/*", self._route)
        self.page.goto(self.url)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route: Route, request: Request) -> None:
        if request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(request.url)
            route.abort()

    def visible_cards(self) -> int:
        return int(self.page.locator("article.card:visible").count())

    def assert_quiet(self) -> None:
        assert self.console == [] and self.dialogs == []
        assert self.blocked == [] and self.requests == [self.url]


def test_summary_matches_the_json_report(
    browser: Browser, reports: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    html, document = reports
    watched = Watched(browser, html)
    page = watched.page
    shown = {
        name: int(page.locator(f'[data-summary="{name}"]').inner_text().replace(",", ""))
        for name in _expected(document)
    }
    assert shown == _expected(document)
    assert shown["critical"] >= 3 and shown["exposed"] >= 3  # the lab's exposed twins
    assert page.locator("article.card").count() == len(document["findings"])
    assert page.locator("#compromised li").count() >= 3  # ransom notes and the cron job
    compromised = {
        (f["target"]["host"], f["target"]["port"])
        for f in document["findings"]
        if f["ransom_note"] or f["rule"].startswith("compromise.")
    }
    assert page.locator('[data-summary="compromised"]').inner_text() == str(len(compromised))
    for chart in ("severity", "entities", "exposed-over-time", "records-over-time"):
        assert page.locator(f'svg[data-chart="{chart}"]').count() == 1
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    watched.assert_quiet()


def test_filters_and_search_work_offline(
    browser: Browser, reports: tuple[Path, dict[str, Any]], hostile_redis: Instance
) -> None:
    html, document = reports
    findings = document["findings"]
    watched = Watched(browser, html)
    page = watched.page
    assert watched.visible_cards() == len(findings)
    for severity in ("high", "medium", "low", "info"):
        page.locator(f'input[data-filter-severity][value="{severity}"]').uncheck()
    critical = [f for f in findings if f["severity"] == "critical"]
    assert watched.visible_cards() == len(critical)
    assert page.locator("#shown-count").inner_text() == str(len(critical))
    page.locator("#filter-service").select_option("postgres")
    assert watched.visible_cards() == sum(
        1 for f in critical if f["target"]["service"] == "postgres"
    )
    page.locator("#filter-service").select_option("")
    for severity in ("high", "medium", "low", "info"):
        page.locator(f'input[data-filter-severity][value="{severity}"]').check()
    port = hostile_redis.port
    page.locator("#filter-search").fill(f"127.0.0.1:{port}")
    assert watched.visible_cards() == sum(1 for f in findings if f["target"]["port"] == port)
    page.locator("#filter-search").fill("no such thing anywhere")
    assert watched.visible_cards() == 0
    page.locator("#filter-search").fill("")
    assert watched.visible_cards() == len(findings)
    watched.assert_quiet()


def test_hostile_text_is_shown_literally_and_runs_nothing(
    browser: Browser, reports: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    html, _ = reports
    watched = Watched(browser, html, width=360)  # a small phone
    page = watched.page
    text = page.locator("body").inner_text()
    assert SCRIPT in text and BREAKOUT in text and "<svg onload=alert(2)>" in text
    assert "RECOVER_YOUR_DATA\\u202etxt.exe" in text and "\u202e" not in text
    counts = page.evaluate(
        "() => [document.scripts.length, document.images.length,"
        " document.querySelectorAll('[onerror],[onload],iframe,object,embed').length]"
    )
    assert counts == [1, 0, 0]
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
        ".slice(0, 5).map(e => `${e.tagName}.${e.className} ${e.textContent.slice(0, 40)}`)"
    )
    assert overflow <= 1, f"the page scrolls sideways on a phone: {wide}"
    folded = page.locator('article.card[data-severity="info"] details.folded').first
    assert not folded.locator("pre.verify").is_visible()  # info details start folded
    folded.locator("summary").click()
    assert folded.locator("pre.verify").is_visible()
    page.screenshot(path=str(tmp_path / "report-phone.png"), full_page=True)
    page.emulate_media(media="print")
    assert page.locator("#filters").is_hidden()
    watched.assert_quiet()
