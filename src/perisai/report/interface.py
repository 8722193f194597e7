"""A reporter turns a scan into text; only the CLI decides where the text goes."""

from __future__ import annotations

from abc import ABC, abstractmethod

from perisai.findings import ScanDiff, ScanReport


class Reporter(ABC):
    """Renders a report (and optionally its diff with the previous scan) to a string."""

    @abstractmethod
    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        """The whole report as text; never writes or prints."""
