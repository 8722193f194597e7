#!/usr/bin/env python3
"""Regenerate docs/images/report.png: the HTML report of a scan of the local lab.

    .venv/bin/python scripts/report_screenshot.py                # Redis and PostgreSQL twins
    .venv/bin/python scripts/report_screenshot.py --all          # every service of the lab
    .venv/bin/python scripts/report_screenshot.py -s redis -s mysql --out /tmp/r.png

Brings the lab up in a temporary directory (loopback, free ports), scans it twice into a
temporary findings store (so the trend charts have two points), renders the HTML report,
screenshots the top of it with Debian's Chromium driven by Playwright (no browser download),
and brings the lab down again, whatever happened. Needs: `apt-get install chromium` and the
`playwright` Python package.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from perisai.lab import CORE_SERVICES, Lab, scan_ports
from perisai.probes import ScanConfig
from perisai.report import HtmlReporter, load_history
from perisai.scanner import Scanner
from perisai.store import open_store
from perisai.targets import parse_targets

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "images" / "report.png"
CHROMIUM = Path("/usr/bin/chromium")


def build_report(workdir: Path, services: list[str] | None) -> Path:
    """Lab up, two scans into a store, the HTML report written; lab down. Returns the page."""
    lab = Lab(workdir / "lab", services=services)
    print(f"starting the lab ({', '.join(lab.names)})…", file=sys.stderr)
    instances = lab.up()
    try:
        ports = [port for instance in instances for port in scan_ports(instance)]
        with open_store(str(workdir / "findings.db")) as store:
            for _ in range(2):
                report = asyncio.run(
                    Scanner(ScanConfig(timeout=3.0)).scan(parse_targets(["127.0.0.1"]), ports)
                )
                store.save(report)
            history = load_history(store, report)
    finally:
        lab.down()
        print("lab is down", file=sys.stderr)
    page = workdir / "report.html"
    page.write_text(HtmlReporter(history).render(report), encoding="utf-8")
    return page


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    """The top ``height`` pixels of the page (summary, charts, first cards) as a PNG."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            tab.route(
                "**/*",
                lambda route, request: (
                    route.continue_() if request.url.startswith("file:") else route.abort()
                ),
            )
            tab.goto(page.resolve().as_uri())
            out.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("-s", "--service", action="append", help="lab service (repeatable)")
    parser.add_argument("--all", action="store_true", help="every service of the lab")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    parser.add_argument("--keep-html", type=Path, help="also copy the HTML report here")
    options = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 2
    services = None if options.all else (options.service or list(CORE_SERVICES))
    with tempfile.TemporaryDirectory(prefix="perisai-shot-") as tmp:
        page = build_report(Path(tmp), services)
        if options.keep_html:
            options.keep_html.write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
        screenshot(page, options.out, options.width, options.height)
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
