"""A team's findings store on PostgreSQL (``--db postgresql://…``)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any, LiteralString
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

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

# Tables are prefixed: a team's database is usually shared with other tools' tables.
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
CREATE INDEX IF NOT EXISTS perisai_findings_id ON perisai_findings (finding_id, scan_id);
"""

# Two scanners starting at once would race on CREATE TABLE IF NOT EXISTS (it is not atomic
# in PostgreSQL); a transaction-scoped advisory lock with a fixed key serialises them.
_SCHEMA_LOCK = 0x70657269736169  # "perisai"


class PostgresStore(FindingsStore):
    """Findings history shared by a team, in tables prefixed ``perisai_``."""

    def __init__(self, url: str) -> None:
        self._secrets = _passwords(url)
        self._label = _label(url)
        try:
            self._db = psycopg.connect(url, connect_timeout=10, autocommit=True)
        except psycopg.Error as error:
            raise self._error("cannot open findings store", error) from None
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._db.execute(_SCHEMA)
        except psycopg.Error as error:
            self._db.close()
            raise self._error("cannot open findings store", error) from None

    def _error(self, doing: str, error: BaseException) -> StoreError:
        """One line, and never the password, even if a driver message quotes the URL."""
        message = one_line(error)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return StoreError(f"{doing} {self._label}: {message}")

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
                if row is None:
                    raise StoreError(f"cannot save to findings store {self._label}: no scan id")
                scan_id = int(row[0])
                with self._db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO perisai_findings VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        finding_rows(scan_id, report),
                    )
        except psycopg.Error as error:
            raise self._error("cannot save to findings store", error) from None
        report.scan_id = scan_id
        return scan_id

    def _one(self, where: LiteralString, params: tuple[Any, ...]) -> ScanReport | None:
        query: LiteralString = (
            "SELECT " + SCAN_COLUMNS + " FROM perisai_scans " + where + " ORDER BY id DESC LIMIT 1"
        )
        try:
            row = self._db.execute(query, params).fetchone()
        except psycopg.Error as error:
            raise self._error("cannot read findings store", error) from None
        return report_from_row(row, self._label) if row else None

    def get(self, scan_id: int) -> ScanReport | None:
        return self._one("WHERE id = %s", (scan_id,))

    def latest(self, scope_key: str | None = None) -> ScanReport | None:
        if scope_key is None:
            return self._one("", ())
        return self._one("WHERE scope_key = %s", (scope_key,))

    def previous(self, report: ScanReport) -> ScanReport | None:
        if report.scan_id is None:  # not saved yet: everything saved is earlier
            return self.latest(report.scope_key)
        return self._one("WHERE scope_key = %s AND id < %s", (report.scope_key, report.scan_id))

    def list_scans(self, limit: int = 20) -> list[ScanSummary]:
        try:
            rows = self._db.execute(
                "SELECT id, started, finished, scope_key FROM perisai_scans "
                "ORDER BY id DESC LIMIT %s",
                (max(limit, 0),),
            ).fetchall()
            counts = counts_from_rows(
                self._db.execute(
                    "SELECT scan_id, severity, COUNT(*) FROM perisai_findings "
                    "WHERE scan_id = ANY(%s) GROUP BY scan_id, severity",
                    ([r[0] for r in rows],),
                ).fetchall()
            )
        except psycopg.Error as error:
            raise self._error("cannot read findings store", error) from None
        return [ScanSummary(int(r[0]), r[1], r[2], r[3], counts.get(int(r[0]), {})) for r in rows]

    def close(self) -> None:
        self._db.close()


def _label(url: str) -> str:
    """``postgresql://user@host:port/db``: enough to recognise the store, no password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "localhost")
    host = f"[{host}]" if ":" in host else host
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def _passwords(url: str) -> list[str]:
    """Every spelling of the password the URL carries, to scrub from messages."""
    found: list[str] = []
    with suppress(ValueError):
        found.append(urlsplit(url).password or "")
    with suppress(psycopg.Error):
        found.append(str(conninfo_to_dict(url).get("password") or ""))
    # Very short ones would mangle every message and are not worth hiding from it.
    return sorted({secret for secret in found if len(secret) >= 4}, key=len, reverse=True)


__all__ = ["PostgresStore"]
