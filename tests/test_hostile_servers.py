"""A whole scan against hostile servers, run as a user runs it: in a process of its own.

The scan must end within its deadline, stay small in memory whatever the server announces or
streams (its peak RSS is measured with ``wait4``), and say in its findings what went wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from benchmarks.procstat import wait_with_peak_rss

from tests import hostile
from tests.clirun import SRC

MAX_RSS_MB = 300  # a scan that buffered what these servers announce would need gigabytes
TIMEOUT = 1.0
DEADLINE = 20.0


def _scan(port: int, workdir: Path) -> tuple[dict[str, object], float, float]:
    """The JSON report, the wall time and the peak RSS (MB, the scan's own ``VmHWM``) of one
    ``perisai scan``."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    command = [
        sys.executable, "-m", "perisai", "scan", f"127.0.0.1:{port}", "--format", "json",
        "--timeout", str(TIMEOUT), "--deadline", str(DEADLINE), "--fail-on", "never",
        "--no-store",
    ]  # fmt: skip
    out, err = workdir / "out.json", workdir / "err.txt"
    began = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        ended, rss_mb = wait_with_peak_rss(process, began + DEADLINE * 4)
    elapsed = time.monotonic() - began
    if not ended:
        pytest.fail("the scan did not end in time and was killed")
    assert process.returncode == 0, err.read_text()
    return json.loads(out.read_text()), elapsed, rss_mb


SERVERS: list[tuple[str, Callable[..., object], str]] = [
    ("redis announcing a 1 GB value", hostile.redis_gigabyte_value, "redis"),
    ("redis dripping a byte a second", hostile.redis_dripping, "redis"),
    ("HTTP body without end", hostile.http_endless_body, ""),
    ("MongoDB reply announcing 1 GB", hostile.mongo_huge_reply, ""),
]


@pytest.mark.parametrize(("what", "handler", "service"), SERVERS, ids=[s[0] for s in SERVERS])
def test_hostile_server_cannot_hang_or_bloat_the_scan(
    what: str, handler: hostile.Handler, service: str, tmp_path: Path
) -> None:
    with hostile.serving(handler) as port:
        report, elapsed, rss_mb = _scan(port, tmp_path)
    findings = report["findings"]
    assert isinstance(findings, list) and findings, what
    assert elapsed < DEADLINE + 10, what  # the scan's own deadline, plus start-up
    assert rss_mb < MAX_RSS_MB, f"{what}: peak RSS {rss_mb:.0f} MB"
    if service:
        [finding] = findings
        assert finding["target"]["service"] == service
        said = " ".join(finding["evidence"])
        assert finding["rule"] == "scan.incomplete" or "cap" in said, said
