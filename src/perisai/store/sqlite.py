"""The embedded default store: one SQLite file, WAL mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from perisai.findings import ScanReport
from perisai.store.interface import FindingsStore, ScanSummary, StoreError
from perisai.store.sql import SCAN_COLUMNS, counts_from_json, encode, finding_rows, report_from_row

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
"""


class SQLiteStore(FindingsStore):
    """Findings history in a local file (``./perisai.db`` by default)."""

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            raise StoreError(f"cannot open findings store {path}: no directory {path.parent}")
        try:
            self._db = sqlite3.connect(path, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open findings store {path}: {error}") from None
        self.path = path

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
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot save to findings store {self.path}: {error}") from None
        report.scan_id = scan_id
        return scan_id

    def _one(self, where: str, params: tuple[object, ...]) -> ScanReport | None:
        try:
            row = self._db.execute(
                f"SELECT {SCAN_COLUMNS} FROM scans {where} ORDER BY id DESC LIMIT 1", params
            ).fetchone()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot read findings store {self.path}: {error}") from None
        return report_from_row(row) if row else None

    def get(self, scan_id: int) -> ScanReport | None:
        return self._one("WHERE id = ?", (scan_id,))

    def latest(self, scope_key: str | None = None) -> ScanReport | None:
        if scope_key is None:
            return self._one("", ())
        return self._one("WHERE scope_key = ?", (scope_key,))

    def previous(self, report: ScanReport) -> ScanReport | None:
        if report.scan_id is None:
            return self.latest(report.scope_key)
        return self._one("WHERE scope_key = ? AND id < ?", (report.scope_key, report.scan_id))

    def list_scans(self, limit: int = 20) -> list[ScanSummary]:
        rows = self._db.execute(
            "SELECT id, started, finished, scope_key, report_json FROM scans "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [ScanSummary(r[0], r[1], r[2], r[3], counts_from_json(r[4])) for r in rows]

    def close(self) -> None:
        self._db.close()
