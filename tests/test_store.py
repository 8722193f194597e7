"""The SQLite findings store: history, stable ids, diffs, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from perisai.findings import ScanDiff
from perisai.store import StoreError, open_store
from tests.reports import redis_exposed, redis_secured, report


def test_save_get_latest_previous(tmp_path: Path) -> None:
    path = str(tmp_path / "perisai.db")
    first = report(redis_exposed(), redis_secured())
    other_scope = report(redis_secured(), targets=("127.0.0.2",))
    second = report(redis_exposed(phones=9))
    with open_store(path) as store:
        assert store.latest() is None
        first_id = store.save(first)
        store.save(other_scope)
        second_id = store.save(second)
    with open_store(path) as store:  # reopened: history survives
        loaded = store.get(first_id)
        assert loaded is not None and loaded.scan_id == first_id
        assert [f.to_dict() for f in loaded.findings] == [f.to_dict() for f in first.findings]
        assert loaded.rules["redis.unauthenticated"].remediation.startswith("Require")
        latest = store.latest()
        assert latest is not None and latest.scan_id == second_id
        previous = store.previous(latest)
        assert previous is not None and previous.scan_id == first_id  # same scope, not the other
        assert store.previous(previous) is None
        assert store.get(999) is None
        summaries = store.list_scans()
        assert [s.scan_id for s in summaries] == [second_id, second_id - 1, first_id]
        assert summaries[-1].counts == {"critical": 1, "info": 1}


def test_same_object_same_id_and_diff(tmp_path: Path) -> None:
    before = report(redis_exposed(), redis_secured())
    after = report(redis_exposed(phones=7), redis_secured(port=6390))
    assert before.findings[0].id == after.findings[0].id  # data changed, identity did not
    diff = ScanDiff.between(after, before)
    assert [f.target.port for f in diff.new] == [6390]
    assert [f.target.port for f in diff.resolved] == [6380]
    assert [f.rule for f in diff.unchanged] == ["redis.unauthenticated"]
    assert ScanDiff.between(after, None).new == tuple(diff.unchanged + diff.new)


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no directory"):
        open_store(str(tmp_path / "absent" / "perisai.db"))


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "perisai.db"
    path.write_bytes(b"\x13\x37 this is not a database " * 200)
    with pytest.raises(StoreError, match="cannot open findings store"):
        open_store(str(path))


def test_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="use a path or postgresql://"):
        open_store("mysql://127.0.0.1/findings")
