"""Findings history: SQLite by default, PostgreSQL for a team."""

from __future__ import annotations

from pathlib import Path

from perisai.store.interface import FindingsStore, ScanSummary, StoreError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(location: str) -> FindingsStore:
    """A path opens (or creates) a SQLite store; a ``postgresql://`` URL a PostgreSQL one.

    Every failure a user can cause is a :class:`StoreError` with a one-line message.
    """
    if not location.strip():
        raise StoreError("no findings store given: pass a file path or a postgresql:// URL")
    if location.lower().startswith(POSTGRES_SCHEMES):
        from perisai.store.postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise StoreError(
            f"unsupported findings store scheme {scheme}://: use a path or postgresql://"
        )
    from perisai.store.sqlite import SQLiteStore

    return SQLiteStore(Path(location))


__all__ = ["FindingsStore", "ScanSummary", "StoreError", "open_store"]
