"""The embedded default store: one SQLite file, WAL mode."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from perisai.findings import ScanReport
from perisai.store.interface import FindingsStore, ScanSummary, StoreError
from perisai.store.sql import (
    SCAN_COLUMNS,
    counts_from_rows,
    encode,
    finding_rows,
    one_line,
    report_from_row,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_key TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    report_json TEXT NOT NULL,
    rules_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scans_scope ON scans (scope_key, id);
CREATE TABLE IF NOT EXISTS findings (
    scan_id INTEGER NOT NULL REFERENCES scans (id),
    finding_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    service TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_scan ON findings (scan_id);
CREATE INDEX IF NOT EXISTS findings_id ON findings (finding_id, scan_id);
"""


class SQLiteStore(FindingsStore):
    """Findings history in a local file (``./perisai.db`` by default).

    The directory must exist: creating it would hide a typo in ``--db``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        _check_location(path)
        try:
            self._db = sqlite3.connect(path, timeout=10)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open findings store {path}: {one_line(error)}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            self._db.close()
            reason = one_line(error)
            if "not a database" in reason:
                reason = "not a perisai findings store (not an SQLite database)"
            elif "no such column" in reason:
                reason = "not a perisai findings store (another tool's tables of the same name)"
            raise StoreError(f"cannot open findings store {path}: {reason}") from None

    def save(self, report: ScanReport) -> int:
        report_json, rules_json = encode(report)
        try:
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO scans (scope_key, started, finished, report_json, rules_json) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (report.scope_key, report.started, report.finished, report_json, rules_json),
                )
                scan_id = int(cursor.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                    finding_rows(scan_id, report),
                )
        except sqlite3.Error as error:
            raise StoreError(
                f"cannot save to findings store {self.path}: {one_line(error)}"
            ) from None
        report.scan_id = scan_id
        return scan_id

    def _one(self, where: str, params: tuple[object, ...]) -> ScanReport | None:
        try:
            row = self._db.execute(
                f"SELECT {SCAN_COLUMNS} FROM scans {where} ORDER BY id DESC LIMIT 1", params
            ).fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot read findings store {self.path}: {one_line(error)}") from None
        return report_from_row(row, str(self.path)) if row else None

    def get(self, scan_id: int) -> ScanReport | None:
        return self._one("WHERE id = ?", (scan_id,))

    def latest(self, scope_key: str | None = None) -> ScanReport | None:
        if scope_key is None:
            return self._one("", ())
        return self._one("WHERE scope_key = ?", (scope_key,))

    def previous(self, report: ScanReport) -> ScanReport | None:
        if report.scan_id is None:  # not saved yet: everything saved is earlier
            return self.latest(report.scope_key)
        return self._one("WHERE scope_key = ? AND id < ?", (report.scope_key, report.scan_id))

    def list_scans(self, limit: int = 20) -> list[ScanSummary]:
        try:
            rows = self._db.execute(
                "SELECT id, started, finished, scope_key FROM scans ORDER BY id DESC LIMIT ?",
                (max(limit, 0),),
            ).fetchall()
            counts = counts_from_rows(
                self._db.execute(
                    "SELECT scan_id, severity, COUNT(*) FROM findings "
                    "WHERE scan_id IN (SELECT id FROM scans ORDER BY id DESC LIMIT ?) "
                    "GROUP BY scan_id, severity",
                    (max(limit, 0),),
                ).fetchall()
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot read findings store {self.path}: {one_line(error)}") from None
        return [ScanSummary(r[0], r[1], r[2], r[3], counts.get(r[0], {})) for r in rows]

    def close(self) -> None:
        self._db.close()


def _check_location(path: Path) -> None:
    """Say what is wrong with the path in words; SQLite only says "unable to open"."""
    if path.is_dir():
        raise StoreError(f"cannot open findings store {path}: it is a directory")
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open findings store {path}: no directory {path.parent} (create it first)"
        )
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot open findings store {path}: permission denied")
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot open findings store {path}: permission denied (cannot create files in "
            f"{path.parent})"
        )
