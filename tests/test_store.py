"""The SQLite findings store: history, stable ids, diffs, and clear errors."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from perisai.findings import ScanDiff
from perisai.store import FindingsStore, StoreError, open_store
from perisai.store.sqlite import SQLiteStore
from tests.reports import MASKED_PHONE, redis_exposed, redis_secured, report, unknown_rule


def _one_line_error(location: str) -> str:
    with pytest.raises(StoreError) as raised:
        open_store(location)
    message = str(raised.value)
    assert "\n" not in message and message
    return message


def test_save_get_latest_previous(tmp_path: Path) -> None:
    path = str(tmp_path / "perisai.db")
    first = report(redis_exposed(), redis_secured())
    other_scope = report(redis_secured(), targets=("127.0.0.2",))
    second = report(redis_exposed(phones=9))
    with open_store(path) as store:
        assert isinstance(store, SQLiteStore)
        assert store.latest() is None and store.list_scans() == []
        first_id = store.save(first)
        assert first.scan_id == first_id  # save() tells the report its id
        other_id = store.save(other_scope)
        second_id = store.save(second)
        assert first_id < other_id < second_id
    with open_store(path) as store:  # reopened: history survives
        loaded = store.get(first_id)
        assert loaded is not None and loaded.scan_id == first_id
        assert [f.to_dict() for f in loaded.findings] == [f.to_dict() for f in first.findings]
        assert loaded.to_dict() == first.to_dict()
        assert loaded.rules == first.rules
        assert loaded.rules["redis.unauthenticated"].remediation.startswith("Require")
        latest = store.latest()
        assert latest is not None and latest.scan_id == second_id
        scoped = store.latest(other_scope.scope_key)
        assert scoped is not None and scoped.scan_id == other_id
        assert store.latest("never scanned ports=1") is None
        previous = store.previous(latest)
        assert previous is not None and previous.scan_id == first_id  # same scope, not the other
        assert store.previous(previous) is None
        assert store.get(999) is None


def test_previous_of_an_unsaved_report_is_the_latest_of_its_scope(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "perisai.db")) as store:
        saved_id = store.save(report(redis_exposed()))
        store.save(report(redis_exposed(), targets=("127.0.0.9",)))
        fresh = report(redis_exposed())
        previous = store.previous(fresh)
        assert previous is not None and previous.scan_id == saved_id
        assert fresh.scan_id is None  # asking does not save


def test_list_scans_newest_first_with_counts_and_limit(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "perisai.db")) as store:
        first_id = store.save(report(redis_exposed(), redis_secured(), unknown_rule()))
        empty_id = store.save(report())
        last_id = store.save(report(redis_exposed(), redis_exposed(port=6390)))
        summaries = store.list_scans()
        assert [s.scan_id for s in summaries] == [last_id, empty_id, first_id]
        assert summaries[0].counts == {"critical": 2}
        assert summaries[1].counts == {}
        assert summaries[2].counts == {"critical": 1, "medium": 1, "info": 1}
        assert summaries[2].scope_key == report().scope_key
        assert summaries[2].started == "2026-11-23T01:00:00+00:00"
        assert [s.scan_id for s in store.list_scans(limit=1)] == [last_id]
        assert store.list_scans(limit=0) == []


def test_same_object_keeps_its_id_across_stored_scans(tmp_path: Path) -> None:
    before = report(redis_exposed(), redis_secured())
    after = report(redis_exposed(phones=7), redis_secured(port=6390))
    with open_store(str(tmp_path / "perisai.db")) as store:
        store.save(before)
        store.save(after)
        latest = store.latest()
        assert latest is not None
        previous = store.previous(latest)
        assert previous is not None
    exposed_ids = {f.id for f in latest.findings} & {f.id for f in previous.findings}
    assert exposed_ids == {redis_exposed().id}  # data changed, identity did not
    diff = ScanDiff.between(latest, previous)
    assert [f.target.port for f in diff.new] == [6390]
    assert [f.target.port for f in diff.resolved] == [6380]
    assert [f.rule for f in diff.unchanged] == ["redis.unauthenticated"]
    assert diff.unchanged[0].data.entities["PHONE"] == 7  # the current data, not the old
    assert ScanDiff.between(latest, None).new == tuple(diff.unchanged + diff.new)


def test_schema_wal_and_one_row_per_finding(tmp_path: Path) -> None:
    path = tmp_path / "perisai.db"
    scan = report(redis_exposed(), unknown_rule())
    with open_store(str(path)) as store:
        scan_id = store.save(scan)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = db.execute(
            "SELECT scan_id, finding_id, rule, severity, host, port, service FROM findings "
            "ORDER BY rule"
        ).fetchall()
        [(report_json,)] = db.execute("SELECT report_json FROM scans").fetchall()
    assert rows == [
        (scan_id, unknown_rule().id, "example.not-declared", "medium", "::1", 7000, "example"),
        (
            scan_id,
            redis_exposed().id,
            "redis.unauthenticated",
            "critical",
            "127.0.0.1",
            6379,
            "redis",
        ),
    ]
    assert json.loads(report_json) == {**scan.to_dict(), "scan_id": None}  # the contract only
    assert MASKED_PHONE in report_json


def test_store_is_a_context_manager_that_closes(tmp_path: Path) -> None:
    store: FindingsStore
    with open_store(str(tmp_path / "perisai.db")) as store:
        pass
    with pytest.raises(StoreError, match="closed database"):  # the connection is gone
        store.latest()


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    message = _one_line_error(str(tmp_path / "absent" / "perisai.db"))
    assert "no directory" in message
    assert not (tmp_path / "absent").exists()  # never created behind the user's back


def test_directory_and_empty_location_are_store_errors(tmp_path: Path) -> None:
    assert "is a directory" in _one_line_error(str(tmp_path))
    assert "no findings store given" in _one_line_error("  ")


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "perisai.db"
    path.write_bytes(os.urandom(4096))
    assert "cannot open findings store" in _one_line_error(str(path))
    path.write_bytes(b"\x13\x37 this is not a database " * 200)
    assert "not a perisai findings store" in _one_line_error(str(path))


def test_foreign_table_and_hand_edited_rows_are_store_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE scans (id INTEGER PRIMARY KEY, what TEXT)")
        db.execute("INSERT INTO scans (what) VALUES ('not ours')")
    db.close()
    assert "not a perisai findings store" in _one_line_error(str(foreign))

    path = tmp_path / "perisai.db"
    with open_store(str(path)) as store:
        scan_id = store.save(report(redis_exposed()))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE scans SET report_json = '{\"findings\": 3' WHERE id = ?", (scan_id,))
    db.close()
    with open_store(str(path)) as store, pytest.raises(StoreError, match="unreadable"):
        store.get(scan_id)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")
def test_unreadable_file_is_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "perisai.db"
    open_store(str(path)).close()
    path.chmod(0)
    try:
        assert "permission denied" in _one_line_error(str(path))
    finally:
        path.chmod(0o600)


def test_unsupported_url_is_a_store_error_without_credentials() -> None:
    message = _one_line_error("mysql://scanner:hunter2-secret@127.0.0.1/findings")
    assert "use a path or postgresql://" in message and "mysql://" in message
    assert "hunter2-secret" not in message
