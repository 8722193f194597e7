"""Redaction: masks, keyed tokens, tags; logging integrations; streaming JSON lines."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import structlog

from perisai.redact import (
    RedactingFilter,
    RedactionMode,
    Redactor,
    RedactorError,
    redact_lines,
    structlog_processor,
)
from tests.clirun import perisai

LINE = {"msisdn": 60123456789, "from": "+60 12-345 6789", "note": "mail siti@example.org", "n": 7}


def test_mask_keeps_a_hint_and_json_stays_json() -> None:
    [out] = redact_lines([json.dumps(LINE)], Redactor())
    document = json.loads(out)
    assert document["msisdn"] == "+60 12-*** **89"
    assert document["from"] == "+60 12-*** **89"
    assert document["note"] == "mail s***@example.org"
    assert document["n"] == 7  # numbers that are not personal data stay numbers


def test_hash_tokens_join_across_spellings_and_depend_on_the_key() -> None:
    one = Redactor(RedactionMode.HASH, key=b"k1")
    tokens = {one.text(v) for v in ("+60 12-345 6789", "+60123456789")}
    assert len(tokens) == 1 and next(iter(tokens)).startswith("<PHONE:")
    other = Redactor(RedactionMode.HASH, key=b"k2").text("+60123456789")
    assert other not in tokens
    with pytest.raises(RedactorError, match="secret key"):
        Redactor(RedactionMode.HASH)


def test_tag_mode_keeps_nothing_of_the_value() -> None:
    assert Redactor(RedactionMode.TAG).text("call +60 12-345 6789") == "call <PHONE>"


def test_text_without_personal_data_is_unchanged() -> None:
    line = "GET /health 200 12ms request=123e4567-e89b-12d3-a456-426614174000"
    assert list(redact_lines([line], Redactor())) == [line]


def test_logging_filter_redacts_message_and_arguments() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("perisai.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("otp sent to %s for %s", "+60 12-345 6789", "siti@example.org")
    logger.removeHandler(handler)
    assert stream.getvalue() == "otp sent to +60 12-*** **89 for s***@example.org\n"


def test_structlog_processor() -> None:
    process = structlog_processor()
    event = process(None, "info", {"event": "otp sent", "msisdn": "60123456789"})
    assert event == {"event": "otp sent", "msisdn": "+60 12-*** **89"}
    structlog.configure(processors=[structlog_processor(), structlog.processors.JSONRenderer()])
    structlog.reset_defaults()


def test_cli_streams_stdin_to_stdout(tmp_path: object) -> None:
    import subprocess
    import sys

    from tests.clirun import SRC

    text = json.dumps(LINE) + "\nplain +60 12-345 6789\n"
    result = subprocess.run(
        [sys.executable, "-m", "perisai", "redact", "--mode", "tag"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert json.loads(first)["from"] == "<PHONE>"
    assert second == "plain <PHONE>"


def test_cli_hash_without_key_is_one_line_exit_2() -> None:
    result = perisai("redact", "--mode", "hash", "/dev/null")
    assert result.returncode == 2
    assert "secret key" in result.stderr and result.stderr.count("\n") == 1
    assert "$PERISAI_REDACT_KEY" in result.stderr and "export PERISAI_REDACT_KEY=" in result.stderr


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


def test_redact_changes_only_the_redacted_values(tmp_path: Path) -> None:
    """Lines as structlog's JSON and key=value renderers and the stdlib logging formatter write
    them: a line without personal data comes out byte for byte; in a JSON line with some, the
    skeleton (keys, separators, spacing, order, untouched values) is exactly as written."""
    events: list[dict[str, Any]] = [
        {"event": "login ok", "user_id": 42, "ts": "2026-12-01T10:00:00Z", "latency_ms": 12.5},
        {"event": "otp sent", "msisdn": "+60 12-345 6789", "ts": "2026-12-01T10:00:01Z"},
        {"event": "mail", "to": "siti.aminah@example.org", "ok": True, "tries": [1, 2]},
        {"event": "geo", "lat": 3.139003, "lng": 101.686855, "device": "a1b2c3"},
        {"event": "queue depth", "depth": 1200, "tags": {"region": "ap-southeast-1"}},
    ]
    as_json = structlog.processors.JSONRenderer()
    as_kv = structlog.processors.KeyValueRenderer(sort_keys=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    lines: list[str] = []
    for event in events:
        lines.append(str(as_json(None, "info", dict(event))))  # ", " and ": " separators
        lines.append(json.dumps(event, separators=(",", ":")))  # compact, as many loggers write
        lines.append(str(as_kv(None, "info", dict(event))))
        record = logging.LogRecord("api", logging.INFO, __file__, 1, str(event["event"]), (), None)
        record.created = 1764583200.0
        lines.append(
            formatter.format(record) + f" to {event.get('msisdn') or event.get('to') or '-'}"
        )
    source = tmp_path / "app.log"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = perisai("redact", str(source))
    assert result.returncode == 0, result.stderr
    redacted = result.stdout.splitlines()
    assert len(redacted) == len(lines)
    classifier = Redactor(RedactionMode.MASK).classifier
    changed = 0
    for before, after in zip(lines, redacted, strict=True):
        if not classifier.scan_text(before) and not before.startswith("{"):
            assert after == before  # nothing to redact: byte for byte
            continue
        if before.startswith("{"):
            assert _TOKEN.sub("V", after) == _TOKEN.sub("V", before), (before, after)
            pairs = zip(_TOKEN.findall(before), _TOKEN.findall(after), strict=True)
            for old, new in pairs:  # a token that changed is a value, now masked
                assert old == new or "*" in new or "<" in new, (old, new)
            assert json.loads(after).keys() == json.loads(before).keys()
        changed += after != before
    assert changed == 11  # otp and mail in all four formats; geo in the three that carry it
    assert "345 6789" not in result.stdout and "siti.aminah" not in result.stdout
