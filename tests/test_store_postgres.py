"""The PostgreSQL findings store, on a real server started by the lab machinery.

The ``postgres_store_url`` fixture (tests/conftest.py) is one database for the whole session,
so each test scans its own scope and never assumes it is alone.
"""

from __future__ import annotations

import pytest

from perisai.findings import ScanDiff
from perisai.store import StoreError, open_store
from perisai.store.postgres import PostgresStore
from tests.reports import redis_exposed, redis_secured, report, unknown_rule

pytestmark = pytest.mark.servers


def test_history_and_diff_on_postgres(postgres_store_url: str) -> None:
    scope = ("127.1.0.1",)
    with open_store(postgres_store_url) as store:
        assert isinstance(store, PostgresStore)
        first = report(redis_exposed(), redis_secured(), targets=scope)
        first_id = store.save(first)
        assert first.scan_id == first_id
        store.save(report(redis_exposed(), targets=("127.1.0.2",)))  # another scope between
        second_id = store.save(report(redis_exposed(phones=5), targets=scope))
    with open_store(postgres_store_url) as store:  # reopened: schema creation is idempotent
        latest = store.latest(first.scope_key)
        assert latest is not None and latest.scan_id == second_id
        assert latest.findings[0].data.entities == {"PHONE": 5, "EMAIL": 1}
        assert latest.rules["redis.unauthenticated"].remediation.startswith("Require")
        previous = store.previous(latest)
        assert previous is not None and previous.scan_id == first_id
        assert previous.to_dict() == {**first.to_dict(), "scan_id": first_id}
        assert store.previous(previous) is None
        diff = ScanDiff.between(latest, previous)
        assert [f.rule for f in diff.resolved] == ["redis.auth-required"]
        assert [f.id for f in diff.unchanged] == [redis_exposed().id]
        assert diff.new == ()
        assert store.get(second_id + 10_000) is None


def test_list_scans_on_postgres(postgres_store_url: str) -> None:
    with open_store(postgres_store_url) as store:
        scan_id = store.save(report(redis_exposed(), unknown_rule(), targets=("127.2.0.1",)))
        latest = store.latest()
        assert latest is not None and latest.scan_id == scan_id
        [summary] = store.list_scans(limit=1)
        assert summary.scan_id == scan_id
        assert summary.counts == {"critical": 1, "medium": 1}
        assert summary.scope_key == report(targets=("127.2.0.1",)).scope_key


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://perisai:s3cret-value@127.0.0.1:1/findings",
        "postgres://perisai@127.0.0.1:1/findings?password=s3cret-value",
    ],
)
def test_unreachable_postgres_is_one_line_without_password(url: str) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert message.startswith("cannot open findings store postgresql://perisai@127.0.0.1:1/")
    assert "\n" not in message and "s3cret-value" not in message


def test_unknown_database_is_a_store_error(postgres_store_url: str) -> None:
    url = postgres_store_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(StoreError, match="no_such_database") as raised:
        open_store(url)
    assert "\n" not in str(raised.value)
