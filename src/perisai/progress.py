"""Progress is a separate object the scanner notifies; the core never draws anything."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Told what the scan is doing; a CLI draws a bar, a library user may ignore it."""

    def phase(self, name: str, total: int) -> None:
        """A new phase (``discover``, ``probe``) with this many steps begins."""

    def advance(self, steps: float = 1) -> None:
        """Steps of the current phase are done."""


class NoProgress:
    """The default: tell nobody."""

    def phase(self, name: str, total: int) -> None:
        return None

    def advance(self, steps: float = 1) -> None:
        return None
