"""The findings store: every scan is kept, so reports can show history and diffs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from perisai.findings import ScanReport


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line for the user.

    E.g. ``cannot open findings store /x/y.db: permission denied``; the CLI prints it as is.
    """


@dataclass(frozen=True)
class ScanSummary:
    """One line of scan history."""

    scan_id: int
    started: str
    finished: str
    scope_key: str
    counts: dict[str, int]  # findings by severity value; severities with none are absent


class FindingsStore(ABC):
    """Keeps scan reports (already masked) and finds them again."""

    @abstractmethod
    def save(self, report: ScanReport) -> int:
        """Store ``report``, set its ``scan_id`` and return it."""

    @abstractmethod
    def get(self, scan_id: int) -> ScanReport | None:
        """The scan with this id, or ``None``."""

    @abstractmethod
    def latest(self, scope_key: str | None = None) -> ScanReport | None:
        """The newest scan (of this scope, if given)."""

    @abstractmethod
    def previous(self, report: ScanReport) -> ScanReport | None:
        """The newest scan of the same scope saved before ``report``."""

    @abstractmethod
    def list_scans(self, limit: int = 20) -> list[ScanSummary]:
        """The newest scans first."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
