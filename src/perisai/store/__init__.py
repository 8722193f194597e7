"""Findings history: SQLite by default, PostgreSQL for a team."""

from __future__ import annotations

from pathlib import Path

from perisai.store.interface import FindingsStore, ScanSummary, StoreError


def open_store(location: str) -> FindingsStore:
    """A path opens (or creates) a SQLite store; a ``postgresql://`` URL a PostgreSQL one."""
    if location.startswith(("postgresql://", "postgres://")):
        from perisai.store.postgres import PostgresStore

        return PostgresStore(location)
    if "://" in location:
        raise StoreError(f"unsupported findings store {location!r}: use a path or postgresql://")
    from perisai.store.sqlite import SQLiteStore

    return SQLiteStore(Path(location))


__all__ = ["FindingsStore", "ScanSummary", "StoreError", "open_store"]
