"""perisai audit-api vs OWASP OFFAT on every API target: the lab's twins and three real auth
frameworks from PyPI (django-allauth, fastapi-users, Flask-Security-Too), each vulnerable and
hardened. Which abuse issues each tool reports, how many are right, and what it cost the target.

Run: ``make bench-api`` (OFFAT from ``.venv-bench/bin/offat``). Both tools get the target's own
spec and base URL; each run starts a fresh target, so limits start empty. Per run the table
lists the flaws the configuration has (``expected``), those the tool found, false positives
(a reported flaw the configuration does not have), requests the target received, requests with
DELETE/PUT/PATCH, messages the target sent to anyone but perisai's sinks, the reserved test
range or example.org, and the wall time. OFFAT's results are mapped to an issue only when a
test it marks vulnerable names that issue (rate limit, OTP, enumeration, mail…).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.api_targets: the framework targets the tests use

from tests.api_targets import FLAWS, TWIN_FLAWS, audit_args, reaches_only_sinks, start_target  # noqa: E402

from perisai.lab.api_server import KNOWN_ACCOUNT, start_api_server  # noqa: E402
from perisai.lab.instances import free_port  # noqa: E402

OFFAT = ROOT / ".venv-bench" / "bin" / "offat"
PERISAI = ROOT / ".venv" / "bin" / "perisai"
ISSUES = {
    "api.otp-send-unlimited": ("rate limit", "rate-limit", "bombing", "resource consumption"),
    "api.otp-send-any-recipient": ("any recipient", "sms pumping"),
    "api.otp-verify-bruteforce": ("brute", "lockout"),
    "api.otp-in-response": ("otp", "sensitive data exposure", "data exposure"),
    "api.account-enumeration": ("enumeration",),
    "api.login-enumeration": ("user enumeration", "login enumeration"),
    "api.mail-relay": ("mail", "relay"),
    "api.no-challenge": ("captcha", "challenge"),
}
UNSAFE = {"DELETE", "PUT", "PATCH"}


@dataclass
class Target:
    """One running target, whatever started it: how to audit it and what it saw."""

    name: str
    spec: str
    base_url: str
    perisai_args: list[str]
    expected: frozenset[str]
    requests: Callable[[], list[dict[str, Any]]]
    messages: Callable[[], list[str]]
    stop: Callable[[], None]


@contextlib.contextmanager
def running(kind: str, hardened: bool, work: Path) -> Iterator[Target]:
    smtp, sms = free_port(), free_port()
    if kind == "lab twin":
        twin = start_api_server(
            work,
            not hardened,
            smtp_relay=f"127.0.0.1:{smtp}",
            sms_provider=f"http://127.0.0.1:{sms}",
        )
        args = [
            "audit-api",
            "--spec",
            twin.spec_url,
            "--base-url",
            twin.url,
            "--smtp-sink",
            f"127.0.0.1:{smtp}",
            "--sms-sink",
            f"127.0.0.1:{sms}",
            "--known-account",
            KNOWN_ACCOUNT,
            "--sink-phone",
            KNOWN_ACCOUNT,  # the twin's registered number stands for the tester's own
            "--pace",
            "0",
            "--format",
            "json",
        ]
        target = Target(
            twin.name,
            twin.spec_url,
            twin.url,
            args,
            frozenset() if hardened else TWIN_FLAWS,
            twin.requests,
            lambda: [
                str(m["to"])
                for m in twin.sms()
                if str(m["to"]) != KNOWN_ACCOUNT and not reaches_only_sinks(str(m["to"]))
            ],
            twin.stop,
        )
    else:
        framework = start_target(
            kind, work, hardened=hardened, smtp=("127.0.0.1", smtp), sms=("127.0.0.1", sms)
        )
        target = Target(
            f"{kind.removesuffix('_app')} {'hardened' if hardened else 'vulnerable'}",
            framework.spec,
            framework.base_url,
            audit_args(framework, smtp, sms),
            frozenset() if hardened else FLAWS[kind],
            framework.requests,
            lambda: [
                str(m["to"]) for m in framework.messages() if not reaches_only_sinks(str(m["to"]))
            ],
            framework.stop,
        )
    try:
        yield target
    finally:
        target.stop()


def run_perisai(target: Target) -> set[str]:
    result = subprocess.run(
        [str(PERISAI), *target.perisai_args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return {f["rule"] for f in json.loads(result.stdout)["findings"]}


def _vulnerable_names(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        if node.get("vulnerable") is True or node.get("result") is True:
            out.append(" ".join(str(node.get(k, "")) for k in ("test_name", "vuln_details")))
        for value in node.values():
            _vulnerable_names(value, out)
    elif isinstance(node, list):
        for item in node:
            _vulnerable_names(item, out)


def run_offat(target: Target, work: Path) -> tuple[set[str], int]:
    output = work / f"offat-{time.monotonic_ns()}.json"
    subprocess.run(
        [
            str(OFFAT),
            "-f",
            target.spec,
            "--server",
            target.base_url,
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
    names: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        _vulnerable_names(json.loads(output.read_text(encoding="utf-8")), names)
    found = {
        rule
        for rule, words in ISSUES.items()
        if any(word in name.lower() for name in names for word in words)
    }
    return found, len(names)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="perisai-bench-"))
    tools = ["perisai"] + (["OFFAT"] if OFFAT.exists() else [])
    print(
        "| target | tool | expected | found | false positives | requests | unsafe requests "
        "| messages outside the sinks | wall s | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("lab twin", *sorted(FLAWS)):
        for hardened in (False, True):
            for tool in tools:
                with running(kind, hardened, work) as target:
                    started = time.monotonic()
                    note = ""
                    if tool == "perisai":
                        found = run_perisai(target)
                    else:
                        found, flagged = run_offat(target, work)
                        note = f"{flagged} tests marked vulnerable"
                    elapsed = time.monotonic() - started
                    received = target.requests()
                    unsafe = sum(r["method"] in UNSAFE for r in received)
                    right = found & target.expected
                    wrong = found - target.expected
                    print(
                        f"| {target.name} | {tool} | {len(target.expected)} | {len(right)} | "
                        f"{len(wrong)}{' (' + ', '.join(sorted(wrong)) + ')' if wrong else ''} | "
                        f"{len(received)} | {unsafe} | {len(target.messages())} | "
                        f"{elapsed:.1f} | {note} |",
                        flush=True,
                    )
    if "OFFAT" not in tools:
        print(f"\nOFFAT not installed at {OFFAT}: `make bench-api` installs it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
