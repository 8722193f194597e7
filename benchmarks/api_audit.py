"""perisai audit-api vs OWASP OFFAT on the lab's API twins: which abuse issues each reports.

Run: ``.venv/bin/python benchmarks/api_audit.py`` (OFFAT from ``.venv-bench/bin/offat``:
``python3.11 -m venv .venv-bench && .venv-bench/bin/pip install offat``). Both tools get the
twin's own spec; the table lists, per twin, the abuse issues each tool reported, the requests
the twin received and the wall time. OFFAT's results are mapped to an issue only when a test it
marks vulnerable names that issue (rate limit, OTP, enumeration, mail…).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from perisai.lab.api_server import KNOWN_ACCOUNT, ApiInstance, start_api_server
from perisai.lab.instances import free_port

ROOT = Path(__file__).resolve().parent.parent
OFFAT = ROOT / ".venv-bench" / "bin" / "offat"
PERISAI = ROOT / ".venv" / "bin" / "perisai"
ISSUES = {
    "api.otp-send-unlimited": ("rate limit", "rate-limit", "bombing", "resource consumption"),
    "api.otp-send-any-recipient": ("any recipient", "sms pumping"),
    "api.otp-verify-bruteforce": ("brute", "lockout"),
    "api.otp-in-response": ("otp", "sensitive data exposure", "data exposure"),
    "api.account-enumeration": ("enumeration",),
    "api.mail-relay": ("mail", "relay"),
    "api.no-challenge": ("captcha", "challenge"),
}


def run_perisai(instance: ApiInstance, sink_port: int) -> tuple[set[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [
            str(PERISAI),
            "audit-api",
            "--spec",
            instance.spec_url,
            "--base-url",
            instance.url,
            "--smtp-sink",
            f"127.0.0.1:{sink_port}",
            "--known-account",
            KNOWN_ACCOUNT,
            "--format",
            "json",
            "--pace",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    return {f["rule"] for f in json.loads(result.stdout)["findings"]}, elapsed


def _vulnerable_names(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        if node.get("vulnerable") is True or node.get("result") is True:
            out.append(" ".join(str(node.get(k, "")) for k in ("test_name", "vuln_details")))
        for value in node.values():
            _vulnerable_names(value, out)
    elif isinstance(node, list):
        for item in node:
            _vulnerable_names(item, out)


def run_offat(instance: ApiInstance, work: Path) -> tuple[set[str], float, int] | None:
    if not OFFAT.exists():
        return None
    output = work / f"offat-{instance.name}.json"
    started = time.monotonic()
    subprocess.run(
        [
            str(OFFAT),
            "-f",
            instance.spec_url,
            "--server",
            instance.url,
            "-of",
            "json",
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=work,
    )
    elapsed = time.monotonic() - started
    names: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        _vulnerable_names(json.loads(output.read_text(encoding="utf-8")), names)
    found = {
        rule
        for rule, words in ISSUES.items()
        if any(word in name.lower() for name in names for word in words)
    }
    return found, elapsed, len(names)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="perisai-bench-"))
    rows: list[tuple[str, str, set[str] | None, float, int, str]] = []
    for exposed in (True, False):
        for tool in ("perisai", "offat"):
            sink_port = free_port()
            instance = start_api_server(work, exposed, smtp_relay=f"127.0.0.1:{sink_port}")
            found: set[str]
            try:
                if tool == "perisai":
                    found, elapsed = run_perisai(instance, sink_port)
                    extra = ""
                else:
                    outcome = run_offat(instance, work)
                    if outcome is None:
                        rows.append((instance.name, tool, None, 0.0, 0, "not installed"))
                        continue
                    found, elapsed, vulnerable_tests = outcome
                    extra = f"{vulnerable_tests} tests marked vulnerable"
                rows.append((instance.name, tool, found, elapsed, len(instance.requests()), extra))
            finally:
                instance.stop()
    header = [
        "twin",
        "tool",
        *(rule.removeprefix("api.") for rule in ISSUES),
        "requests",
        "wall s",
        "notes",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for twin, tool, seen, elapsed, requests, extra in rows:
        cells = ["n/a" if seen is None else ("yes" if rule in seen else "-") for rule in ISSUES]
        print(
            f"| {twin} | {tool} | "
            + " | ".join(cells)
            + f" | {requests} | {elapsed:.1f} | {extra} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
