"""The PostgreSQL findings store, on a real server started by the lab machinery."""

from __future__ import annotations

import pytest

from perisai.findings import ScanDiff
from perisai.store import StoreError, open_store
from tests.reports import redis_exposed, redis_secured, report

pytestmark = pytest.mark.servers


def test_history_and_diff_on_postgres(postgres_store_url: str) -> None:
    with open_store(postgres_store_url) as store:
        first_id = store.save(report(redis_exposed(), redis_secured()))
        second_id = store.save(report(redis_exposed(phones=5)))
        latest = store.latest()
        assert latest is not None and latest.scan_id == second_id
        assert latest.findings[0].data.entities == {"PHONE": 5, "EMAIL": 1}
        previous = store.previous(latest)
        assert previous is not None and previous.scan_id == first_id
        diff = ScanDiff.between(latest, previous)
        assert [f.rule for f in diff.resolved] == ["redis.auth-required"]
        assert diff.new == ()
        assert store.list_scans(limit=1)[0].scan_id == second_id


def test_unreachable_postgres_is_one_line_without_password() -> None:
    url = "postgresql://perisai:s3cret-value@127.0.0.1:1/findings"
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert "\n" not in message and "s3cret-value" not in message
