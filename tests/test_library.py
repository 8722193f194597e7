"""The library's front door (DESIGN.md's "library entry" column) works without the CLI, and
the use-cases behind each command (perisai.usecases) give what the commands show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import perisai
from perisai.findings import Severity
from perisai.lab.instances import Instance
from perisai.report import ClassifyFormat, render_classify
from perisai.targets import TargetError
from perisai.usecases import UseCaseError, classify_files, saved_scan, scan_and_save
from tests.clirun import perisai as perisai_cli


def test_classifier_and_guard_are_reachable_from_the_package() -> None:
    classifier = perisai.Classifier(("MY",))
    [match] = classifier.scan_text("write to siti@example.org")
    assert match.entity == "EMAIL" and match.masked == "s***@example.org"
    guard = perisai.Guard()
    first = guard.check("send_otp", "+60123456789", "203.0.113.7")
    assert first.verdict == "allow"
    guard.record("sent", "+60123456789", ip="203.0.113.7")
    again = guard.check("send_otp", "+60123456789", "203.0.113.7")
    assert again.verdict != "allow"  # one send per recipient per minute by default


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Scanner'"):
        _ = perisai.Scanner


@pytest.mark.servers
def test_a_scan_is_saved_and_comes_back_with_its_diff_and_history(
    lab: dict[str, Instance], tmp_path: Path
) -> None:
    """What `perisai scan` then `perisai report --diff` do, as library calls on a real Redis."""
    db = str(tmp_path / "findings.db")
    exposed = lab["redis-exposed"]
    target = [f"127.0.0.1:{exposed.port}"]
    first = scan_and_save(target, db=db, with_history=True)
    assert not first.store_error and first.history is not None
    assert "redis.unauthenticated" in {f.rule for f in first.report.findings}
    assert first.fails(Severity.HIGH) and not first.fails(None)
    again = saved_scan(db, diff=True)
    assert {f.id for f in again.report.findings} == {f.id for f in first.report.findings}
    assert again.changes is not None and again.changes.previous is None
    assert again.judged == again.changes.new  # everything is new in a first scan
    second = scan_and_save(target, db=db)
    diff = saved_scan(db, diff=True, with_history=True)
    assert diff.report.scan_id == second.report.scan_id
    assert diff.changes is not None and diff.changes.new == ()  # nothing new: nothing judged
    assert not diff.fails(Severity.INFO) and second.fails(Severity.HIGH)
    assert diff.history is not None and len(diff.history.points) == 2


@pytest.mark.servers
def test_a_store_that_cannot_be_written_loses_no_finding(
    lab: dict[str, Instance], tmp_path: Path
) -> None:
    not_a_db = tmp_path / "findings.db"
    not_a_db.write_text("this is not SQLite\n" * 100)
    outcome = scan_and_save([f"127.0.0.1:{lab['redis-exposed'].port}"], db=str(not_a_db))
    assert outcome.store_error and outcome.report.findings


def test_use_case_errors_are_one_line_for_the_user(tmp_path: Path) -> None:
    with pytest.raises(UseCaseError, match=r"no findings store at .*: run `perisai scan` first"):
        saved_scan(str(tmp_path / "missing.db"))
    with pytest.raises(UseCaseError, match=r"no such file or directory: .*nope"):
        classify_files([tmp_path / "nope"])
    with pytest.raises(TargetError):
        scan_and_save(["8.8.8.8"], db=None)  # out of scope: refused before anything is sent


def test_classify_files_is_what_the_command_prints(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_text(
        '{"msisdn": "60123456789", "email": "siti.aminah@example.org"}\n{"id": 7}\n',
        encoding="utf-8",
    )
    report = classify_files([tmp_path])
    assert [p.path for p in report.files] == [str(log)]
    assert report.total.records == 2 and report.total.records_with_personal_data == 1
    assert report.total.entities == {"EMAIL": 1, "PHONE": 1}
    printed = perisai_cli("classify", str(tmp_path), "--format", "json")
    assert json.loads(printed.stdout) == json.loads(render_classify(report, ClassifyFormat.JSON))
