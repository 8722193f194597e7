"""SQLite state, the embedded default: WAL mode, survives restarts, safe across processes.

Each write runs in ``BEGIN IMMEDIATE``, so two guards on one file never both admit past a limit.
WAL checkpoints (which fsync the database) run in a background thread on their own connection,
not inside a request's commit: an automatic checkpoint every thousand pages was the slowest
step of the request path.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from perisai.guard.interface import (
    Admission,
    Backend,
    BackendError,
    Gate,
    Limit,
    Passage,
    Ticket,
    slide,
)

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS guard_state (
    key TEXT PRIMARY KEY,
    num REAL,
    text TEXT,
    expires REAL NOT NULL
) WITHOUT ROWID
"""


class SQLiteBackend(Backend):
    def __init__(
        self,
        path: Path | str,
        *,
        checkpoint_every: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self._clock = clock  # expiry time; a simulation passes its own
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer does it
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open guard state {self.path}: {exc}") from None
        self._writes = 0
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_every,),
            name="perisai-guard-sqlite-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, every: float) -> None:
        """PASSIVE checkpoints on a connection of its own: writers never wait for them."""
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._closed.wait(every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue
        finally:
            conn.close()

    def _tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise BackendError(f"guard state {self.path}: {exc}") from None
            self._writes += 1
            if self._writes % 10_000 == 0:
                self._purge()
            return result

    def _purge(self) -> None:
        try:
            self._conn.execute("DELETE FROM guard_state WHERE expires <= ?", (self._clock(),))
        except sqlite3.Error:
            return

    @staticmethod
    def _rows(
        conn: sqlite3.Connection, column: str, keys: Sequence[str], now: float
    ) -> dict[str, object]:
        """``column`` of the live rows among ``keys``, in one query."""
        marks = ",".join("?" * len(keys))
        query = (
            f"SELECT key, {column} FROM guard_state "  # column is ours; keys are bound
            f"WHERE key IN ({marks}) AND expires > ?"
        )
        return dict(conn.execute(query, (*keys, now)).fetchall())

    def acquire(self, limits: Sequence[Limit], now: float) -> Admission:
        if not limits:
            return Admission(True)
        return self._tx(lambda conn: self._acquire(conn, limits, now))

    def _acquire(self, conn: sqlite3.Connection, limits: Sequence[Limit], now: float) -> Admission:
        """:meth:`acquire` inside a transaction."""
        if not limits:
            return Admission(True)
        logs = self._rows(conn, "text", [limit.key for limit in limits], now)
        updates: list[tuple[str, str, float]] = []
        for limit in limits:
            text = logs.get(limit.key)
            stamps = json.loads(text) if isinstance(text, str) and text else []
            allowed, kept, retry = slide(stamps, now, limit.limit, limit.window)
            if not allowed:
                return Admission(False, retry, limit.name)
            updates.append((limit.key, json.dumps(kept), now + limit.window))
        conn.executemany(
            "INSERT OR REPLACE INTO guard_state (key, num, text, expires) VALUES (?, NULL, ?, ?)",
            updates,
        )
        return Admission(True)

    def gate(self, gate: Gate, now: float) -> Passage:
        """Every read and the admission in one transaction."""
        clock = self._clock()

        def body(conn: sqlite3.Connection) -> Passage:
            nums = self._rows(conn, "num", gate.counters, clock) if gate.counters else {}
            wanted = [*gate.texts, *([gate.flag] if gate.flag is not None else [])]
            texts = self._rows(conn, "text", wanted, clock) if wanted else {}
            flagged = gate.flag is not None and texts.get(gate.flag) is not None
            limits = [*gate.limits, *(() if flagged else gate.unflagged)]
            admission = self._acquire(conn, limits, now)
            taken = tuple(limit.key for limit in limits) if admission.allowed else ()
            return Passage(
                [_number(nums.get(key)) for key in gate.counters],
                [_text(texts.get(key)) for key in gate.texts],
                flagged,
                admission,
                Ticket(taken, now),
            )

        return self._tx(body)

    def release(self, ticket: Ticket) -> None:
        if not ticket.keys:
            return

        def body(conn: sqlite3.Connection) -> None:
            logs = self._rows(conn, "text", ticket.keys, ticket.stamp)  # the decision's time
            for key, text in logs.items():
                stamps = json.loads(text) if isinstance(text, str) and text else []
                if ticket.stamp in stamps:
                    stamps.remove(ticket.stamp)
                    conn.execute(
                        "UPDATE guard_state SET text = ? WHERE key = ?", (json.dumps(stamps), key)
                    )

        self._tx(body)

    @staticmethod
    def _add(conn: sqlite3.Connection, key: str, amount: float, ttl: float, now: float) -> float:
        row = conn.execute(
            "SELECT num, expires FROM guard_state WHERE key = ? AND expires > ?", (key, now)
        ).fetchone()
        if row is None:
            value, expires = amount, now + ttl
        else:
            value, expires = float(row[0] or 0) + amount, float(row[1])
        conn.execute(
            "INSERT OR REPLACE INTO guard_state (key, num, text, expires) VALUES (?, ?, NULL, ?)",
            (key, value, expires),
        )
        return value

    def add(self, key: str, amount: float, ttl: float) -> float:
        now = self._clock()
        return self._tx(lambda conn: self._add(conn, key, amount, ttl, now))

    def add_many(self, items: Sequence[tuple[str, float, float]]) -> list[float]:
        """Every counter in one transaction: one commit instead of one per counter."""
        if not items:
            return []
        now = self._clock()
        return self._tx(
            lambda conn: [self._add(conn, key, amount, ttl, now) for key, amount, ttl in items]
        )

    def get_many(self, keys: Sequence[str]) -> list[float]:
        now = self._clock()

        if not keys:
            return []

        def body(conn: sqlite3.Connection) -> list[float]:
            found = self._rows(conn, "num", keys, now)
            return [_number(found.get(key)) for key in keys]

        return self._read(body)

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return body(self._conn)
            except sqlite3.Error as exc:
                raise BackendError(f"guard state {self.path}: {exc}") from None

    def put(self, key: str, value: str, ttl: float) -> None:
        expires = self._clock() + ttl
        self._tx(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO guard_state (key, num, text, expires) "
                "VALUES (?, NULL, ?, ?)",
                (key, value, expires),
            )
        )

    def get(self, key: str) -> str | None:
        now = self._clock()

        def body(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT text FROM guard_state WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            return None if row is None else row[0]

        return self._read(body)

    def delete(self, key: str) -> None:
        self._tx(lambda conn: conn.execute("DELETE FROM guard_state WHERE key = ?", (key,)))

    def ping(self) -> None:
        self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        self._closed.set()
        if self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5.0)
        with self._lock:
            self._conn.close()


def _number(value: object) -> float:
    """A counter column: 0 when absent."""
    return float(value) if isinstance(value, int | float) else 0.0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
