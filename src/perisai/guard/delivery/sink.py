"""A development sink: messages as JSON lines in a file, or on stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from perisai.guard.delivery.interface import Delivery, DeliveryError, Message

__all__ = ["SinkDelivery"]


class SinkDelivery(Delivery):
    """Writes each message as one JSON line to ``path`` (stderr when None). For development:
    codes are written in the clear."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    async def send(self, message: Message) -> None:
        line = json.dumps(asdict(message), ensure_ascii=False) + "\n"
        if self.path is None:
            sys.stderr.write(line)
            return
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            raise DeliveryError(f"cannot write to {self.path}: {exc.strerror}") from None
