"""The command line as a user meets it: help, version, and one clear line for bad input."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perisai import __version__
from tests.clirun import perisai


def test_version_and_help_describe_every_command() -> None:
    assert perisai("--version").stdout.strip() == f"perisai {__version__}"
    help_text = perisai("--help").stdout
    for command in ("scan", "report", "lab"):
        assert command in help_text
    assert "Exit codes" in help_text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["scan", "not a target"], "is not a target"),
        (["scan", "127.0.0.1", "--ports", "0-5"], "bad port range"),
        (["scan", "8.8.8.8"], "--authorized"),
        (["scan", "@/nonexistent/targets.txt"], "cannot read target file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    result = perisai(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "perisai.db").exists()  # nothing was scanned, nothing saved


def test_report_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    result = perisai("report", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert "run `perisai scan` first" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers: the kernel completes every handshake into
    the listen backlog, and nobody ever reads."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def test_unreachable_port_scans_clean(tmp_path: Path) -> None:
    port = _free_port()  # bound then released: nothing listens there
    result = perisai("scan", f"127.0.0.1:{port}", "--timeout", "0.5", cwd=tmp_path)
    assert result.returncode == 0
    assert "0 open" in result.stderr
    assert "No findings" in result.stdout
    assert f"ports: {port}\n" in result.stdout  # what was scanned, not the default port list


HELP_PAGES = (
    (),
    ("scan",),
    ("report",),
    ("classify",),
    ("redact",),
    ("audit-api",),
    ("lab",),
    ("lab", "up"),
    ("lab", "status"),
    ("guard", "serve"),
)


@pytest.mark.parametrize("page", HELP_PAGES, ids=lambda page: " ".join(page) or "perisai")
def test_help_is_complete_plain_text(page: tuple[str, ...]) -> None:
    """Every help page: values named (``--db DB``), never typer's ``<str>`` or ``<bool>``
    placeholders; command summaries whole, not cut at 45 characters; defaults shown as text
    (a bracket is not swallowed as markup); no box drawing to wrap inside a word."""
    text = perisai(*page, "--help").stdout
    assert text.startswith("Usage: perisai")
    placeholders = re.findall(r"<(?:str|bool|int|float|path|list\[\w+\])[^>]*>", text)
    assert not placeholders, placeholders
    assert "..." not in text.replace("]...", "").replace("}...", ""), text
    assert not set(text) & set("│╭╰─"), text
    if page == ("scan",):
        assert "[default: (60, or 20 × --timeout)" in text and "in all ." not in text
        assert "--db DB" in text and "--authorized  " in text


def test_piped_progress_is_periodic_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """A long run on a pipe prints where it is now and then; a short one prints nothing."""
    from perisai.cli import common

    with common.progress() as quiet:  # stderr is not a terminal under pytest
        quiet.phase("probe", 3)
        quiet.advance()
    assert capsys.readouterr().err == ""
    with common.progress() as bar:
        bar.said = -1e9  # type: ignore[union-attr]  # as if the last line was long ago
        bar.phase("probe", 31)
        bar.advance(11)
    assert capsys.readouterr().err == "perisai: probe 0/31\n"


def test_silent_server_ends_within_deadline_and_says_so(silent_server: int, tmp_path: Path) -> None:
    result = perisai(
        "scan",
        f"127.0.0.1:{silent_server}",
        "--timeout",
        "0.5",
        "-f",
        "json",
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0  # an unrecognised port is info, below --fail-on high
    assert "not recognised" in result.stdout
    assert "no banner" in result.stdout


@pytest.mark.servers
def test_scan_store_report_and_diff(lab: dict[str, Any], tmp_path: Path) -> None:
    redis_port = lab["redis-exposed"].port
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    silent_port = int(listener.getsockname()[1])
    ports = f"{redis_port},{silent_port}"
    first = perisai("scan", "127.0.0.1", "--ports", ports, "--timeout", "0.5", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the exposed Redis is critical
    listener.close()  # the unknown service goes away before the second scan
    second = perisai("scan", "127.0.0.1", "--ports", ports, "--timeout", "0.5", cwd=tmp_path)
    assert second.returncode == 1

    diff = perisai("report", "--diff", cwd=tmp_path)
    assert "New since scan 1: 0" in diff.stdout
    assert "Resolved since scan 1: 1" in diff.stdout
    assert diff.returncode == 0  # nothing new at or above --fail-on

    as_json = json.loads(perisai("report", "--diff", "-f", "json", cwd=tmp_path).stdout)
    assert as_json["scan_id"] == 2 and as_json["diff"]["previous_scan_id"] == 1
    assert [f["rule"] for f in as_json["diff"]["resolved"]] == ["service.unidentified"]

    sarif_path = tmp_path / "first.sarif"
    written = perisai("report", "--scan", "1", "-f", "sarif", "-o", str(sarif_path), cwd=tmp_path)
    assert written.returncode == 1 and written.stdout == ""
    sarif = json.loads(sarif_path.read_text(encoding="utf-8"))
    rule_ids = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert rule_ids == {
        "redis.unauthenticated",
        "compromise.planted-payload",
        "service.unidentified",
    }

    missing = perisai("report", "--scan", "99", cwd=tmp_path)
    assert missing.returncode == 2 and "no scan 99" in missing.stderr


def test_fail_on_is_a_severity_or_never() -> None:
    """``--fail-on`` takes exactly the severities, and never; both commands share it."""
    from perisai.cli import audit as audit_cli
    from perisai.cli.common import FailOn
    from perisai.findings import Severity

    assert [f.value for f in FailOn] == [s.value for s in Severity] + ["never"]
    assert FailOn.NEVER.threshold is None and FailOn.LOW.threshold is Severity.LOW
    assert audit_cli.__dict__["FailOn"] is FailOn  # the audit command shares it, no copy
