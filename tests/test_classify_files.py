"""`perisai classify`: files, directories, gzip, JSON lines, CSV; binary and bad files skipped."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from perisai.classify.files import iter_files, profile_file
from perisai.classify.profile import classifier_for
from tests.clirun import perisai

RECORD = {"msisdn": "60123456789", "msg": "jumpa di klinik pukul 5", "email": "a.b@example.org"}
CLEAN = {"event": "login", "request_id": "123e4567-e89b-12d3-a456-426614174000", "ms": 12}


def _tree(root: Path) -> Path:
    logs = root / "logs"
    (logs / "old").mkdir(parents=True)
    lines = "\n".join(json.dumps(r) for r in (RECORD, CLEAN, CLEAN, RECORD)) + "\n"
    (logs / "app.jsonl").write_text(lines, encoding="utf-8")
    (logs / "old" / "app.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (logs / "people.csv").write_text(
        "name,phone,ic\nSiti Aminah,012-345 6789,770305-02-1234\n", encoding="utf-8"
    )
    (logs / "plain.log").write_text("sent OTP to +60 12-345 6789\nhealthy\n", encoding="utf-8")
    (logs / "blob.bin").write_bytes(b"\x00\x01\x02" * 1000)
    (logs / "broken.gz").write_bytes(b"not gzip at all")
    return logs


def test_profiles_every_kind(tmp_path: Path) -> None:
    logs = _tree(tmp_path)
    classifier = classifier_for(("MY",))
    profiles = {p.name: profile_file(p, classifier) for p in iter_files([logs])}
    jsonl = profiles["app.jsonl"]
    assert (jsonl.kind, jsonl.records, jsonl.records_with_personal_data) == ("jsonl", 4, 2)
    assert jsonl.entities == {"PHONE": 2, "MESSAGE_BODY": 2, "EMAIL": 2}
    assert profiles["app.jsonl.gz"].entities == jsonl.entities
    assert profiles["people.csv"].entities == {"PERSON": 1, "PHONE": 1, "NATIONAL_ID": 1}
    assert profiles["plain.log"].records == 2 and profiles["plain.log"].entities == {"PHONE": 1}
    assert profiles["blob.bin"].skipped == "binary file (NUL bytes)"
    assert profiles["broken.gz"].skipped and "unreadable" in profiles["broken.gz"].skipped
    for profile in profiles.values():
        assert all("345" not in example for example in profile.examples)


def test_cli_json_total_and_skips(tmp_path: Path) -> None:
    logs = _tree(tmp_path)
    result = perisai("classify", str(logs), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["total"]["records"] == 4 + 4 + 1 + 2
    assert document["total"]["entities"]["PHONE"] == 2 + 2 + 1 + 1
    assert "skipped" in result.stderr and "blob.bin" in result.stderr
    assert "60123456789" not in result.stdout and "a.b@example.org" not in result.stdout


def test_cli_missing_path_is_exit_2(tmp_path: Path) -> None:
    result = perisai("classify", str(tmp_path / "nope"))
    assert result.returncode == 2 and "no such file or directory" in result.stderr


def test_ten_megabyte_line_and_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    path.write_bytes(
        b"x" * (10 * 1024 * 1024) + b" +60 12-345 6789\n\xff\xfe bad +60 12-345 6789\n"
    )
    profile = profile_file(path, classifier_for(("MY",)))
    assert profile.skipped is None
    assert profile.records == 2
    assert profile.entities == {"PHONE": 1}  # the over-long line is classified on its head only


def test_progress_is_told_every_byte_read(tmp_path: Path) -> None:
    """`perisai classify` moves its bar by what each file reports, a single big log included."""
    logs = _tree(tmp_path)
    classifier = classifier_for(("MY",))
    for name in ("app.jsonl", "old/app.jsonl.gz", "people.csv", "plain.log"):
        told: list[int] = []
        profile = profile_file(logs / name, classifier, told.append)
        assert sum(told) == profile.bytes_read > 0, name
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps(RECORD) + "\n") * 40_000, encoding="utf-8")
    told = []
    profile = profile_file(big, classifier, told.append)
    assert len(told) > 1 and sum(told) == big.stat().st_size == profile.bytes_read
    assert profile.records == profile.records_with_personal_data == 40_000
