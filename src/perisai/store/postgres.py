"""A team's findings store on PostgreSQL (``--db postgresql://…``)."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from perisai.findings import ScanReport
from perisai.store.interface import FindingsStore, ScanSummary, StoreError
from perisai.store.sql import SCAN_COLUMNS, counts_from_json, encode, finding_rows, report_from_row

_SCHEMA = """
CREATE TABLE IF NOT EXISTS perisai_scans (
    id BIGSERIAL PRIMARY KEY,
    scope_key TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    report_json JSONB NOT NULL,
    rules_json JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS perisai_scans_scope ON perisai_scans (scope_key, id);
CREATE TABLE IF NOT EXISTS perisai_findings (
    scan_id BIGINT NOT NULL REFERENCES perisai_scans (id),
    finding_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    service TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS perisai_findings_scan ON perisai_findings (scan_id);
"""


class PostgresStore(FindingsStore):
    """Findings history shared by a team, in tables prefixed ``perisai_``."""

    def __init__(self, url: str) -> None:
        self._label = url.split("@")[-1]  # never echo a password back
        try:
            self._db = psycopg.connect(url, connect_timeout=10, autocommit=True)
            self._db.execute(_SCHEMA)
        except psycopg.Error as error:
            first = (str(error).strip().splitlines() or ["error"])[0]
            raise StoreError(f"cannot open findings store at {self._label}: {first}") from None

    def save(self, report: ScanReport) -> int:
        report_json, rules_json = encode(report)
        try:
            with self._db.transaction():
                row = self._db.execute(
                    "INSERT INTO perisai_scans "
                    "(scope_key, started, finished, report_json, rules_json) "
                    "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb) RETURNING id",
                    (report.scope_key, report.started, report.finished, report_json, rules_json),
                ).fetchone()
                scan_id = int(row[0]) if row else 0
                with self._db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO perisai_findings VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        finding_rows(scan_id, report),
                    )
        except psycopg.Error as error:
            raise StoreError(f"cannot save to findings store at {self._label}: {error}") from None
        report.scan_id = scan_id
        return scan_id

    def _one(self, where: LiteralString, params: tuple[Any, ...]) -> ScanReport | None:
        query: LiteralString = (
            "SELECT " + SCAN_COLUMNS + " FROM perisai_scans " + where + " ORDER BY id DESC LIMIT 1"
        )
        try:
            row = self._db.execute(query, params).fetchone()
        except psycopg.Error as error:
            raise StoreError(f"cannot read findings store at {self._label}: {error}") from None
        return report_from_row(row) if row else None

    def get(self, scan_id: int) -> ScanReport | None:
        return self._one("WHERE id = %s", (scan_id,))

    def latest(self, scope_key: str | None = None) -> ScanReport | None:
        if scope_key is None:
            return self._one("", ())
        return self._one("WHERE scope_key = %s", (scope_key,))

    def previous(self, report: ScanReport) -> ScanReport | None:
        if report.scan_id is None:
            return self.latest(report.scope_key)
        return self._one("WHERE scope_key = %s AND id < %s", (report.scope_key, report.scan_id))

    def list_scans(self, limit: int = 20) -> list[ScanSummary]:
        rows = self._db.execute(
            "SELECT id, started, finished, scope_key, report_json FROM perisai_scans "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()
        return [ScanSummary(r[0], r[1], r[2], r[3], counts_from_json(r[4])) for r in rows]

    def close(self) -> None:
        self._db.close()


__all__ = ["PostgresStore"]
