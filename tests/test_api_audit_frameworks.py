"""``perisai audit-api`` against real authentication frameworks from PyPI (django-allauth's
headless API, fastapi-users, Flask-Security-Too), each in a vulnerable and a hardened
configuration, their mail and texts pointed at perisai's sinks (tests/api_targets).

What must hold on every one: each flaw of a vulnerable configuration found and *proven* (a sink
received the message, or the answer carried the code); no finding on a hardened one; no unsafe
method received; no message to anyone but the sinks, the reserved test range or RFC 2606's
example.org (checked from the targets' own logs); every request the target received listed in
the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from perisai.lab.instances import free_port
from tests.api_targets import (
    FLAWS,
    SINK_EMAIL,
    SINK_PHONE,
    RunningTarget,
    audit_args,
    reaches_only_sinks,
    start_target,
)
from tests.clirun import perisai

SAFE_METHODS = {"GET", "POST"}


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[RunningTarget]]:
    targets: list[RunningTarget] = []
    yield targets
    for target in targets:
        target.stop()


def audit(target: RunningTarget, smtp: int, sms: int) -> dict[str, object]:
    result = perisai(*audit_args(target, smtp, sms), timeout=600)
    assert result.returncode in (0, 1), result.stderr + target.log()
    report: dict[str, object] = json.loads(result.stdout)
    report["stderr"] = result.stderr
    return report


@pytest.mark.parametrize("hardened", [False, True], ids=["vulnerable", "hardened"])
@pytest.mark.parametrize("module", sorted(FLAWS))
def test_audit_api_on_a_real_framework(
    module: str, hardened: bool, tmp_path: Path, started: list[RunningTarget]
) -> None:
    smtp, sms = free_port(), free_port()
    target = start_target(
        module, tmp_path, hardened=hardened, smtp=("127.0.0.1", smtp), sms=("127.0.0.1", sms)
    )
    started.append(target)
    report = audit(target, smtp, sms)
    findings = report["findings"]
    assert isinstance(findings, list)
    found = {f["rule"] for f in findings}
    if hardened:
        assert not [f for f in findings if f["severity"] in ("critical", "high", "medium")], (
            findings
        )
        assert found == set(), report["stderr"]
    else:
        assert found == FLAWS[module], report["stderr"]
        for finding in findings:
            summary = finding["evidence"][0]
            assert "indicated" not in summary, summary
            if finding["rule"] in ("api.otp-send-unlimited", "api.otp-verify-bruteforce"):
                assert summary.startswith("proven"), summary
                assert finding["severity"] == "high"
            text = " ".join(finding["evidence"])
            assert SINK_PHONE not in text and SINK_EMAIL not in text  # masked
    received = target.requests()
    assert {r["method"] for r in received} <= SAFE_METHODS, received
    messages = target.messages()
    assert all(reaches_only_sinks(m["to"]) for m in messages), messages
    if not hardened:
        assert messages  # the flaws were proven by messages the target really sent
    sent = report["requests"]
    assert isinstance(sent, list)
    assert {r["method"] for r in sent} <= SAFE_METHODS
    # the target saw what the report lists, plus the launcher's readiness GET / and, where
    # the target serves its own spec, perisai's download of it
    spec_download = 0 if target.spec.startswith("/") else 1
    assert len(received) == len(sent) + 1 + spec_download
